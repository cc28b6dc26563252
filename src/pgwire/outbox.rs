//! A protocol thread's replies, sent together: one io_uring submission per
//! turn of its event loop instead of one write per reply.
//!
//! Why: a reply's write wakes the client, and a client sharing the thread's
//! CPU (which is what `runtimes` arranges) preempts the thread right there,
//! at the end of the write. So every reply cost two context switches, one
//! each way, however many connections had requests waiting (2.0 switches
//! per lookup with pgbench, 8 clients on 2 CPUs). Written in one
//! submission, the replies of all connections that were ready wake the
//! client once: it reads them all, sends the next requests and blocks, and
//! the thread takes them all in turn (0.5 switches per lookup; 115k → 130k
//! lookups per second on that machine, bench/RESULTS.md).
//!
//! How: a connection finishing a reply (at ReadyForQuery) queues its bytes
//! here and waits. The thread's sender — the future its event loop runs —
//! yields once, so that the other connections made ready in this turn
//! queue theirs, then submits every queued reply as a non-blocking send
//! and wakes each connection with the send's result. What a send did not
//! take (the socket's buffer was full) the connection writes itself, as
//! before. Without io_uring (an old kernel, a seccomp profile that forbids
//! it) there is no outbox and every connection writes its own replies.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::Mutex;

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};
use tokio::sync::{Notify, oneshot};

/// Sends submitted at once, at most (more wait for the next submission).
const RING_ENTRIES: u32 = 256;

pub struct Outbox {
    ring: Mutex<IoUring>,
    queue: Mutex<Vec<Queued>>,
    queued: Notify,
}

struct Queued {
    fd: RawFd,
    data: Bytes,
    /// Bytes sent, or -errno.
    done: oneshot::Sender<i32>,
}

thread_local! {
    static OUTBOX: Cell<Option<&'static Outbox>> = const { Cell::new(None) };
}

/// This thread's outbox, if it is a protocol thread with io_uring.
pub fn current() -> Option<&'static Outbox> {
    OUTBOX.with(Cell::get)
}

/// Gives this thread an outbox and sends its replies, forever: the future
/// a protocol thread's event loop runs. Without io_uring it only waits.
pub async fn serve() {
    let ring = match IoUring::new(RING_ENTRIES) {
        Ok(ring) => ring,
        Err(e) => {
            tracing::info!(error = %e, "io_uring unavailable: replies are written one by one");
            return std::future::pending().await;
        }
    };
    // One per protocol thread, for the life of the process.
    let outbox: &'static Outbox = Box::leak(Box::new(Outbox {
        ring: Mutex::new(ring),
        queue: Mutex::new(Vec::new()),
        queued: Notify::new(),
    }));
    OUTBOX.with(|cell| cell.set(Some(outbox)));
    loop {
        outbox.queued.notified().await;
        // The connections woken with this one queue their replies first.
        tokio::task::yield_now().await;
        outbox.send_queued();
    }
}

impl Outbox {
    /// Queues `data` for the socket `fd`; the receiver gets how many bytes
    /// were sent (or -errno). The socket must stay open until then.
    pub fn queue(&self, fd: RawFd, data: Bytes) -> oneshot::Receiver<i32> {
        let (done, sent) = oneshot::channel();
        lock(&self.queue).push(Queued { fd, data, done });
        self.queued.notify_one();
        sent
    }

    fn send_queued(&self) {
        let mut queued = std::mem::take(&mut *lock(&self.queue));
        let mut ring = lock(&self.ring);
        while !queued.is_empty() {
            let rest = queued.split_off(queued.len().min(RING_ENTRIES as usize));
            send_all(&mut ring, queued);
            queued = rest;
        }
    }
}

/// Submits one send per entry (at most the ring's size), waits for all of
/// them and hands each its result.
fn send_all(ring: &mut IoUring, queued: Vec<Queued>) {
    let (data, done): (Vec<_>, Vec<_>) = queued
        .into_iter()
        .map(|entry| ((entry.fd, entry.data), entry.done))
        .unzip();
    let mut submitted = 0;
    for (index, (fd, bytes)) in data.iter().enumerate() {
        let send = opcode::Send::new(types::Fd(*fd), bytes.as_ptr(), bytes.len() as u32)
            // Never wait for buffer space (the connection writes the rest
            // itself); a closed peer is an error, not a signal.
            .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            .build()
            .user_data(index as u64);
        // SAFETY: the bytes stay alive and unmoved in `data` until every
        // submitted send has completed (or are leaked, below).
        if unsafe { ring.submission().push(&send) }.is_err() {
            break;
        }
        submitted += 1;
    }
    let mut results = vec![-libc::EAGAIN; data.len()];
    let mut completed = 0;
    while completed < submitted {
        match ring.submit_and_wait(submitted - completed) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                // The kernel may still read the bytes of the sends not
                // completed: never free them. Their connections fail.
                tracing::error!(error = %e, "io_uring submission failed");
                for (index, result) in results.iter_mut().enumerate() {
                    if *result == -libc::EAGAIN && index < submitted {
                        *result = -libc::EIO;
                    }
                }
                std::mem::forget(data);
                for (sender, result) in done.into_iter().zip(results) {
                    let _ = sender.send(result);
                }
                return;
            }
        }
        for completion in ring.completion() {
            results[completion.user_data() as usize] = completion.result();
            completed += 1;
        }
    }
    for (sender, result) in done.into_iter().zip(results) {
        let _ = sender.send(result);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

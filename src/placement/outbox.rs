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
//! take (the socket's buffer was full, or the send failed) the connection
//! writes itself, as before: a broken socket's error comes from that
//! write. Without io_uring (an old kernel, a seccomp profile that forbids
//! it) there is no outbox and every connection writes its own replies.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};
use tokio::sync::{Notify, oneshot};

/// Sends submitted at once, at most (more wait for the next submission).
const RING_ENTRIES: u32 = 256;

pub struct Outbox {
    ring: Mutex<IoUring>,
    queue: Mutex<Vec<Queued>>,
    queued: Notify,
    /// Set when a submission failed: the ring may still hold sends whose
    /// completions would be taken for later ones', so it is never used
    /// again (the thread's connections write their own replies).
    retired: AtomicBool,
}

struct Queued {
    fd: RawFd,
    data: Bytes,
    done: oneshot::Sender<Sent>,
}

/// What became of a queued reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// This many of its first bytes were sent (all, or as many as the
    /// socket's buffer took; none when the send failed): the connection
    /// writes the rest itself.
    Bytes(usize),
    /// Unknown: the send may still be in the kernel's hands. Writing the
    /// reply again could send it twice, so the connection must close.
    Lost,
}

thread_local! {
    static OUTBOX: Cell<Option<&'static Outbox>> = const { Cell::new(None) };
}

/// This thread's outbox, if it is a protocol thread with a working
/// io_uring.
pub fn current() -> Option<&'static Outbox> {
    OUTBOX
        .with(Cell::get)
        .filter(|outbox| !outbox.retired.load(Ordering::Relaxed))
}

/// Whether this kernel (and the process's seccomp profile) lets io_uring
/// send: what decides whether protocol threads get an outbox.
pub fn available() -> bool {
    IoUring::new(RING_ENTRIES).is_ok_and(|ring| supports_send(&ring))
}

/// Gives this thread an outbox and sends its replies, forever: the future
/// a protocol thread's event loop runs. Without io_uring it only waits.
pub async fn serve() {
    let ring = match IoUring::new(RING_ENTRIES) {
        Ok(ring) if supports_send(&ring) => ring,
        Ok(_) => {
            tracing::info!(
                "io_uring cannot send (kernel before 5.6): replies are written one by one"
            );
            return std::future::pending().await;
        }
        Err(e) => {
            tracing::info!(error = %e, "io_uring unavailable: replies are written one by one");
            return std::future::pending().await;
        }
    };
    tracing::debug!("a protocol thread sends its replies through io_uring");
    // One per protocol thread, for the life of the process.
    let outbox: &'static Outbox = Box::leak(Box::new(Outbox {
        ring: Mutex::new(ring),
        queue: Mutex::new(Vec::new()),
        queued: Notify::new(),
        retired: AtomicBool::new(false),
    }));
    OUTBOX.with(|cell| cell.set(Some(outbox)));
    loop {
        outbox.queued.notified().await;
        // The connections woken with this one queue their replies first.
        tokio::task::yield_now().await;
        outbox.send_queued();
    }
}

/// Whether the kernel knows the send operation (io_uring predates it).
fn supports_send(ring: &IoUring) -> bool {
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).is_ok() && probe.is_supported(opcode::Send::CODE)
}

impl Outbox {
    /// Queues `data` for the socket `fd`; the receiver learns what was sent.
    /// The socket must stay open until then.
    pub fn queue(&self, fd: RawFd, data: Bytes) -> oneshot::Receiver<Sent> {
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
            if self.retired.load(Ordering::Relaxed) {
                for entry in queued {
                    let _ = entry.done.send(Sent::Bytes(0));
                }
            } else if let Err(e) = send_all(&mut ring, queued) {
                tracing::error!(error = %e, "io_uring submission failed: replies are written one by one");
                self.retired.store(true, Ordering::Relaxed);
            }
            queued = rest;
        }
    }
}

/// Submits one send per entry (at most the ring's size), waits for all of
/// them and hands each its result. On a failed submission the sends not
/// known to be complete are `Lost` and their bytes leaked: the kernel may
/// still read them.
fn send_all(ring: &mut IoUring, queued: Vec<Queued>) -> std::io::Result<()> {
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
    // Sends never submitted (the ring was full) took nothing.
    let mut results: Vec<Option<Sent>> = (0..data.len())
        .map(|index| (index >= submitted).then_some(Sent::Bytes(0)))
        .collect();
    let mut completed = 0;
    let mut failed = None;
    while completed < submitted {
        match ring.submit_and_wait(submitted - completed) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        for completion in ring.completion() {
            // A failed send took nothing; its connection's own write
            // reports the socket's error.
            let sent = usize::try_from(completion.result()).unwrap_or(0);
            results[completion.user_data() as usize] = Some(Sent::Bytes(sent));
            completed += 1;
        }
    }
    if failed.is_some() {
        std::mem::forget(data);
    }
    for (sender, result) in done.into_iter().zip(results) {
        let _ = sender.send(result.unwrap_or(Sent::Lost));
    }
    failed.map_or(Ok(()), Err)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! A client's byte stream: TCP or, on Unix, a Unix-domain socket. The
//! protocol is the same on both; only how bytes move differs.
//!
//! A socket belongs to the event loop of the runtime that registered it. A
//! connection moving to another runtime (see `runtimes`) detaches its
//! socket from one ([`ClientStream::detach`]) and attaches it to the other
//! ([`ClientStream::attach`], inside the target runtime).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

pub enum ClientStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    /// Between two event loops: not readable or writable until attached.
    Detached(DetachedStream),
}

/// A client socket registered with no runtime (non-blocking).
pub enum DetachedStream {
    Tcp(std::net::TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

fn detached_error() -> std::io::Error {
    std::io::Error::other("client socket used while detached from its event loop")
}

impl ClientStream {
    /// Who is connected, for logs.
    pub fn describe_peer(&self) -> String {
        match self {
            ClientStream::Tcp(stream) => stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "unknown".to_string()),
            #[cfg(unix)]
            ClientStream::Unix(_) => "[local]".to_string(),
            ClientStream::Detached(_) => "unknown".to_string(),
        }
    }

    /// The CPU the client runs on, where the system tells: over TCP the
    /// CPU that last received packets for this socket (on loopback, the
    /// client's); over a Unix-domain socket the CPU of the peer process,
    /// if it has a single thread (see [`single_threaded_peer_cpu`]).
    pub fn incoming_cpu(&self) -> Option<usize> {
        #[cfg(target_os = "linux")]
        if let ClientStream::Unix(stream) = self {
            use std::os::fd::AsRawFd;
            return single_threaded_peer_cpu(stream.as_raw_fd());
        }
        #[cfg(target_os = "linux")]
        if let ClientStream::Tcp(stream) = self {
            use std::os::fd::AsRawFd;
            let mut cpu: libc::c_int = -1;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes at most `len` bytes into `cpu`.
            let result = unsafe {
                libc::getsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_INCOMING_CPU,
                    (&mut cpu as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            return (result == 0 && cpu >= 0).then_some(cpu as usize);
        }
        None
    }

    /// Whether a stream that cannot tell its client's CPU now never will:
    /// over a Unix-domain socket that depends on the peer process (its
    /// thread count, its PID namespace; a process that later drops to one
    /// thread stays unpaired), while over TCP no CPU is known before the
    /// first packets arrive.
    pub fn cpu_is_fixed_by_peer(&self) -> bool {
        #[cfg(unix)]
        if let ClientStream::Unix(_) = self {
            return true;
        }
        false
    }

    /// The socket's file descriptor, while attached.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            ClientStream::Tcp(stream) => Some(stream.as_raw_fd()),
            #[cfg(unix)]
            ClientStream::Unix(stream) => Some(stream.as_raw_fd()),
            ClientStream::Detached(_) => None,
        }
    }

    /// Deregisters the socket from the current runtime's event loop.
    pub fn detach(self) -> std::io::Result<ClientStream> {
        Ok(ClientStream::Detached(match self {
            ClientStream::Tcp(stream) => DetachedStream::Tcp(stream.into_std()?),
            #[cfg(unix)]
            ClientStream::Unix(stream) => DetachedStream::Unix(stream.into_std()?),
            ClientStream::Detached(stream) => stream,
        }))
    }

    /// Registers a detached socket with the current runtime's event loop.
    pub fn attach(self) -> std::io::Result<ClientStream> {
        Ok(match self {
            ClientStream::Detached(DetachedStream::Tcp(stream)) => {
                ClientStream::Tcp(TcpStream::from_std(stream)?)
            }
            #[cfg(unix)]
            ClientStream::Detached(DetachedStream::Unix(stream)) => {
                ClientStream::Unix(UnixStream::from_std(stream)?)
            }
            attached => attached,
        })
    }

    /// Sends small replies at once (TCP would otherwise hold them back
    /// for Nagle's algorithm).
    pub fn set_nodelay(&self) {
        if let ClientStream::Tcp(stream) = self {
            let _ = stream.set_nodelay(true);
        }
    }
}

/// The CPU the process at the other end of Unix-domain socket `fd` runs
/// on, if that process has one thread (so that its CPU is the one the
/// connection's requests come from): `SO_PEERCRED` names the process that
/// connected, and `/proc/<pid>/stat` its thread count and last CPU.
///
/// Why: the kernel records no incoming CPU for Unix sockets, and a
/// connection served on the other CPU than its client's paid a cross-CPU
/// wakeup each way on every round trip (8 single-threaded clients over
/// Unix sockets: 84–93k lookups/s, against 119–125k over TCP, where the
/// pairing works). A multi-threaded client (pgbench -j 2, a connection
/// pool) does not say which thread owns a connection: none.
#[cfg(target_os = "linux")]
fn single_threaded_peer_cpu(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `credentials`.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // (A peer in a PID namespace this process cannot see has pid 0.)
    if result != 0 || credentials.pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", credentials.pid)).ok()?;
    match process_threads_and_cpu(&stat)? {
        (1, cpu) => Some(cpu),
        _ => None,
    }
}

/// A process's thread count and the CPU it last ran on, from the text of
/// its `/proc/<pid>/stat` (fields 20 and 39; the command name, field 2,
/// is in parentheses and may hold spaces and parentheses itself).
#[cfg(any(target_os = "linux", test))]
fn process_threads_and_cpu(stat: &str) -> Option<(u64, usize)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from the 3rd on.
    let mut fields = after_name.split_ascii_whitespace();
    let threads = fields.nth(20 - 3)?.parse().ok()?;
    let cpu = fields.nth(39 - 20 - 1)?.parse().ok()?;
    Some((threads, cpu))
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            #[cfg(unix)]
            ClientStream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
            ClientStream::Detached(_) => Poll::Ready(Err(detached_error())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            #[cfg(unix)]
            ClientStream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
            ClientStream::Detached(_) => Poll::Ready(Err(detached_error())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            #[cfg(unix)]
            ClientStream::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            ClientStream::Detached(_) => Poll::Ready(Err(detached_error())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Tcp(stream) => stream.is_write_vectored(),
            #[cfg(unix)]
            ClientStream::Unix(stream) => stream.is_write_vectored(),
            ClientStream::Detached(_) => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            #[cfg(unix)]
            ClientStream::Unix(stream) => Pin::new(stream).poll_flush(cx),
            ClientStream::Detached(_) => Poll::Ready(Err(detached_error())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            #[cfg(unix)]
            ClientStream::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
            ClientStream::Detached(_) => Poll::Ready(Err(detached_error())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_thread_count_and_cpu_from_proc_stat() {
        // A command name with spaces and parentheses; 20 threads, CPU 1.
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 20 0 \
                    1000 123456 789 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(process_threads_and_cpu(stat), Some((20, 1)));
        assert_eq!(process_threads_and_cpu("4242 (x) S 1"), None);
        assert_eq!(process_threads_and_cpu(""), None);
        // This process's own line parses (it has several threads here).
        #[cfg(target_os = "linux")]
        {
            let own = std::fs::read_to_string("/proc/self/stat").unwrap();
            let (threads, cpu) = process_threads_and_cpu(&own).unwrap();
            assert!(threads >= 1);
            assert!(cpu < 4096);
        }
    }

    /// A single-threaded client over a Unix socket names its CPU; this
    /// (multi-threaded) test process does not.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_threaded_unix_peer_names_its_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // python3 runs one thread: connect, then wait to be killed.
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import socket, sys, time\n\
                 s = socket.socket(socket.AF_UNIX)\n\
                 s.connect(sys.argv[1])\n\
                 time.sleep(30)",
            )
            .arg(&path)
            .spawn()
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let cpu = ClientStream::Unix(accepted).incoming_cpu();
        child.kill().unwrap();
        child.wait().unwrap();
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert!(cpu.is_some_and(|cpu| cpu < cpus.max(64)), "{cpu:?}");

        let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
        assert_eq!(ClientStream::Unix(ours).incoming_cpu(), None);
    }
}

//! A client's byte stream: TCP or, on Unix, a Unix-domain socket. The
//! protocol is the same on both; only how bytes move differs.
//!
//! A socket belongs to the event loop of the runtime that registered it. A
//! connection moving to another runtime (see `placement`) detaches its
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

    /// The CPU the client's packets arrive on, where the system tells:
    /// over TCP the CPU that last received packets for this socket (on
    /// loopback, the client's own); over a Unix-domain socket none (the
    /// kernel records none, and featuredb does not guess it from the peer
    /// process).
    pub fn incoming_cpu(&self) -> Option<usize> {
        match self {
            ClientStream::Tcp(stream) => {
                use std::os::fd::AsRawFd;
                crate::placement::cpus::incoming_cpu(stream.as_raw_fd())
            }
            _ => None,
        }
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

    /// Only TCP tells where a client's packets arrive; a Unix-domain
    /// socket's client is placed without it.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_unix_socket_client_has_no_incoming_cpu() {
        let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
        assert_eq!(ClientStream::Unix(ours).incoming_cpu(), None);
    }
}

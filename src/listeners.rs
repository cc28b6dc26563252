//! Where clients connect: the TCP address, and on Unix a Unix-domain
//! socket `DIR/.s.PGSQL.<port>` — the file libpq opens for `host=DIR`
//! (`psql -h DIR -p PORT`), as PostgreSQL's `unix_socket_directories`.
//! A local socket skips the TCP/IP stack: cheaper per round trip for
//! clients on the same host (a sidecar, a batch job, a notebook).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::pgwire::ClientStream;

/// `sun_path` holds 108 bytes including the terminating NUL.
#[cfg(unix)]
const MAX_SOCKET_PATH: usize = 107;

pub struct Listeners {
    tcp: TcpListener,
    #[cfg(unix)]
    unix: Option<UnixSocket>,
}

impl Listeners {
    /// Binds the TCP address, then the Unix socket (in
    /// `config.unix_socket_dir`, the data directory when unset; none when
    /// set to an empty path).
    pub async fn bind(config: &ServerConfig, data_dir: &Path) -> Result<Self> {
        let tcp = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
        #[cfg(unix)]
        {
            let port = tcp
                .local_addr()
                .map_err(|e| Error::io("reading listen address", e))?
                .port();
            let unix = match &config.unix_socket_dir {
                Some(dir) if dir.as_os_str().is_empty() => None,
                Some(dir) => Some(UnixSocket::bind(dir, port)?),
                // The default must not stop a server whose data directory
                // path is too long for a socket: TCP still works.
                None => match UnixSocket::bind(data_dir, port) {
                    Ok(socket) => Some(socket),
                    Err(e) => {
                        tracing::warn!(error = %e, "not listening on a Unix-domain socket");
                        None
                    }
                },
            };
            Ok(Self { tcp, unix })
        }
        #[cfg(not(unix))]
        {
            let _ = data_dir;
            Ok(Self { tcp })
        }
    }

    pub fn tcp_address(&self) -> Result<SocketAddr> {
        self.tcp
            .local_addr()
            .map_err(|e| Error::io("reading listen address", e))
    }

    /// The Unix-domain socket's path, if there is one.
    pub fn unix_socket(&self) -> Option<&Path> {
        #[cfg(unix)]
        {
            self.unix.as_ref().map(|socket| socket.path.as_path())
        }
        #[cfg(not(unix))]
        {
            None
        }
    }

    /// The next client, from whichever listener has one.
    pub async fn accept(&self) -> std::io::Result<ClientStream> {
        #[cfg(unix)]
        if let Some(unix) = &self.unix {
            return tokio::select! {
                accepted = self.tcp.accept() => accepted.map(|(stream, _)| ClientStream::Tcp(stream)),
                accepted = unix.listener.accept() => accepted.map(|(stream, _)| ClientStream::Unix(stream)),
            };
        }
        self.tcp
            .accept()
            .await
            .map(|(stream, _)| ClientStream::Tcp(stream))
    }
}

/// A bound Unix-domain socket; its file is removed when dropped.
#[cfg(unix)]
struct UnixSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

#[cfg(unix)]
impl UnixSocket {
    fn bind(dir: &Path, port: u16) -> Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;

        let path = dir.join(format!(".s.PGSQL.{port}"));
        let shown = path.display().to_string();
        if path.as_os_str().as_bytes().len() > MAX_SOCKET_PATH {
            return Err(Error::InvalidParameterValue(format!(
                "Unix-domain socket path \"{shown}\" is longer than {MAX_SOCKET_PATH} bytes"
            )));
        }
        if path.exists() {
            // A live server answers; a file left by a killed one does not.
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(Error::Io {
                    context: format!("Unix-domain socket {shown} is in use by another server"),
                    source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
                });
            }
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing stale socket {shown}"), e))?;
        }
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("listening on {shown}"), e))?;
        // As PostgreSQL's default unix_socket_permissions: any local user
        // may connect (as over TCP on localhost); authentication decides.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| Error::io(format!("setting permissions of {shown}"), e))?;
        Ok(Self { listener, path })
    }
}

#[cfg(unix)]
impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

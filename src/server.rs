//! The server process: opens the data directory, listens, serves each
//! connection on its own task, and shuts down cleanly on SIGINT/SIGTERM.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::listeners::Listeners;
use crate::pgwire::{self, CancelRegistry, ServerContext};
use crate::placement::Runtimes;

/// Holds an exclusive lock on the data directory for the process lifetime:
/// two servers writing the same catalog would corrupt it.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("creating data directory {}", data_dir.display()), e))?;
        let path = data_dir.join("featuredb.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            return Err(Error::Io {
                context: format!(
                    "data directory {} is in use by another featuredb process",
                    data_dir.display()
                ),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self { _file: file })
    }
}

/// Runs the server until a shutdown signal.
pub async fn run(config: ServerConfig) -> Result<()> {
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let data_dir = std::fs::canonicalize(&config.data_dir)
        .map_err(|e| Error::io(format!("resolving {}", config.data_dir.display()), e))?;
    let mut options = EngineOptions::default();
    if let Some(partitions) = config.target_partitions {
        options.target_partitions = partitions.max(1);
    }
    options.memory_limit = config.memory_limit_bytes()?;
    if let Some(size) = &config.online_cache_size {
        options.online_cache_bytes = crate::config::parse_bytes(size)?;
    }
    if let Some(ms) = config.flush_interval_ms {
        options.flush.max_age = Duration::from_millis(ms.max(1));
    }
    let engine = Engine::open(&data_dir, options).await?;

    let listeners = Listeners::bind(&config, &data_dir).await?;
    let address = listeners.tcp_address()?;
    let unix_socket = listeners
        .unix_socket()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "none".to_string());
    tracing::info!(%address, %unix_socket, data_dir = %data_dir.display(), "featuredb is ready for connections");

    let (stop, shutdown) = watch::channel(false);
    let server = Arc::new(ServerContext {
        engine,
        cancels: Arc::new(CancelRegistry::default()),
        max_message_size: config.max_message_size,
        shutdown,
        runtimes: Runtimes::start(config.placement())?,
        tasks: TaskTracker::new(),
    });
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listeners.accept() => match accepted {
                Ok(stream) => pgwire::serve(stream, server.clone()),
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut signal => break,
        }
    }

    tracing::info!("shutting down: no new connections");
    drop(listeners);
    let _ = stop.send(true);
    let timeout = Duration::from_secs(config.shutdown_timeout_secs);
    server.tasks.close();
    let drained = tokio::time::timeout(timeout, server.tasks.wait()).await;
    if drained.is_err() {
        // Returning ends the process, and with it what still runs.
        tracing::warn!("statements still running after {timeout:?}; exiting anyway");
    }
    // Logged writes are durable already; committing them now just spares
    // the next start a replay.
    server.engine.offline.flush_all().await;
    tracing::info!("shutdown complete");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

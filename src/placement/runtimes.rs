//! Where connections run: protocol threads for the request path, the query
//! runtime for everything else.
//!
//! A connection is served by one of `protocol_threads` threads (one per
//! CPU by default), each its own single-threaded tokio event loop. Online
//! lookups — a Bind and Execute of a prepared key lookup, Describe, Sync —
//! are answered there. On the multi-threaded runtime the same lookups cost
//! a third more CPU per round trip, and the client more still: a reply woke
//! an idle worker to look for work to steal, and the workers bounced each
//! connection's state between cores (measured with pgbench, 8 clients on 2
//! cores: 62k lookups/s on the shared runtime, 97k on two protocol
//! threads; bench/RESULTS.md).
//!
//! A protocol thread must never run a query: DataFusion spawns its
//! partitions on the current runtime (one thread here) and would hold up
//! every other connection of the thread for as long as the query runs. So
//! a message that needs more than a lookup (Parse, Query, a non-lookup
//! Bind or Execute, COPY) moves its connection to the query runtime (the
//! multi-threaded one that runs everything else), and the Bind of a lookup
//! moves it back to its protocol thread. A move detaches the socket from
//! one event loop and attaches it to the other, with the bytes already
//! read and the replies not yet sent: a few syscalls and a task spawn
//! (tens of microseconds), paid only when a client alternates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

use super::PlacementSettings;
use super::cpus::{allowed_cpus, pin_current_thread};
use crate::error::{Error, Result};

/// Which runtime a connection runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Its protocol thread.
    Protocol,
    /// The multi-threaded query runtime.
    Query,
}

/// The protocol threads and the query runtime.
pub struct Runtimes {
    query: Handle,
    protocol: Vec<ProtocolThread>,
}

struct ProtocolThread {
    handle: Handle,
    /// Connections whose protocol thread this is.
    connections: Arc<AtomicUsize>,
    /// The CPU the thread is pinned to.
    cpu: Option<usize>,
}

impl Runtimes {
    /// Starts the protocol threads `settings` asks for; with none,
    /// connections run on the query runtime only. Must be called inside the
    /// query runtime.
    ///
    /// When pinning is on and there are no more threads than CPUs the
    /// process may use, each thread is pinned to its own CPU, and a TCP
    /// connection is served by the thread on the CPU its packets arrive on
    /// (on loopback the client's own CPU): waking the client or being woken
    /// by it then stays on one CPU. Unpinned, a thread paired with a client
    /// on the other CPU paid a cross-CPU wakeup each way, every round trip
    /// (a run with that pairing served 25% fewer lookups). Connections
    /// whose CPU is unknown (Unix-domain sockets, pinning off) go to the
    /// thread with the fewest connections.
    pub fn start(settings: PlacementSettings) -> Result<Self> {
        let count = settings.protocol_threads;
        let cpus = allowed_cpus();
        let pin = settings.pin_protocol_threads && count <= cpus.len();
        // What the threads will do, not only what was asked: the log below
        // says whether replies really go through io_uring.
        #[cfg(target_os = "linux")]
        let io_uring = settings.io_uring && super::outbox::available();
        #[cfg(not(target_os = "linux"))]
        let io_uring = false;
        let protocol = (0..count)
            .map(|index| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io("starting a protocol thread", e))?;
                let handle = runtime.handle().clone();
                let cpu = pin.then(|| cpus[index]);
                std::thread::Builder::new()
                    .name(format!("featuredb-protocol-{index}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            pin_current_thread(cpu);
                        }
                        // The thread's event loop runs until the process
                        // exits (sending its connections' replies, with an
                        // outbox).
                        #[cfg(target_os = "linux")]
                        if io_uring {
                            return runtime.block_on(super::outbox::serve());
                        }
                        let _ = io_uring;
                        runtime.block_on(std::future::pending::<()>())
                    })
                    .map_err(|e| Error::io("starting a protocol thread", e))?;
                Ok(ProtocolThread {
                    handle,
                    connections: Arc::default(),
                    cpu,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::info!(
            protocol_threads = count,
            pinned = pin,
            io_uring,
            "connections are served on protocol threads"
        );
        Ok(Self {
            query: Handle::current(),
            protocol,
        })
    }

    /// The protocol thread pinned to `cpu`.
    pub fn thread_for_cpu(&self, cpu: Option<usize>) -> Option<usize> {
        let cpu = cpu?;
        self.protocol
            .iter()
            .position(|thread| thread.cpu == Some(cpu))
    }

    /// A home for a connection whose packets arrive on `incoming_cpu`: the
    /// protocol thread pinned to that CPU, else the one with the fewest
    /// connections, or the query runtime when there are no protocol
    /// threads.
    pub fn assign(&self, incoming_cpu: Option<usize>) -> Home {
        let by_cpu = self.thread_for_cpu(incoming_cpu);
        let least_loaded = || {
            self.protocol
                .iter()
                .enumerate()
                .min_by_key(|(_, thread)| thread.connections.load(Ordering::Relaxed))
                .map(|(index, _)| index)
        };
        match by_cpu.or_else(least_loaded) {
            Some(index) => {
                let connections = &self.protocol[index].connections;
                connections.fetch_add(1, Ordering::Relaxed);
                Home {
                    thread: Some(index),
                    _counted: Some(HomeCount(connections.clone())),
                }
            }
            None => Home {
                thread: None,
                _counted: None,
            },
        }
    }

    /// The runtime `runtime` of a connection whose home is `home`.
    pub fn handle(&self, home: &Home, runtime: Runtime) -> Handle {
        match (runtime, home.thread) {
            (Runtime::Protocol, Some(index)) => self.protocol[index].handle.clone(),
            _ => self.query.clone(),
        }
    }
}

/// A connection's protocol thread (none: it runs on the query runtime
/// only). Counts as one of the thread's connections until dropped.
pub struct Home {
    thread: Option<usize>,
    /// Held for its `Drop`.
    _counted: Option<HomeCount>,
}

impl Home {
    /// The runtime a connection starts on.
    pub fn first_runtime(&self) -> Runtime {
        match self.thread {
            Some(_) => Runtime::Protocol,
            None => Runtime::Query,
        }
    }

    /// The protocol thread's index.
    pub fn thread(&self) -> Option<usize> {
        self.thread
    }

    /// Whether lookups have a protocol thread to move to.
    pub fn has_protocol_thread(&self) -> bool {
        self.thread.is_some()
    }
}

struct HomeCount(Arc<AtomicUsize>);

impl Drop for HomeCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

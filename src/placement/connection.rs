//! Where one connection runs: its home (a protocol thread, if there are
//! any), the runtime it is on now, and when a message should move it.

use tokio::runtime::Handle;

use super::runtimes::{Home, Runtime, Runtimes};

/// What a message asks of the runtime that handles it, as the protocol
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// An online lookup (the Bind of a lookup statement): best on the
    /// connection's protocol thread.
    Lookup,
    /// Anything that may run a query: only on the query runtime (a query
    /// would hold up every connection of a protocol thread).
    Query,
    /// A Sync: where the connection is, but now and then a moment to
    /// follow a client that moved to another CPU.
    Sync,
    /// Cheap messages (Describe, Flush, Close, the Execute of a lookup
    /// portal, anything before the session starts): where the connection is.
    Stay,
}

/// How often (in Syncs) a connection on a protocol thread checks that its
/// client's packets still arrive on the thread's CPU: a getsockopt per
/// check.
const CPU_CHECK_INTERVAL: u32 = 64;

pub struct ConnectionPlacement {
    home: Home,
    /// The runtime the connection runs on now.
    runtime: Runtime,
    /// Syncs handled on protocol threads (see [`Work::Sync`]).
    syncs: u32,
}

impl ConnectionPlacement {
    /// A new connection, accepted on the query runtime, whose packets
    /// arrive on `incoming_cpu`; returns it and the runtime it should start
    /// on.
    pub fn accept(runtimes: &Runtimes, incoming_cpu: Option<usize>) -> (Self, Runtime) {
        let home = runtimes.assign(incoming_cpu);
        let first = home.first_runtime();
        let placement = Self {
            home,
            runtime: Runtime::Query,
            syncs: 0,
        };
        (placement, first)
    }

    /// The runtime `work` should run on, if not the current one.
    /// `incoming_cpu` tells where the client's packets arrive now (asked
    /// only when needed).
    pub fn move_for(
        &mut self,
        work: Work,
        runtimes: &Runtimes,
        incoming_cpu: impl FnOnce() -> Option<usize>,
    ) -> Option<Runtime> {
        if !self.home.has_protocol_thread() {
            return None;
        }
        let wanted = match work {
            Work::Sync if self.runtime == Runtime::Protocol => {
                self.syncs = self.syncs.wrapping_add(1);
                let moved = self.syncs.is_multiple_of(CPU_CHECK_INTERVAL)
                    && runtimes
                        .thread_for_cpu(incoming_cpu())
                        .is_some_and(|thread| Some(thread) != self.home.thread());
                return moved.then_some(Runtime::Protocol);
            }
            Work::Sync | Work::Stay => return None,
            Work::Lookup => Runtime::Protocol,
            Work::Query => Runtime::Query,
        };
        (wanted != self.runtime).then_some(wanted)
    }

    /// Moves the connection to `runtime` (on a protocol thread, the one on
    /// the client's CPU now, which may differ from its last visit's).
    /// Returns the runtime to continue on when that is another event loop
    /// than the current one (the socket must be detached and attached
    /// there), `None` when it stays.
    pub fn move_to(
        &mut self,
        runtime: Runtime,
        runtimes: &Runtimes,
        incoming_cpu: impl FnOnce() -> Option<usize>,
    ) -> Option<Handle> {
        let thread = self.home.thread();
        if runtime == Runtime::Protocol {
            self.home = runtimes.assign(incoming_cpu());
        }
        let stays =
            runtime == self.runtime && (runtime == Runtime::Query || thread == self.home.thread());
        if stays {
            return None;
        }
        self.runtime = runtime;
        Some(runtimes.handle(&self.home, runtime))
    }
}

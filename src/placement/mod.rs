//! Placement: which thread serves a connection, and how replies leave it.
//!
//! Connections are served by protocol threads, each its own event loop,
//! where online lookups are answered; anything that may run a query moves
//! the connection to the multi-threaded query runtime ([`runtimes`]).
//! What each message needs is the protocol's to say ([`Work`]); where the
//! connection runs for it is decided here ([`ConnectionPlacement`]).
//!
//! Two machine-level choices are settings (`docs/configuration.md`), both
//! on by default because they pay on any Linux host, not only a
//! benchmark's: pinning protocol threads to CPUs, and pairing a TCP
//! connection with the thread on the CPU its packets arrive on
//! (`pin_protocol_threads`, [`cpus`]); sending each thread's replies in one
//! io_uring submission per turn of its event loop (`io_uring`, [`outbox`]).
//! featuredb never reads other processes' state to place a connection.

pub mod connection;
pub mod cpus;
#[cfg(target_os = "linux")]
pub mod outbox;
pub mod runtimes;

pub use connection::{ConnectionPlacement, Work};
pub use runtimes::{Home, Runtime, Runtimes};

pub use crate::config::PlacementSettings;

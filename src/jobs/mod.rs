//! Jobs: work the server runs for someone — today a feature view's
//! refresh — with a durable record of each run (`featuredb.jobs`) and at
//! most one run per target at a time.
//!
//! [`JobRunner`] is what every caller goes through (a session's REFRESH,
//! and later a scheduler or a stream pipeline): it serialises runs per
//! target ([`locks`]), records a run as it starts, progresses and ends
//! ([`records`]), and lets the work record its end in the transaction that
//! commits its result. The work itself (what a refresh does) belongs to
//! whoever runs it (the feature store's `materialize`).

pub mod locks;
pub mod records;
pub mod runner;

pub use locks::TargetLock;
pub use records::{Job, JobRecords};
pub use runner::{JobRunner, RunningJob};

//! The stream engine: keeps STREAMING feature views current as rows are
//! written, without REFRESH.
//!
//! Data flows one way. The offline store tells the engine about every
//! write ([`crate::offline::WriteObserver`]):
//! - **logged** rows (small INSERTs and COPYs, durable in the table's
//!   write-ahead log) run through each streaming view's row pipeline
//!   ([`crate::features::streaming::RowPipeline`]) and are offered to the
//!   view's stream in the online store, all before the writer is
//!   acknowledged: a lookup on any connection after the acknowledgement
//!   sees them;
//! - **commits** (the flusher committing logged rows to Iceberg, a direct
//!   write, TRUNCATE) wake the [`worker`], which stores what was committed
//!   with an incremental refresh of each streaming view over the table
//!   (offline history in batched Iceberg commits, online rows in redb);
//!   the refresh drops the rows it stored from the stream's memory.
//!
//! After a restart the streams start empty; the engine replays each
//! source's logged rows that no commit holds yet (the write-ahead log's
//! tail) and refreshes every streaming view, which stores whatever was
//! committed and not yet refreshed. Keeping the newest row per key is
//! idempotent, so a write that reaches a view twice counts once.

mod engine;
mod worker;

pub use engine::{PlannerSource, StreamEngine};

//! `REFRESH FEATURE VIEW`: materializing a view into its offline history
//! (an Iceberg table of its own) and, for ONLINE views, the online store.
//!
//! What a refresh reads is fixed by Iceberg snapshots, not wall clock:
//! each input table's tail is flushed, and the sequence number of its
//! current snapshot becomes the refresh's upper bound. A view that is a
//! plain SELECT over one table (the shape whose rows map one-to-one to
//! input rows) refreshes incrementally: it reads only the commits after
//! the last applied sequence number (`featuredb_write_ordered` with a
//! range). Any other view is recomputed in full when an input changed.
//!
//! Crash safety, in the order things become durable:
//! 1. the new rows are appended to the view's offline table in one Iceberg
//!    commit whose summary records the input sequence numbers
//!    ([`REFRESH_INPUTS_PROPERTY`]) — a crash before leaves nothing;
//! 2. the online rows and the new [`Materialization`] are written in one
//!    redb transaction — a crash before leaves the offline table ahead of
//!    the online store, which the next refresh detects from the summary
//!    and repairs by recomputing the online rows for exactly that range.
//!
//! The two overlap without changing that order: the offline data files
//! are finished and committed by a task of their own ([`OfflineCommit`])
//! while the online rows are decided and written into the redb
//! transaction, which commits only once the offline commit has succeeded.
//!
//! A full refresh writes a new generation (a new offline table and rows
//! table); the old ones are dropped once the new state is committed, and
//! leftovers of an interrupted full refresh are dropped by the next one.
//!
//! Where things are: [`Materializer`] runs refreshes as jobs and decides
//! each one's kind (unchanged, incremental, full; a repair first if the
//! last one stopped between its commits); [`compute`] runs a pass — the
//! view's query, partition by partition, into offline data files and the
//! newest row per key ([`newest`], [`integer_winners`], [`row_arena`]);
//! [`apply`] commits it; [`inputs`] and [`definition`] say what a view
//! reads and what a pass computes.

mod apply;
pub mod compute;
mod definition;
mod inputs;
mod integer_winners;
mod materializer;
mod newest;
mod row_arena;

pub use compute::{WindowCollect, window_collect, window_rows_shape};
pub use definition::{RowShape, online_storable, shape_of};
pub use inputs::REFRESH_INPUTS_PROPERTY;
pub use materializer::{Caller, Materializer};

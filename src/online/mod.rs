//! The online store: the newest row per key of each materialized feature
//! view, for lookups on the request path.
//!
//! Durable state lives in one redb database (`DIR/online.redb`):
//! - `materializations`: per feature view, what its last refresh applied
//!   ([`Materialization`]: the input snapshots, the offline table, the
//!   generation of its online rows);
//! - per view and generation, a base table (`rows:<view>:<generation>`)
//!   and a delta table (`delta-runs:…`), both holding blocks of rows in
//!   key order, encoded key → `[event time][row]` (see [`codec`],
//!   [`blocks`]). A full refresh writes the base; each incremental refresh
//!   adds a run of blocks to the delta ([`delta`]), which a lookup reads
//!   first. Random keys spread over a large base touch nearly every block,
//!   so an upsert of 1% of the keys would rewrite all of it; a run costs
//!   about as much as it has rows. The delta is merged into the base (in
//!   the refresh's transaction) once it holds an eighth as many keys;
//! - `jobs`: the history of refreshes, a table of the `jobs` module kept in
//!   the same database so that a refresh's record commits with its state.
//!
//! A refresh writes its online rows and its new [`Materialization`] in one
//! write transaction, committed with fsync: after a crash the store holds
//! exactly the last completed refresh. A full refresh writes a new
//! generation and deletes the old one in that same transaction.
//!
//! In front of redb sits a moka cache, bounded by bytes with a weigher,
//! of base blocks (a block base's rows, 64 keys an entry, found through an
//! in-memory index of the blocks' first keys: [`index`]) and of delta rows
//! (one entry per key; a lookup asks the delta's key filter first). Values
//! stay encoded: printing from the stored bytes is cheaper than the memory
//! decoded values take. A refresh publishes the rows it changed
//! as pending ([`pending`]) with its commit, and a background thread moves
//! them into the cache, so lookups after a refresh do not touch redb and
//! the refresh does not wait for the cache; a lookup that misses (after a
//! restart, or an evicted row) reads redb and fills the cache under a
//! shared lock, which the refresh holds exclusively while it commits and
//! publishes, so a fill can never put back a value older than the one
//! committed.
//!
//! Where things are: [`store`] (the database, the cache, the states),
//! [`read`] (lookups), [`write`] (applying a refresh, dropping a view),
//! [`warm`] (filling the cache in the background), [`state`], [`rows`] and
//! [`tables`] (what is stored and where), [`streamed`] (rows of streaming
//! views not yet stored), [`window_events`] (the rows windowed features
//! aggregate, in memory), [`blocks`], [`delta`], [`index`]
//! and [`pending`] (how). The byte format of keys and rows ([`codec`]) is
//! private: the refresh encodes through [`RowEncoder`] and [`KeyEncoder`],
//! lookups read through [`ValueReader`] and [`decode_columns`].

mod blocks;
mod codec;
mod delta;
mod format;
mod index;
mod pending;
mod read;
mod rows;
mod state;
mod store;
mod streamed;
mod tables;
mod warm;
mod window_events;
mod write;

#[cfg(test)]
mod tests;

pub use format::{
    KeyEncoder, RowEncoder, ValueReader, decode_columns, readable_as_datum, storable, value_ranges,
};
pub use rows::{
    GenerationRows, OnlineChange, OwnedRows, RowRef, RowUpdate, RowUpdates, StoredRow, Upserts,
};
pub use state::{MATERIALIZED_SCHEMA, Materialization};
pub use store::{CacheUsage, OnlineStore};
pub use streamed::{StreamReport, StreamStatus, StreamedRow, ViewStream};
pub use window_events::{WindowEvent, WindowUsage, WindowValue};

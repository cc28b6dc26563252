//! Online lookups: key reads of ONLINE feature views and of feature
//! services, answered from the online store without DataFusion.
//!
//! A query qualifies when it is `SELECT items FROM relation [alias] WHERE
//! keys` and nothing more (no joins, grouping, ordering or limits), the
//! relation is an ONLINE view (or a service of ONLINE views) whose current
//! definition is materialized, and the WHERE clause is a conjunction that
//! pins every key column exactly once: `key = $n | literal`, or for a
//! one-column key `key IN (…)` or `key = ANY($n)`. Anything else is planned
//! by DataFusion as usual, reading the offline store.
//!
//! The check and the [`LookupPlan`] are made once, when the statement is
//! prepared (Parse, or each simple Query: the check costs microseconds).
//! Select items that are plain columns are copied; any other items (on-demand
//! features such as `$2 - f.avg_amount`) are planned once by DataFusion over
//! an empty relation of the view's columns, and each execution only
//! substitutes the parameters and evaluates the expressions on the rows
//! found.
//!
//! Result semantics are those of `SELECT … FROM fv` (as of now): a key
//! with no row, or whose newest row is older than the view's TTL, has no
//! row in the result. Keys are returned in the order given, each once.
//!
//! [`LookupService`] is the one way in, for every serving path (the
//! PostgreSQL protocol today, HTTP next): it needs the registry and the
//! online store, not a session. [`LookupService::plan`] recognises a lookup
//! ([`shape`]) and plans it ([`plan`]) with the caller's names and planner;
//! [`LookupService::look_up`] finds the rows ([`execute`]) with the
//! caller's time zone and hands them over as they are stored
//! ([`LookupRows`], [`rows`]): a select list of plain columns is printed
//! straight from the stored bytes, with no Arrow arrays in between (a
//! single-key lookup is a few microseconds of work, and building a batch
//! for one row cost more than finding it).

mod execute;
mod plan;
mod rows;
mod service;
mod shape;

pub use plan::LookupPlan;
pub use rows::{LookupRows, RowReader};
pub use service::LookupService;

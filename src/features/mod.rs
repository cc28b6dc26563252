//! The feature store: entities, feature views and services (the registry's
//! statements), how names and feature views read (temporal reads, AS OF
//! joins), how views are materialized, and the registry as system tables.
//!
//! - [`names`] finds relations and registry objects the way a session's
//!   `search_path` and temporary tables say; [`resolve`] qualifies a
//!   statement's names and replaces feature views and services by the
//!   queries that compute them ([`temporal`]), rewriting AS OF joins on the
//!   way ([`asof`]).
//! - [`ddl`] executes the registry's statements, validating each change
//!   against the state it would produce.
//! - [`materialize`] refreshes views into their offline history and the
//!   online store, as jobs ([`crate::jobs`]).
//! - [`windows`] says what a view's sliding-window features are and how
//!   they read as of a time.
//! - [`streaming`] is what a STREAMING view computes from each write.
//! - [`system_tables`] shows the registry and its jobs in the `featuredb`
//!   schema.
//!
//! The feature store plans queries through [`SqlPlanner`], which the SQL
//! engine implements: it never reaches up into a session.

pub mod asof;
pub mod ddl;
pub mod materialize;
pub mod names;
pub mod planner;
pub mod resolve;
pub mod streaming;
pub mod system_tables;
pub mod temporal;
pub mod windows;

pub use materialize::Materializer;
pub use names::NameScope;
pub use planner::SqlPlanner;
pub use resolve::{NameResolver, Relation, ResolveMode};

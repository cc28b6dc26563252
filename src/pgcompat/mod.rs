//! PostgreSQL compatibility: what makes featuredb look and behave like
//! PostgreSQL to clients, on top of DataFusion's semantics.
//!
//! - the system catalog clients probe (`pg_catalog/`, `information_schema`);
//! - session parameters (`settings`) and the functions that report them
//!   (`functions`);
//! - PostgreSQL's meaning where DataFusion's differs: syntax-tree rewrites
//!   (`pg_semantics`), time zones (`timestamps`), untyped literals
//!   (`unknown_literals`), integer overflow (`checked_arithmetic`), result
//!   column names (`column_names`);
//! - session objects PostgreSQL has and the engine does not: temporary
//!   tables (`temp_tables`) and SQL cursors (`cursors`).
//!
//! Nothing here knows about feature views: the catalog describes them from
//! the registry's model, and the `featuredb` schema of system tables is
//! handed in by whoever builds the catalog.

pub mod checked_arithmetic;
pub mod column_names;
pub mod cursors;
pub mod expr_rewrite;
pub mod functions;
pub mod pg_catalog;
pub mod pg_semantics;
pub mod settings;
pub mod temp_tables;
pub mod timestamps;
pub mod unknown_literals;

//! featuredb's registry: the object model shared by every layer.
//!
//! This crate holds no I/O. It names things (databases, schemas, tables) and
//! defines the column type system that the dialect parses into, the offline
//! store persists, and the wire layer describes to clients.

pub mod names;
pub mod types;

pub use names::{
    DEFAULT_DATABASE, DEFAULT_SCHEMA, QualifiedName, SYSTEM_SCHEMAS, is_system_schema,
};
pub use types::{ColumnDef, ColumnType, TableSchemaDef};

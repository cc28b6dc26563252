//! featuredb's registry: the object model shared by every layer.
//!
//! It names things (databases, schemas, tables), defines the column type
//! system that the dialect parses into, the offline store persists and the
//! wire layer describes to clients, and holds the feature registry: its
//! model (`registry`) and its transactional persistence (`store`).

pub mod names;
pub mod registry;
pub mod store;
pub mod types;

pub use names::{
    DEFAULT_DATABASE, DEFAULT_SCHEMA, QualifiedName, REGISTRY_SCHEMA, SYSTEM_SCHEMAS,
    is_system_schema,
};
pub use registry::{
    ColumnRole, Dependency, Entity, FeatureService, FeatureServiceVersion, FeatureView,
    FeatureViewVersion, KeyColumn, ObjectKind, RegistryState, ServiceFeature, SqlView, ViewColumn,
    WindowedBase, timestamp_now,
};
pub use store::{Registry, RegistryError, RegistryLock, RegistryTransaction};
pub use types::{ColumnDef, ColumnType, TableSchemaDef};

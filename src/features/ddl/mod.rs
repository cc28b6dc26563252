//! The registry's statements: entities, feature views, feature services
//! and plain SQL views. Every change is validated against the state it
//! would produce (planning the view's query, re-planning what depends on
//! it) and then committed in one registry transaction, so a failing
//! statement leaves the registry unchanged.

mod context;
mod dependencies;
mod drop;
mod entity;
mod feature_view;
mod service;
mod show;
mod sql_views;

pub use context::{DdlOutcome, RegistryDdl};
pub use dependencies::{
    check_no_cycle, dependents_closure, describe_dependents, remove_registry_objects,
};
pub use show::show_schema;
pub use sql_views::view_query;

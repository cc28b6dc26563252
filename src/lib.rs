//! featuredb: a SQL-native feature database that speaks the PostgreSQL wire
//! protocol, runs queries with Apache DataFusion and stores tables in Apache
//! Iceberg.
//!
//! Data flows one way: wire (`pgwire`, on threads `placement` chooses) →
//! parse (`featuredb_sql`) → plan and execute (`engine`, with the feature
//! store in `features` and PostgreSQL's behaviour in `pgcompat`) → store
//! (`offline`, and `online` for the newest row per key of materialized
//! feature views). Online lookups take the `serving` path, refreshes run
//! as `jobs`. `docs/design.md` draws the map.

pub mod config;
pub mod copy;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod features;
pub mod jobs;
pub mod listeners;
pub mod notice;
pub mod offline;
pub mod online;
pub mod pgcompat;
pub mod pgtypes;
pub mod pgwire;
pub mod placement;
pub mod server;
pub mod serving;
pub mod stream;

pub use config::ServerConfig;
pub use error::{Error, Result};

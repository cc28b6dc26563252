//! featuredb: a SQL-native feature database that speaks the PostgreSQL wire
//! protocol, runs queries with Apache DataFusion and stores tables in Apache
//! Iceberg.
//!
//! Data flows one way: wire (`pgwire`) → parse (`featuredb_sql`) → plan and
//! execute (`engine`) → store (`offline`, and `online` for the newest row
//! per key of materialized feature views).

pub mod config;
pub mod copy;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod listeners;
pub mod offline;
pub mod online;
pub mod pgtypes;
pub mod pgwire;
pub mod server;

pub use config::ServerConfig;
pub use error::{Error, Result};

//! The core SQL engine: sessions that prepare and execute statements, with
//! DataFusion planning and running every query.
//!
//! - [`Engine`] (`shared`) is what every session shares; [`Session`] is one
//!   client's settings, transaction block, cursors and temporary tables.
//! - A statement is prepared ([`prepare`]: a lookup for the lookup service,
//!   or a plan from the [`planner`] — names resolved by the feature store,
//!   PostgreSQL's rewrites, [`parameters`] typed — in the DataFusion
//!   [`context`] and [`catalog`]), then executed ([`execute`]); a prepared
//!   one-row INSERT runs without the planner ([`fast_insert`]).
//! - Statements the engine runs itself: schemas, tables and COPY
//!   ([`ddl`]), renames ([`rename`]), cursors ([`cursors`]); the registry's
//!   statements and REFRESH go to the feature store ([`features`]).

pub mod catalog;
pub mod context;
pub mod copy;
pub mod cursors;
pub mod ddl;
pub mod execute;
mod fast_insert;
pub mod features;
pub mod outcome;
pub mod parameters;
pub mod planner;
pub mod prepare;
pub mod rename;
pub mod session;
pub mod shared;

pub use outcome::{CommandTag, Outcome};
pub use planner::Planner;
pub use prepare::{Description, Prepared};
pub use session::{Session, TransactionState};
pub use shared::{Engine, EngineOptions};

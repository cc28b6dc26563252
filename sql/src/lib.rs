//! featuredb's SQL dialect.
//!
//! Turns the text of a client's query message into typed statements. Standard
//! SQL that DataFusion plans (SELECT, INSERT, EXPLAIN, …) passes through as a
//! sqlparser AST; statements featuredb executes itself (DDL on Iceberg tables,
//! COPY, session and transaction control) become their own types here. This
//! crate performs no I/O and knows nothing about what exists in the catalog.

pub mod alter;
pub mod asof;
pub mod copy;
pub mod cursor;
pub mod dialect;
pub mod error;
pub mod feature;
pub mod names;
pub mod parser;
pub mod session;
pub mod split;
pub mod statement;
pub mod temporal;
mod tokens;
pub mod types;

pub use datafusion::sql::sqlparser;
pub use dialect::FeatureDbDialect;
pub use error::{ParseError, ParseErrorKind};
pub use parser::{parse_query, parse_statement};
pub use split::{StatementText, split_statements};
pub use statement::Statement;

//! What the feature store needs from the SQL engine: a query planned with
//! featuredb's names and PostgreSQL's semantics, and the DataFusion state
//! that runs it. The engine implements this (a session's planner, or one
//! with default settings for work that no session started); the feature
//! store never depends on a session.

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast;
use featuredb_catalog::RegistryState;

use super::resolve::ResolveMode;
use crate::error::Result;

#[async_trait]
pub trait SqlPlanner: Send {
    /// Plans `statement` (whose text is `sql`) with its names resolved in
    /// `mode` against `registry` — the registry as it is, or as a change
    /// would leave it. Returns the plan and the type of each parameter
    /// `$1..$n` (`declared`: the types a client gave, in order).
    async fn plan(
        &mut self,
        registry: &RegistryState,
        mode: ResolveMode,
        sql: &str,
        statement: &ast::Statement,
        declared: &[Option<DataType>],
    ) -> Result<(LogicalPlan, Vec<DataType>)>;

    /// The DataFusion state the plans run in: functions, analyzer rules,
    /// catalogs, settings.
    fn state(&self) -> SessionState;
}

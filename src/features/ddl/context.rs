//! The registry's statements run with a [`RegistryDdl`]: the names of the
//! session that runs them, the registry, a planner to validate definitions
//! with, and the notices they raise. Helpers every statement shares live
//! here.

use std::collections::HashSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast;
pub(super) use featuredb_catalog::timestamp_now as now;
use featuredb_catalog::{ColumnType, ObjectKind, QualifiedName, Registry, RegistryState};
use featuredb_sql::feature::{FeatureStatement, RegistryKind};

use crate::error::{Error, Result};
use crate::features::names::NameScope;
use crate::features::planner::SqlPlanner;
use crate::features::resolve::ResolveMode;
use crate::notice::Notice;

/// What the registry's statements need from the session that runs them.
pub struct RegistryDdl<'a> {
    pub names: NameScope,
    pub registry: &'a Registry,
    /// Plans definitions against the state a change would produce.
    pub planner: &'a mut dyn SqlPlanner,
    /// Notices the statement raises ("already exists, skipping", …).
    pub notices: &'a mut Vec<Notice>,
}

/// What a registry statement did, for the engine to finish.
#[derive(Debug)]
pub enum DdlOutcome {
    /// Done; the command tag.
    Command(&'static str),
    /// Objects were dropped (committed): what refreshes kept of them goes
    /// next ([`crate::features::Materializer::forget`]).
    Dropped {
        tag: &'static str,
        objects: Vec<(ObjectKind, QualifiedName)>,
    },
    /// A SHOW: the query over the system tables that answers it.
    Show(String),
}

pub(super) fn kind_of(kind: RegistryKind) -> ObjectKind {
    match kind {
        RegistryKind::Entity => ObjectKind::Entity,
        RegistryKind::FeatureView => ObjectKind::FeatureView,
        RegistryKind::FeatureService => ObjectKind::FeatureService,
    }
}

pub(super) fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidDefinition {
        message: message.into(),
        detail: None,
    }
}

/// PostgreSQL's name for an Arrow type (what the registry shows).
pub fn type_name(data_type: &DataType) -> (String, Option<ColumnType>) {
    match ColumnType::from_arrow(data_type) {
        Some(column_type) => (column_type.to_string(), Some(column_type)),
        None => (data_type.to_string(), None),
    }
}

/// Whether a query output column got a real name rather than PostgreSQL's
/// placeholder for an unaliased expression.
pub(super) fn is_named_column(name: &str) -> bool {
    !name.is_empty() && name != "?column?"
}

impl RegistryDdl<'_> {
    /// Runs a registry statement (REFRESH is a job, not a registry change:
    /// see [`crate::features::Materializer`]).
    pub async fn execute(&mut self, sql: &str, statement: &FeatureStatement) -> Result<DdlOutcome> {
        match statement {
            FeatureStatement::CreateEntity(create) => self.create_entity(create).await,
            FeatureStatement::CreateFeatureView(create) => {
                self.create_feature_view(sql, create).await
            }
            FeatureStatement::CreateFeatureService(create) => {
                self.create_feature_service(create).await
            }
            FeatureStatement::AlterFeatureView(alter) => self.alter_feature_view(alter).await,
            FeatureStatement::Drop(drop) => self.drop_registry_objects(drop).await,
            FeatureStatement::Show(show) => self.show_registry(show).await,
            FeatureStatement::Refresh(_) => Err(Error::internal(
                "REFRESH FEATURE VIEW runs as a job, not as a registry change",
            )),
        }
    }

    pub(super) fn notice(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    /// Plans a feature view's stored query against `state`, returning its
    /// output columns (name, Arrow type).
    pub(super) async fn definition_schema(
        &mut self,
        state: &RegistryState,
        query: &str,
    ) -> Result<Vec<(String, DataType)>> {
        self.query_columns(state, ResolveMode::Definition, query)
            .await
    }

    /// Plans a stored query (a feature view's or a view's) against
    /// `state`, returning its output columns (name, Arrow type).
    pub async fn query_columns(
        &mut self,
        state: &RegistryState,
        mode: ResolveMode,
        query: &str,
    ) -> Result<Vec<(String, DataType)>> {
        let featuredb_sql::Statement::Query(statement) = featuredb_sql::parse_statement(query)?
        else {
            return Err(invalid("a feature view is defined by a query"));
        };
        // DataFusion refuses duplicate output names with a generic planning
        // error; PostgreSQL's view rule (42701) is the clearer answer.
        if let ast::Statement::Query(q) = statement.as_ref() {
            let mut seen = HashSet::new();
            for name in crate::pgcompat::column_names::explicit_column_names(q)
                .into_iter()
                .flatten()
            {
                if is_named_column(&name) && !seen.insert(name.clone()) {
                    return Err(Error::DuplicateColumn(name));
                }
            }
        }
        let (plan, params) = self
            .planner
            .plan(state, mode, query, &statement, &[])
            .await?;
        if !params.is_empty() {
            return Err(invalid("a stored query cannot take parameters"));
        }
        let mut names: Vec<Option<String>> = Vec::new();
        if let ast::Statement::Query(q) = statement.as_ref() {
            names = crate::pgcompat::column_names::postgres_column_names(
                q,
                plan.schema().fields().len(),
            );
        }
        Ok(plan
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    names
                        .get(i)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| f.name().clone()),
                    f.data_type().clone(),
                )
            })
            .collect())
    }
}

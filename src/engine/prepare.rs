//! Preparing statements (parse → resolve → plan): a [`Prepared`] statement
//! is planned once — for queries, DataFusion's logical plan with typed
//! parameters, or an online lookup's plan ([`crate::serving`]). Each
//! execution binds parameter values into it ([`super::execute`]); the
//! physical plan is built when it runs, so every execution reads the
//! tables' latest committed snapshots.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::sql::sqlparser::ast;
use featuredb_sql::session::ShowStatement;
use featuredb_sql::{Statement, split_statements};

use super::fast_insert::FastInsert;
use super::session::Session;
use crate::error::{Error, Result};
use crate::features::ddl;
use crate::pgcompat::column_names::{self, rename_columns};
use crate::pgcompat::pg_catalog;
use crate::serving::LookupPlan;

/// What Describe reports for a prepared statement.
#[derive(Debug, Clone)]
pub enum Description {
    NoData,
    Rows(SchemaRef),
}

/// A statement ready to execute, possibly many times.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    /// `None` for an empty query string.
    pub statement: Option<Statement>,
    pub(crate) plan: Option<LogicalPlan>,
    pub param_types: Vec<DataType>,
    /// The parameter type OIDs the client declared in Parse (0: none),
    /// which ParameterDescription echoes as PostgreSQL does (pgJDBC
    /// refuses a statement whose described types differ from its own).
    pub declared_oids: Vec<u32>,
    pub description: Description,
    /// PostgreSQL's names for result columns where they differ from the
    /// planner's (see `column_names`).
    pub(crate) column_names: Vec<Option<String>>,
    /// For SQL-level `PREPARE name AS query`: the name and the rows the
    /// prepared query returns, which `EXECUTE name` describes.
    pub(super) defines: Option<(String, SchemaRef)>,
    /// An online lookup, answered without DataFusion (see `serving`).
    pub(super) lookup: Option<Arc<LookupPlan>>,
    /// A one-row INSERT, executed without the planner (see `fast_insert`).
    pub(super) insert: Option<Arc<FastInsert>>,
}

impl Prepared {
    pub fn empty() -> Self {
        Self {
            sql: String::new(),
            statement: None,
            plan: None,
            param_types: Vec::new(),
            declared_oids: Vec::new(),
            description: Description::NoData,
            column_names: Vec::new(),
            defines: None,
            lookup: None,
            insert: None,
        }
    }

    /// Fails when a Bind supplies another number of parameters than the
    /// statement has.
    pub fn check_param_count(&self, params: &[ScalarValue]) -> Result<()> {
        if params.len() != self.param_types.len() {
            return Err(Error::Protocol(format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                params.len(),
                self.param_types.len()
            )));
        }
        Ok(())
    }

    /// Whether executing this statement is an online lookup answered
    /// straight from the stored rows: no query runs, whatever the
    /// parameters (unless the view changed since, see `execute`).
    pub fn is_direct_lookup(&self) -> bool {
        self.direct_lookup().is_some()
    }

    /// The plan of a direct lookup (see [`Self::is_direct_lookup`]), which
    /// the request path hands to the lookup service.
    pub fn direct_lookup(&self) -> Option<&Arc<LookupPlan>> {
        self.lookup.as_ref().filter(|lookup| lookup.is_direct())
    }
}

pub(crate) fn show_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

impl Session {
    /// Prepares the text of an extended-protocol Parse message, which may
    /// hold at most one statement.
    pub async fn prepare(&mut self, sql: &str, declared: &[Option<DataType>]) -> Result<Prepared> {
        let pieces = split_statements(sql)?;
        match pieces.as_slice() {
            [] => Ok(Prepared::empty()),
            [piece] => {
                let statement = featuredb_sql::parse_statement(piece.text)
                    .map_err(|e| e.offset_by(piece.char_offset))?;
                self.plan_statement(piece.text, statement, declared).await
            }
            _ => Err(Error::Parse(featuredb_sql::ParseError::syntax(
                "cannot insert multiple commands into a prepared statement",
            ))),
        }
    }

    /// Plans one parsed statement.
    pub async fn plan_statement(
        &mut self,
        sql: &str,
        statement: Statement,
        declared: &[Option<DataType>],
    ) -> Result<Prepared> {
        self.check_transaction(&statement)?;
        let mut prepared = Prepared {
            sql: sql.to_string(),
            ..Prepared::empty()
        };
        match &statement {
            Statement::Query(ast) => {
                // Known catalog queries of clients are replaced whole.
                let known = pg_catalog::known_query(sql);
                let ast = known.as_ref().unwrap_or(ast);
                let lookups = self.engine.lookups.clone();
                let lookup = if known.is_none() && lookups.may_serve() {
                    let names = self.planner.names();
                    lookups
                        .plan(sql, ast, declared, &names, &mut self.planner)
                        .await?
                } else {
                    None
                };
                if let Some(lookup) = lookup {
                    prepared.param_types = lookup.param_types.clone();
                    prepared.description = Description::Rows(lookup.output.clone());
                    prepared.lookup = Some(Arc::new(lookup));
                } else {
                    self.plan_query_statement(sql, ast, declared, &mut prepared)
                        .await?;
                    if let (ast::Statement::Insert(_), Some(plan), false) =
                        (ast, &prepared.plan, prepared.param_types.is_empty())
                    {
                        prepared.insert = FastInsert::of(
                            plan,
                            &self.planner.ctx.state(),
                            &self.engine.offline,
                            &self.planner.names(),
                            &self.planner.default_schema(),
                            self.settings.time_zone(),
                        )
                        .map(Arc::new);
                    }
                }
            }
            Statement::DeclareCursor(declare) => {
                self.plan_query_statement(sql, &declare.query, declared, &mut prepared)
                    .await?;
                // DECLARE itself returns no rows; FETCH describes them.
                prepared.description = Description::NoData;
            }
            Statement::Fetch(fetch) => {
                if let Some(schema) = self.cursor_schema(&fetch.name) {
                    prepared.description = Description::Rows(schema);
                }
            }
            Statement::Show(ShowStatement::All) => {
                prepared.description =
                    Description::Rows(show_schema(&["name", "setting", "description"]));
            }
            Statement::Show(ShowStatement::Variable(name)) => {
                prepared.description = Description::Rows(show_schema(&[name.as_str()]));
            }
            Statement::Feature(featuredb_sql::feature::FeatureStatement::Show(show)) => {
                prepared.description = Description::Rows(ddl::show_schema(show));
            }
            _ => {}
        }
        prepared.statement = Some(statement);
        Ok(prepared)
    }

    /// Plans a query with DataFusion.
    async fn plan_query_statement(
        &mut self,
        sql: &str,
        ast: &ast::Statement,
        declared: &[Option<DataType>],
        prepared: &mut Prepared,
    ) -> Result<()> {
        // DataFusion refuses repeated output names, PostgreSQL does not.
        let unique = column_names::with_unique_output_names(ast);
        let (plan, param_types) = self
            .planner
            .plan_query(sql, unique.as_ref().unwrap_or(ast), declared)
            .await?;
        if let ast::Statement::Query(query) = ast {
            prepared.column_names =
                column_names::postgres_column_names(query, plan.schema().fields().len());
        }
        prepared.description = match describe_plan(&plan) {
            Description::Rows(schema) => {
                Description::Rows(rename_columns(&schema, &prepared.column_names))
            }
            Description::NoData => Description::NoData,
        };
        match &plan {
            LogicalPlan::Statement(PlanStatement::Prepare(prepare)) => {
                let inner = prepare.input.schema().as_arrow().clone();
                let names = match ast {
                    ast::Statement::Prepare { statement, .. } => match statement.as_ref() {
                        ast::Statement::Query(query) => {
                            column_names::postgres_column_names(query, inner.fields().len())
                        }
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                let rows = match prepare.input.as_ref() {
                    LogicalPlan::Dml(_) => None,
                    _ => Some(rename_columns(&Arc::new(inner), &names)),
                };
                prepared.defines = rows.map(|rows| (prepare.name.clone(), rows));
            }
            LogicalPlan::Statement(PlanStatement::Execute(execute)) => {
                match self.sql_prepared.get(&execute.name) {
                    Some(Some(rows)) => {
                        prepared.column_names = rows
                            .fields()
                            .iter()
                            .map(|f| Some(f.name().clone()))
                            .collect();
                        prepared.description = Description::Rows(rows.clone());
                    }
                    // A prepared INSERT returns no rows: its EXECUTE
                    // answers with a command tag only.
                    Some(None) => prepared.description = Description::NoData,
                    None => {}
                }
            }
            _ => {}
        }
        prepared.param_types = param_types;
        prepared.plan = Some(plan);
        Ok(())
    }
}

fn describe_plan(plan: &LogicalPlan) -> Description {
    match plan {
        LogicalPlan::Dml(_) => Description::NoData,
        LogicalPlan::Statement(PlanStatement::Prepare(_))
        | LogicalPlan::Statement(PlanStatement::Deallocate(_)) => Description::NoData,
        plan => Description::Rows(Arc::new(plan.schema().as_arrow().clone())),
    }
}

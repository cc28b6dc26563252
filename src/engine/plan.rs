//! Preparing statements (parse → resolve → plan) and executing them.
//!
//! A [`Prepared`] statement is planned once: for queries, DataFusion's
//! logical plan with typed parameters. Each execution binds parameter values
//! into that plan; the physical plan is built when it runs, so every
//! execution reads the tables' latest committed snapshots.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, ArrayElemTypeDef, ExactNumberInfo, Ident, TimezoneInfo,
};
use featuredb_sql::session::ShowStatement;
use featuredb_sql::{Statement, split_statements};
use futures::{StreamExt, TryStreamExt};

use super::outcome::{CommandTag, Outcome};
use super::resolve::{NameResolver, ResolveMode};
use super::session::Session;
use crate::error::{Error, Result};
use featuredb_catalog::RegistryState;

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
    defines: Option<(String, SchemaRef)>,
    /// An online lookup, answered without DataFusion (see `lookup`).
    lookup: Option<Arc<super::lookup::LookupPlan>>,
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
        self.lookup
            .as_ref()
            .is_some_and(|lookup| lookup.is_direct())
    }

    pub(crate) fn lookup(&self) -> Option<&Arc<super::lookup::LookupPlan>> {
        self.lookup.as_ref()
    }
}

/// The schema with PostgreSQL's column names applied.
pub fn rename_columns(schema: &SchemaRef, names: &[Option<String>]) -> SchemaRef {
    if names.iter().all(Option::is_none) {
        return schema.clone();
    }
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| match names.get(index).cloned().flatten() {
                Some(name) => field.as_ref().clone().with_name(name),
                None => field.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

fn show_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// SQL type names for parameter types a client declared, so that DataFusion
/// plans with them (`PREPARE p(BIGINT) AS …`).
fn sql_type(data_type: &DataType) -> Option<ast::DataType> {
    Some(match data_type {
        DataType::Boolean => ast::DataType::Boolean,
        DataType::Int16 => ast::DataType::SmallInt(None),
        DataType::Int32 => ast::DataType::Integer(None),
        DataType::Int64 => ast::DataType::BigInt(None),
        DataType::Float32 => ast::DataType::Real,
        DataType::Float64 => ast::DataType::DoublePrecision,
        DataType::Decimal128(p, s) => {
            ast::DataType::Numeric(ExactNumberInfo::PrecisionAndScale(*p as u64, *s as i64))
        }
        DataType::Utf8 => ast::DataType::Text,
        DataType::Binary => ast::DataType::Bytea,
        DataType::Date32 => ast::DataType::Date,
        DataType::Time64(_) => ast::DataType::Time(None, TimezoneInfo::None),
        DataType::Timestamp(_, None) => ast::DataType::Timestamp(None, TimezoneInfo::None),
        DataType::Timestamp(_, Some(_)) => {
            ast::DataType::Timestamp(None, TimezoneInfo::WithTimeZone)
        }
        DataType::List(field) => ast::DataType::Array(ArrayElemTypeDef::SquareBracket(
            Box::new(sql_type(field.data_type())?),
            None,
        )),
        _ => return None,
    })
}

/// DataFusion types the bare placeholders of `INSERT … VALUES` by the
/// columns they fill, but collects those types into a list by placeholder
/// number without gaps: with `VALUES ($1::bigint, $2, $3)` it gives `$1`
/// the type of `$2`'s column and `$2` that of `$3`'s, and values land in
/// the wrong type (SQLAlchemy and pandas write exactly this). When the
/// bare placeholders are not exactly `$1..$k`, each is cast explicitly —
/// to the type the client declared, or from text as PostgreSQL treats an
/// untyped parameter — and the INSERT converts to the column types.
fn type_values_placeholders(statement: &mut ast::Statement, declared: &[Option<DataType>]) {
    let ast::Statement::Insert(insert) = statement else {
        return;
    };
    let Some(source) = insert.source.as_mut() else {
        return;
    };
    let ast::SetExpr::Values(values) = source.body.as_mut() else {
        return;
    };
    let number = |expr: &ast::Expr| match expr {
        ast::Expr::Value(ast::ValueWithSpan {
            value: ast::Value::Placeholder(name),
            ..
        }) => name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()),
        _ => None,
    };
    let mut bare: Vec<usize> = values.rows.iter().flatten().filter_map(number).collect();
    bare.sort_unstable();
    bare.dedup();
    if bare.iter().enumerate().all(|(i, n)| *n == i + 1) {
        return;
    }
    for expr in values.rows.iter_mut().flatten() {
        let Some(n) = number(expr) else {
            continue;
        };
        let data_type = n
            .checked_sub(1)
            .and_then(|index| declared.get(index))
            .cloned()
            .flatten()
            .and_then(|t| sql_type(&t))
            .unwrap_or(ast::DataType::Text);
        let placeholder = std::mem::replace(expr, ast::Expr::value(ast::Value::Null));
        *expr = ast::Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(placeholder),
            data_type,
            array: false,
            format: None,
        };
    }
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
            statement: None,
            plan: None,
            param_types: Vec::new(),
            declared_oids: Vec::new(),
            description: Description::NoData,
            column_names: Vec::new(),
            defines: None,
            lookup: None,
        };
        match &statement {
            Statement::Query(ast) => {
                // Known catalog queries of clients are replaced whole.
                let known = super::pg_catalog::known_query(sql);
                let ast = known.as_ref().unwrap_or(ast);
                let lookup = if known.is_none() && self.engine.online.has_materializations() {
                    self.plan_lookup(sql, ast, declared).await?
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
                prepared.description = Description::Rows(registry_show_schema(show));
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
        let unique = super::column_names::with_unique_output_names(ast);
        let (plan, param_types) = self
            .plan_query(sql, unique.as_ref().unwrap_or(ast), declared)
            .await?;
        if let ast::Statement::Query(query) = ast {
            prepared.column_names =
                super::column_names::postgres_column_names(query, plan.schema().fields().len());
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
                            super::column_names::postgres_column_names(query, inner.fields().len())
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
                if let Some(rows) = self.sql_prepared_rows(&execute.name) {
                    prepared.column_names = rows
                        .fields()
                        .iter()
                        .map(|f| Some(f.name().clone()))
                        .collect();
                    prepared.description = Description::Rows(rows);
                }
            }
            _ => {}
        }
        prepared.param_types = param_types;
        prepared.plan = Some(plan);
        Ok(())
    }

    /// Resolves names and asks DataFusion for a logical plan. Returns the
    /// plan and the type of every parameter `$1..$n`.
    pub(crate) async fn plan_query(
        &mut self,
        sql: &str,
        statement: &ast::Statement,
        declared: &[Option<DataType>],
    ) -> Result<(LogicalPlan, Vec<DataType>)> {
        let registry = self.engine.registry.snapshot();
        self.plan_query_in(&registry, ResolveMode::Query, sql, statement, declared)
            .await
    }

    /// Plans against a given registry state (a registry change validates
    /// against the state it would produce).
    pub(crate) async fn plan_query_in(
        &mut self,
        registry: &RegistryState,
        mode: ResolveMode,
        sql: &str,
        statement: &ast::Statement,
        declared: &[Option<DataType>],
    ) -> Result<(LogicalPlan, Vec<DataType>)> {
        let mut statement = statement.clone();
        super::pg_catalog::rewrite(&mut statement);
        let search_path = self.effective_search_path();
        let default_schema = self.default_schema();
        NameResolver::new(
            &self.engine.offline,
            registry,
            &search_path,
            &default_schema,
            sql,
            mode,
        )
        .with_temp(&self.temp)
        .resolve(&mut statement)?;
        super::pg_semantics::rewrite(&mut statement);
        type_values_placeholders(&mut statement, declared);

        // Declared parameter types (a prefix: DataFusion takes them in order).
        let declared_sql: Vec<ast::DataType> = declared
            .iter()
            .map_while(|t| t.as_ref().and_then(sql_type))
            .collect();
        let wrapped = !declared_sql.is_empty();
        if wrapped {
            statement = ast::Statement::Prepare {
                name: Ident::new("featuredb_parameters"),
                data_types: declared_sql,
                statement: Box::new(statement),
            };
        }
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(DFStatement::Statement(Box::new(statement)))
            .await
            .map_err(Error::from_datafusion)?;

        let (plan, mut types) = match plan {
            LogicalPlan::Statement(PlanStatement::Prepare(prepare)) if wrapped => {
                let inner = Arc::unwrap_or_clone(prepare.input);
                let declared_types: Vec<DataType> = prepare
                    .fields
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect();
                (inner, declared_types)
            }
            // SQL-level PREPARE: its $n belong to the statement it
            // prepares (bound by EXECUTE), not to this one.
            plan @ LogicalPlan::Statement(PlanStatement::Prepare(_)) => {
                return Ok((plan, Vec::new()));
            }
            plan => (plan, Vec::new()),
        };
        let inferred = plan.get_parameter_types().map_err(Error::from_datafusion)?;
        let cast_types = parameter_cast_types(&plan)?;
        let any_types = parameter_any_types(&plan)?;
        let count = inferred
            .keys()
            .filter_map(|id| id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()))
            .max()
            .unwrap_or(0)
            .max(types.len())
            .max(declared.len());
        for index in types.len()..count {
            let id = format!("${}", index + 1);
            let data_type = inferred
                .get(&id)
                .cloned()
                .flatten()
                .or_else(|| declared.get(index).cloned().flatten())
                .or_else(|| cast_types.get(&id).cloned())
                .or_else(|| any_types.get(&id).cloned())
                .unwrap_or(DataType::Utf8);
            types.push(data_type);
        }
        // A type the client declared is the one its values arrive in (and
        // what ParameterDescription reports, as PostgreSQL does), even where
        // the planner inferred another; values are cast to the planner's
        // type when the statement runs.
        for (slot, declared) in types.iter_mut().zip(declared) {
            if let Some(declared) = declared {
                *slot = declared.clone();
            }
        }
        Ok((plan, types))
    }

    /// Runs a prepared statement with parameter values.
    pub async fn execute(
        &mut self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        let Some(statement) = &prepared.statement else {
            return Ok(Outcome::Empty);
        };
        self.check_transaction(statement)?;
        prepared.check_param_count(&params)?;
        if let Some(lookup) = &prepared.lookup {
            if let Some(outcome) = self.execute_lookup(lookup, &params)? {
                return Ok(outcome);
            }
            // The view changed since Parse: plan the statement afresh.
            let declared: Vec<Option<DataType>> =
                prepared.param_types.iter().cloned().map(Some).collect();
            let fresh =
                Box::pin(self.plan_statement(&prepared.sql, statement.clone(), &declared)).await?;
            if let Some(lookup) = &fresh.lookup {
                return self
                    .execute_lookup(lookup, &params)?
                    .ok_or_else(|| Error::internal("online lookup plan is stale"));
            }
            return Box::pin(self.execute(&fresh, params)).await;
        }
        let outcome = match statement {
            Statement::Query(_) => {
                let plan = prepared
                    .plan
                    .clone()
                    .ok_or_else(|| Error::internal("query statement without a plan"))?;
                match self.run_plan(plan, params).await? {
                    Outcome::Rows {
                        schema,
                        stream,
                        tag,
                    } => Outcome::Rows {
                        schema: rename_columns(&schema, &prepared.column_names),
                        stream,
                        tag,
                    },
                    other => other,
                }
            }
            Statement::CreateSchema(create) => self.create_schema(create).await?,
            Statement::DropSchema(drop) => self.drop_schemas(drop).await?,
            Statement::CreateTable(create) => self.create_table(&prepared.sql, create).await?,
            Statement::DropTable(drop) => self.drop_tables(drop).await?,
            Statement::Copy(copy) => self.copy(&prepared.sql, copy).await?,
            Statement::Set(set) => self.set(set)?,
            Statement::Show(show) => self.show(show)?,
            Statement::Reset(reset) => self.reset(reset)?,
            Statement::Transaction(control) => self.transaction_control(control)?,
            Statement::DiscardAll => self.discard_all().await?,
            Statement::DiscardTemp => self.discard_temp()?,
            Statement::CreateView(create) => self.create_sql_view(&prepared.sql, create).await?,
            Statement::DropView(drop) => self.drop_sql_views(drop).await?,
            Statement::DeclareCursor(declare) => {
                self.declare_cursor(prepared, declare, params).await?
            }
            Statement::Fetch(fetch) => self.fetch(fetch).await?,
            Statement::CloseCursor(close) => self.close_cursor(close)?,
            Statement::Feature(feature) => self.feature_statement(&prepared.sql, feature).await?,
            Statement::RenameRelation(rename) => self.rename_relation(rename).await?,
            Statement::Truncate(truncate) => self.truncate_tables(truncate).await?,
        };
        if statement.writes() && matches!(outcome, Outcome::Command(_)) {
            self.on_write();
        }
        match &prepared.plan {
            Some(LogicalPlan::Statement(PlanStatement::Prepare(prepare))) => {
                let rows = prepared.defines.as_ref().map(|(_, rows)| rows.clone());
                self.remember_sql_prepared(&prepare.name, rows);
            }
            Some(LogicalPlan::Statement(PlanStatement::Deallocate(deallocate))) => {
                self.forget_sql_prepared(&deallocate.name);
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Executes a logical plan: INSERTs run to completion and report their
    /// row count; queries stream.
    pub(crate) async fn run_plan(
        &mut self,
        plan: LogicalPlan,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        let plan = if params.is_empty() {
            plan
        } else {
            let params = cast_to_placeholder_types(&plan, params)?;
            plan.with_param_values(ParamValues::List(
                params.into_iter().map(Into::into).collect(),
            ))
            .map_err(Error::from_datafusion)?
        };
        let tag = match &plan {
            LogicalPlan::Dml(_) => None,
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Some("EXPLAIN"),
            LogicalPlan::Statement(PlanStatement::Prepare(_)) => {
                self.ctx
                    .execute_logical_plan(plan)
                    .await
                    .map_err(Error::from_datafusion)?;
                return Ok(Outcome::Command(CommandTag::new("PREPARE")));
            }
            LogicalPlan::Statement(PlanStatement::Deallocate(deallocate))
                if self.is_deallocate_all(&deallocate.name) =>
            {
                self.deallocate_all().await?;
                return Ok(Outcome::Command(CommandTag::new("DEALLOCATE ALL")));
            }
            LogicalPlan::Statement(PlanStatement::Deallocate(_)) => {
                self.ctx
                    .execute_logical_plan(plan)
                    .await
                    .map_err(Error::from_datafusion)?;
                return Ok(Outcome::Command(CommandTag::new("DEALLOCATE")));
            }
            _ => Some("SELECT"),
        };
        let frame = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(Error::from_datafusion)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let stream = frame
            .execute_stream()
            .await
            .map_err(Error::from_datafusion)?;
        match tag {
            Some(tag) => Ok(Outcome::Rows {
                schema,
                stream,
                tag,
            }),
            None => {
                let batches: Vec<RecordBatch> =
                    stream.try_collect().await.map_err(Error::from_datafusion)?;
                let rows = batches
                    .iter()
                    .filter(|b| b.num_rows() > 0)
                    .map(|b| b.column(0).as_primitive::<UInt64Type>().value(0))
                    .sum();
                Ok(Outcome::Command(CommandTag::with_rows("INSERT", rows)))
            }
        }
    }

    fn show(&mut self, show: &ShowStatement) -> Result<Outcome> {
        let (schema, columns): (SchemaRef, Vec<Vec<String>>) = match show {
            ShowStatement::All => {
                let rows = self.settings.all();
                (
                    show_schema(&["name", "setting", "description"]),
                    vec![
                        rows.iter().map(|r| r.0.clone()).collect(),
                        rows.iter().map(|r| r.1.clone()).collect(),
                        rows.iter().map(|r| r.2.clone()).collect(),
                    ],
                )
            }
            ShowStatement::Variable(name) => {
                let value = if name.starts_with("datafusion.") {
                    let state = self.ctx.state_ref();
                    let state = state.read();
                    state
                        .config_options()
                        .entries()
                        .into_iter()
                        .find(|entry| entry.key == *name)
                        .map(|entry| entry.value.unwrap_or_default())
                        .ok_or_else(|| Error::UnknownSetting(name.clone()))?
                } else {
                    self.settings.show(name)?
                };
                (show_schema(&[name.as_str()]), vec![vec![value]])
            }
        };
        let arrays = columns
            .into_iter()
            .map(|values| Arc::new(StringArray::from(values)) as _)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays)?;
        let stream = RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::once(async move { Ok(batch) }).boxed(),
        );
        Ok(Outcome::Rows {
            schema,
            stream: Box::pin(stream),
            tag: "SHOW",
        })
    }
}

/// Placeholders have the types the planner gave them (an INSERT's take the
/// types of the columns they fill), which may differ from the types the
/// client declared and sent (psycopg sends a small Python int as int2, a
/// float as float8 for a numeric column): the values are converted to the
/// placeholders' types, as PostgreSQL assigns or coerces them.
fn cast_to_placeholder_types(
    plan: &LogicalPlan,
    params: Vec<ScalarValue>,
) -> Result<Vec<ScalarValue>> {
    let types = plan.get_parameter_types().map_err(Error::from_datafusion)?;
    params
        .into_iter()
        .enumerate()
        .map(
            |(index, value)| match types.get(&format!("${}", index + 1)) {
                Some(Some(data_type)) if value.data_type() != *data_type => {
                    value.cast_to(data_type).map_err(Error::from_datafusion)
                }
                _ => Ok(value),
            },
        )
        .collect()
}

/// Types of parameters that appear only inside a cast (`$1::date`):
/// PostgreSQL infers the cast's type for them, DataFusion leaves them
/// untyped.
fn parameter_cast_types(plan: &LogicalPlan) -> Result<std::collections::HashMap<String, DataType>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast, expr::Placeholder};
    let mut types = std::collections::HashMap::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                let cast = match e {
                    Expr::Cast(Cast {
                        expr, data_type, ..
                    }) => Some((expr, data_type)),
                    Expr::TryCast(TryCast {
                        expr, data_type, ..
                    }) => Some((expr, data_type)),
                    _ => None,
                };
                if let Some((inner, data_type)) = cast
                    && let Expr::Placeholder(Placeholder { id, field: None }) = inner.as_ref()
                {
                    types.entry(id.clone()).or_insert_with(|| data_type.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .map_err(Error::from_datafusion)?;
    Ok(types)
}

/// Types of parameters compared with `= ANY($n)`: DataFusion plans the
/// comparison as `array_has($n, value)` and infers no type for `$n`;
/// PostgreSQL infers an array of the value's type (`int4[]` for an `int`
/// column), which is what clients bind (tokio-postgres refuses to send a
/// `Vec<i32>` for a parameter described as text).
fn parameter_any_types(plan: &LogicalPlan) -> Result<std::collections::HashMap<String, DataType>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::utils::merge_schema;
    use datafusion::logical_expr::{Expr, ExprSchemable, expr::Placeholder};
    let mut types = std::collections::HashMap::new();
    plan.apply_with_subqueries(|node| {
        // Built only for a node that has such a comparison: planning
        // every statement walks here.
        let schema = || {
            if node.inputs().is_empty() {
                node.schema().as_ref().clone()
            } else {
                merge_schema(&node.inputs())
            }
        };
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(function) = e
                    && function.func.name() == "array_has"
                    && let [Expr::Placeholder(Placeholder { id, field: None }), value] =
                        function.args.as_slice()
                    && let Ok(value_type) = value.get_type(&schema())
                    && value_type != DataType::Null
                {
                    types.entry(id.clone()).or_insert_with(|| {
                        DataType::List(Arc::new(Field::new_list_field(value_type, true)))
                    });
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .map_err(Error::from_datafusion)?;
    Ok(types)
}

/// Columns of the registry's SHOW statements (kept in step with
/// `features::show_registry`).
fn registry_show_schema(show: &featuredb_sql::feature::ShowRegistry) -> SchemaRef {
    use featuredb_sql::feature::{RegistryKind, ShowRegistry};
    match show {
        ShowRegistry::List(RegistryKind::Entity) => {
            show_schema(&["schema_name", "name", "keys", "comment"])
        }
        ShowRegistry::List(RegistryKind::FeatureView) => Arc::new(Schema::new(vec![
            Field::new("schema_name", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("version", DataType::Int32, true),
            Field::new("entity", DataType::Utf8, true),
            Field::new("keys", DataType::Utf8, true),
            Field::new("timestamp_column", DataType::Utf8, true),
            Field::new("ttl", DataType::Utf8, true),
            Field::new("online", DataType::Boolean, true),
            Field::new("owner", DataType::Utf8, true),
            Field::new("description", DataType::Utf8, true),
        ])),
        ShowRegistry::List(RegistryKind::FeatureService) => Arc::new(Schema::new(vec![
            Field::new("schema_name", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("version", DataType::Int32, true),
            Field::new("keys", DataType::Utf8, true),
            Field::new("features", DataType::Utf8, true),
            Field::new("owner", DataType::Utf8, true),
            Field::new("description", DataType::Utf8, true),
        ])),
        ShowRegistry::Create { .. } => show_schema(&["definition"]),
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

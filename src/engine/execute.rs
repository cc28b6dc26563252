//! Executing a prepared statement with its parameter values: online
//! lookups through the lookup service, queries and INSERTs through
//! DataFusion, everything else by the statement's handler.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef, UInt64Type};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use featuredb_sql::Statement;
use featuredb_sql::session::ShowStatement;
use futures::{StreamExt, TryStreamExt};

use super::outcome::{CommandTag, Outcome};
use super::parameters::cast_to_placeholder_types;
use super::prepare::{Prepared, show_schema};
use super::session::Session;
use crate::error::{Error, Result};
use crate::pgcompat::column_names::rename_columns;
use crate::serving::LookupPlan;

use super::fast_insert::FastInsert;

impl Session {
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
            Statement::Query(_) if prepared.insert.is_some() && !params.is_empty() => {
                let insert = prepared.insert.as_ref().expect("checked");
                match self.fast_insert(insert, &params).await? {
                    Some(outcome) => outcome,
                    None => {
                        let plan = prepared
                            .plan
                            .clone()
                            .ok_or_else(|| Error::internal("INSERT without a plan"))?;
                        self.run_plan(plan, params).await?
                    }
                }
            }
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
        // A table that takes a streaming view's source name is a new
        // source for it.
        if matches!(
            statement,
            Statement::CreateTable(_) | Statement::RenameRelation(_)
        ) {
            self.engine.stream.reload().await?;
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

    /// Checks that `prepared` may run now with `params` (the transaction
    /// block has not failed, the parameter count is right): what the
    /// request path asks before it hands a lookup to the lookup service
    /// itself.
    pub fn admit(&self, prepared: &Prepared, params: &[ScalarValue]) -> Result<()> {
        if let Some(statement) = &prepared.statement {
            self.check_transaction(statement)?;
        }
        prepared.check_param_count(params)
    }

    /// Runs a prepared one-row INSERT without the planner; `None` when
    /// this execution must take the planned path.
    async fn fast_insert(
        &mut self,
        insert: &FastInsert,
        params: &[ScalarValue],
    ) -> Result<Option<Outcome>> {
        let Some((table, row)) = insert.row(params, self.settings.time_zone())? else {
            return Ok(None);
        };
        table.append_logged(row).await?;
        Ok(Some(Outcome::Command(CommandTag::with_rows("INSERT", 1))))
    }

    /// Runs a lookup. `None` when the plan no longer matches the registry
    /// or the online store (the caller plans the statement again).
    pub(crate) fn execute_lookup(
        &mut self,
        plan: &Arc<LookupPlan>,
        params: &[ScalarValue],
    ) -> Result<Option<Outcome>> {
        let looked_up = self
            .engine
            .lookups
            .look_up(plan, params, self.settings.time_zone())?;
        let Some(rows) = looked_up else {
            return Ok(None);
        };
        if plan.is_direct() {
            return Ok(Some(Outcome::Lookup(rows)));
        }
        Ok(Some(Outcome::Rows {
            schema: plan.output.clone(),
            stream: rows.into_stream(params)?,
            tag: "SELECT",
        }))
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
            // EXECUTE of a prepared INSERT: a command, like the INSERT.
            LogicalPlan::Statement(PlanStatement::Execute(execute))
                if matches!(self.sql_prepared.get(&execute.name), Some(None)) =>
            {
                None
            }
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Some("EXPLAIN"),
            LogicalPlan::Statement(PlanStatement::Prepare(_)) => {
                self.planner
                    .ctx
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
                self.planner
                    .ctx
                    .execute_logical_plan(plan)
                    .await
                    .map_err(Error::from_datafusion)?;
                return Ok(Outcome::Command(CommandTag::new("DEALLOCATE")));
            }
            _ => Some("SELECT"),
        };
        let frame = self
            .planner
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
                    let state = self.planner.ctx.state_ref();
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

//! Prepared single-row INSERTs without the planner.
//!
//! `INSERT INTO t [(cols)] VALUES ($1, now(), $2 * 100, …)` prepared once
//! is planned and analyzed once; what is kept is one expression per table
//! column, over parameters and literals. Each execution puts the
//! parameters' values in, folds the expressions to constants (with the
//! execution's clock, so `now()` is the time of that INSERT) and appends
//! the one row to the table's write-ahead log, as a planned INSERT's sink
//! would: no physical plan, no streams, no tasks. Anything that does not
//! fold to a constant (a volatile function), a table that is no longer
//! the one prepared, or a session whose time zone changed since takes the
//! planned path. Other settings are those at Parse (none of PostgreSQL's
//! changes how an INSERT's constants fold; a `datafusion.*` option set
//! later does not reach this path).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, LogicalPlan, WriteOp};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use crate::error::{Error, Result};
use crate::features::NameScope;
use crate::offline::{OfflineStore, TableHandle};
use crate::pgtypes::SessionTimeZone;

/// A prepared single-row INSERT into a featuredb table.
#[derive(Debug)]
pub(crate) struct FastInsert {
    table: Arc<TableHandle>,
    /// One expression per column of the table, in its order.
    values: Vec<Expr>,
    /// The session's time zone when the statement was analyzed (time zone
    /// conversions are part of the expressions).
    time_zone: SessionTimeZone,
    /// The session's configuration then, which folding reads (copied once:
    /// copying a session's state per execution cost more than the rest).
    config: Arc<ConfigOptions>,
}

impl FastInsert {
    /// The fast form of `plan`, if it is a one-row `INSERT … VALUES` into
    /// a table of `offline`.
    pub(crate) fn of(
        plan: &LogicalPlan,
        state: &SessionState,
        offline: &OfflineStore,
        names: &NameScope,
        default_schema: &str,
        time_zone: &SessionTimeZone,
    ) -> Option<Self> {
        let LogicalPlan::Dml(dml) = plan else {
            return None;
        };
        if !matches!(dml.op, WriteOp::Insert(InsertOp::Append)) {
            return None;
        }
        let schema = match dml.table_name.schema() {
            Some(schema) => schema,
            // A bare name is the default schema's table (as DataFusion
            // resolves the INSERT's target), unless a temporary table
            // takes the name.
            None if names.temp.contains(dml.table_name.table()) => return None,
            None => default_schema,
        };
        let table = offline.table(schema, dml.table_name.table())?;
        let analyzed = state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
            .ok()?;
        let LogicalPlan::Dml(dml) = &analyzed else {
            return None;
        };
        let values = row_values(&dml.input)?;
        let fields = table.arrow_schema().fields().len();
        if values.len() != fields {
            return None;
        }
        Some(Self {
            table,
            values,
            time_zone: time_zone.clone(),
            config: Arc::new(state.config_options().as_ref().clone()),
        })
    }

    /// The row for `params` (already of the parameters' types), or `None`
    /// when this execution must take the planned path.
    pub(crate) fn row(
        &self,
        params: &[ScalarValue],
        time_zone: &SessionTimeZone,
    ) -> Result<Option<(Arc<TableHandle>, RecordBatch)>> {
        if self.table.is_dropped() || *time_zone != self.time_zone {
            return Ok(None);
        }
        let context = SimplifyContext::default()
            .with_schema(Arc::new(DFSchema::empty()))
            .with_config_options(self.config.clone())
            .with_query_execution_start_time(Some(chrono::Utc::now()));
        let simplifier = ExprSimplifier::new(context);
        let schema = self.table.arrow_schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.values.len());
        for (expr, field) in self.values.iter().zip(schema.fields()) {
            let bound = bind(expr.clone(), params)?;
            let Ok(Expr::Literal(value, _)) = simplifier.simplify(bound) else {
                return Ok(None);
            };
            let value = if value.data_type() == *field.data_type() {
                value
            } else {
                value
                    .cast_to(field.data_type())
                    .map_err(Error::from_datafusion)?
            };
            columns.push(value.to_array_of_size(1).map_err(Error::from_datafusion)?);
        }
        Ok(Some((
            self.table.clone(),
            RecordBatch::try_new(schema, columns)?,
        )))
    }
}

/// The one row's expression per output column of an INSERT's input:
/// `VALUES (…)`, or a projection over it (casts to the column types,
/// NULLs for columns not listed).
fn row_values(input: &LogicalPlan) -> Option<Vec<Expr>> {
    match input {
        LogicalPlan::Values(values) => match values.values.as_slice() {
            [row] => Some(row.clone()),
            _ => None,
        },
        LogicalPlan::Projection(projection) => {
            let LogicalPlan::Values(values) = projection.input.as_ref() else {
                return None;
            };
            let [row] = values.values.as_slice() else {
                return None;
            };
            let schema = values.schema.clone();
            projection
                .expr
                .iter()
                .map(|expr| {
                    let expr = expr.clone().unalias();
                    expr.transform_up(|e| match e {
                        Expr::Column(column) => {
                            let index = schema.index_of_column(&column)?;
                            Ok(Transformed::yes(row[index].clone()))
                        }
                        other => Ok(Transformed::no(other)),
                    })
                    .map(|t| t.data)
                    .ok()
                })
                .collect()
        }
        _ => None,
    }
}

/// `expr` with each `$n` replaced by its value, cast to the placeholder's
/// type where the planner gave it one.
fn bind(expr: Expr, params: &[ScalarValue]) -> Result<Expr> {
    expr.transform_up(|e| match e {
        Expr::Placeholder(placeholder) => {
            let index = placeholder
                .id
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1))
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Plan(format!(
                        "unknown parameter {}",
                        placeholder.id
                    ))
                })?;
            let value = params.get(index).cloned().ok_or_else(|| {
                datafusion::error::DataFusionError::Plan(format!(
                    "there is no parameter {}",
                    placeholder.id
                ))
            })?;
            let value = match placeholder.field.as_ref().map(|f| f.data_type().clone()) {
                Some(data_type) if value.data_type() != data_type => value.cast_to(&data_type)?,
                _ => value,
            };
            Ok(Transformed::yes(Expr::Literal(value, None)))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .map_err(Error::from_datafusion)
}

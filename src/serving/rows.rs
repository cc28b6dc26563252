//! A lookup's result: the rows found, as the online store holds them,
//! read value by value straight from the stored bytes ([`RowReader`]), or
//! as an Arrow batch when the select list has expressions to evaluate.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchemaRef, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::{Expr as LogicalExpr, expr::Placeholder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use super::plan::{LookupPlan, Projection};
use crate::error::{Error, Result};
use crate::online::{StoredRow, ValueReader, decode_columns};
use crate::pgtypes::Datum;

/// The rows a lookup found, as the online store holds them.
pub struct LookupRows {
    pub(super) plan: Arc<LookupPlan>,
    /// The keys that found a row, in the order asked: typed values and
    /// their encoding.
    pub(super) keys: Vec<(Vec<ScalarValue>, Vec<u8>)>,
    /// Per part, per key in `keys`, its stored row.
    pub(super) found: Vec<Vec<Option<StoredRow>>>,
}

impl LookupRows {
    /// The result's columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.plan.output
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads the result row by row, value by value, from the stored rows.
    /// Only for plans whose `direct` is set (checked: an error otherwise).
    pub fn reader(&self) -> RowReader<'_> {
        RowReader {
            rows: self,
            next: 0,
            row: Vec::with_capacity(self.plan.row_schema.fields().len()),
            out: Vec::with_capacity(self.plan.output.fields().len()),
        }
    }

    /// The result as one Arrow batch, select-list expressions evaluated.
    fn into_batch(self, params: &[ScalarValue]) -> Result<RecordBatch> {
        let plan = &self.plan;
        let count = self.keys.len();
        let mut columns: Vec<Option<ArrayRef>> = vec![None; plan.row_schema.fields().len()];
        if plan.service.is_some() {
            for (i, column) in columns.iter_mut().take(plan.key_types.len()).enumerate() {
                *column = Some(if count == 0 {
                    new_null_array(&plan.key_types[i], 0)
                } else {
                    ScalarValue::iter_to_array(self.keys.iter().map(|(typed, _)| typed[i].clone()))?
                });
            }
        }
        for (part, rows) in plan.parts.iter().zip(&self.found) {
            let slices: Vec<Option<&[u8]>> = rows
                .iter()
                .map(|row| row.as_ref().map(StoredRow::values))
                .collect();
            let arrays = decode_columns(&part.types, &slices)?;
            for &(to, from) in &part.mapping {
                columns[to] = Some(arrays[from].clone());
            }
        }
        let arrays = columns
            .into_iter()
            .zip(plan.row_schema.fields())
            .map(|(column, field)| {
                let array = column.unwrap_or_else(|| new_null_array(field.data_type(), count));
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    cast(&array, field.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new_with_options(
            plan.row_schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(count)),
        )?;
        match &plan.projection {
            Projection::Columns(columns) => {
                let arrays = columns.iter().map(|&i| batch.column(i).clone()).collect();
                Ok(RecordBatch::try_new_with_options(
                    plan.output.clone(),
                    arrays,
                    &RecordBatchOptions::new().with_row_count(Some(count)),
                )?)
            }
            Projection::Exprs { exprs, input } => evaluate(
                exprs,
                input,
                &batch,
                params,
                &plan.param_types,
                &plan.output,
            ),
        }
    }

    /// The result as a stream of one batch (for consumers of streams: a
    /// row-limited Execute).
    pub fn into_stream(self, params: &[ScalarValue]) -> Result<SendableRecordBatchStream> {
        let schema = self.plan.output.clone();
        let batch = self.into_batch(params)?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(async move { Ok(batch) }).boxed(),
        )))
    }
}

/// Reads a lookup's result a row at a time; values borrow the stored rows.
pub struct RowReader<'a> {
    rows: &'a LookupRows,
    next: usize,
    /// The looked-up row: key columns (of a service), then each part's.
    row: Vec<Option<Datum<'a>>>,
    /// The row in the select list's order.
    out: Vec<Option<Datum<'a>>>,
}

impl<'a> RowReader<'a> {
    /// The next row's values (`None` is NULL), or `None` after the last.
    pub fn next_row(&mut self) -> Result<Option<&[Option<Datum<'a>>]>> {
        let rows: &'a LookupRows = self.rows;
        let index = self.next;
        let Some((_, key)) = rows.keys.get(index) else {
            return Ok(None);
        };
        self.next += 1;
        let plan = &rows.plan;
        let Projection::Columns(columns) = &plan.projection else {
            return Err(Error::internal(
                "a lookup with expressions is read as a batch",
            ));
        };
        self.row.clear();
        self.row.resize(plan.row_schema.fields().len(), None);
        if plan.service.is_some() {
            let mut reader = ValueReader::new(key);
            for (slot, data_type) in self.row.iter_mut().zip(&plan.key_types) {
                *slot = reader.next_datum(data_type)?;
            }
        }
        for (part, found) in plan.parts.iter().zip(&rows.found) {
            let Some(stored) = &found[index] else {
                continue;
            };
            let mut reader = ValueReader::new(stored.values());
            for (data_type, target) in part.types.iter().zip(&part.targets) {
                let datum = reader.next_datum(data_type)?;
                if let Some(target) = target {
                    self.row[*target] = datum;
                }
            }
        }
        self.out.clear();
        self.out
            .extend(columns.iter().map(|&column| self.row[column]));
        Ok(Some(&self.out))
    }
}

/// Evaluates planned select items on the looked-up rows, with the
/// parameters substituted.
fn evaluate(
    exprs: &[LogicalExpr],
    input: &DFSchemaRef,
    rows: &RecordBatch,
    params: &[ScalarValue],
    param_types: &[DataType],
    output: &SchemaRef,
) -> Result<RecordBatch> {
    // The rows in the types DataFusion gave the empty relation's columns.
    let input_arrow = input.as_arrow();
    let columns = input_arrow
        .fields()
        .iter()
        .zip(rows.columns())
        .map(|(field, column)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(input_arrow.clone()),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.num_rows())),
    )?;
    let props = ExecutionProps::new();
    let mut arrays = Vec::with_capacity(exprs.len());
    for expr in exprs {
        let bound = expr
            .clone()
            .transform(|e| {
                if let LogicalExpr::Placeholder(Placeholder { id, .. }) = &e
                    && let Some(n) = id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
                    && n >= 1
                    && let Some(value) = params.get(n - 1)
                {
                    let value = match param_types.get(n - 1) {
                        Some(t) if value.data_type() != *t && !value.is_null() => {
                            value.cast_to(t)?
                        }
                        _ => value.clone(),
                    };
                    return Ok(Transformed::yes(LogicalExpr::Literal(value, None)));
                }
                Ok(Transformed::no(e))
            })
            .map_err(Error::from_datafusion)?
            .data;
        let physical = datafusion::physical_expr::create_physical_expr(&bound, input, &props)
            .map_err(Error::from_datafusion)?;
        let value = physical.evaluate(&batch).map_err(Error::from_datafusion)?;
        arrays.push(
            value
                .into_array(batch.num_rows())
                .map_err(Error::from_datafusion)?,
        );
    }
    let arrays = arrays
        .into_iter()
        .zip(output.fields())
        .map(|(array, field)| {
            if array.data_type() == field.data_type() {
                Ok(array)
            } else {
                cast(&array, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        output.clone(),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows.num_rows())),
    )?)
}

//! Executing a prepared lookup: the keys from the parameters, each view's
//! stored row per key (TTL checked against the session's clock), and the
//! result — read value by value straight from the stored rows
//! ([`RowReader`]), or as an Arrow batch when the select list has
//! expressions to evaluate.

use std::sync::Arc;

use chrono::{Duration, Months, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchemaRef, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::{Expr as LogicalExpr, expr::Placeholder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use super::{EventTimeUnit, KeyMatch, LookupPlan, Projection, Ttl, ValueRef};
use crate::engine::outcome::Outcome;
use crate::engine::plan::Prepared;
use crate::engine::session::Session;
use crate::engine::settings::SessionTimeZone;
use crate::error::{Error, Result};
use crate::online::{Materialization, StoredRow, codec};
use crate::pgtypes::Datum;

/// The rows a lookup found, as the online store holds them.
pub struct LookupRows {
    plan: Arc<LookupPlan>,
    /// The keys that found a row, in the order asked: typed values and
    /// their encoding.
    keys: Vec<(Vec<ScalarValue>, Vec<u8>)>,
    /// Per part, per key in `keys`, its stored row.
    found: Vec<Vec<Option<StoredRow>>>,
}

impl Session {
    /// Executes a prepared direct lookup without going through
    /// [`Session::execute`] (no future to build: this is the request path).
    /// `None` when `prepared` is no direct lookup, or its plan is stale.
    pub fn look_up(
        &mut self,
        prepared: &Prepared,
        params: &[ScalarValue],
    ) -> Result<Option<LookupRows>> {
        let (Some(statement), Some(plan)) = (&prepared.statement, prepared.lookup()) else {
            return Ok(None);
        };
        if !plan.direct {
            return Ok(None);
        }
        self.check_transaction(statement)?;
        prepared.check_param_count(params)?;
        self.find_rows(plan, params)
    }

    /// Runs a lookup. `None` when the plan no longer matches the registry
    /// or the online store (the caller plans the statement again).
    pub(crate) fn execute_lookup(
        &mut self,
        plan: &Arc<LookupPlan>,
        params: &[ScalarValue],
    ) -> Result<Option<Outcome>> {
        let Some(rows) = self.find_rows(plan, params)? else {
            return Ok(None);
        };
        if plan.direct {
            return Ok(Some(Outcome::Lookup(rows)));
        }
        Ok(Some(Outcome::Rows {
            schema: plan.output.clone(),
            stream: rows.into_stream(params)?,
            tag: "SELECT",
        }))
    }

    fn find_rows(
        &mut self,
        plan: &Arc<LookupPlan>,
        params: &[ScalarValue],
    ) -> Result<Option<LookupRows>> {
        let Some(states) = self.current_states(plan) else {
            return Ok(None);
        };
        let keys = keys_of(plan, params)?;
        let now = chrono::Utc::now();
        let cutoffs: Vec<Option<Cutoff>> = plan
            .parts
            .iter()
            .map(|part| part.ttl.and_then(|ttl| self.cutoff(ttl, now)))
            .collect();

        // Each part's stored row per key; keys no part holds have no row.
        let online = &self.engine.online;
        let mut buffer = Vec::with_capacity(64);
        let mut kept = Vec::with_capacity(keys.len());
        let mut found: Vec<Vec<Option<StoredRow>>> =
            vec![Vec::with_capacity(keys.len()); plan.parts.len()];
        for key in keys {
            let mut any = false;
            for ((rows, state), cutoff) in found.iter_mut().zip(&states).zip(&cutoffs) {
                let row = online
                    .get(state, &key.1, &mut buffer)?
                    .filter(|row| cutoff.is_none_or(|c| c.admits(row.event_time())));
                any |= row.is_some();
                rows.push(row);
            }
            if any {
                kept.push(key);
            } else {
                for rows in &mut found {
                    rows.pop();
                }
            }
        }
        Ok(Some(LookupRows {
            plan: plan.clone(),
            keys: kept,
            found,
        }))
    }

    /// The online state of each view the plan reads, if the plan still
    /// describes what the registry and the online store hold.
    fn current_states(&self, plan: &LookupPlan) -> Option<Vec<Arc<Materialization>>> {
        let registry = self.engine.registry.snapshot();
        if let Some((name, version)) = &plan.service
            && registry.services.get(name).map(|s| s.current().version) != Some(*version)
        {
            return None;
        }
        plan.parts
            .iter()
            .map(|part| {
                let current = registry.views.get(&part.name)?.current();
                if (current.version, current.online) != (part.version, true) {
                    return None;
                }
                self.engine
                    .online
                    .materialization(&part.name)
                    .filter(|state| {
                        state.online
                            && (state.version == part.version
                                || part.shape.as_ref() == Some(&state.shape))
                    })
            })
            .collect()
    }

    /// The oldest event time a view with `ttl` still serves at `now`.
    fn cutoff(&self, ttl: Ttl, now: chrono::DateTime<chrono::Utc>) -> Option<Cutoff> {
        let wall = |time: chrono::DateTime<chrono::Utc>| match self.settings.time_zone() {
            SessionTimeZone::Named(zone) => time.with_timezone(zone).naive_local(),
            SessionTimeZone::Fixed(offset) => time.with_timezone(offset).naive_local(),
        };
        let (from, micros_per_unit) = match ttl.unit {
            EventTimeUnit::InstantMicros => (now.naive_utc(), 1),
            EventTimeUnit::WallMicros => (wall(now), 1),
            EventTimeUnit::Days => (
                wall(now)
                    .date()
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight exists"),
                86_400_000_000,
            ),
            EventTimeUnit::Integer => return None,
        };
        // A cutoff before the calendar's start admits everything.
        let micros = minus_interval(from, ttl.interval)?
            .and_utc()
            .timestamp_micros();
        Some(Cutoff {
            micros,
            micros_per_unit,
        })
    }
}

/// Event times older than this are expired.
#[derive(Debug, Clone, Copy)]
struct Cutoff {
    micros: i64,
    /// Event times are in days for `date` columns.
    micros_per_unit: i64,
}

impl Cutoff {
    fn admits(&self, event_time: i64) -> bool {
        event_time.saturating_mul(self.micros_per_unit) >= self.micros
    }
}

/// The keys asked for, cast to the key columns' types and encoded, each
/// once, in the order given; NULLs and values no key can equal dropped.
fn keys_of(plan: &LookupPlan, params: &[ScalarValue]) -> Result<Vec<(Vec<ScalarValue>, Vec<u8>)>> {
    let resolve = |v: &ValueRef| -> Result<ScalarValue> {
        match v {
            ValueRef::Param(n) => params
                .get(*n)
                .cloned()
                .ok_or_else(|| Error::Protocol(format!("there is no parameter ${}", n + 1))),
            ValueRef::Literal(value) => Ok(value.clone()),
        }
    };
    let mut key_values: Vec<Vec<ScalarValue>> = Vec::new();
    match &plan.keys {
        KeyMatch::One(values) => {
            key_values.push(values.iter().map(resolve).collect::<Result<_>>()?);
        }
        KeyMatch::List(values) => {
            for v in values {
                key_values.push(vec![resolve(v)?]);
            }
        }
        KeyMatch::Array(n) => match resolve(&ValueRef::Param(*n))? {
            ScalarValue::List(list) if !list.is_null(0) => {
                let values = list.value(0);
                for i in 0..values.len() {
                    key_values.push(vec![ScalarValue::try_from_array(&values, i)?]);
                }
            }
            value if value.is_null() => {}
            other => {
                return Err(Error::DatatypeMismatch(format!(
                    "= ANY needs an array, got {}",
                    other.data_type()
                )));
            }
        },
    }
    let mut encoded: Vec<(Vec<ScalarValue>, Vec<u8>)> = Vec::with_capacity(key_values.len());
    // Each key once; a single key needs no set.
    let many = key_values.len() > 1;
    let mut seen: std::collections::HashSet<Vec<u8>, ahash::RandomState> = match many {
        true => std::collections::HashSet::with_capacity_and_hasher(
            key_values.len(),
            ahash::RandomState::new(),
        ),
        false => std::collections::HashSet::with_hasher(ahash::RandomState::with_seeds(0, 0, 0, 0)),
    };
    'keys: for values in key_values {
        let mut typed = Vec::with_capacity(values.len());
        let mut bytes = Vec::with_capacity(16);
        for (value, data_type) in values.into_iter().zip(&plan.key_types) {
            if value.is_null() {
                continue 'keys;
            }
            let value = if value.data_type() == *data_type {
                value
            } else {
                match key_value(value, data_type)? {
                    Some(value) => value,
                    // A number no key of this type can equal (1.5 for a
                    // bigint key, 2^40 for an integer one).
                    None => continue 'keys,
                }
            };
            codec::encode_scalar(&value, &mut bytes)?;
            typed.push(value);
        }
        if !many || seen.insert(bytes.clone()) {
            encoded.push((typed, bytes));
        }
    }
    Ok(encoded)
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
            let arrays = codec::decode_columns(&part.types, &slices)?;
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
            let mut pos = 0;
            for (slot, data_type) in self.row.iter_mut().zip(&plan.key_types) {
                *slot = codec::read_datum(data_type, key, &mut pos)?;
            }
        }
        for (part, found) in plan.parts.iter().zip(&rows.found) {
            let Some(stored) = &found[index] else {
                continue;
            };
            let values = stored.values();
            let mut pos = 0;
            for (data_type, target) in part.types.iter().zip(&part.targets) {
                let datum = codec::read_datum(data_type, values, &mut pos)?;
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

/// `value` as a key of `data_type`: numbers compare by value, as in
/// PostgreSQL (`None` when no key can equal it); text must parse.
fn key_value(value: ScalarValue, data_type: &DataType) -> Result<Option<ScalarValue>> {
    let original = value.data_type();
    if original.is_numeric() {
        return Ok(value
            .cast_to(data_type)
            .ok()
            .filter(|cast| cast.cast_to(&original).ok().as_ref() == Some(&value)));
    }
    value
        .cast_to(data_type)
        .map(Some)
        .map_err(|e| Error::InvalidTextRepresentation {
            message: format!("invalid key value: {}", e.strip_backtrace()),
        })
}

fn minus_interval(time: NaiveDateTime, interval: IntervalMonthDayNano) -> Option<NaiveDateTime> {
    let time = if interval.months >= 0 {
        time.checked_sub_months(Months::new(interval.months as u32))?
    } else {
        time.checked_add_months(Months::new(interval.months.unsigned_abs()))?
    };
    time.checked_sub_signed(Duration::days(interval.days as i64))?
        .checked_sub_signed(Duration::nanoseconds(interval.nanoseconds))
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

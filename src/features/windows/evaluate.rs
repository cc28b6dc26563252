//! Windowed features computed from a key's rows at a time t: what online
//! lookups answer, the same aggregates [`super::as_of_sql`] computes.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::ScalarValue;
use featuredb_catalog::{ColumnType, FeatureViewVersion};

use super::definition::{WindowFeature, WindowFunction, WindowedView};
use crate::error::{Error, Result};
use crate::online::{KeyEncoder, WindowEvent, WindowValue};

/// How an argument is kept: integers (and times) exactly, other numbers
/// as doubles, anything else only as present or NULL (for `count(x)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Presence,
}

/// Where a windowed view's rows keep what its windows need: key, event
/// time and arguments among the base query's columns.
#[derive(Debug, Clone)]
pub struct WindowArguments {
    key_indices: Vec<usize>,
    ts_index: usize,
    /// (base column, kind) of each argument, in `WindowEvent::values` order.
    arguments: Vec<(usize, Kind)>,
    /// Per feature, its argument's position in `values` (`None`: count(*)).
    slots: Vec<Option<usize>>,
    pub features: Vec<WindowFeature>,
    /// The view's column types of the features, in `features` order.
    output_types: Vec<DataType>,
    pub widest_micros: i64,
}

impl WindowArguments {
    /// For `view`, whose windowed parts are `windowed`.
    pub fn of(view: &FeatureViewVersion, windowed: &WindowedView) -> Result<Self> {
        let base = view
            .windowed_base
            .as_ref()
            .ok_or_else(|| Error::internal("a windowed view without its base"))?;
        let position = |name: &str| {
            base.columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| Error::internal(format!("column {name} is missing from the base")))
        };
        let key_indices = view
            .keys
            .iter()
            .map(|k| position(k))
            .collect::<Result<Vec<_>>>()?;
        let ts_index = position(&view.timestamp)?;
        let mut arguments: Vec<(usize, Kind)> = Vec::new();
        let mut slots = Vec::new();
        let mut output_types = Vec::new();
        for feature in &windowed.features {
            slots.push(match &feature.argument {
                None => None,
                Some(name) => {
                    let index = position(name)?;
                    match arguments.iter().position(|(i, _)| *i == index) {
                        Some(slot) => Some(slot),
                        None => {
                            let kind = match base.columns[index].column_type {
                                Some(
                                    ColumnType::SmallInt
                                    | ColumnType::Integer
                                    | ColumnType::BigInt
                                    | ColumnType::Timestamp
                                    | ColumnType::TimestampTz
                                    | ColumnType::Date,
                                ) => Kind::Int,
                                Some(
                                    ColumnType::Real
                                    | ColumnType::DoublePrecision
                                    | ColumnType::Numeric { .. },
                                ) => Kind::Float,
                                _ => Kind::Presence,
                            };
                            if kind == Kind::Presence && feature.function != WindowFunction::Count {
                                return Err(Error::FeatureNotSupported(format!(
                                    "windowed feature {} aggregates a {} column: only count() \
                                     takes arguments that are not numbers or times",
                                    feature.name, base.columns[index].data_type
                                )));
                            }
                            arguments.push((index, kind));
                            Some(arguments.len() - 1)
                        }
                    }
                }
            });
            let column = view
                .columns
                .iter()
                .find(|c| c.name == feature.name)
                .and_then(|c| c.column_type.as_ref())
                .ok_or_else(|| Error::internal("a windowed feature has no type"))?;
            output_types.push(column.to_arrow());
        }
        Ok(Self {
            key_indices,
            ts_index,
            arguments,
            slots,
            features: windowed.features.clone(),
            output_types,
            widest_micros: windowed.widest_micros,
        })
    }

    /// The rows of `batch` (base rows in their declared types) that a
    /// window at or after `keep_after` may still count, keyed; `seq` gives
    /// each row's log sequence number (0 for stored rows). Rows with a
    /// NULL key or event time never count.
    pub fn events(
        &self,
        batch: &RecordBatch,
        seq: impl Fn(usize) -> u64,
        keep_after: i64,
    ) -> Result<Vec<(Vec<u8>, WindowEvent)>> {
        let times = cast(batch.column(self.ts_index), &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        let mut columns = Vec::with_capacity(self.arguments.len());
        for &(index, kind) in &self.arguments {
            let column = batch.column(index).clone();
            columns.push(match kind {
                Kind::Int => cast(&column, &DataType::Int64)?,
                Kind::Float => cast(&column, &DataType::Float64)?,
                Kind::Presence => column,
            });
        }
        let mut events = Vec::new();
        'rows: for row in 0..batch.num_rows() {
            if times.is_null(row) || times.value(row) < keep_after {
                continue;
            }
            let mut key = Vec::new();
            for &k in &self.key_indices {
                let column = batch.column(k);
                if column.is_null(row) {
                    continue 'rows;
                }
                KeyEncoder::array_value(column.as_ref(), row, &mut key)?;
            }
            let values = self
                .arguments
                .iter()
                .zip(&columns)
                .map(|((_, kind), column)| {
                    if column.is_null(row) {
                        return WindowValue::Null;
                    }
                    match kind {
                        Kind::Int => {
                            WindowValue::Int(column.as_primitive::<Int64Type>().value(row))
                        }
                        Kind::Float => {
                            WindowValue::Float(column.as_primitive::<Float64Type>().value(row))
                        }
                        Kind::Presence => WindowValue::Int(1),
                    }
                })
                .collect();
            events.push((
                key,
                WindowEvent {
                    ts: times.value(row),
                    seq: seq(row),
                    values,
                },
            ));
        }
        Ok(events)
    }
}

/// The oldest event time any window read from now on may count: rows
/// before it can go. Conservative by a day and two hours, so that a
/// `timestamp` (wall clock in some time zone) is never dropped early.
pub fn oldest_needed(widest_micros: i64) -> i64 {
    const ANY_ZONE: i64 = 26 * 3_600_000_000;
    chrono::Utc::now()
        .timestamp_micros()
        .saturating_sub(widest_micros)
        .saturating_sub(ANY_ZONE)
}

/// Each feature of `arguments` over the `events` (by event time) in
/// `[t − W, t]`, in the view's column types.
pub fn evaluate_windows(
    arguments: &WindowArguments,
    events: &[WindowEvent],
    t: i64,
) -> Result<Vec<ScalarValue>> {
    let end = events.partition_point(|e| e.ts <= t);
    arguments
        .features
        .iter()
        .zip(&arguments.slots)
        .zip(&arguments.output_types)
        .map(|((feature, slot), output)| {
            let start =
                events[..end].partition_point(|e| e.ts < t.saturating_sub(feature.width_micros));
            let inside = &events[start..end];
            let value = aggregate(feature.function, *slot, inside)?;
            if value.data_type() == *output {
                Ok(value)
            } else {
                value
                    .cast_to(output)
                    .map_err(|e| Error::internal(format!("windowed feature {}: {e}", feature.name)))
            }
        })
        .collect()
}

fn aggregate(
    function: WindowFunction,
    slot: Option<usize>,
    events: &[WindowEvent],
) -> Result<ScalarValue> {
    let values = || {
        events
            .iter()
            .map(move |e| slot.map_or(WindowValue::Int(1), |s| e.values[s]))
            .filter(|v| *v != WindowValue::Null)
    };
    let floats = || {
        values().map(|v| match v {
            WindowValue::Int(i) => i as f64,
            WindowValue::Float(f) => f,
            WindowValue::Null => unreachable!("filtered"),
        })
    };
    let all_ints = || values().all(|v| matches!(v, WindowValue::Int(_)));
    Ok(match function {
        WindowFunction::CountRows => ScalarValue::Int64(Some(events.len() as i64)),
        WindowFunction::Count => ScalarValue::Int64(Some(values().count() as i64)),
        WindowFunction::Sum => {
            if values().next().is_none() {
                ScalarValue::Int64(None)
            } else if all_ints() {
                let mut sum: i64 = 0;
                for v in values() {
                    if let WindowValue::Int(i) = v {
                        sum = sum
                            .checked_add(i)
                            .ok_or_else(|| Error::NumericValueOutOfRange {
                                message: "bigint out of range".into(),
                            })?;
                    }
                }
                ScalarValue::Int64(Some(sum))
            } else {
                ScalarValue::Float64(Some(floats().sum()))
            }
        }
        WindowFunction::Avg => {
            let (n, sum) = floats().fold((0u64, 0f64), |(n, s), v| (n + 1, s + v));
            ScalarValue::Float64((n > 0).then(|| sum / n as f64))
        }
        WindowFunction::Min | WindowFunction::Max => {
            let max = function == WindowFunction::Max;
            if all_ints() {
                let best = values()
                    .filter_map(|v| match v {
                        WindowValue::Int(i) => Some(i),
                        _ => None,
                    })
                    .reduce(|a, b| if (b > a) == max { b } else { a });
                ScalarValue::Int64(best)
            } else {
                let best = floats().reduce(|a, b| if (b > a) == max { b } else { a });
                ScalarValue::Float64(best)
            }
        }
        WindowFunction::StddevSamp
        | WindowFunction::StddevPop
        | WindowFunction::VarSamp
        | WindowFunction::VarPop => {
            // Welford's running mean and sum of squared deviations.
            let (mut n, mut mean, mut m2) = (0u64, 0f64, 0f64);
            for x in floats() {
                n += 1;
                let delta = x - mean;
                mean += delta / n as f64;
                m2 += delta * (x - mean);
            }
            let sample = matches!(
                function,
                WindowFunction::StddevSamp | WindowFunction::VarSamp
            );
            let divisor = if sample { n.saturating_sub(1) } else { n };
            let variance = (divisor > 0).then(|| m2 / divisor as f64);
            let root = matches!(
                function,
                WindowFunction::StddevSamp | WindowFunction::StddevPop
            );
            ScalarValue::Float64(variance.map(|v| if root { v.sqrt() } else { v }))
        }
    })
}

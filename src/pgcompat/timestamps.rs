//! Timestamps with PostgreSQL's meaning: conversions between `timestamp`
//! and `timestamptz` use the session's TimeZone, and strings become
//! timestamps by PostgreSQL's input rules.
//!
//! Strings: a string compared with or inserted into a timestamp column is
//! cast by Arrow's parser, which wants seconds and rejects PostgreSQL's
//! `2024-05-01 10:00+02`. Such casts of string constants are rewritten to
//! the form Arrow reads, parsed by `pgtypes` (the AST rewrite in
//! `pg_semantics` does the same for typed literals).
//!
//! PostgreSQL turns a `timestamp with time zone` into a `timestamp` by
//! taking its wall-clock time in the session's TimeZone; Arrow's cast
//! keeps the UTC wall-clock time. DataFusion inserts such casts when it
//! coerces comparisons, so `naive_ts <= TIMESTAMPTZ '… +00'` (and every
//! feature view with a `timestamp` event time read `AS OF` a
//! `timestamptz`, or as of `now()`) would compare against UTC wall time in
//! a session whose TimeZone is elsewhere. This analyzer rule runs after
//! type coercion and rewrites every such cast into
//! `to_local_time(CAST(x AS timestamptz in the session zone))`.
//!
//! Comparisons need the same care from the other side. DataFusion coerces
//! `naive_ts <= tz_value` correctly, to `CAST(naive_ts AS timestamptz in
//! the session zone) <= tz_value`, but its optimizer then moves the cast
//! off the column (to keep filters pushable) by casting the value to a
//! naive timestamp, the Arrow way, in UTC. So such comparisons are
//! rewritten here to `naive_ts <= to_local_time(tz_value in the session
//! zone)`: the same answer (up to the repeated hour when clocks go back),
//! with a plain column the scan can prune on.
//!
//! The other direction: a `timestamp` (or a string without an offset)
//! becoming a `timestamptz` is a wall-clock time in the session zone.
//! Arrow casts to the target type's zone instead, which differs when
//! DataFusion coerces to a column's zone (`tz_col >= '2024-01-01'`); such
//! casts go through the session zone first.
//!
//! `AT TIME ZONE` is planned by DataFusion as a cast too, with the other
//! meaning; `pg_semantics` turns it into [`AT_TIME_ZONE_FUNCTION`] first,
//! which becomes its PostgreSQL meaning only after this rule has run.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue, internal_err, plan_err};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct SessionTimeZoneCasts;

impl AnalyzerRule for SessionTimeZoneCasts {
    fn name(&self) -> &str {
        "featuredb_session_time_zone_casts"
    }

    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let Some(zone) = config.execution.time_zone.clone() else {
            return Ok(plan);
        };
        super::expr_rewrite::rewrite_expressions(plan, |expr, schema| rewrite(expr, schema, &zone))
    }
}

fn rewrite(expr: Expr, schema: &DFSchema, zone: &str) -> Result<Transformed<Expr>> {
    if let Expr::BinaryExpr(binary) = &expr
        && matches!(
            binary.op,
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom
        )
    {
        if let Some(naive) = naive_cast_to_zone(&binary.left, schema, zone) {
            let right = local_time(&binary.right, schema, zone, naive.1)?;
            return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(naive.0),
                binary.op,
                Box::new(right),
            ))));
        }
        if let Some(naive) = naive_cast_to_zone(&binary.right, schema, zone) {
            let left = local_time(&binary.left, schema, zone, naive.1)?;
            return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(left),
                binary.op,
                Box::new(naive.0),
            ))));
        }
    }
    rewrite_cast(expr, schema, zone)
}

/// `CAST(x AS timestamptz in the session zone)` where x is a naive
/// timestamp: x and its unit.
fn naive_cast_to_zone(expr: &Expr, schema: &DFSchema, zone: &str) -> Option<(Expr, TimeUnit)> {
    let Expr::Cast(Cast {
        expr: inner,
        data_type: DataType::Timestamp(_, Some(target_zone)),
    }) = expr
    else {
        return None;
    };
    if target_zone.as_ref() != zone {
        return None;
    }
    match inner.get_type(schema) {
        Ok(DataType::Timestamp(unit, None)) => Some((inner.as_ref().clone(), unit)),
        _ => None,
    }
}

/// The wall-clock time of a timestamptz `expr` in the session zone, as a
/// naive timestamp of `unit`.
fn local_time(expr: &Expr, schema: &DFSchema, zone: &str, unit: TimeUnit) -> Result<Expr> {
    let source_unit = match expr.get_type(schema)? {
        DataType::Timestamp(source_unit, _) => source_unit,
        _ => unit,
    };
    let in_session_zone = Expr::Cast(Cast::new(
        Box::new(expr.clone()),
        DataType::Timestamp(source_unit, Some(zone.into())),
    ));
    let local = datafusion::functions::datetime::to_local_time().call(vec![in_session_zone]);
    Ok(if source_unit == unit {
        local
    } else {
        Expr::Cast(Cast::new(Box::new(local), DataType::Timestamp(unit, None)))
    })
}

fn rewrite_cast(expr: Expr, schema: &DFSchema, zone: &str) -> Result<Transformed<Expr>> {
    let (inner, target) = match &expr {
        Expr::Cast(Cast { expr, data_type }) | Expr::TryCast(TryCast { expr, data_type }) => {
            (expr, data_type)
        }
        _ => return Ok(Transformed::no(expr)),
    };
    if let (
        Expr::Literal(
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)),
            metadata,
        ),
        DataType::Timestamp(_, target_zone),
    ) = (inner.as_ref(), target)
        && let Some(normalized) =
            crate::pgtypes::datetime::normalize_timestamp_literal(text, target_zone.is_some())
        && normalized != *text
    {
        let literal = Expr::Literal(ScalarValue::Utf8(Some(normalized)), metadata.clone());
        let rebuilt = match &expr {
            Expr::TryCast(_) => Expr::TryCast(TryCast::new(Box::new(literal), target.clone())),
            _ => Expr::Cast(Cast::new(Box::new(literal), target.clone())),
        };
        // The zone rule below still applies to the rebuilt cast.
        return Ok(Transformed::yes(rewrite_cast(rebuilt, schema, zone)?.data));
    }
    let Ok(source) = inner.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    match (&source, target) {
        // timestamptz → timestamp: wall-clock time in the session zone.
        (DataType::Timestamp(_, Some(_)), DataType::Timestamp(target_unit, None)) => Ok(
            Transformed::yes(local_time(inner, schema, zone, *target_unit)?),
        ),
        // timestamp (or text without an offset) → timestamptz in another
        // zone: the value is a wall-clock time in the session zone.
        (
            DataType::Timestamp(_, None)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Date64,
            DataType::Timestamp(target_unit, Some(target_zone)),
        ) if target_zone.as_ref() != zone => {
            let in_session_zone = Expr::Cast(Cast::new(
                inner.clone(),
                DataType::Timestamp(*target_unit, Some(zone.into())),
            ));
            Ok(Transformed::yes(Expr::Cast(Cast::new(
                Box::new(in_session_zone),
                target.clone(),
            ))))
        }
        _ => Ok(Transformed::no(expr)),
    }
}

/// What `x AT TIME ZONE zone` is planned as (see the module comment).
pub const AT_TIME_ZONE_FUNCTION: &str = "featuredb_at_time_zone";

/// PostgreSQL's `AT TIME ZONE`: a `timestamp` is read as a wall-clock
/// time in `zone` (giving a `timestamptz`); a `timestamptz` becomes its
/// wall-clock time in `zone` (a `timestamp`). The call simplifies to casts
/// and `to_local_time` once the argument's type is known.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AtTimeZone {
    signature: Signature,
}

impl AtTimeZone {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    fn zone(argument: Option<&ScalarValue>) -> Result<String> {
        match argument {
            Some(
                ScalarValue::Utf8(Some(zone))
                | ScalarValue::LargeUtf8(Some(zone))
                | ScalarValue::Utf8View(Some(zone)),
            ) => Ok(zone.clone()),
            _ => plan_err!("AT TIME ZONE needs a constant time zone name"),
        }
    }

    fn result_type(argument: &DataType, zone: &str) -> Result<DataType> {
        match argument {
            DataType::Timestamp(_, Some(_)) => Ok(DataType::Timestamp(TimeUnit::Nanosecond, None)),
            DataType::Timestamp(_, None)
            | DataType::Date32
            | DataType::Date64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Null => Ok(DataType::Timestamp(TimeUnit::Nanosecond, Some(zone.into()))),
            other => plan_err!("AT TIME ZONE does not apply to {other}"),
        }
    }
}

impl Default for AtTimeZone {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for AtTimeZone {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        AT_TIME_ZONE_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        internal_err!("{AT_TIME_ZONE_FUNCTION} computes its type from its arguments")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let zone = Self::zone(args.scalar_arguments.get(1).copied().flatten())?;
        let argument = args.arg_fields[0].data_type();
        Ok(Arc::new(Field::new(
            self.name(),
            Self::result_type(argument, &zone)?,
            true,
        )))
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let zone = match &args[1] {
            Expr::Literal(value, _) => Self::zone(Some(value))?,
            _ => return plan_err!("AT TIME ZONE needs a constant time zone name"),
        };
        let argument = info.get_data_type(&args[0])?;
        let in_zone = Expr::Cast(Cast::new(
            Box::new(args[0].clone()),
            DataType::Timestamp(TimeUnit::Nanosecond, Some(zone.as_str().into())),
        ));
        Ok(ExprSimplifyResult::Simplified(match argument {
            DataType::Timestamp(_, Some(_)) => {
                datafusion::functions::datetime::to_local_time().call(vec![in_zone])
            }
            _ => in_zone,
        }))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        internal_err!("{AT_TIME_ZONE_FUNCTION} runs only after simplification")
    }
}

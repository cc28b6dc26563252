//! The AS OF join in the logical plan: the [`AsOfJoin`] node, the analyzer
//! rule that makes it out of a marked join ([`AsOfJoins`]), and the
//! optimizer rule that pushes filters below it ([`PushFiltersBelowAsOf`]).

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{
    Column, DFSchema, DFSchemaRef, Result as DFResult, ScalarValue, exec_err,
};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Extension, Filter, JoinType, LogicalPlan,
    Operator, Projection, ScalarFunctionArgs, ScalarUDFImpl, Signature, UserDefinedLogicalNodeCore,
    Volatility, build_join_schema, lit,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{AnalyzerRule, OptimizerConfig, OptimizerRule};

use super::MARKER_FUNCTION;
use crate::error::Error;

/// Which spine rows the join returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Hash)]
pub enum AsOfJoinKind {
    Inner,
    Left,
}

impl AsOfJoinKind {
    /// The ordinary join with the same output schema.
    fn join_type(self) -> JoinType {
        match self {
            AsOfJoinKind::Inner => JoinType::Inner,
            AsOfJoinKind::Left => JoinType::Left,
        }
    }
}

/// Which way in time the match is searched, from the spine row's time t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Hash)]
pub enum Direction {
    /// The greatest time ≤ t (`>=`), or < t when strict (`>`).
    Backward { strict: bool },
    /// The least time ≥ t (`<=`), or > t when strict (`<`).
    Forward { strict: bool },
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Backward { strict: false } => ">=",
            Direction::Backward { strict: true } => ">",
            Direction::Forward { strict: false } => "<=",
            Direction::Forward { strict: true } => "<",
        })
    }
}

/// `left AS OF JOIN right`: for each left row, the matching right row
/// (see the module docs of `asof`). Output columns are the left's then
/// the right's, as a join's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsOfJoin {
    pub left: Arc<LogicalPlan>,
    pub right: Arc<LogicalPlan>,
    pub kind: AsOfJoinKind,
    /// Equal keys (left expression, right expression).
    pub keys: Vec<(Expr, Expr)>,
    pub left_time: Expr,
    pub right_time: Expr,
    pub direction: Direction,
    /// Over the left side: the oldest (newest, forward) time a match may
    /// have; from the tolerance and a feature view's TTL.
    pub bounds: Vec<Expr>,
    /// Over the right side: greatest wins among equal times.
    pub tie: Option<Expr>,
    /// Over the left side: rows for which it is not true match nothing
    /// (conditions on the spine alone in a LEFT join's ON).
    pub left_filter: Option<Expr>,
    pub schema: DFSchemaRef,
}

impl PartialOrd for AsOfJoin {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (
            &self.left,
            &self.right,
            self.kind,
            &self.keys,
            &self.left_time,
        )
            .partial_cmp(&(
                &other.left,
                &other.right,
                other.kind,
                &other.keys,
                &other.left_time,
            ))
            // Plans with equal children and keys but different schemas or
            // conditions are not ordered.
            .filter(|ordering| *ordering != Ordering::Equal || self == other)
    }
}

impl AsOfJoin {
    #[allow(clippy::too_many_arguments)]
    pub fn try_new(
        left: Arc<LogicalPlan>,
        right: Arc<LogicalPlan>,
        kind: AsOfJoinKind,
        keys: Vec<(Expr, Expr)>,
        left_time: Expr,
        right_time: Expr,
        direction: Direction,
        bounds: Vec<Expr>,
        tie: Option<Expr>,
        left_filter: Option<Expr>,
    ) -> DFResult<Self> {
        let schema = Arc::new(build_join_schema(
            left.schema(),
            right.schema(),
            &kind.join_type(),
        )?);
        Ok(Self {
            left,
            right,
            kind,
            keys,
            left_time,
            right_time,
            direction,
            bounds,
            tie,
            left_filter,
            schema,
        })
    }
}

impl AsOfJoin {
    /// The same join over other inputs (with the same columns).
    fn with_inputs(&self, left: Arc<LogicalPlan>, right: Arc<LogicalPlan>) -> DFResult<Self> {
        let mut join = self.clone();
        join.schema = Arc::new(build_join_schema(
            left.schema(),
            right.schema(),
            &self.kind.join_type(),
        )?);
        join.left = left;
        join.right = right;
        Ok(join)
    }
}

impl UserDefinedLogicalNodeCore for AsOfJoin {
    fn name(&self) -> &str {
        "AsOfJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let mut exprs = Vec::new();
        for (l, r) in &self.keys {
            exprs.push(l.clone());
            exprs.push(r.clone());
        }
        exprs.push(self.left_time.clone());
        exprs.push(self.right_time.clone());
        exprs.extend(self.bounds.iter().cloned());
        exprs.extend(self.tie.iter().cloned());
        exprs.extend(self.left_filter.iter().cloned());
        exprs
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(l, r)| format!("{l} = {r}"))
            .collect();
        write!(
            f,
            "AsOfJoin: {:?}, keys=[{}], time={} {} {}",
            self.kind,
            keys.join(", "),
            self.left_time,
            self.direction,
            self.right_time
        )?;
        if !self.bounds.is_empty() {
            let bounds: Vec<String> = self.bounds.iter().map(|b| b.to_string()).collect();
            write!(f, ", bounds=[{}]", bounds.join(", "))?;
        }
        if let Some(tie) = &self.tie {
            write!(f, ", ties={tie}")?;
        }
        if let Some(filter) = &self.left_filter {
            write!(f, ", spine_filter={filter}")?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let [left, right]: [LogicalPlan; 2] = inputs.try_into().map_err(|_| {
            datafusion::error::DataFusionError::Internal("AsOfJoin has two inputs".into())
        })?;
        let mut exprs = exprs.into_iter();
        let mut next = || {
            exprs.next().ok_or_else(|| {
                datafusion::error::DataFusionError::Internal("AsOfJoin: too few expressions".into())
            })
        };
        let mut keys = Vec::with_capacity(self.keys.len());
        for _ in 0..self.keys.len() {
            keys.push((next()?, next()?));
        }
        let left_time = next()?;
        let right_time = next()?;
        let mut bounds = Vec::with_capacity(self.bounds.len());
        for _ in 0..self.bounds.len() {
            bounds.push(next()?);
        }
        let tie = self.tie.as_ref().map(|_| next()).transpose()?;
        let left_filter = self.left_filter.as_ref().map(|_| next()).transpose()?;
        AsOfJoin::try_new(
            Arc::new(left),
            Arc::new(right),
            self.kind,
            keys,
            left_time,
            right_time,
            self.direction,
            bounds,
            tie,
            left_filter,
        )
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // The node's own expressions are added by the optimizer.
        let left_len = self.left.schema().fields().len();
        let (left, right): (Vec<usize>, Vec<usize>) =
            output_columns.iter().partition(|&&i| i < left_len);
        Some(vec![
            left,
            right.into_iter().map(|i| i - left_len).collect(),
        ])
    }
}

/// The marker function (see `ast.rs`): never evaluated.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AsOfMarker {
    signature: Signature,
}

impl Default for AsOfMarker {
    fn default() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for AsOfMarker {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        MARKER_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DFResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        exec_err!("{MARKER_FUNCTION} marks AS OF joins; it cannot be evaluated")
    }
}

fn is_marker(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(f) if f.func.name() == MARKER_FUNCTION)
}

/// Replaces every join marked by `ast.rs` with an [`AsOfJoin`]. Runs after
/// type coercion, so both sides of each comparison have one type.
#[derive(Debug, Default)]
pub struct AsOfJoins;

impl AnalyzerRule for AsOfJoins {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DFResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Join(join) = &node else {
                return Ok(Transformed::no(node));
            };
            let in_condition = join.filter.as_ref().and_then(|f| {
                split_conjunction_owned(f.clone())
                    .into_iter()
                    .find(is_marker)
            });
            let Some(marker) = in_condition else {
                return Ok(Transformed::no(node));
            };
            let LogicalPlan::Join(join) = node else {
                unreachable!("matched above")
            };
            let as_of = build(join, marker).map_err(Error::into_datafusion)?;
            Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                node: Arc::new(as_of),
            })))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "featuredb_asof_joins"
    }
}

/// Which inputs an expression reads.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Left,
    Right,
    Both,
    Neither,
}

fn side(expr: &Expr, left: &DFSchema, right: &DFSchema) -> Side {
    let columns = expr.column_refs();
    let in_left = columns.iter().any(|c| left.has_column(c));
    let in_right = columns.iter().any(|c| right.has_column(c));
    match (in_left, in_right) {
        (true, true) => Side::Both,
        (true, false) => Side::Left,
        (false, true) => Side::Right,
        (false, false) => Side::Neither,
    }
}

fn build(join: datafusion::logical_expr::Join, marker: Expr) -> Result<AsOfJoin, Error> {
    let kind = match join.join_type {
        JoinType::Inner => AsOfJoinKind::Inner,
        JoinType::Left => AsOfJoinKind::Left,
        other => {
            return Err(Error::internal(format!(
                "AS OF join marked on a {other} join"
            )));
        }
    };
    let right = join.right.as_ref().clone();
    let left_schema = join.left.schema().clone();
    let right_schema = right.schema().clone();
    let mut conditions: Vec<Expr> = join
        .filter
        .map(split_conjunction_owned)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !is_marker(c))
        .collect();
    let mut time: Option<(Expr, Direction, Expr)> = None;
    conditions.extend(join.on.into_iter().map(|(l, r)| l.eq(r)));

    let mut keys = Vec::new();
    let mut left_filters = Vec::new();
    let mut right_filters = Vec::new();
    for condition in conditions {
        let orient = |l: &Expr, r: &Expr| match (
            side(l, &left_schema, &right_schema),
            side(r, &left_schema, &right_schema),
        ) {
            (Side::Left, Side::Right) => Some((l.clone(), r.clone(), false)),
            (Side::Right, Side::Left) => Some((r.clone(), l.clone(), true)),
            _ => None,
        };
        if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &condition
            && let Some((l, r, swapped)) = orient(left, right)
        {
            let direction = match (op, swapped) {
                (Operator::Eq, _) => {
                    keys.push((l, r));
                    continue;
                }
                (Operator::GtEq, false) | (Operator::LtEq, true) => {
                    Direction::Backward { strict: false }
                }
                (Operator::Gt, false) | (Operator::Lt, true) => {
                    Direction::Backward { strict: true }
                }
                (Operator::LtEq, false) | (Operator::GtEq, true) => {
                    Direction::Forward { strict: false }
                }
                (Operator::Lt, false) | (Operator::Gt, true) => Direction::Forward { strict: true },
                _ => return Err(unsupported_condition(&condition)),
            };
            if time.is_some() {
                return Err(Error::InvalidJoinCondition(format!(
                    "ASOF JOIN takes exactly one inequality between its two sides; {condition} is a second one"
                )));
            }
            time = Some((l, direction, r));
            continue;
        }
        match side(&condition, &left_schema, &right_schema) {
            Side::Left | Side::Neither => left_filters.push(condition),
            Side::Right => right_filters.push(condition),
            Side::Both => return Err(unsupported_condition(&condition)),
        }
    }
    let Some((left_time, direction, right_time)) = time else {
        return Err(Error::InvalidJoinCondition(
            "ASOF JOIN needs an inequality between the two sides' times, e.g. s.ts >= r.ts"
                .to_string(),
        ));
    };

    let time_type = left_time
        .get_type(&left_schema)
        .map_err(Error::from_datafusion)?;
    let right_type = right_time
        .get_type(&right_schema)
        .map_err(Error::from_datafusion)?;
    if !is_time_type(&time_type) || !same_time_type(&time_type, &right_type) {
        return Err(Error::DatatypeMismatch(format!(
            "ASOF JOIN compares times: both sides must be timestamps, dates or integers of one type, not {} and {}",
            type_name(&time_type),
            type_name(&right_type),
        )));
    }
    for (l, r) in &keys {
        let lt = l.get_type(&left_schema).map_err(Error::from_datafusion)?;
        let rt = r.get_type(&right_schema).map_err(Error::from_datafusion)?;
        if lt != rt {
            return Err(Error::DatatypeMismatch(format!(
                "ASOF JOIN keys {l} and {r} have different types: {} and {}",
                type_name(&lt),
                type_name(&rt),
            )));
        }
    }

    let Expr::ScalarFunction(ScalarFunction { args, .. }) = marker else {
        return Err(Error::internal("AS OF marker is not a function call"));
    };
    let [tolerance, ttl, tie]: [Expr; 3] = args
        .try_into()
        .map_err(|_| Error::internal("AS OF marker takes three arguments"))?;
    let mut bounds = Vec::new();
    for (what, limit) in [("TOLERANCE", tolerance), ("TTL", ttl)] {
        if let Some(value) = constant(&limit, what)? {
            let value = validate_limit(what, value, &time_type)?;
            let op = match direction {
                Direction::Backward { .. } => Operator::Minus,
                Direction::Forward { .. } => Operator::Plus,
            };
            bounds.push(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(left_time.clone()),
                op,
                Box::new(lit(value)),
            )));
        }
    }
    let tie = match tie {
        Expr::Literal(value, _) if value.is_null() => None,
        tie => Some(tie),
    };

    let mut left = join.left;
    let mut left_filter = None;
    if let Some(predicate) = conjunction(left_filters) {
        match kind {
            AsOfJoinKind::Inner => {
                left = Arc::new(LogicalPlan::Filter(
                    Filter::try_new(predicate, left).map_err(Error::from_datafusion)?,
                ));
            }
            AsOfJoinKind::Left => left_filter = Some(predicate),
        }
    }
    let right = match conjunction(right_filters) {
        // Conditions on the right side choose which rows are candidates.
        Some(predicate) => LogicalPlan::Filter(
            Filter::try_new(predicate, Arc::new(right)).map_err(Error::from_datafusion)?,
        ),
        None => right,
    };
    AsOfJoin::try_new(
        left,
        Arc::new(right),
        kind,
        keys,
        left_time,
        right_time,
        direction,
        bounds,
        tie,
        left_filter,
    )
    .map_err(Error::from_datafusion)
}

/// PostgreSQL's name of the type a value of `data_type` has.
fn type_name(data_type: &DataType) -> String {
    crate::pgtypes::pg_type(data_type).name().to_string()
}

fn unsupported_condition(condition: &Expr) -> Error {
    Error::FeatureNotSupported(format!(
        "ASOF JOIN conditions must be key equalities between the two sides, one inequality on time, \
         or conditions on one side; {condition} is none of these"
    ))
}

fn is_time_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

/// Timestamps compare as UTC instants whatever their zone label.
fn same_time_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Timestamp(ua, _), DataType::Timestamp(ub, _)) => ua == ub,
        _ => a == b,
    }
}

/// The value of a TOLERANCE or TTL argument of the marker, if given.
fn constant(expr: &Expr, what: &str) -> Result<Option<ScalarValue>, Error> {
    match expr {
        Expr::Literal(value, _) if value.is_null() => Ok(None),
        Expr::Literal(value, _) => Ok(Some(value.clone())),
        Expr::Cast(cast) => constant(&cast.expr, what),
        other => Err(Error::FeatureNotSupported(format!(
            "{what} must be a constant, not {other}"
        ))),
    }
}

fn validate_limit(
    what: &str,
    value: ScalarValue,
    time_type: &DataType,
) -> Result<ScalarValue, Error> {
    let negative = match &value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            v.months < 0 || v.days < 0 || v.nanoseconds < 0
        }
        ScalarValue::IntervalDayTime(Some(v)) => v.days < 0 || v.milliseconds < 0,
        ScalarValue::IntervalYearMonth(Some(v)) => *v < 0,
        other => other
            .clone()
            .cast_to(&DataType::Int64)
            .ok()
            .is_some_and(|v| matches!(v, ScalarValue::Int64(Some(n)) if n < 0)),
    };
    if negative {
        return Err(Error::InvalidParameterValue(format!(
            "{what} must not be negative"
        )));
    }
    let is_interval = matches!(value.data_type(), DataType::Interval(_));
    match time_type {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            if is_interval {
                Ok(value)
            } else {
                Err(Error::DatatypeMismatch(format!(
                    "{what} for {} times must be an interval such as INTERVAL '1 hour'",
                    type_name(time_type)
                )))
            }
        }
        _ => {
            if is_interval || !value.data_type().is_integer() {
                return Err(Error::DatatypeMismatch(format!(
                    "{what} for integer times must be an integer"
                )));
            }
            value
                .cast_to(time_type)
                .map_err(|e| Error::InvalidParameterValue(format!("{what}: {e}")))
        }
    }
}

/// Pushes the conditions of a filter above an AS OF join that read only
/// the spine below it (each spine row's match does not depend on other
/// spine rows), and conditions on the spine's keys to the right side too
/// (a right row with another key matches nothing). Conditions on the
/// right side stay above: they would change which row is the latest.
#[derive(Debug, Default)]
pub struct PushFiltersBelowAsOf;

impl OptimizerRule for PushFiltersBelowAsOf {
    fn name(&self) -> &str {
        "featuredb_push_filters_below_asof"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DFResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = &plan else {
            return Ok(Transformed::no(plan));
        };
        // Through a projection of plain columns (as the optimizer leaves
        // between a WHERE and the join), which is rebuilt on top.
        let (projection, below) = match filter.input.as_ref() {
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                (Some(p), p.input.as_ref())
            }
            other => (None, other),
        };
        let LogicalPlan::Extension(extension) = below else {
            return Ok(Transformed::no(plan));
        };
        let Some(node) = extension.node.as_any().downcast_ref::<AsOfJoin>() else {
            return Ok(Transformed::no(plan));
        };
        let left_schema = node.left.schema();
        let right_schema = node.right.schema();
        let mut push_left = Vec::new();
        let mut push_right = Vec::new();
        let mut keep = Vec::new();
        for condition in split_conjunction_owned(filter.predicate.clone()) {
            let spine_only = side(&condition, left_schema, right_schema) == Side::Left
                && !condition.is_volatile();
            if !spine_only {
                keep.push(condition);
                continue;
            }
            if let Some(on_right) = on_right_keys(&condition, node) {
                push_right.push(on_right);
            }
            push_left.push(condition);
        }
        if push_left.is_empty() {
            return Ok(Transformed::no(plan));
        }
        let mut left = node.left.clone();
        if let Some(predicate) = conjunction(push_left) {
            left = Arc::new(LogicalPlan::Filter(Filter::try_new(predicate, left)?));
        }
        let mut right = node.right.clone();
        if let Some(predicate) = conjunction(push_right) {
            right = Arc::new(LogicalPlan::Filter(Filter::try_new(predicate, right)?));
        }
        let pushed = LogicalPlan::Extension(Extension {
            node: Arc::new(node.with_inputs(left, right)?),
        });
        let pushed = match projection {
            Some(p) => {
                LogicalPlan::Projection(Projection::try_new(p.expr.clone(), Arc::new(pushed))?)
            }
            None => pushed,
        };
        Ok(Transformed::yes(match conjunction(keep) {
            Some(predicate) => LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(pushed))?),
            None => pushed,
        }))
    }
}

/// `condition` on the right side's keys, if it reads only spine key
/// columns that are equated with right-side columns of the same type.
fn on_right_keys(condition: &Expr, node: &AsOfJoin) -> Option<Expr> {
    let mapping: Vec<(&Column, &Column)> = node
        .keys
        .iter()
        .filter_map(|(l, r)| match (l, r) {
            (Expr::Column(l), Expr::Column(r)) => Some((l, r)),
            _ => None,
        })
        .collect();
    let columns = condition.column_refs();
    if columns.is_empty()
        || !columns
            .iter()
            .all(|c| mapping.iter().any(|(l, _)| *l == *c))
    {
        return None;
    }
    condition
        .clone()
        .transform(|e| {
            Ok(match &e {
                Expr::Column(c) => match mapping.iter().find(|(l, _)| *l == c) {
                    Some((_, r)) => Transformed::yes(Expr::Column((*r).clone())),
                    None => Transformed::no(e),
                },
                _ => Transformed::no(e),
            })
        })
        .ok()
        .map(|t| t.data)
}

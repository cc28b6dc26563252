//! Which views are windowed, and their windowed features: parsed from
//! the view's query and checked (see the module above).

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, NamedWindowExpr, Query,
    SelectItem, SetExpr, WindowFrameBound, WindowFrameUnits, WindowSpec, WindowType,
};
use featuredb_catalog::{ColumnType, FeatureViewVersion};

use crate::error::{Error, Result};
use crate::features::temporal::parse_query;
use crate::pgtypes::datetime::parse_interval;

/// The aggregates a windowed feature may compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    CountRows,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    StddevSamp,
    StddevPop,
    VarSamp,
    VarPop,
}

impl WindowFunction {
    fn of(name: &str, star: bool) -> Option<Self> {
        Some(match (name, star) {
            ("count", true) => Self::CountRows,
            ("count", false) => Self::Count,
            ("sum", false) => Self::Sum,
            ("avg" | "mean", false) => Self::Avg,
            ("min", false) => Self::Min,
            ("max", false) => Self::Max,
            ("stddev" | "stddev_samp", false) => Self::StddevSamp,
            ("stddev_pop", false) => Self::StddevPop,
            ("variance" | "var_samp" | "var", false) => Self::VarSamp,
            ("var_pop", false) => Self::VarPop,
            _ => return None,
        })
    }

    /// The aggregate function's SQL name.
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::CountRows | Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::StddevSamp => "stddev_samp",
            Self::StddevPop => "stddev_pop",
            Self::VarSamp => "var_samp",
            Self::VarPop => "var_pop",
        }
    }

    /// Whether an empty window gives 0 (counts) rather than NULL.
    pub fn zero_when_empty(self) -> bool {
        matches!(self, Self::CountRows | Self::Count)
    }
}

/// One windowed feature: a column of the view.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowFeature {
    /// The view's column.
    pub name: String,
    pub function: WindowFunction,
    /// The base query's column holding the argument (`None`: `count(*)`).
    pub argument: Option<String>,
    /// The window's span, in microseconds.
    pub width_micros: i64,
}

/// A windowed view's parts.
#[derive(Debug, Clone)]
pub struct WindowedView {
    /// The view's query without its window functions: its other columns
    /// and the window arguments, one row per source row.
    pub base_query: String,
    pub features: Vec<WindowFeature>,
    /// The widest window, in microseconds.
    pub widest_micros: i64,
}

/// The prefix of the base query's argument columns.
pub const ARGUMENT_PREFIX: &str = "featuredb_window_arg_";

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidDefinition {
        message: message.into(),
        detail: None,
    }
}

/// The windowed parts of a view's stored query, or `None` when it has no
/// sliding-window frame (an ordinary view).
pub fn windowed_view(view: &FeatureViewVersion) -> Result<Option<WindowedView>> {
    let query = parse_query(&view.query)?;
    windowed_query(&query, &view.keys, &view.timestamp)
}

/// [`windowed_view`] for a query (whose key columns and event time are
/// `keys` and `timestamp`).
pub fn windowed_query(
    query: &Query,
    keys: &[String],
    timestamp: &str,
) -> Result<Option<WindowedView>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    let named: HashMap<String, &NamedWindowExpr> = select
        .named_window
        .iter()
        .map(|d| (d.0.value.to_lowercase(), &d.1))
        .collect();
    let resolve = |over: &WindowType| -> Result<WindowSpec> {
        let mut spec = match over {
            WindowType::WindowSpec(spec) => spec.clone(),
            WindowType::NamedWindow(name) => named_spec(&named, &name.value, 0)?,
        };
        // `OVER (w ...)`: a named window refined in place.
        if let Some(base) = spec.window_name.take() {
            let inherited = named_spec(&named, &base.value, 0)?;
            if spec.partition_by.is_empty() {
                spec.partition_by = inherited.partition_by;
            }
            if spec.order_by.is_empty() {
                spec.order_by = inherited.order_by;
            }
            if spec.window_frame.is_none() {
                spec.window_frame = inherited.window_frame;
            }
        }
        Ok(spec)
    };

    // Is any frame a sliding window over an interval?
    let mut sliding = false;
    for item in &select.projection {
        let _ = ast::visit_expressions(item, |e| {
            if let Expr::Function(f) = e
                && let Some(over) = &f.over
                && let Ok(spec) = resolve(over)
                && spec.window_frame.as_ref().is_some_and(|frame| {
                    frame.units == WindowFrameUnits::Range
                        && matches!(&frame.start_bound, WindowFrameBound::Preceding(Some(n)) if matches!(n.as_ref(), Expr::Interval(_)))
                })
            {
                sliding = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        });
    }
    if !sliding {
        return Ok(None);
    }
    let grouped = !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if query.with.is_some() || grouped || select.having.is_some() {
        return Err(invalid(
            "a view with windowed features computes them from its rows: it cannot also use \
             WITH, GROUP BY or HAVING",
        ));
    }

    let mut base = query.clone();
    let SetExpr::Select(base_select) = base.body.as_mut() else {
        unreachable!("checked above");
    };
    base_select.named_window.clear();
    let mut features = Vec::new();
    let mut arguments: Vec<(String, String)> = Vec::new(); // (expr text, column)
    let mut projection = Vec::new();
    for item in &select.projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(expr) => (expr, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            other => {
                projection.push(other.clone());
                continue;
            }
        };
        let Expr::Function(function) = expr else {
            if contains_window_function(expr) {
                return Err(invalid(format!(
                    "a windowed feature must be a whole column, `aggregate(x) OVER w AS name`: {expr}"
                )));
            }
            projection.push(item.clone());
            continue;
        };
        let Some(over) = &function.over else {
            projection.push(item.clone());
            continue;
        };
        let name = function.name.to_string().to_lowercase();
        let (star, argument) = window_argument(&function.args, &name)?;
        let window_function = WindowFunction::of(&name, star).ok_or_else(|| {
            Error::FeatureNotSupported(format!(
                "{name}() is not supported as a windowed feature; windowed features compute \
                 count, sum, avg, min, max, stddev or variance"
            ))
        })?;
        if function.filter.is_some() {
            return Err(Error::FeatureNotSupported(
                "FILTER on a windowed feature is not supported; filter the view's rows instead"
                    .into(),
            ));
        }
        let spec = resolve(over)?;
        let width_micros = check_spec(&spec, keys, timestamp, &name)?;
        let Some(alias) = alias else {
            return Err(invalid(format!(
                "windowed feature {function} needs a name: {function} AS name"
            )));
        };
        let column = match argument {
            None => None,
            Some(argument) => {
                let text = argument.to_string();
                let column = match arguments.iter().find(|(t, _)| *t == text) {
                    Some((_, column)) => column.clone(),
                    None => {
                        let column = format!("{ARGUMENT_PREFIX}{}", arguments.len() + 1);
                        projection.push(SelectItem::ExprWithAlias {
                            expr: argument.clone(),
                            alias: ast::Ident::new(&column),
                        });
                        arguments.push((text, column.clone()));
                        column
                    }
                };
                Some(column)
            }
        };
        features.push(WindowFeature {
            name: featuredb_sql::names::normalize_ident(alias),
            function: window_function,
            argument: column,
            width_micros,
        });
    }
    base_select.projection = projection;
    let widest_micros = features.iter().map(|f| f.width_micros).max().unwrap_or(0);
    Ok(Some(WindowedView {
        base_query: base.to_string(),
        features,
        widest_micros,
    }))
}

fn named_spec(
    named: &HashMap<String, &NamedWindowExpr>,
    name: &str,
    depth: usize,
) -> Result<WindowSpec> {
    match named.get(&name.to_lowercase()) {
        Some(NamedWindowExpr::WindowSpec(spec)) => Ok(spec.clone()),
        Some(NamedWindowExpr::NamedWindow(other)) if depth < 8 => {
            named_spec(named, &other.value, depth + 1)
        }
        _ => Err(invalid(format!("window \"{name}\" does not exist"))),
    }
}

fn contains_window_function(expr: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(expr, |e| {
        if let Expr::Function(f) = e
            && f.over.is_some()
        {
            found = true;
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    found
}

/// `(count(*)?, the one argument)` of a window function call.
fn window_argument<'a>(
    args: &'a FunctionArguments,
    name: &str,
) -> Result<(bool, Option<&'a Expr>)> {
    let FunctionArguments::List(list) = args else {
        return Err(invalid(format!("{name}() needs an argument")));
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return Err(Error::FeatureNotSupported(format!(
            "{name}(DISTINCT …) and other argument clauses are not supported in windowed features"
        )));
    }
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => Ok((true, None)),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))] => Ok((false, Some(expr))),
        _ => Err(invalid(format!(
            "{name}() of a windowed feature takes one argument"
        ))),
    }
}

/// Checks a sliding window's specification; returns its width in µs.
fn check_spec(spec: &WindowSpec, keys: &[String], timestamp: &str, function: &str) -> Result<i64> {
    let ident = |e: &Expr| match e {
        Expr::Identifier(i) => Some(featuredb_sql::names::normalize_ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(featuredb_sql::names::normalize_ident),
        _ => None,
    };
    let windowing = |message: String| Error::WindowingError(message);
    let mut partition: Vec<String> = spec.partition_by.iter().filter_map(ident).collect();
    partition.sort();
    let mut expected: Vec<String> = keys.to_vec();
    expected.sort();
    if partition.len() != spec.partition_by.len() || partition != expected {
        return Err(windowing(format!(
            "the window of {function}() must be PARTITION BY the view's key ({})",
            keys.join(", ")
        )));
    }
    let ordered_by_time = matches!(spec.order_by.as_slice(),
        [order] if ident(&order.expr).as_deref() == Some(timestamp) && order.options.asc != Some(false));
    if !ordered_by_time {
        return Err(windowing(format!(
            "the window of {function}() must be ORDER BY the view's event time ({timestamp})"
        )));
    }
    let Some(frame) = &spec.window_frame else {
        return Err(windowing(format!(
            "the window of {function}() needs a frame: RANGE BETWEEN INTERVAL '…' PRECEDING AND CURRENT ROW"
        )));
    };
    let end_is_now = matches!(frame.end_bound, None | Some(WindowFrameBound::CurrentRow));
    let width = match (&frame.units, &frame.start_bound) {
        (WindowFrameUnits::Range, WindowFrameBound::Preceding(Some(width))) if end_is_now => {
            interval_micros(width)
        }
        _ => None,
    };
    match width {
        Some(width) if width > 0 => Ok(width),
        _ => Err(windowing(format!(
            "the window of {function}() must be RANGE BETWEEN INTERVAL '…' PRECEDING AND CURRENT \
             ROW, with a positive interval of days, hours, minutes or seconds (found {} {} \
             PRECEDING)",
            frame.units,
            match &frame.start_bound {
                WindowFrameBound::Preceding(Some(n)) => n.to_string(),
                other => other.to_string(),
            }
        ))),
    }
}

/// A fixed interval's length in microseconds (a day is 24 hours); `None`
/// for months, years or anything that is not an interval literal.
fn interval_micros(expr: &Expr) -> Option<i64> {
    let Expr::Interval(interval) = expr else {
        return None;
    };
    let Expr::Value(value) = interval.value.as_ref() else {
        return None;
    };
    let ast::Value::SingleQuotedString(text) = &value.value else {
        return None;
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{text} {field}"),
        None => text.clone(),
    };
    let (months, days, micros) = parse_interval(&text)?;
    if months != 0 {
        return None;
    }
    (days as i64)
        .checked_mul(86_400_000_000)?
        .checked_add(micros)
}

/// Whether a windowed view's event time can bound windows: a timestamp.
pub fn check_event_time(view: &FeatureViewVersion) -> Result<()> {
    match view.timestamp_type() {
        Some(ColumnType::Timestamp | ColumnType::TimestampTz) => Ok(()),
        _ => Err(Error::WindowingError(format!(
            "windowed features need a timestamp event time; {} is not one",
            view.timestamp
        ))),
    }
}

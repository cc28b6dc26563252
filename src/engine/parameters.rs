//! Typing a statement's parameters as PostgreSQL does where DataFusion
//! does not: the types a client declares, parameters that appear only in
//! casts or in `= ANY($n)`, the placeholders of `INSERT … VALUES`, and the
//! values bound to them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{self, ArrayElemTypeDef, ExactNumberInfo, TimezoneInfo};

use crate::error::{Error, Result};

/// SQL type names for parameter types a client declared, so that DataFusion
/// plans with them (`PREPARE p(BIGINT) AS …`).
pub(crate) fn sql_type(data_type: &DataType) -> Option<ast::DataType> {
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
pub(crate) fn type_values_placeholders(
    statement: &mut ast::Statement,
    declared: &[Option<DataType>],
) {
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

/// Placeholders have the types the planner gave them (an INSERT's take the
/// types of the columns they fill), which may differ from the types the
/// client declared and sent (psycopg sends a small Python int as int2, a
/// float as float8 for a numeric column): the values are converted to the
/// placeholders' types, as PostgreSQL assigns or coerces them.
pub(crate) fn cast_to_placeholder_types(
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
pub(crate) fn parameter_cast_types(
    plan: &LogicalPlan,
) -> Result<std::collections::HashMap<String, DataType>> {
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
pub(crate) fn parameter_any_types(
    plan: &LogicalPlan,
) -> Result<std::collections::HashMap<String, DataType>> {
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

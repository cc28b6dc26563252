//! Recognising a lookup in a query's syntax tree: one relation, a WHERE
//! that pins every key column exactly once (`key = $n | literal`, or for a
//! one-column key `key IN (…)` or `key = ANY($n)`), and nothing else.

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, GroupByExpr, Query, SelectItem, SetExpr, TableFactor, Value,
};
use featuredb_sql::names::normalize_ident;

/// Where a key value comes from.
#[derive(Debug, Clone)]
pub(super) enum ValueRef {
    /// `$n` (0-based index).
    Param(usize),
    Literal(ScalarValue),
}

/// The keys a lookup reads.
#[derive(Debug, Clone)]
pub(super) enum KeyMatch {
    /// One value per key column, in key order.
    One(Vec<ValueRef>),
    /// `key IN (…)` on a one-column key.
    List(Vec<ValueRef>),
    /// `key = ANY($n)` on a one-column key.
    Array(usize),
}

pub(super) fn column_name(expr: &Expr, qualifiers: &[String]) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(normalize_ident(ident)),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
            let qualifier = normalize_ident(&parts[0]);
            qualifiers
                .contains(&qualifier)
                .then(|| normalize_ident(&parts[1]))
        }
        Expr::Nested(inner) => column_name(inner, qualifiers),
        _ => None,
    }
}

pub(super) fn value_ref(expr: &Expr) -> Option<ValueRef> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                (n >= 1).then(|| ValueRef::Param(n - 1))
            }
            Value::Number(n, _) => Some(ValueRef::Literal(
                n.parse::<i64>()
                    .map(|v| ScalarValue::Int64(Some(v)))
                    .or_else(|_| n.parse::<f64>().map(|v| ScalarValue::Float64(Some(v))))
                    .ok()?,
            )),
            Value::SingleQuotedString(s) => {
                Some(ValueRef::Literal(ScalarValue::Utf8(Some(s.clone()))))
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match value_ref(expr)? {
            ValueRef::Literal(ScalarValue::Int64(Some(v))) => {
                Some(ValueRef::Literal(ScalarValue::Int64(Some(-v))))
            }
            ValueRef::Literal(ScalarValue::Float64(Some(v))) => {
                Some(ValueRef::Literal(ScalarValue::Float64(Some(-v))))
            }
            _ => None,
        },
        Expr::Nested(inner) => value_ref(inner),
        _ => None,
    }
}

pub(super) fn conjuncts<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

/// The keys a WHERE clause pins, if it pins every key column exactly once
/// and says nothing else.
pub(super) fn key_match(
    selection: &Expr,
    keys: &[String],
    qualifiers: &[String],
) -> Option<KeyMatch> {
    let mut parts = Vec::new();
    conjuncts(selection, &mut parts);
    if keys.len() == 1 && parts.len() == 1 {
        match parts[0] {
            Expr::InList {
                expr,
                list,
                negated: false,
            } if column_name(expr, qualifiers).as_ref() == Some(&keys[0]) => {
                let values = list.iter().map(value_ref).collect::<Option<Vec<_>>>()?;
                return Some(KeyMatch::List(values));
            }
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                is_some: false,
            } if column_name(left, qualifiers).as_ref() == Some(&keys[0]) => {
                return match value_ref(right)? {
                    ValueRef::Param(n) => Some(KeyMatch::Array(n)),
                    ValueRef::Literal(_) => None,
                };
            }
            _ => {}
        }
    }
    let mut values: Vec<Option<ValueRef>> = vec![None; keys.len()];
    for part in parts {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = part
        else {
            return None;
        };
        let (column, value) = match (
            column_name(left, qualifiers),
            column_name(right, qualifiers),
        ) {
            (Some(column), None) => (column, value_ref(right)?),
            (None, Some(column)) => (column, value_ref(left)?),
            _ => return None,
        };
        let index = keys.iter().position(|k| *k == column)?;
        if values[index].is_some() {
            return None;
        }
        values[index] = Some(value);
    }
    values
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(KeyMatch::One)
}

/// The SELECT of a lookup-shaped query: one relation, a WHERE, nothing else.
pub(super) fn lookup_shape(
    query: &Query,
) -> Option<(&ast::Select, &ast::ObjectName, Option<String>)> {
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
        || !query.locks.is_empty()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let simple = select.distinct.is_none()
        && select.top.is_none()
        && select.into.is_none()
        && select.from.len() == 1
        && select.from[0].joins.is_empty()
        && select.lateral_views.is_empty()
        && select.having.is_none()
        && select.qualify.is_none()
        && select.named_window.is_empty()
        && select.selection.is_some()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if !simple {
        return None;
    }
    let TableFactor::Table {
        name,
        alias,
        args: None,
        version: None,
        with_hints,
        partitions,
        ..
    } = &select.from[0].relation
    else {
        return None;
    };
    if !with_hints.is_empty() || !partitions.is_empty() {
        return None;
    }
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return None;
    }
    Some((
        select,
        name,
        alias.as_ref().map(|a| normalize_ident(&a.name)),
    ))
}

/// `*` or `relation.*` without options.
pub(super) fn is_whole_row(item: &SelectItem, qualifiers: &[String]) -> bool {
    match item {
        SelectItem::Wildcard(options) => options_empty(options),
        SelectItem::QualifiedWildcard(
            ast::SelectItemQualifiedWildcardKind::ObjectName(q),
            options,
        ) => {
            options_empty(options)
                && q.0.len() == 1
                && q.0[0].as_ident().map(normalize_ident).as_ref() == qualifiers.first()
        }
        _ => false,
    }
}

pub(super) fn options_empty(options: &ast::WildcardAdditionalOptions) -> bool {
    options.opt_ilike.is_none()
        && options.opt_exclude.is_none()
        && options.opt_except.is_none()
        && options.opt_replace.is_none()
        && options.opt_rename.is_none()
}

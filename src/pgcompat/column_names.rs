//! Result column names as PostgreSQL chooses them.
//!
//! DataFusion names an unaliased expression after its text (`Int64(1)`,
//! `count(*)`, `sum(t.x)`); PostgreSQL names it `?column?`, `count`, `sum`
//! (its FigureColname rules). Clients see these names (pandas columns, ORM
//! attributes), so the wire layer reports PostgreSQL's. Renaming happens
//! only in what is described to the client; plans are untouched, which
//! matters because PostgreSQL allows duplicate output names and DataFusion
//! does not.
//!
//! For the same reason a client's `SELECT a, a` or `INSERT … SELECT x, x`
//! is planned with the later duplicates aliased apart
//! ([`with_unique_output_names`]); the client still sees PostgreSQL's
//! names, which come from the statement as written. Stored definitions
//! (views, CREATE TABLE AS) are not rewritten: their column names must be
//! unique, as in PostgreSQL.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Function, Ident, ObjectNamePart, Query, SelectItem, SetExpr, Statement, Value,
};
use featuredb_sql::names::normalize_ident;

/// PostgreSQL's names for a query's `width` output columns, where they
/// differ from what the planner reports (`None` keeps the planner's name).
pub fn postgres_column_names(query: &Query, width: usize) -> Vec<Option<String>> {
    let mut names = vec![None; width];
    let Some(items) = first_select_items(&query.body) else {
        return names;
    };
    let wildcard = items.iter().position(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let wildcards = items
        .iter()
        .filter(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        })
        .count();
    if wildcards > 1 {
        // Positions after the second wildcard cannot be known from the text.
        return names;
    }
    for (index, item) in items.iter().enumerate() {
        let position = match wildcard {
            Some(w) if index > w => width.checked_sub(items.len() - index),
            _ => Some(index),
        };
        let Some(position) = position.filter(|p| *p < width) else {
            continue;
        };
        match item {
            SelectItem::UnnamedExpr(expr) => names[position] = Some(figure_name(expr).0),
            SelectItem::ExprWithAlias { alias, .. } => {
                names[position] = Some(normalize_ident(alias))
            }
            _ => {}
        }
    }
    names
}

/// PostgreSQL's names for the columns a query's select list spells out,
/// without planning it; empty when a wildcard makes the list incomplete.
pub fn explicit_column_names(query: &Query) -> Vec<Option<String>> {
    let Some(items) = first_select_items(&query.body) else {
        return Vec::new();
    };
    let has_wildcard = items.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    if has_wildcard {
        return Vec::new();
    }
    postgres_column_names(query, items.len())
}

/// `statement` (a query, or an INSERT's source query) with each select
/// list item whose output name may repeat an earlier item's given an
/// alias of its own; `None` when no item needs one. What may repeat: the
/// same column name (`a`, `t.a`), the same expression text (`1, 1`), the
/// same alias; with a wildcard, any plain column (the wildcard's columns
/// are not known here). An alias too many is harmless.
pub fn with_unique_output_names(statement: &Statement) -> Option<Statement> {
    let body = match statement {
        Statement::Query(query) => &query.body,
        Statement::Insert(insert) => &insert.source.as_ref()?.body,
        _ => return None,
    };
    if !has_repeats(body) {
        return None;
    }
    let mut statement = statement.clone();
    let body = match &mut statement {
        Statement::Query(query) => &mut query.body,
        Statement::Insert(insert) => &mut insert.source.as_mut()?.body,
        _ => return None,
    };
    alias_repeats(body);
    Some(statement)
}

fn has_repeats(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => !repeated_items(&select.projection).is_empty(),
        SetExpr::Query(query) => has_repeats(&query.body),
        SetExpr::SetOperation { left, right, .. } => has_repeats(left) || has_repeats(right),
        _ => false,
    }
}

fn alias_repeats(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for index in repeated_items(&select.projection) {
                let alias = Ident::with_quote('"', format!("?featuredb column {}?", index + 1));
                let item = &mut select.projection[index];
                *item = match std::mem::replace(item, SelectItem::Wildcard(Default::default())) {
                    SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                        SelectItem::ExprWithAlias { expr, alias }
                    }
                    other => other,
                };
            }
        }
        SetExpr::Query(query) => alias_repeats(&mut query.body),
        SetExpr::SetOperation { left, right, .. } => {
            alias_repeats(left);
            alias_repeats(right);
        }
        _ => {}
    }
}

/// The positions of the items [`with_unique_output_names`] aliases.
fn repeated_items(items: &[SelectItem]) -> Vec<usize> {
    let is_wildcard = |item: &SelectItem| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    };
    let wildcards = items.iter().filter(|item| is_wildcard(item)).count();
    if wildcards > 1 {
        // PostgreSQL's names for the items after the second wildcard are
        // not known from the text: an alias would show (see
        // `postgres_column_names`).
        return Vec::new();
    }
    let mut seen = HashSet::new();
    let mut repeated = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let (name, plain_column) = match item {
            SelectItem::UnnamedExpr(expr @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_))) => {
                (figure_name(expr).0, true)
            }
            SelectItem::UnnamedExpr(expr) => (expr.to_string().to_lowercase(), false),
            SelectItem::ExprWithAlias { alias, .. } => (normalize_ident(alias), false),
            _ => continue,
        };
        if !seen.insert(name) || (plain_column && wildcards > 0) {
            repeated.push(index);
        }
    }
    repeated
}

/// The first column name that a query's select list spells out twice, if
/// any: a table made from the query (CREATE TABLE AS) cannot have it, and
/// PostgreSQL says so (42701) before DataFusion's planner would refuse the
/// repeat in its own words.
pub fn repeated_column_name(query: &Query) -> Option<String> {
    let mut seen = HashSet::new();
    explicit_column_names(query)
        .into_iter()
        .flatten()
        .find(|name| !seen.insert(name.clone()))
}

/// The select list that names a query's columns: for set operations, the
/// leftmost SELECT's.
fn first_select_items(body: &SetExpr) -> Option<&Vec<SelectItem>> {
    match body {
        SetExpr::Select(select) => Some(&select.projection),
        SetExpr::Query(query) => first_select_items(&query.body),
        SetExpr::SetOperation { left, .. } => first_select_items(left),
        _ => None,
    }
}

/// A name and how strongly the expression determines it (PostgreSQL: 2 for
/// names from columns and functions, 1 for type names, 0 for `?column?`).
fn figure_name(expr: &Expr) -> (String, u8) {
    match expr {
        Expr::Identifier(ident) => (normalize_ident(ident), 2),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .map(|ident| (normalize_ident(ident), 2))
            .unwrap_or_else(unnamed),
        Expr::Function(function) => (function_name(function), 2),
        Expr::Nested(inner) => figure_name(inner),
        Expr::Cast {
            expr, data_type, ..
        } => {
            let (name, strength) = figure_name(expr);
            if strength > 1 {
                (name, strength)
            } else {
                (type_name(data_type), 1)
            }
        }
        Expr::Case { .. } => ("case".to_string(), 2),
        Expr::Array(_) => ("array".to_string(), 2),
        Expr::Exists { .. } => ("exists".to_string(), 2),
        Expr::Subquery(query) => first_select_items(&query.body)
            .and_then(|items| items.first())
            .map(|item| match item {
                SelectItem::UnnamedExpr(expr) => figure_name(expr),
                SelectItem::ExprWithAlias { alias, .. } => (normalize_ident(alias), 2),
                _ => unnamed(),
            })
            .unwrap_or_else(unnamed),
        Expr::Extract { .. } => ("extract".to_string(), 2),
        Expr::Substring { .. } => ("substring".to_string(), 2),
        Expr::Position { .. } => ("position".to_string(), 2),
        Expr::Trim { .. } => ("btrim".to_string(), 2),
        Expr::Ceil { .. } => ("ceil".to_string(), 2),
        Expr::Floor { .. } => ("floor".to_string(), 2),
        Expr::Interval(_) => ("interval".to_string(), 1),
        Expr::TypedString(typed) => (type_name(&typed.data_type), 1),
        Expr::Value(value) => match &value.value {
            Value::Boolean(_) => ("bool".to_string(), 1),
            _ => unnamed(),
        },
        _ => unnamed(),
    }
}

fn unnamed() -> (String, u8) {
    ("?column?".to_string(), 0)
}

fn function_name(function: &Function) -> String {
    function
        .name
        .0
        .last()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => normalize_ident(ident),
            other => other.to_string().to_lowercase(),
        })
        .unwrap_or_else(|| "?column?".to_string())
}

/// PostgreSQL's internal name of a type, as a cast names its column.
fn type_name(data_type: &DataType) -> String {
    use datafusion::sql::sqlparser::ast::TimezoneInfo;
    match data_type {
        DataType::SmallInt(_) | DataType::Int2(_) => "int2",
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4",
        DataType::BigInt(_) | DataType::Int8(_) => "int8",
        DataType::Real | DataType::Float4 => "float4",
        DataType::DoublePrecision | DataType::Float8 | DataType::Double(_) | DataType::Float(_) => {
            "float8"
        }
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => "numeric",
        DataType::Bool | DataType::Boolean => "bool",
        DataType::Text | DataType::String(_) => "text",
        DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::CharVarying(_) => {
            "varchar"
        }
        DataType::Char(_) | DataType::Character(_) => "bpchar",
        DataType::Bytea => "bytea",
        DataType::Date => "date",
        DataType::Time(_, _) => "time",
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        DataType::Timestamp(_, _) => "timestamp",
        DataType::Interval { .. } => "interval",
        DataType::JSON => "json",
        DataType::JSONB => "jsonb",
        DataType::Uuid => "uuid",
        DataType::Regclass => "regclass",
        DataType::Array(_) => "array",
        DataType::Custom(name, _) => {
            return name
                .0
                .last()
                .map(|p| p.to_string().to_lowercase())
                .unwrap_or_else(|| "?column?".to_string());
        }
        _ => "?column?",
    }
    .to_string()
}

/// The schema with PostgreSQL's column names applied.
pub fn rename_columns(schema: &SchemaRef, names: &[Option<String>]) -> SchemaRef {
    if names.iter().all(Option::is_none) {
        return schema.clone();
    }
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| match names.get(index).cloned().flatten() {
                Some(name) => field.as_ref().clone().with_name(name),
                None => field.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use featuredb_sql::parse_statement;

    use super::*;

    fn names(sql: &str, width: usize) -> Vec<Option<String>> {
        let featuredb_sql::Statement::Query(statement) = parse_statement(sql).unwrap() else {
            panic!("not a query");
        };
        let Statement::Query(query) = *statement else {
            panic!("not a select");
        };
        postgres_column_names(&query, width)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn figures_names_like_postgres() {
        assert_eq!(
            names(
                "select 1, count(*), sum(t.x), t.y, x + 1, 1::int, x::text, 'a' as b, case when true then 1 end from t",
                9
            ),
            vec![
                s("?column?"),
                s("count"),
                s("sum"),
                s("y"),
                s("?column?"),
                s("int4"),
                s("x"),
                s("b"),
                s("case")
            ]
        );
    }

    fn aliased(sql: &str) -> Option<String> {
        let featuredb_sql::Statement::Query(statement) = parse_statement(sql).unwrap() else {
            panic!("not a query");
        };
        with_unique_output_names(&statement).map(|s| s.to_string())
    }

    #[test]
    fn repeated_output_names_are_aliased_apart() {
        assert_eq!(aliased("select a, b from t"), None);
        assert_eq!(
            aliased("select a, t.a, 1, 1, b as a from t").unwrap(),
            r#"SELECT a, t.a AS "?featuredb column 2?", 1, 1 AS "?featuredb column 4?", b AS "?featuredb column 5?" FROM t"#
        );
        assert_eq!(
            aliased("select *, a, a + 1 from t").unwrap(),
            r#"SELECT *, a AS "?featuredb column 2?", a + 1 FROM t"#
        );
        assert_eq!(
            aliased("insert into u select a, a from t").unwrap(),
            r#"INSERT INTO u SELECT a, a AS "?featuredb column 2?" FROM t"#
        );
        assert_eq!(aliased("select *, t.*, a from t"), None);
    }

    #[test]
    fn wildcards_keep_planner_names() {
        assert_eq!(
            names("select count(*), *, 1 from t", 5),
            vec![s("count"), None, None, None, s("?column?")]
        );
        assert_eq!(names("select 1 union all select 2", 1), vec![s("?column?")]);
    }
}

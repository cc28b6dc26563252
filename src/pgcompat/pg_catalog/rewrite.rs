//! Catalog queries as PostgreSQL accepts them, rewritten into what
//! DataFusion plans. Runs on every query before names are resolved; the
//! rules only touch constructs DataFusion would otherwise reject.

use std::ops::ControlFlow;
use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArguments, SetExpr, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

static COMPATIBILITY: LazyLock<PostgresCompatibilityParser> =
    LazyLock::new(PostgresCompatibilityParser::new);

/// Applies featuredb's rules, then datafusion-pg-catalog's.
pub fn rewrite(statement: &mut ast::Statement) {
    let _ = statement.visit(&mut CatalogRules);
    let taken = std::mem::replace(
        statement,
        ast::Statement::Commit {
            chain: false,
            end: false,
            modifier: None,
        },
    );
    *statement = COMPATIBILITY.rewrite(taken);
}

/// Some catalog queries of psql and Grafana that no rule makes plannable
/// are known by their text and replaced whole with equivalents
/// (datafusion-pg-catalog's list: e.g. psql's row-policy, extended
/// statistics and publication queries of `\d table`, all empty for
/// featuredb). Returns the replacement when `sql` is one of them.
pub fn known_query(sql: &str) -> Option<ast::Statement> {
    if sql.contains("typeinfo_tree") && sql.contains("attrtypoids") {
        // Generic dialect: `INT UNSIGNED` (an oid array) is not PostgreSQL syntax.
        return Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::GenericDialect {},
            ASYNCPG_TYPE_LOOKUP,
        )
        .ok()?
        .pop();
    }
    // The list replaces Grafana's search-path walk with '' (no schema is
    // on the path); `in_search_path` answers it properly instead.
    if !mentions_pg_catalog(sql) || sql.contains("current_setting('search_path')") {
        return None;
    }
    let mut replaced = COMPATIBILITY.parse(sql).ok()?;
    let original = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    if replaced.len() != 1 || original.len() != 1 {
        return None;
    }
    let original = COMPATIBILITY.rewrite(original.into_iter().next()?);
    let replaced = replaced.remove(0);
    // Compared as text: the replacement's tokens carry no source spans.
    let known = replaced.to_string() != original.to_string();
    (known && matches!(replaced, ast::Statement::Query(_))).then_some(replaced)
}

/// asyncpg's type introspection (`WITH RECURSIVE typeinfo_tree …`, run
/// for every array and non-core type it meets) walks domains, composites
/// and ranges with a recursive query DataFusion cannot plan. featuredb has
/// only built-in types, so the walk is at most an array and its element:
/// the same columns, answered for the requested types and their elements.
/// Its parameter is an `oid[]` and its array columns `text[]`: the array
/// types asyncpg decodes without introspecting them (any other would send
/// it into introspection again).
const ASYNCPG_TYPE_LOOKUP: &str = "
WITH typeinfo AS (
    SELECT
        t.oid AS oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind,
        CAST(NULL AS INT) AS basetype, t.typelem AS elemtype, elem_t.typdelim AS elemdelim,
        CAST(NULL AS INT) AS range_subtype, CAST(NULL AS TEXT[]) AS attrtypoids,
        CAST(NULL AS TEXT[]) AS attrnames, elem_t.typname AS elem_name
    FROM pg_catalog.pg_type AS t
    INNER JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_type elem_t
        ON t.typlen = -1 AND t.typelem <> 0 AND t.typelem = elem_t.oid
),
requested AS (
    SELECT typeinfo.*, 0 AS depth FROM typeinfo
    WHERE array_has(CAST($1 AS INT UNSIGNED[]), CAST(typeinfo.oid AS INT UNSIGNED))
),
elements AS (
    SELECT typeinfo.*, 1 AS depth FROM typeinfo
    WHERE typeinfo.oid IN (SELECT elemtype FROM requested WHERE elemtype <> 0)
)
SELECT DISTINCT
    oid, ns, name, kind, basetype, elemtype, elemdelim, range_subtype,
    attrtypoids, attrnames, depth,
    CAST(NULL AS TEXT) AS basetype_name, elem_name AS elemtype_name,
    CAST(NULL AS TEXT) AS range_subtype_name
FROM (SELECT * FROM requested UNION ALL SELECT * FROM elements) AS tree
ORDER BY depth DESC
";

/// The expression rules, applied bottom-up: the search-path walk,
/// `::regclass`, `generate_subscripts`, scalar subqueries over the catalog,
/// and `ARRAY(SELECT …)`.
///
/// `ARRAY(SELECT …)`, which DataFusion reads as a call of a function named
/// `array`: becomes `(SELECT array_agg(v) FROM (SELECT …) AS t(v))`.
///
/// psql's `\d+` also asks for `ARRAY(SELECT … FROM unnest(tc.reloptions))`,
/// a subquery over a column of the outer row that DataFusion cannot plan;
/// featuredb relations have no storage options, so that form is an empty
/// (NULL) text array.
struct CatalogRules;

impl VisitorMut for CatalogRules {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        if let Some(replacement) = in_search_path(expr)
            .or_else(|| regclass_of_text(expr))
            .or_else(|| catalog_scalar_subquery(expr))
            .or_else(|| catalog_array_literal(expr))
        {
            *expr = replacement;
            return ControlFlow::Continue(());
        }
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        if let Some(replacement) = generate_subscripts(function) {
            *expr = replacement;
            return ControlFlow::Continue(());
        }
        let FunctionArguments::Subquery(query) = &function.args else {
            return ControlFlow::Continue(());
        };
        if !function.name.to_string().eq_ignore_ascii_case("array") {
            return ControlFlow::Continue(());
        }
        let replacement = if reads_a_table_function(query) || reads_no_policies(query) {
            "CAST(NULL AS TEXT[])".to_string()
        } else if let Some(aggregate) = array_aggregate(query) {
            aggregate
        } else {
            format!("(SELECT array_agg(featuredb_array.v) FROM ({query}) AS featuredb_array(v))")
        };
        if let Ok(parsed) = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&replacement)
            .and_then(|mut parser| parser.parse_expr())
        {
            *expr = parsed;
        }
        ControlFlow::Continue(())
    }
}

/// Grafana asks whether a schema is on the search path with
/// `x IN (SELECT … trim(s[i]) … FROM generate_series(array_lower(…),
/// array_upper(…)) AS i, string_to_array(current_setting('search_path'),
/// ',') s)`: a function in FROM over a non-constant argument, inside a
/// select list, neither of which DataFusion plans. It means
/// `array_has(current_schemas(false), x)`.
fn in_search_path(expr: &Expr) -> Option<Expr> {
    let Expr::InSubquery {
        expr: needle,
        subquery,
        negated,
    } = expr
    else {
        return None;
    };
    let SetExpr::Select(select) = subquery.body.as_ref() else {
        return None;
    };
    let from: Vec<String> = select.from.iter().map(|f| f.to_string()).collect();
    let from = from.join(", ");
    if !(from.starts_with("generate_series(")
        && from.contains("string_to_array(current_setting('search_path')"))
    {
        return None;
    }
    let not = if *negated { "NOT " } else { "" };
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("{not}array_has(current_schemas(false), {needle})"))
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

/// `x::regclass`: the relation's id, looked up by `to_regclass` from `x`
/// as text — a name (`'schema.relation'`, a parameter, `format('%I.%I',
/// …)`) or an id already (`c.oid::regclass` stays the id). NULL instead of
/// an error when there is no such relation.
fn regclass_of_text(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        expr: inner,
        data_type,
        ..
    } = expr
    else {
        return None;
    };
    let type_name = data_type.to_string().to_ascii_lowercase();
    if type_name != "regclass" && type_name != "pg_catalog.regclass" {
        return None;
    }
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("to_regclass(CAST({inner} AS TEXT))"))
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

/// `generate_subscripts(array, dim)`, which SQLAlchemy pairs with
/// `unnest(array)` in one select list: becomes
/// `unnest(range(1, array_length(array, dim) + 1))`, which DataFusion
/// unnests side by side with the other, as PostgreSQL does.
fn generate_subscripts(function: &ast::Function) -> Option<Expr> {
    let name = function.name.to_string().to_ascii_lowercase();
    if name != "generate_subscripts" && name != "pg_catalog.generate_subscripts" {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [array, dimension] = list.args.as_slice() else {
        return None;
    };
    let replacement = format!(
        "unnest(range(1, coalesce(CAST(array_length({array}, {dimension}) AS BIGINT), 0) + 1))"
    );
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&replacement)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

/// A scalar subquery reading catalog tables by a key of the outer row, as
/// psql's `\dT` does (`(SELECT c.relkind = 'c' FROM pg_class c WHERE
/// c.oid = t.typrelid)`): DataFusion plans correlated scalar subqueries
/// only when they aggregate. Catalog keys are unique, so the one row's
/// value is `first_value` of it. Only subqueries that read nothing but
/// catalog tables and do not aggregate already are touched: elsewhere a
/// second row must stay an error.
fn catalog_scalar_subquery(expr: &Expr) -> Option<Expr> {
    let Expr::Subquery(query) = expr else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let plain = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && select.selection.is_some()
        && select.having.is_none()
        && select.distinct.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        && select.projection.len() == 1
        && !select.from.is_empty()
        && select
            .from
            .iter()
            .all(|from| from.joins.is_empty() && is_catalog_table(&from.relation));
    if !plain {
        return None;
    }
    let (value, alias) = match &select.projection[0] {
        ast::SelectItem::UnnamedExpr(value) => (value, None),
        ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
        _ => return None,
    };
    if calls_an_aggregate(value) {
        return None;
    }
    let text = format!("first_value({value})");
    let aggregated = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_expr())
        .ok()?;
    let mut query = query.clone();
    if let SetExpr::Select(select) = query.body.as_mut() {
        select.projection[0] = match alias {
            Some(alias) => ast::SelectItem::ExprWithAlias {
                expr: aggregated,
                alias,
            },
            None => ast::SelectItem::UnnamedExpr(aggregated),
        };
    }
    Some(Expr::Subquery(query))
}

/// `ARRAY(SELECT x FROM … [WHERE …] [ORDER BY …])` as the aggregate over
/// the same rows, `(SELECT array_agg(x ORDER BY …) FROM … WHERE …)`: unlike
/// a derived table, DataFusion plans it when the WHERE refers to the outer
/// row (psql's `\dT+` lists each type's enum labels that way).
fn array_aggregate(query: &ast::Query) -> Option<String> {
    if query.with.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let plain = select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        && select.projection.len() == 1
        && !select.from.is_empty();
    if !plain {
        return None;
    }
    let value = match &select.projection[0] {
        ast::SelectItem::UnnamedExpr(value)
        | ast::SelectItem::ExprWithAlias { expr: value, .. } => value,
        _ => return None,
    };
    if calls_an_aggregate(value) {
        return None;
    }
    // An ORDER BY naming the output alias means nothing inside array_agg.
    let alias = match &select.projection[0] {
        ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_ascii_lowercase()),
        _ => None,
    };
    if let (
        Some(alias),
        Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(exprs),
            ..
        }),
    ) = (&alias, &query.order_by)
        && exprs.iter().any(|order| {
            matches!(&order.expr, Expr::Identifier(ident) if ident.value.to_ascii_lowercase() == *alias)
        })
    {
        return None;
    }
    let order = match &query.order_by {
        None => String::new(),
        Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(exprs),
            ..
        }) => format!(
            " ORDER BY {}",
            exprs
                .iter()
                .map(|order| {
                    // `ORDER BY 1` names the (only) output column.
                    let ordinal = matches!(&order.expr, Expr::Value(v)
                        if matches!(&v.value, ast::Value::Number(n, _) if n == "1"));
                    if ordinal {
                        let mut by_value = order.clone();
                        by_value.expr = value.clone();
                        by_value.to_string()
                    } else {
                        order.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(_) => return None,
    };
    let from = select
        .from
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let filter = select
        .selection
        .as_ref()
        .map(|w| format!(" WHERE {w}"))
        .unwrap_or_default();
    Some(format!(
        "(SELECT array_agg({value}{order}) FROM {from}{filter})"
    ))
}

/// `polroles <> '{0}'` (psql's `\dp`): PostgreSQL reads the literal as an
/// array of the column's type; DataFusion compares a list with text. For
/// the catalog's array columns the literal becomes `make_array(…)`.
fn catalog_array_literal(expr: &Expr) -> Option<Expr> {
    const ARRAY_COLUMNS: &[&str] = &[
        "polroles",
        "relacl",
        "reloptions",
        "attacl",
        "attoptions",
        "datacl",
        "nspacl",
        "proacl",
        "typacl",
        "proconfig",
        "setconfig",
    ];
    let Expr::BinaryOp { left, op, right } = expr else {
        return None;
    };
    if !matches!(op, ast::BinaryOperator::Eq | ast::BinaryOperator::NotEq) {
        return None;
    }
    let column_name = |e: &Expr| match e {
        Expr::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    };
    let literal = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(text)
                if text.starts_with('{') && text.ends_with('}') =>
            {
                Some(text[1..text.len() - 1].to_string())
            }
            _ => None,
        },
        _ => None,
    };
    let (column, elements, column_left) = match (column_name(left), literal(right)) {
        (Some(column), Some(elements)) => (column, elements, true),
        _ => match (literal(left), column_name(right)) {
            (Some(elements), Some(column)) => (column, elements, false),
            _ => return None,
        },
    };
    if !ARRAY_COLUMNS.contains(&column.as_str()) {
        return None;
    }
    let items: Vec<String> = elements
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.parse::<i64>().is_ok() {
                e.to_string()
            } else {
                format!("'{}'", e.trim_matches('"').replace('\'', "''"))
            }
        })
        .collect();
    let array = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("make_array({})", items.join(", ")))
        .and_then(|mut parser| parser.parse_expr())
        .ok()?;
    let (left, right) = if column_left {
        (left.clone(), Box::new(array))
    } else {
        (Box::new(array), right.clone())
    };
    Some(Expr::BinaryOp {
        left,
        op: op.clone(),
        right,
    })
}

/// `pg_catalog.x`, `information_schema.x`, or an unqualified `pg_x`.
fn is_catalog_table(relation: &TableFactor) -> bool {
    let TableFactor::Table {
        name, args: None, ..
    } = relation
    else {
        return false;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect();
    match parts.as_slice() {
        [table] => CATALOG_TABLES.contains(&table.as_str()),
        [schema, _] => schema == "pg_catalog" || schema == "information_schema",
        _ => false,
    }
}

/// The `pg_catalog` relations an unqualified name may mean in the catalog
/// rules (a user's table called `pg_events` is not one of them).
const CATALOG_TABLES: &[&str] = &[
    "pg_am",
    "pg_attrdef",
    "pg_attribute",
    "pg_auth_members",
    "pg_authid",
    "pg_cast",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_conversion",
    "pg_database",
    "pg_depend",
    "pg_description",
    "pg_enum",
    "pg_event_trigger",
    "pg_extension",
    "pg_foreign_table",
    "pg_index",
    "pg_indexes",
    "pg_inherits",
    "pg_language",
    "pg_matviews",
    "pg_namespace",
    "pg_opclass",
    "pg_operator",
    "pg_opfamily",
    "pg_partitioned_table",
    "pg_policy",
    "pg_proc",
    "pg_publication",
    "pg_range",
    "pg_rewrite",
    "pg_roles",
    "pg_sequence",
    "pg_settings",
    "pg_shdescription",
    "pg_stat_user_tables",
    "pg_statistic_ext",
    "pg_tables",
    "pg_tablespace",
    "pg_trigger",
    "pg_ts_config",
    "pg_type",
    "pg_user",
    "pg_views",
];

/// Whether `expr` calls an aggregate function itself (not inside a
/// subquery of its own).
fn calls_an_aggregate(expr: &Expr) -> bool {
    struct Finder {
        depth: usize,
    }
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _query: &ast::Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _query: &ast::Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            const AGGREGATES: &[&str] = &[
                "count",
                "sum",
                "min",
                "max",
                "avg",
                "array_agg",
                "string_agg",
                "bool_and",
                "bool_or",
                "every",
                "first_value",
                "last_value",
            ];
            if self.depth == 0
                && let Expr::Function(function) = expr
            {
                let name = function.name.to_string().to_ascii_lowercase();
                let name = name.rsplit('.').next().unwrap_or(&name);
                if AGGREGATES.contains(&name) {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    ast::Visit::visit(expr, &mut Finder { depth: 0 }).is_break()
}

fn mentions_pg_catalog(sql: &str) -> bool {
    sql.as_bytes()
        .windows(b"pg_catalog".len())
        .any(|w| w.eq_ignore_ascii_case(b"pg_catalog"))
}

/// `ARRAY(SELECT … FROM pg_policy …)` (psql's `\dp` lists row security
/// policies, with subqueries nested in it that DataFusion cannot
/// decorrelate): featuredb has no policies, so it is an empty array.
fn reads_no_policies(query: &ast::Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|from| {
        matches!(&from.relation, TableFactor::Table { name, .. }
            if name.0.last().and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_policy")))
    })
}

fn reads_a_table_function(query: &ast::Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select.from.iter().any(|from| {
        matches!(
            &from.relation,
            TableFactor::Table { args: Some(_), .. }
                | TableFactor::Function { .. }
                | TableFactor::UNNEST { .. }
        )
    })
}

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
    let _ = statement.visit(&mut ArraySubqueries);
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

/// `ARRAY(SELECT …)`, which DataFusion reads as a call of a function named
/// `array`: becomes `(SELECT array_agg(v) FROM (SELECT …) AS t(v))`.
///
/// psql's `\d+` also asks for `ARRAY(SELECT … FROM unnest(tc.reloptions))`,
/// a subquery over a column of the outer row that DataFusion cannot plan;
/// featuredb relations have no storage options, so that form is an empty
/// (NULL) text array.
struct ArraySubqueries;

impl VisitorMut for ArraySubqueries {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        if let Some(replacement) = in_search_path(expr).or_else(|| regclass_of_text(expr)) {
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
        let replacement = if reads_a_table_function(query) {
            "CAST(NULL AS TEXT[])".to_string()
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

fn mentions_pg_catalog(sql: &str) -> bool {
    sql.as_bytes()
        .windows(b"pg_catalog".len())
        .any(|w| w.eq_ignore_ascii_case(b"pg_catalog"))
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

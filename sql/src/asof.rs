//! ASOF join syntax. sqlparser parses only Snowflake's form,
//! `ASOF JOIN r MATCH_CONDITION (cond) ON …`; featuredb also accepts
//!
//! - DuckDB's `ASOF [LEFT | INNER] JOIN r ON s.k = r.k AND s.ts >= r.ts`
//!   and `… USING (k, ts)` (the last USING column is the time, `>=`),
//! - `ASOF LEFT JOIN` with Snowflake's `MATCH_CONDITION` too,
//! - `TOLERANCE INTERVAL '…'` (or a number, for integer times) after the
//!   join condition: matches older than that are no matches.
//!
//! Every form is rewritten, at the token level, into Snowflake's, with the
//! join kind and tolerance carried by a marker call at the head of the
//! match condition: `MATCH_CONDITION (featuredb_asof_spec('left', tol) AND
//! (cond))`, or `MATCH_CONDITION (featuredb_asof_spec('left', tol))` when
//! the inequality is in ON. [`AsOfSpec::take`] reads it back from the AST.
//!
//! `ASOF JOIN` alone is an inner join (as in DuckDB; Snowflake's keeps
//! unmatched rows, which is `ASOF LEFT JOIN` here).

use std::borrow::Cow;

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, FunctionArg, FunctionArgExpr, Value};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{ParseError, ParseErrorKind};
use crate::tokens::{Tokens, apply};

/// The marker function carrying an ASOF join's kind and tolerance.
pub const ASOF_SPEC_FUNCTION: &str = "featuredb_asof_spec";

/// Which spine rows an ASOF join returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOfKind {
    /// Only rows with a match.
    Inner,
    /// Every row, with NULLs where nothing matches.
    Left,
}

/// What the rewrite recorded about one ASOF join.
#[derive(Debug, Clone, PartialEq)]
pub struct AsOfSpec {
    pub kind: AsOfKind,
    /// How much older (or newer, for forward joins) a match may be.
    pub tolerance: Option<Expr>,
    /// The user's MATCH_CONDITION, if they wrote one.
    pub match_condition: Option<Expr>,
}

impl AsOfSpec {
    /// Splits a rewritten match condition into the spec and the user's
    /// condition; `None` if it was not written by [`rewrite`].
    pub fn take(match_condition: &Expr) -> Option<AsOfSpec> {
        let (marker, rest) = match match_condition {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => (left.as_ref(), Some(strip_nested(right))),
            other => (other, None),
        };
        let Expr::Function(function) = marker else {
            return None;
        };
        if !function
            .name
            .to_string()
            .eq_ignore_ascii_case(ASOF_SPEC_FUNCTION)
        {
            return None;
        }
        let datafusion::sql::sqlparser::ast::FunctionArguments::List(list) = &function.args else {
            return None;
        };
        let args: Vec<&Expr> = list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        let [kind, tolerance] = args.as_slice() else {
            return None;
        };
        let kind = match kind {
            Expr::Value(v) if v.value == Value::SingleQuotedString("left".into()) => AsOfKind::Left,
            _ => AsOfKind::Inner,
        };
        let tolerance = match tolerance {
            Expr::Value(v) if v.value == Value::Null => None,
            other => Some((*other).clone()),
        };
        Some(AsOfSpec {
            kind,
            tolerance,
            match_condition: rest.cloned(),
        })
    }
}

fn strip_nested(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => inner,
        other => other,
    }
}

const INTERVAL_UNITS: &[&str] = &[
    "year", "years", "month", "months", "week", "weeks", "day", "days", "hour", "hours", "minute",
    "minutes", "second", "seconds", "to",
];

/// Rewrites every ASOF join into Snowflake's form with a spec marker;
/// returns the text unchanged (borrowed) when there is none.
pub fn rewrite(sql: &str) -> Result<Cow<'_, str>, ParseError> {
    if !sql.to_ascii_lowercase().contains("asof") {
        return Ok(Cow::Borrowed(sql));
    }
    let tokens = Tokens::new(sql)?;
    let mut replacements = Vec::new();
    let mut k = 0;
    while k < tokens.significant.len() {
        let joins = ["join", "left", "inner", "right", "full", "cross", "outer"];
        if tokens.is_word(k, "asof") && joins.iter().any(|w| tokens.is_word(k + 1, w)) {
            k = rewrite_join(&tokens, k, &mut replacements)?;
        } else {
            k += 1;
        }
    }
    if replacements.is_empty() {
        return Ok(Cow::Borrowed(sql));
    }
    Ok(Cow::Owned(apply(sql, replacements)))
}

fn syntax_error(tokens: &Tokens, k: usize, message: &str) -> ParseError {
    ParseError {
        kind: ParseErrorKind::Syntax,
        message: format!("syntax error: {message}"),
        position: tokens.position(k),
    }
}

/// Rewrites the join starting at the ASOF word `k`; returns where to
/// continue scanning.
fn rewrite_join(
    tokens: &Tokens,
    asof: usize,
    replacements: &mut Vec<(usize, usize, String)>,
) -> Result<usize, ParseError> {
    let mut k = asof + 1;
    let kind = if tokens.is_word(k, "left") {
        k += 1;
        if tokens.is_word(k, "outer") {
            k += 1;
        }
        AsOfKind::Left
    } else if tokens.is_word(k, "inner") {
        k += 1;
        AsOfKind::Inner
    } else {
        AsOfKind::Inner
    };
    if !tokens.is_word(k, "join") {
        return Err(ParseError {
            kind: ParseErrorKind::Unsupported,
            message: "ASOF supports INNER and LEFT joins: write ASOF JOIN or ASOF LEFT JOIN"
                .to_string(),
            position: tokens.position(k),
        });
    }
    replacements.push((tokens.start(asof), tokens.end(k), "ASOF JOIN".to_string()));
    k += 1;

    // Scan the rest of this join clause at its own nesting level.
    let mut depth = 0i32;
    let mut condition_start = None; // ON / USING
    let mut match_condition = None; // (open, close) parentheses
    let mut tolerance = None;
    while let Some(token) = tokens.get(k) {
        match token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => break,
            Token::RParen => depth -= 1,
            Token::Comma | Token::SemiColon if depth == 0 => break,
            _ if depth > 0 => {}
            _ if tokens.is_word(k, "match_condition") && condition_start.is_none() => {
                if tokens.get(k + 1) != Some(&Token::LParen) {
                    return Err(syntax_error(
                        tokens,
                        k + 1,
                        "MATCH_CONDITION needs (condition)",
                    ));
                }
                let close = matching_paren(tokens, k + 1)
                    .ok_or_else(|| syntax_error(tokens, k + 1, "unbalanced parentheses"))?;
                match_condition = Some((k + 1, close));
                k = close + 1;
                continue;
            }
            _ if (tokens.is_word(k, "on") || tokens.is_word(k, "using"))
                && condition_start.is_none() =>
            {
                condition_start = Some(k);
            }
            _ if tokens.is_word(k, "tolerance") => {
                let end = tolerance_end(tokens, k)?;
                tolerance = Some(tokens.text(k + 1, end).trim().to_string());
                replacements.push((tokens.start(k), tokens.end(end), " ".to_string()));
                k = end + 1;
                continue;
            }
            _ if tokens.ends_from_item(k) => break,
            _ => {}
        }
        k += 1;
    }
    let spec = format!(
        "{ASOF_SPEC_FUNCTION}('{}', {})",
        match kind {
            AsOfKind::Left => "left",
            AsOfKind::Inner => "inner",
        },
        tolerance.as_deref().unwrap_or("NULL")
    );
    match (match_condition, condition_start) {
        // Already rewritten (a stored definition read back): as it is.
        (Some((open, _)), _) if tokens.is_word(open + 1, ASOF_SPEC_FUNCTION) => {}
        (Some((open, close)), _) => {
            replacements.push((
                tokens.start(open),
                tokens.end(open),
                format!("({spec} AND ("),
            ));
            replacements.push((tokens.start(close), tokens.end(close), "))".to_string()));
        }
        (None, Some(on)) => {
            replacements.push((
                tokens.start(on),
                tokens.start(on),
                format!("MATCH_CONDITION ({spec}) "),
            ));
        }
        (None, None) => {
            return Err(syntax_error(
                tokens,
                k,
                "ASOF JOIN needs a condition: ON … AND s.ts >= r.ts, USING (key, ts) or MATCH_CONDITION (…)",
            ));
        }
    }
    Ok(k)
}

/// The index of the parenthesis closing the one at `open`.
fn matching_paren(tokens: &Tokens, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut k = open;
    while let Some(token) = tokens.get(k) {
        match token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
        k += 1;
    }
    None
}

/// The last token of `TOLERANCE INTERVAL '…' [unit [TO unit]]` or
/// `TOLERANCE <number>` starting at `k`.
fn tolerance_end(tokens: &Tokens, k: usize) -> Result<usize, ParseError> {
    if tokens.is_word(k + 1, "interval") {
        if !matches!(tokens.get(k + 2), Some(Token::SingleQuotedString(_))) {
            return Err(syntax_error(
                tokens,
                k + 2,
                "TOLERANCE INTERVAL needs a quoted interval such as '1 hour'",
            ));
        }
        let mut end = k + 2;
        while INTERVAL_UNITS.iter().any(|u| tokens.is_word(end + 1, u)) {
            end += 1;
        }
        Ok(end)
    } else if matches!(tokens.get(k + 1), Some(Token::Number(..))) {
        Ok(k + 1)
    } else {
        Err(syntax_error(
            tokens,
            k + 1,
            "TOLERANCE needs an interval (INTERVAL '1 hour') or, for integer times, a number",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sql: &str) -> String {
        rewrite(sql).unwrap().into_owned()
    }

    #[test]
    fn duckdb_form_gets_a_marker_before_on() {
        assert_eq!(
            spec("SELECT * FROM s ASOF LEFT JOIN r ON s.k = r.k AND s.ts >= r.ts WHERE x"),
            "SELECT * FROM s ASOF JOIN r MATCH_CONDITION (featuredb_asof_spec('left', NULL)) ON s.k = r.k AND s.ts >= r.ts WHERE x"
        );
        assert_eq!(
            spec("SELECT * FROM s asof join (select * from r) AS r USING (k, ts)"),
            "SELECT * FROM s ASOF JOIN (select * from r) AS r MATCH_CONDITION (featuredb_asof_spec('inner', NULL)) USING (k, ts)"
        );
    }

    #[test]
    fn snowflake_form_and_tolerance() {
        assert_eq!(
            spec(
                "SELECT * FROM s ASOF JOIN r MATCH_CONDITION (s.ts >= r.ts) ON s.k = r.k TOLERANCE INTERVAL '1 day' ORDER BY 1"
            ),
            "SELECT * FROM s ASOF JOIN r MATCH_CONDITION (featuredb_asof_spec('inner', INTERVAL '1 day') AND (s.ts >= r.ts)) ON s.k = r.k   ORDER BY 1"
        );
        assert_eq!(
            spec(
                "SELECT 1 FROM s ASOF LEFT OUTER JOIN r ON left(s.k, 1) = r.k AND s.t > r.t TOLERANCE 10"
            ),
            "SELECT 1 FROM s ASOF JOIN r MATCH_CONDITION (featuredb_asof_spec('left', 10)) ON left(s.k, 1) = r.k AND s.t > r.t  "
        );
    }

    #[test]
    fn rewriting_twice_changes_nothing() {
        let once = spec("SELECT 1 FROM s ASOF LEFT JOIN r ON s.k = r.k AND s.t >= r.t TOLERANCE 5");
        assert_eq!(spec(&once), once);
    }

    #[test]
    fn reads_the_spec_back() {
        use crate::parser::parse_statement;
        use datafusion::sql::sqlparser::ast::{JoinOperator, SetExpr, Statement as Ast};
        let parsed = parse_statement(
            "SELECT * FROM s ASOF LEFT JOIN r MATCH_CONDITION (s.ts >= r.ts) ON s.k = r.k TOLERANCE INTERVAL '2' HOUR",
        )
        .unwrap();
        let crate::Statement::Query(query) = parsed else {
            panic!("not a query")
        };
        let Ast::Query(query) = *query else { panic!() };
        let SetExpr::Select(select) = *query.body else {
            panic!()
        };
        let JoinOperator::AsOf {
            match_condition, ..
        } = &select.from[0].joins[0].join_operator
        else {
            panic!("not an ASOF join")
        };
        let spec = AsOfSpec::take(match_condition).unwrap();
        assert_eq!(spec.kind, AsOfKind::Left);
        assert_eq!(spec.tolerance.unwrap().to_string(), "INTERVAL '2' HOUR");
        assert_eq!(spec.match_condition.unwrap().to_string(), "s.ts >= r.ts");
    }

    #[test]
    fn errors() {
        let err = rewrite("SELECT * FROM s ASOF RIGHT JOIN r ON true").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::Unsupported);
        assert_eq!(err.position, Some(22));
        let err = rewrite("SELECT * FROM s ASOF JOIN r WHERE true").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::Syntax);
        let err = rewrite("SELECT * FROM s ASOF JOIN r ON true TOLERANCE '1 day'").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::Syntax);
        // Strings and identifiers are left alone.
        let text = "SELECT 'asof join' AS \"asof\", asof FROM t";
        assert_eq!(spec(text), text);
    }
}

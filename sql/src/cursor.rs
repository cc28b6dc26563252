//! SQL-level cursors: `DECLARE name CURSOR FOR query`, `FETCH`, `CLOSE`.
//! Drivers use them for server-side (named) cursors that fetch a large
//! result a few rows at a time (psycopg's and psycopg2's named cursors,
//! pandas' chunked reads).

use datafusion::sql::sqlparser::ast;

use crate::error::ParseError;
use crate::names::normalize_ident;

#[derive(Debug, Clone, PartialEq)]
pub struct DeclareCursor {
    pub name: String,
    /// The query, as a `Statement::Query`.
    pub query: Box<ast::Statement>,
    /// `WITH HOLD`: the cursor outlives the transaction block.
    pub hold: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCount {
    Rows(u64),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchCursor {
    pub name: String,
    pub count: FetchCount,
}

/// `CLOSE name`, or `CLOSE ALL` (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseCursor(pub Option<String>);

pub fn declare_cursor(declares: &[ast::Declare]) -> Result<DeclareCursor, ParseError> {
    let [declare] = declares else {
        return Err(ParseError::unsupported(
            "DECLARE declares one cursor at a time",
        ));
    };
    let (Some(ast::DeclareType::Cursor), [name], Some(query)) = (
        &declare.declare_type,
        declare.names.as_slice(),
        &declare.for_query,
    ) else {
        return Err(ParseError::unsupported(
            "only DECLARE name CURSOR FOR query is supported",
        ));
    };
    if declare.binary == Some(true) {
        return Err(ParseError::unsupported("BINARY cursors are not supported"));
    }
    if declare.scroll == Some(true) {
        return Err(ParseError::unsupported(
            "SCROLL cursors are not supported: cursors only move forward",
        ));
    }
    Ok(DeclareCursor {
        name: normalize_ident(name),
        query: Box::new(ast::Statement::Query(query.clone())),
        hold: declare.hold == Some(true),
    })
}

pub fn fetch_cursor(
    name: &ast::Ident,
    direction: &ast::FetchDirection,
) -> Result<FetchCursor, ParseError> {
    use ast::FetchDirection as D;
    let count = match direction {
        D::Next | D::Forward { limit: None } => FetchCount::Rows(1),
        D::All | D::ForwardAll => FetchCount::All,
        D::Count { limit } | D::Forward { limit: Some(limit) } => match limit {
            ast::Value::Number(n, _) => n.parse::<u64>().map(FetchCount::Rows).map_err(|_| {
                ParseError::unsupported(
                    "FETCH counts must not be negative: cursors only move forward",
                )
            })?,
            other => {
                return Err(ParseError::syntax(format!("invalid FETCH count {other}")));
            }
        },
        other => {
            return Err(ParseError::unsupported(format!(
                "FETCH {other} is not supported: cursors only move forward"
            )));
        }
    };
    Ok(FetchCursor {
        name: normalize_ident(name),
        count,
    })
}

pub fn close_cursor(cursor: &ast::CloseCursor) -> CloseCursor {
    match cursor {
        ast::CloseCursor::All => CloseCursor(None),
        ast::CloseCursor::Specific { name } => CloseCursor(Some(normalize_ident(name))),
    }
}

//! Rewrites that give statements PostgreSQL's meaning where DataFusion's
//! differs, applied to the syntax tree before planning.
//!
//! Casting to text: DataFusion formats values with Arrow's display rules
//! (`2024-01-01T10:00:00Z`, `true`); PostgreSQL with its output functions
//! (`2024-01-01 10:00:00+00`, `true` for bool, shortest floats). `x::text`
//! and `CAST(x AS TEXT|VARCHAR)` become `pg_text(x)`, which prints exactly
//! what the wire protocol would send.
//!
//! Timestamp literals in PostgreSQL's input forms are rewritten into the
//! form Arrow's parser reads.
//!
//! `x AT TIME ZONE z` becomes a function call with PostgreSQL's meaning
//! (see `timestamps.rs`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, Statement, TimezoneInfo, TypedString, Value,
    visit_expressions_mut,
};

/// The function casts to text are rewritten to.
pub const PG_TEXT_FUNCTION: &str = "pg_text";

pub fn rewrite(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        // `x AT TIME ZONE z`: DataFusion's meaning differs (see timestamps).
        if let Expr::AtTimeZone {
            timestamp,
            time_zone,
        } = expr
        {
            let timestamp = std::mem::replace(
                timestamp.as_mut(),
                Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
            );
            let time_zone = std::mem::replace(
                time_zone.as_mut(),
                Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
            );
            *expr = call(
                super::timestamps::AT_TIME_ZONE_FUNCTION,
                vec![timestamp, time_zone],
            );
            return ControlFlow::<()>::Continue(());
        }
        normalize_timestamp_literal(expr);
        if let Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr: inner,
            data_type,
            format: None,
            ..
        } = expr
            && is_unbounded_text(data_type)
        {
            let argument = std::mem::replace(
                inner.as_mut(),
                Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
            );
            *expr = call(PG_TEXT_FUNCTION, vec![argument]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `TIMESTAMP[TZ] '…'` and `'…'::timestamp[tz]`: Arrow's parser wants
/// seconds and a `T` or space in set places; PostgreSQL accepts
/// `2024-05-01 10:00+02`, `2024-05-01`, … Such literals are rewritten
/// into the form Arrow reads, with the same meaning.
fn normalize_timestamp_literal(expr: &mut Expr) {
    let (data_type, value) = match expr {
        Expr::TypedString(TypedString {
            data_type, value, ..
        }) => (&*data_type, &mut value.value),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr: inner,
            data_type,
            format: None,
            ..
        } => match inner.as_mut() {
            Expr::Value(value) => (&*data_type, &mut value.value),
            _ => return,
        },
        _ => return,
    };
    let with_zone = match data_type {
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => true,
        DataType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone)
        | DataType::TimestampNtz(_) => false,
        _ => return,
    };
    if let Value::SingleQuotedString(text) = value
        && let Some(normalized) =
            crate::pgtypes::datetime::normalize_timestamp_literal(text, with_zone)
    {
        *text = normalized;
    }
}

fn call(function: &str, arguments: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(function)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: arguments
                .into_iter()
                .map(|argument| FunctionArg::Unnamed(FunctionArgExpr::Expr(argument)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn is_unbounded_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Text
            | DataType::String(None)
            | DataType::Varchar(None)
            | DataType::CharacterVarying(None)
            | DataType::CharVarying(None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_to_text_become_pg_text() {
        let featuredb_sql::Statement::Query(mut statement) = featuredb_sql::parse_statement(
            "SELECT ts::text, CAST(x AS VARCHAR), y::varchar(3), z::int FROM t",
        )
        .unwrap() else {
            panic!()
        };
        rewrite(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT pg_text(ts), pg_text(x), y::VARCHAR(3), z::INT FROM t"
        );
    }
}

//! Session and transaction control: SET, SHOW, RESET, BEGIN, COMMIT, ROLLBACK.

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, Set, UnaryOperator, Value, ValueWithSpan,
};

use crate::error::ParseError;
use crate::names::normalize_ident;

/// `SET name = value[, …]` / `SET name TO DEFAULT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStatement {
    /// Lower-cased parameter name (`timezone` for `SET TIME ZONE`).
    pub name: String,
    pub value: SetValue,
    /// `SET LOCAL`: accepted, applied for the rest of the session (there are
    /// no multi-statement transactions to scope it to).
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetValue {
    Default,
    /// The values as text; lists (`search_path`) keep one entry per item.
    Values(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShowStatement {
    All,
    Variable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetStatement {
    All,
    Variable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionStatement {
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT name`: statements commit on their own, so a savepoint
    /// only marks the block for `ROLLBACK TO` (clients such as SQLAlchemy
    /// and psycopg's nested transactions issue them).
    Savepoint(String),
    Release(String),
    RollbackTo(String),
}

/// Canonical spelling of multi-word parameter names.
pub fn canonical_parameter_name(words: &[String]) -> String {
    let joined = words.join(" ").to_lowercase();
    match joined.as_str() {
        "time zone" => "timezone".to_string(),
        "transaction isolation level" => "transaction_isolation".to_string(),
        "session authorization" => "session_authorization".to_string(),
        _ => words.join(".").to_lowercase(),
    }
}

fn name_of(object: &ObjectName) -> String {
    let words: Vec<String> = object
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => normalize_ident(ident),
            None => part.to_string(),
        })
        .collect();
    words.join(".")
}

pub(crate) fn set_statement(set: &Set) -> Result<SetStatement, ParseError> {
    match set {
        Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => Ok(SetStatement {
            name: name_of(variable),
            value: set_values(values)?,
            local: matches!(
                scope,
                Some(datafusion::sql::sqlparser::ast::ContextModifier::Local)
            ),
        }),
        Set::SetTimeZone { local, value } => Ok(SetStatement {
            name: "timezone".to_string(),
            value: set_values(std::slice::from_ref(value))?,
            local: *local,
        }),
        Set::SetNames { charset_name, .. } => Ok(SetStatement {
            name: "client_encoding".to_string(),
            value: SetValue::Values(vec![charset_name.value.clone()]),
            local: false,
        }),
        // `SET SESSION CHARACTERISTICS AS TRANSACTION …` (pgJDBC's
        // setTransactionIsolation) and `SET TRANSACTION …`: the session's or
        // the block's isolation level or read-only mode.
        Set::SetTransaction {
            modes,
            snapshot: None,
            session,
        } if modes.len() == 1 => {
            use datafusion::sql::sqlparser::ast::{TransactionAccessMode, TransactionMode};
            let prefix = if *session { "default_" } else { "" };
            let (name, value) = match &modes[0] {
                TransactionMode::IsolationLevel(level) => (
                    format!("{prefix}transaction_isolation"),
                    level.to_string().to_lowercase(),
                ),
                // Read-only transactions are not enforced, so they are not
                // accepted either.
                TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => {
                    return Err(ParseError::unsupported(
                        "read-only transactions are not supported",
                    ));
                }
                TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => {
                    (format!("{prefix}transaction_read_only"), "off".to_string())
                }
            };
            Ok(SetStatement {
                name,
                value: SetValue::Values(vec![value]),
                local: false,
            })
        }
        other => Err(ParseError::unsupported(format!("{other} is not supported"))),
    }
}

fn set_values(values: &[Expr]) -> Result<SetValue, ParseError> {
    if let [Expr::Identifier(ident)] = values
        && ident.quote_style.is_none()
        && ident.value.eq_ignore_ascii_case("default")
    {
        return Ok(SetValue::Default);
    }
    values
        .iter()
        .map(expr_text)
        .collect::<Result<Vec<_>, _>>()
        .map(SetValue::Values)
}

/// The text of a SET value: string literals unquoted, identifiers folded,
/// numbers as written, booleans as on/off.
fn expr_text(expr: &Expr) -> Result<String, ParseError> {
    match expr {
        Expr::Value(ValueWithSpan { value, .. }) => match value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::DoubleQuotedString(s) => Ok(s.clone()),
            Value::DollarQuotedString(s) => Ok(s.value.clone()),
            Value::Number(n, _) => Ok(n.to_string()),
            Value::Boolean(true) => Ok("on".to_string()),
            Value::Boolean(false) => Ok("off".to_string()),
            Value::Null => Ok(String::new()),
            other => Err(ParseError::syntax(format!("unexpected SET value {other}"))),
        },
        Expr::Identifier(ident) => Ok(normalize_ident(ident)),
        Expr::CompoundIdentifier(parts) => Ok(parts
            .iter()
            .map(normalize_ident)
            .collect::<Vec<_>>()
            .join(".")),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => Ok(format!("-{}", expr_text(expr)?)),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => expr_text(expr),
        // `SET TIME ZONE INTERVAL '+05:00' HOUR TO MINUTE` and similar.
        Expr::Interval(interval) => expr_text(&interval.value),
        other => Err(ParseError::syntax(format!("unexpected SET value {other}"))),
    }
}

pub(crate) fn show_statement(variable: &[Ident]) -> ShowStatement {
    let words: Vec<String> = variable.iter().map(normalize_ident).collect();
    if words.len() == 1 && words[0] == "all" {
        ShowStatement::All
    } else {
        ShowStatement::Variable(canonical_parameter_name(&words))
    }
}

pub(crate) fn reset_statement(reset: &datafusion::sql::sqlparser::ast::Reset) -> ResetStatement {
    match reset {
        datafusion::sql::sqlparser::ast::Reset::ALL => ResetStatement::All,
        datafusion::sql::sqlparser::ast::Reset::ConfigurationParameter(name) => {
            ResetStatement::Variable(name_of(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_statement;
    use crate::statement::Statement;

    fn set(sql: &str) -> SetStatement {
        match parse_statement(sql).unwrap() {
            Statement::Set(s) => s,
            other => panic!("not a set: {other:?}"),
        }
    }

    #[test]
    fn set_forms() {
        assert_eq!(
            set("SET search_path TO myschema, public").value,
            SetValue::Values(vec!["myschema".into(), "public".into()])
        );
        let tz = set("SET TIME ZONE 'Europe/Paris'");
        assert_eq!(tz.name, "timezone");
        assert_eq!(tz.value, SetValue::Values(vec!["Europe/Paris".into()]));
        assert_eq!(set("SET TimeZone = 'UTC'").name, "timezone");
        assert_eq!(
            set("SET extra_float_digits = 3").value,
            SetValue::Values(vec!["3".into()])
        );
        assert_eq!(
            set("SET extra_float_digits = -2").value,
            SetValue::Values(vec!["-2".into()])
        );
        assert_eq!(
            set("SET statement_timeout TO DEFAULT").value,
            SetValue::Default
        );
        assert!(set("SET LOCAL statement_timeout = '5s'").local);
        assert_eq!(
            set("SET datafusion.execution.batch_size = 1024").name,
            "datafusion.execution.batch_size"
        );
    }

    #[test]
    fn show_and_reset() {
        assert_eq!(
            parse_statement("SHOW TIME ZONE").unwrap(),
            Statement::Show(ShowStatement::Variable("timezone".into()))
        );
        assert_eq!(
            parse_statement("SHOW ALL").unwrap(),
            Statement::Show(ShowStatement::All)
        );
        assert_eq!(
            parse_statement("RESET search_path").unwrap(),
            Statement::Reset(ResetStatement::Variable("search_path".into()))
        );
        assert_eq!(
            parse_statement("RESET ALL").unwrap(),
            Statement::Reset(ResetStatement::All)
        );
        assert_eq!(
            parse_statement("reset time  zone;").unwrap(),
            Statement::Reset(ResetStatement::Variable("timezone".into()))
        );
    }

    #[test]
    fn transactions() {
        for (sql, expected) in [
            ("BEGIN", TransactionStatement::Begin),
            ("START TRANSACTION", TransactionStatement::Begin),
            (
                "BEGIN ISOLATION LEVEL READ COMMITTED",
                TransactionStatement::Begin,
            ),
            ("COMMIT", TransactionStatement::Commit),
            ("END", TransactionStatement::Commit),
            ("ROLLBACK", TransactionStatement::Rollback),
            ("ABORT", TransactionStatement::Rollback),
        ] {
            assert_eq!(
                parse_statement(sql).unwrap(),
                Statement::Transaction(expected),
                "{sql}"
            );
        }
    }
}

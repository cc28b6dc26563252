//! Errors as the client sees them: every [`Error`] becomes an ErrorResponse
//! with PostgreSQL's SQLSTATE, message and, where known, position, detail
//! and context. This is the one place SQLSTATEs are decided.

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};
use featuredb_sql::ParseErrorKind;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};

use crate::engine::Notice;
use crate::error::{BadCopyDataKind, Error};

/// The fields of an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<usize>,
    pub context: Option<String>,
}

impl ClientError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "ERROR",
            code,
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
            context: None,
        }
    }

    /// A protocol-level failure that ends the connection.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "FATAL",
            ..Self::new(code, message)
        }
    }

    pub fn into_response(self) -> ErrorResponse {
        let mut fields = vec![
            (b'S', self.severity.to_string()),
            (b'V', self.severity.to_string()),
            (b'C', self.code.to_string()),
            (b'M', self.message),
        ];
        if let Some(detail) = self.detail {
            fields.push((b'D', detail));
        }
        if let Some(hint) = self.hint {
            fields.push((b'H', hint));
        }
        if let Some(position) = self.position {
            fields.push((b'P', position.to_string()));
        }
        if let Some(context) = self.context {
            fields.push((b'W', context));
        }
        ErrorResponse::new(fields)
    }
}

pub fn notice_response(notice: &Notice) -> NoticeResponse {
    NoticeResponse::new(vec![
        (b'S', notice.severity.to_string()),
        (b'V', notice.severity.to_string()),
        (b'C', notice.code.to_string()),
        (b'M', notice.message.clone()),
    ])
}

/// Maps a server error to what the client sees.
pub fn client_error(error: &Error) -> ClientError {
    match error {
        Error::Parse(e) => {
            let code = match e.kind {
                ParseErrorKind::Syntax => "42601",
                ParseErrorKind::Unsupported => "0A000",
                ParseErrorKind::InvalidParameter => "22023",
                ParseErrorKind::InvalidName => "42602",
                ParseErrorKind::UndefinedType => "42704",
                ParseErrorKind::DuplicateColumn => "42701",
            };
            ClientError {
                position: e.position,
                ..ClientError::new(code, e.message.clone())
            }
        }
        Error::UndefinedTable { position, .. } => ClientError {
            position: *position,
            ..ClientError::new("42P01", error.to_string())
        },
        Error::UndefinedRelation { .. } => ClientError::new("42P01", error.to_string()),
        Error::UndefinedSchema(_) => ClientError::new("3F000", error.to_string()),
        Error::UndefinedObject { .. } => ClientError::new("42704", error.to_string()),
        Error::DuplicateObject { .. } => ClientError::new("42710", error.to_string()),
        Error::InvalidDefinition { detail, .. } => ClientError {
            detail: detail.clone(),
            ..ClientError::new("42P17", error.to_string())
        },
        Error::DependentObjectsExist { detail, .. } => ClientError {
            detail: Some(detail.clone()),
            hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".to_string()),
            ..ClientError::new("2BP01", error.to_string())
        },
        Error::DuplicateTable(_) => ClientError::new("42P07", error.to_string()),
        Error::WrongObjectType(_) => ClientError::new("42809", error.to_string()),
        Error::InvalidTableDefinition(_) => ClientError::new("42P16", error.to_string()),
        Error::DuplicateSchema(_) => ClientError::new("42P06", error.to_string()),
        Error::UndefinedColumn { .. } => ClientError::new("42703", error.to_string()),
        Error::DuplicateColumn(_) => ClientError::new("42701", error.to_string()),
        Error::DependentObjects { detail, .. } => ClientError {
            detail: Some(detail.clone()),
            hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".to_string()),
            ..ClientError::new("2BP01", error.to_string())
        },
        Error::NotNullViolation { .. } => ClientError::new("23502", error.to_string()),
        Error::StringTooLong { .. } => ClientError::new("22001", error.to_string()),
        Error::InvalidTextRepresentation { .. } => ClientError::new("22P02", error.to_string()),
        Error::NumericValueOutOfRange { .. } => ClientError::new("22003", error.to_string()),
        Error::InvalidDatetimeFormat { .. } => ClientError::new("22007", error.to_string()),
        Error::InvalidBinaryRepresentation { .. } => ClientError::new("22P03", error.to_string()),
        Error::BadCopyData {
            message,
            context,
            kind,
        } => ClientError {
            context: Some(context.clone()),
            ..ClientError::new(
                match kind {
                    BadCopyDataKind::Format => "22P04",
                    BadCopyDataKind::Value => "22P02",
                    BadCopyDataKind::OutOfRange => "22003",
                    BadCopyDataKind::DateTime => "22007",
                    BadCopyDataKind::Encoding => "22021",
                    BadCopyDataKind::NotNull => "23502",
                    BadCopyDataKind::TooLong => "22001",
                },
                message.clone(),
            )
        },
        Error::InvalidParameterValue(_) => ClientError::new("22023", error.to_string()),
        Error::UnknownSetting(_) => ClientError::new("42704", error.to_string()),
        Error::ReadOnlySetting(_) => ClientError::new("55P02", error.to_string()),
        Error::QueryCanceled | Error::StatementTimeout => {
            ClientError::new("57014", error.to_string())
        }
        Error::InFailedTransaction => ClientError::new("25P02", error.to_string()),
        Error::NoActiveTransaction(_) => ClientError::new("25P01", error.to_string()),
        Error::UndefinedSavepoint(_) => ClientError::new("3B001", error.to_string()),
        Error::DuplicateCursor(_) => ClientError::new("42P03", error.to_string()),
        Error::UndefinedCursor(_) => ClientError::new("34000", error.to_string()),
        Error::FeatureNotSupported(_) => ClientError::new("0A000", error.to_string()),
        Error::DatatypeMismatch(_) => ClientError::new("42804", error.to_string()),
        Error::InvalidName(_) => ClientError::new("42602", error.to_string()),
        Error::InvalidJoinCondition(_) => ClientError::new("42601", error.to_string()),
        Error::Protocol(_) => ClientError::new("08P01", error.to_string()),
        Error::UndefinedPreparedStatement(_) => ClientError::new("26000", error.to_string()),
        Error::UndefinedPortal(_) => ClientError::new("34000", error.to_string()),
        Error::InsufficientResources(_) => ClientError::new("53000", error.to_string()),
        Error::ProgramLimitExceeded(_) => ClientError::new("54000", error.to_string()),
        Error::DataFusion(e) => datafusion_error(e),
        Error::Iceberg(_) => ClientError::new("58030", error.to_string()),
        Error::Io { .. } | Error::OnlineStore(_) => ClientError::new("58030", error.to_string()),
        Error::ObjectInUse(_) => ClientError::new("55006", error.to_string()),
        Error::Internal(_) => ClientError::new("XX000", error.to_string()),
    }
}

/// DataFusion reports most user mistakes as planning errors with a message;
/// classify them into PostgreSQL's codes and wording.
fn datafusion_error(error: &DataFusionError) -> ClientError {
    match error {
        DataFusionError::Diagnostic(diagnostic, inner) => {
            let mut client = datafusion_error(inner);
            if client.position.is_none()
                && let Some(span) = diagnostic.span
            {
                // Diagnostics carry line/column; without the statement text
                // here, report them only for single-line statements.
                if span.start.line == 1 {
                    client.position = Some(span.start.column as usize);
                }
            }
            client
        }
        DataFusionError::Context(_, inner) => datafusion_error(inner),
        DataFusionError::Shared(inner) => datafusion_error(inner),
        DataFusionError::Collection(errors) if !errors.is_empty() => datafusion_error(&errors[0]),
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => client_error(ours),
            None => ClientError::new("XX000", inner.to_string()),
        },
        DataFusionError::SQL(e, _) => ClientError::new("42601", format!("syntax error: {e}")),
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { field, .. } => ClientError::new(
                "42703",
                format!("column \"{}\" does not exist", field.flat_name()),
            ),
            SchemaError::AmbiguousReference { field } => ClientError::new(
                "42702",
                format!("column reference \"{}\" is ambiguous", field.flat_name()),
            ),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => {
                ClientError::new("42701", e.to_string())
            }
        },
        DataFusionError::Plan(message) => plan_error(message),
        DataFusionError::NotImplemented(message) => {
            ClientError::new("0A000", format!("not supported: {message}"))
        }
        DataFusionError::ArrowError(e, _) => arrow_error(e),
        DataFusionError::ParquetError(e) => ClientError::new("XX001", e.to_string()),
        DataFusionError::ObjectStore(e) => ClientError::new("58030", e.to_string()),
        DataFusionError::IoError(e) => ClientError::new("58030", e.to_string()),
        DataFusionError::ResourcesExhausted(message) => {
            ClientError::new("53200", format!("out of memory: {message}"))
        }
        DataFusionError::Configuration(message) => ClientError::new("22023", message.clone()),
        DataFusionError::Execution(message) => execution_error(message),
        DataFusionError::Internal(message) => {
            ClientError::new("XX000", format!("internal error: {message}"))
        }
        other => ClientError::new("XX000", other.strip_backtrace()),
    }
}

/// Arrow's "Can't cast value 40000 to type Int16" is PostgreSQL's
/// "smallint out of range" (22003).
fn out_of_range(message: &str) -> Option<ClientError> {
    let rest = message.split("Can't cast value ").nth(1)?;
    let target = rest.split(" to type ").nth(1)?.trim();
    let type_name = match target {
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        _ if target.starts_with("Decimal") => "numeric",
        _ => return Some(ClientError::new("22003", message)),
    };
    Some(ClientError::new(
        "22003",
        format!("{type_name} out of range"),
    ))
}

fn plan_error(message: &str) -> ClientError {
    if let Some(error) = out_of_range(message) {
        return error;
    }
    let lower = message.to_lowercase();
    if lower.contains("not found") && lower.starts_with("table") {
        return ClientError::new("42P01", message);
    }
    if lower.contains("placeholder") || lower.contains("no value found for placeholder") {
        return ClientError::new("42P02", message);
    }
    if lower.contains("invalid function")
        || lower.contains("no function matches")
        || lower.contains("failed to coerce arguments")
        || lower.contains("does not support")
    {
        return ClientError::new("42883", message);
    }
    if lower.contains("cannot infer common")
        || lower.contains("cannot coerce")
        || lower.contains("cannot automatically convert")
        || lower.contains("unsupported cast")
        || lower.contains("type mismatch")
    {
        return ClientError::new("42804", message);
    }
    if lower.contains("column") && lower.contains("not found") {
        return ClientError::new("42703", message);
    }
    ClientError::new("42000", message)
}

fn execution_error(message: &str) -> ClientError {
    if let Some(error) = out_of_range(message) {
        return error;
    }
    // SQL-level PREPARE / EXECUTE (DataFusion's own messages).
    if let Some(name) = message
        .strip_prefix("Prepared statement '")
        .and_then(|rest| rest.strip_suffix("' does not exist"))
    {
        return ClientError::new(
            "26000",
            format!("prepared statement \"{name}\" does not exist"),
        );
    }
    if let Some(name) = message
        .strip_prefix("Prepared statement '")
        .and_then(|rest| rest.strip_suffix("' already exists"))
    {
        return ClientError::new(
            "42P05",
            format!("prepared statement \"{name}\" already exists"),
        );
    }
    let lower = message.to_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        return ClientError::new("22012", "division by zero");
    }
    if lower.contains("cast") {
        return ClientError::new("22P02", message);
    }
    if lower.contains("overflow") {
        return ClientError::new("22003", message);
    }
    ClientError::new("XX000", message)
}

/// Casts of strings to dates and times fail with 22007 in PostgreSQL.
fn is_datetime_cast(message: &str) -> bool {
    [
        "Date32",
        "Date64",
        "Timestamp",
        "Time64",
        "Time32",
        "Interval",
        "timestamp",
        "date",
    ]
    .iter()
    .any(|t| {
        message.contains(&format!("of {t}"))
            || message.contains(&format!("value of {t}"))
            || message.contains(&format!("to {t}"))
    }) || message.contains("Error parsing timestamp")
        || message.contains("as date")
}

fn arrow_error(error: &ArrowError) -> ClientError {
    match error {
        ArrowError::DivideByZero => ClientError::new("22012", "division by zero"),
        ArrowError::ArithmeticOverflow(m) => ClientError::new("22003", m.clone()),
        // "Can't cast value 40000 to type Int16": out of range, not bad syntax.
        ArrowError::CastError(m) if out_of_range(m).is_some() => {
            out_of_range(m).expect("checked above")
        }
        ArrowError::CastError(m) | ArrowError::ParseError(m) if is_datetime_cast(m) => {
            ClientError::new("22007", m.clone())
        }
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            ClientError::new("22P02", m.clone())
        }
        ArrowError::ExternalError(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => client_error(ours),
            None => ClientError::new("XX000", inner.to_string()),
        },
        ArrowError::MemoryError(m) => ClientError::new("53200", m.clone()),
        ArrowError::InvalidArgumentError(m) if m.contains("too large to store in a Decimal") => {
            ClientError {
                detail: Some(m.clone()),
                ..ClientError::new("22003", "numeric field overflow")
            }
        }
        other => ClientError::new("22000", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            client_error(&Error::UndefinedTable {
                name: "x".into(),
                position: Some(15)
            })
            .code,
            "42P01"
        );
        assert_eq!(client_error(&Error::QueryCanceled).code, "57014");
        let df = DataFusionError::ArrowError(
            Box::new(ArrowError::CastError(
                "Cannot cast string 'x' to value of Int64 type".into(),
            )),
            None,
        );
        assert_eq!(client_error(&Error::DataFusion(df)).code, "22P02");
        let wrapped = DataFusionError::External(Box::new(Error::NotNullViolation {
            table: "t".into(),
            column: "c".into(),
        }));
        assert_eq!(client_error(&Error::DataFusion(wrapped)).code, "23502");
    }
}

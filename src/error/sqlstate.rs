//! SQLSTATEs: every [`Error`] becomes the [`ErrorReport`] a client sees,
//! with PostgreSQL's code, message and, where known, position, detail and
//! context. This is the one place SQLSTATEs are decided; DataFusion's
//! errors are classified in [`super::datafusion`].

use featuredb_sql::ParseErrorKind;

use super::datafusion;
use super::variants::{BadCopyDataKind, Error};

/// An error as the client is told it: severity, SQLSTATE, message and,
/// where known, detail, hint, position and context (the fields of
/// PostgreSQL's ErrorResponse; HTTP answers carry the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<usize>,
    pub context: Option<String>,
}

impl ErrorReport {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
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
}

impl Error {
    /// What the client is told: the one place SQLSTATEs are decided.
    pub fn report(&self) -> ErrorReport {
        report(self)
    }
}

fn report(error: &Error) -> ErrorReport {
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
            ErrorReport {
                position: e.position,
                ..ErrorReport::new(code, e.message.clone())
            }
        }
        Error::UndefinedTable { position, .. } => ErrorReport {
            position: *position,
            ..ErrorReport::new("42P01", error.to_string())
        },
        Error::UndefinedRelation { .. } => ErrorReport::new("42P01", error.to_string()),
        Error::UndefinedSchema(_) => ErrorReport::new("3F000", error.to_string()),
        Error::UndefinedObject { .. } => ErrorReport::new("42704", error.to_string()),
        Error::DuplicateObject { .. } => ErrorReport::new("42710", error.to_string()),
        Error::InvalidDefinition { detail, .. } => ErrorReport {
            detail: detail.clone(),
            ..ErrorReport::new("42P17", error.to_string())
        },
        Error::WindowingError(_) => ErrorReport::new("42P20", error.to_string()),
        Error::DependentObjectsExist { detail, .. } => ErrorReport {
            detail: Some(detail.clone()),
            hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".to_string()),
            ..ErrorReport::new("2BP01", error.to_string())
        },
        Error::DuplicateTable(_) => ErrorReport::new("42P07", error.to_string()),
        Error::WrongObjectType(_) => ErrorReport::new("42809", error.to_string()),
        Error::InvalidTableDefinition(_) => ErrorReport::new("42P16", error.to_string()),
        Error::DuplicateSchema(_) => ErrorReport::new("42P06", error.to_string()),
        Error::UndefinedColumn { .. } => ErrorReport::new("42703", error.to_string()),
        Error::DuplicateColumn(_) => ErrorReport::new("42701", error.to_string()),
        Error::DependentObjects { detail, .. } => ErrorReport {
            detail: Some(detail.clone()),
            hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".to_string()),
            ..ErrorReport::new("2BP01", error.to_string())
        },
        Error::NotNullViolation { .. } => ErrorReport::new("23502", error.to_string()),
        Error::StringTooLong { .. } => ErrorReport::new("22001", error.to_string()),
        Error::InvalidTextRepresentation { .. } => ErrorReport::new("22P02", error.to_string()),
        Error::NumericValueOutOfRange { .. } => ErrorReport::new("22003", error.to_string()),
        Error::InvalidDatetimeFormat { .. } => ErrorReport::new("22007", error.to_string()),
        Error::DatetimeFieldOverflow(_) => ErrorReport::new("22008", error.to_string()),
        Error::InvalidBinaryRepresentation { .. } => ErrorReport::new("22P03", error.to_string()),
        Error::BadCopyData {
            message,
            context,
            kind,
        } => ErrorReport {
            context: Some(context.clone()),
            ..ErrorReport::new(
                match kind {
                    BadCopyDataKind::Format => "22P04",
                    BadCopyDataKind::Value => "22P02",
                    BadCopyDataKind::OutOfRange => "22003",
                    BadCopyDataKind::DateTime => "22007",
                    BadCopyDataKind::DateTimeOverflow => "22008",
                    BadCopyDataKind::Encoding => "22021",
                    BadCopyDataKind::NotNull => "23502",
                    BadCopyDataKind::TooLong => "22001",
                },
                message.clone(),
            )
        },
        Error::InvalidParameterValue(_) => ErrorReport::new("22023", error.to_string()),
        Error::UnknownSetting(_) => ErrorReport::new("42704", error.to_string()),
        Error::ReadOnlySetting(_) => ErrorReport::new("55P02", error.to_string()),
        Error::QueryCanceled | Error::StatementTimeout => {
            ErrorReport::new("57014", error.to_string())
        }
        Error::InFailedTransaction => ErrorReport::new("25P02", error.to_string()),
        Error::NoActiveTransaction(_) => ErrorReport::new("25P01", error.to_string()),
        Error::UndefinedSavepoint(_) => ErrorReport::new("3B001", error.to_string()),
        Error::DuplicateCursor(_) => ErrorReport::new("42P03", error.to_string()),
        Error::UndefinedCursor(_) => ErrorReport::new("34000", error.to_string()),
        Error::FeatureNotSupported(_) => ErrorReport::new("0A000", error.to_string()),
        Error::DatatypeMismatch(_) => ErrorReport::new("42804", error.to_string()),
        Error::InvalidName(_) => ErrorReport::new("42602", error.to_string()),
        Error::InvalidJoinCondition(_) => ErrorReport::new("42601", error.to_string()),
        Error::Protocol(_) => ErrorReport::new("08P01", error.to_string()),
        Error::UndefinedPreparedStatement(_) => ErrorReport::new("26000", error.to_string()),
        Error::UndefinedPortal(_) => ErrorReport::new("34000", error.to_string()),
        Error::InsufficientResources(_) => ErrorReport::new("53000", error.to_string()),
        Error::ProgramLimitExceeded(_) => ErrorReport::new("54000", error.to_string()),
        Error::DataFusion(e) => datafusion::report(e),
        Error::Iceberg(_) => ErrorReport::new("58030", error.to_string()),
        Error::Io { .. } | Error::OnlineStore(_) => ErrorReport::new("58030", error.to_string()),
        Error::ObjectInUse(_) => ErrorReport::new("55006", error.to_string()),
        Error::Internal(_) => ErrorReport::new("XX000", error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::error::ArrowError;
    use datafusion::common::DataFusionError;

    use super::super::Error;

    #[test]
    fn codes() {
        let undefined = Error::UndefinedTable {
            name: "x".into(),
            position: Some(15),
        };
        assert_eq!(undefined.report().code, "42P01");
        assert_eq!(Error::QueryCanceled.report().code, "57014");
        let df = DataFusionError::ArrowError(
            Box::new(ArrowError::CastError(
                "Cannot cast string 'x' to value of Int64 type".into(),
            )),
            None,
        );
        assert_eq!(Error::DataFusion(df).report().code, "22P02");
        let wrapped = DataFusionError::External(Box::new(Error::NotNullViolation {
            table: "t".into(),
            column: "c".into(),
        }));
        assert_eq!(Error::DataFusion(wrapped).report().code, "23502");
    }
}

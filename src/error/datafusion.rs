//! DataFusion's errors as SQLSTATEs.
//!
//! By kind wherever DataFusion (or Arrow) gives one: a schema error's field
//! not found or ambiguous, Arrow's division by zero and overflow, a memory
//! limit, an I/O failure, SQL that does not parse, our own errors carried
//! through a DataFusion interface. Planning and execution errors, and
//! Arrow's cast and parse errors, carry only a message: those are
//! classified by [`TEXT_RULES`], one table, each rule pinned by a record of
//! `tests/slt/error_codes.slt` that runs through the real server (a new
//! DataFusion that rewords a message fails there, not in a client).

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};

use super::sqlstate::ErrorReport;

/// Which message-only error a [`TextRule`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    /// `DataFusionError::Plan`.
    Plan,
    /// `DataFusionError::Execution`.
    Execution,
    /// Arrow's `CastError`.
    Cast,
    /// Arrow's `ParseError`.
    Parse,
    /// Arrow's `InvalidArgumentError`.
    InvalidArgument,
}

/// How a message-only error maps to a SQLSTATE: the first rule for its
/// carrier whose patterns match the lower-cased message (any one of `any`
/// and all of `all`; a pattern starting with `^` must begin it, one ending
/// with `$` must end it).
struct TextRule {
    carriers: &'static [Carrier],
    any: &'static [&'static str],
    all: &'static [&'static str],
    code: &'static str,
    /// PostgreSQL's wording, where it differs from DataFusion's.
    message: Rewording,
}

#[derive(Clone, Copy)]
enum Rewording {
    /// DataFusion's message as it is.
    Keep,
    /// `<type> out of range` from Arrow's "Can't cast value … to type T".
    OutOfRange,
    /// `prepared statement "name" …` from DataFusion's `Prepared statement
    /// 'name' …`.
    PreparedStatement(&'static str),
    /// `numeric field overflow`, DataFusion's message as the detail.
    NumericOverflow,
}

/// The rules, in the order they are tried. Each is pinned by a record of
/// `tests/slt/error_codes.slt`, in the same order. (Rules that no statement
/// was found to reach were dropped when the table was made: out-of-range
/// casts reported as planning or execution errors, a planning error's
/// "column … not found", an execution error's division by zero or cast.
/// DataFusion 53 reports those by kind, above, or through Arrow.)
const TEXT_RULES: &[TextRule] = &[
    // Arrow's "Can't cast value 40000 to type Int16": out of range, not
    // bad syntax.
    TextRule {
        carriers: &[Carrier::Cast],
        any: &["can't cast value "],
        all: &[" to type "],
        code: "22003",
        message: Rewording::OutOfRange,
    },
    // Strings that do not parse as a date or time: 22007, as PostgreSQL.
    TextRule {
        carriers: &[Carrier::Cast, Carrier::Parse],
        any: &[
            "of date",
            "of timestamp",
            "of time64",
            "of time32",
            "of interval",
            "to date",
            "to timestamp",
            "to time64",
            "to time32",
            "to interval",
            "error parsing timestamp",
            "as date",
        ],
        all: &[],
        code: "22007",
        message: Rewording::Keep,
    },
    // Any other string that does not parse as its type.
    TextRule {
        carriers: &[Carrier::Cast, Carrier::Parse],
        any: &[""],
        all: &[],
        code: "22P02",
        message: Rewording::Keep,
    },
    // A decimal that does not fit its precision.
    TextRule {
        carriers: &[Carrier::InvalidArgument],
        any: &["too large to store in a decimal"],
        all: &[],
        code: "22003",
        message: Rewording::NumericOverflow,
    },
    // A table DataFusion resolves itself (a system schema's).
    TextRule {
        carriers: &[Carrier::Plan],
        any: &["^table"],
        all: &["not found"],
        code: "42P01",
        message: Rewording::Keep,
    },
    // A parameter without a value or a type.
    TextRule {
        carriers: &[Carrier::Plan],
        any: &["placeholder"],
        all: &[],
        code: "42P02",
        message: Rewording::Keep,
    },
    // No function of that name takes these arguments.
    TextRule {
        carriers: &[Carrier::Plan],
        any: &[
            "invalid function",
            "no function matches",
            "failed to coerce arguments",
            "does not support",
        ],
        all: &[],
        code: "42883",
        message: Rewording::Keep,
    },
    // Operands of types that do not go together.
    TextRule {
        carriers: &[Carrier::Plan],
        any: &[
            "cannot infer common",
            "cannot coerce",
            "cannot automatically convert",
            "unsupported cast",
            "type mismatch",
        ],
        all: &[],
        code: "42804",
        message: Rewording::Keep,
    },
    // Any other planning error: a syntax or access rule violation.
    TextRule {
        carriers: &[Carrier::Plan],
        any: &[""],
        all: &[],
        code: "42000",
        message: Rewording::Keep,
    },
    // SQL-level EXECUTE / DEALLOCATE of a statement never prepared.
    TextRule {
        carriers: &[Carrier::Execution],
        any: &["^prepared statement '"],
        all: &["' does not exist$"],
        code: "26000",
        message: Rewording::PreparedStatement("does not exist"),
    },
    // SQL-level PREPARE of a name in use.
    TextRule {
        carriers: &[Carrier::Execution],
        any: &["^prepared statement '"],
        all: &["' already exists$"],
        code: "42P05",
        message: Rewording::PreparedStatement("already exists"),
    },
    // A result too large for its type (`repeat`'s string size).
    TextRule {
        carriers: &[Carrier::Execution],
        any: &["overflow"],
        all: &[],
        code: "22003",
        message: Rewording::Keep,
    },
];

/// What the client is told of a DataFusion error.
pub fn report(error: &DataFusionError) -> ErrorReport {
    match error {
        DataFusionError::Diagnostic(diagnostic, inner) => {
            let mut client = report(inner);
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
        DataFusionError::Context(_, inner) => report(inner),
        DataFusionError::Shared(inner) => report(inner),
        DataFusionError::Collection(errors) if !errors.is_empty() => report(&errors[0]),
        DataFusionError::External(inner) => match inner.downcast_ref::<super::Error>() {
            Some(ours) => ours.report(),
            None => ErrorReport::new("XX000", inner.to_string()),
        },
        DataFusionError::SQL(e, _) => ErrorReport::new("42601", format!("syntax error: {e}")),
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { field, .. } => ErrorReport::new(
                "42703",
                format!("column \"{}\" does not exist", field.flat_name()),
            ),
            SchemaError::AmbiguousReference { field } => ErrorReport::new(
                "42702",
                format!("column reference \"{}\" is ambiguous", field.flat_name()),
            ),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => {
                ErrorReport::new("42701", e.to_string())
            }
        },
        DataFusionError::Plan(message) => by_text(Carrier::Plan, message, "42000"),
        DataFusionError::NotImplemented(message) => {
            ErrorReport::new("0A000", format!("not supported: {message}"))
        }
        DataFusionError::ArrowError(e, _) => arrow(e),
        DataFusionError::ParquetError(e) => ErrorReport::new("XX001", e.to_string()),
        DataFusionError::ObjectStore(e) => ErrorReport::new("58030", e.to_string()),
        DataFusionError::IoError(e) => ErrorReport::new("58030", e.to_string()),
        DataFusionError::ResourcesExhausted(message) => {
            ErrorReport::new("53200", format!("out of memory: {message}"))
        }
        DataFusionError::Configuration(message) => ErrorReport::new("22023", message.clone()),
        DataFusionError::Execution(message) => by_text(Carrier::Execution, message, "XX000"),
        DataFusionError::Internal(message) => {
            ErrorReport::new("XX000", format!("internal error: {message}"))
        }
        other => ErrorReport::new("XX000", other.strip_backtrace()),
    }
}

fn arrow(error: &ArrowError) -> ErrorReport {
    match error {
        ArrowError::DivideByZero => ErrorReport::new("22012", "division by zero"),
        ArrowError::ArithmeticOverflow(m) => ErrorReport::new("22003", m.clone()),
        ArrowError::CastError(m) => by_text(Carrier::Cast, m, "22P02"),
        ArrowError::ParseError(m) => by_text(Carrier::Parse, m, "22P02"),
        ArrowError::ExternalError(inner) => match inner.downcast_ref::<super::Error>() {
            Some(ours) => ours.report(),
            None => ErrorReport::new("XX000", inner.to_string()),
        },
        ArrowError::MemoryError(m) => ErrorReport::new("53200", m.clone()),
        ArrowError::InvalidArgumentError(m) => by_text(Carrier::InvalidArgument, m, "22000"),
        other => ErrorReport::new("22000", other.to_string()),
    }
}

/// The report of a message-only error: the first matching rule of
/// [`TEXT_RULES`], else `default` with the message as it is.
fn by_text(carrier: Carrier, message: &str, default: &'static str) -> ErrorReport {
    let lower = message.to_lowercase();
    let matches = |pattern: &&str| {
        if let Some(start) = pattern.strip_prefix('^') {
            lower.starts_with(start)
        } else if let Some(end) = pattern.strip_suffix('$') {
            lower.ends_with(end)
        } else {
            lower.contains(pattern)
        }
    };
    let rule = TEXT_RULES.iter().find(|rule| {
        rule.carriers.contains(&carrier)
            && rule.any.iter().any(matches)
            && rule.all.iter().all(matches)
    });
    let Some(rule) = rule else {
        return ErrorReport::new(default, message);
    };
    match rule.message {
        Rewording::Keep => ErrorReport::new(rule.code, message),
        Rewording::OutOfRange => ErrorReport::new(rule.code, out_of_range(message)),
        Rewording::PreparedStatement(what) => {
            // The rule matched `Prepared statement '<name>' <what>`.
            let name = message
                .len()
                .checked_sub(what.len() + 2)
                .and_then(|end| message.get("prepared statement '".len()..end))
                .unwrap_or_default();
            ErrorReport::new(rule.code, format!("prepared statement \"{name}\" {what}"))
        }
        Rewording::NumericOverflow => ErrorReport {
            detail: Some(message.to_string()),
            ..ErrorReport::new(rule.code, "numeric field overflow")
        },
    }
}

/// PostgreSQL's "smallint out of range" for Arrow's "Can't cast value
/// 40000 to type Int16" (the message as it is for other types).
fn out_of_range(message: &str) -> String {
    let target = message
        .split(" to type ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_default();
    let type_name = match target {
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        _ if target.starts_with("Decimal") => "numeric",
        _ => return message.to_string(),
    };
    format!("{type_name} out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(error: DataFusionError) -> &'static str {
        report(&error).code
    }

    #[test]
    fn kinds_and_rules() {
        assert_eq!(
            code(DataFusionError::ArrowError(
                Box::new(ArrowError::DivideByZero),
                None
            )),
            "22012"
        );
        let cast = |m: &str| {
            code(DataFusionError::ArrowError(
                Box::new(ArrowError::CastError(m.into())),
                None,
            ))
        };
        assert_eq!(cast("Can't cast value 40000 to type Int16"), "22003");
        assert_eq!(
            cast("Cannot cast string 'x' to value of Date32 type"),
            "22007"
        );
        assert_eq!(
            cast("Cannot cast string 'x' to value of Int64 type"),
            "22P02"
        );
        let plan = |m: &str| code(DataFusionError::Plan(m.into()));
        assert_eq!(plan("Invalid function 'nope'"), "42883");
        assert_eq!(plan("something else entirely"), "42000");
        let execution = |m: &str| report(&DataFusionError::Execution(m.into()));
        let quoted = execution("Prepared statement 'it's' already exists");
        assert_eq!(
            (quoted.code, quoted.message.as_str()),
            ("42P05", "prepared statement \"it's\" already exists")
        );
        assert_eq!(
            execution("a Prepared statement 'p' does not exist, said x").code,
            "XX000"
        );
        // Prefix and suffix sharing the quote: no name, no panic.
        assert_eq!(
            execution("Prepared statement ' does not exist").code,
            "26000"
        );
        let missing = execution("Prepared statement 'p' does not exist");
        assert_eq!(
            (missing.code, missing.message.as_str()),
            ("26000", "prepared statement \"p\" does not exist")
        );
        assert_eq!(execution("string size overflow on repeat").code, "22003");
        assert_eq!(execution("mystery").code, "XX000");
        assert_eq!(
            report(&DataFusionError::ArrowError(
                Box::new(ArrowError::CastError(
                    "Can't cast value 40000 to type Int16".into()
                )),
                None
            ))
            .message,
            "smallint out of range"
        );
    }
}

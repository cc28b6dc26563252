//! `COPY`: its direction, its data format and the format's options, with
//! PostgreSQL's defaults and validation rules.

use datafusion::sql::sqlparser::ast::{
    self, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget,
};

use crate::error::ParseError;
use crate::names::{ObjectRef, normalize_ident, object_ref};

#[derive(Debug, Clone, PartialEq)]
pub struct CopyStatement {
    pub source: CopyRelation,
    pub direction: CopyDirection,
    pub options: CopyOptions,
}

/// What is copied: a table (optionally a subset of its columns) or a query.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyRelation {
    Table {
        name: ObjectRef,
        columns: Vec<String>,
    },
    Query(Box<ast::Query>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyDirection {
    /// `COPY … FROM STDIN`: rows arrive as CopyData messages.
    FromStdin,
    /// `COPY … TO STDOUT`: rows leave as CopyData messages.
    ToStdout,
    /// `COPY … TO 'path'`: written on the server.
    ToFile(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
    Parquet,
}

impl CopyFormat {
    /// The format code of CopyInResponse/CopyOutResponse: 0 text, 1 binary.
    pub fn wire_format_code(self) -> i8 {
        match self {
            CopyFormat::Text | CopyFormat::Csv => 0,
            CopyFormat::Binary | CopyFormat::Parquet => 1,
        }
    }
}

/// A format's options, with PostgreSQL's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
    /// CSV output: columns whose non-NULL values are always quoted (`*` = all).
    pub force_quote: ForceColumns,
    /// CSV input: columns whose NULL string is read as an empty string.
    pub force_not_null: Vec<String>,
    /// CSV input: columns whose quoted NULL string is read as NULL.
    pub force_null: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ForceColumns {
    #[default]
    None,
    All,
    Columns(Vec<String>),
}

impl ForceColumns {
    pub fn contains(&self, column: &str) -> bool {
        match self {
            ForceColumns::None => false,
            ForceColumns::All => true,
            ForceColumns::Columns(cols) => cols.iter().any(|c| c == column),
        }
    }
}

impl CopyOptions {
    fn defaults(format: CopyFormat) -> Self {
        let csv = format == CopyFormat::Csv;
        CopyOptions {
            format,
            delimiter: if csv { ',' } else { '\t' },
            null: if csv {
                String::new()
            } else {
                "\\N".to_string()
            },
            header: false,
            quote: '"',
            escape: '"',
            force_quote: ForceColumns::None,
            force_not_null: Vec::new(),
            force_null: Vec::new(),
        }
    }
}

/// Options as written, before defaults: PostgreSQL's defaults depend on the
/// format, which may come after the options that rely on it.
#[derive(Default)]
struct WrittenOptions {
    format: Option<CopyFormat>,
    delimiter: Option<char>,
    null: Option<String>,
    header: Option<bool>,
    quote: Option<char>,
    escape: Option<char>,
    force_quote: Option<ForceColumns>,
    force_not_null: Option<Vec<String>>,
    force_null: Option<Vec<String>>,
}

impl WrittenOptions {
    fn set<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), ParseError> {
        if slot.is_some() {
            return Err(ParseError::syntax(format!(
                "conflicting or redundant options: {name}"
            )));
        }
        *slot = Some(value);
        Ok(())
    }
}

pub(crate) fn copy_statement(
    source: &CopySource,
    to: bool,
    target: &CopyTarget,
    options: &[CopyOption],
    legacy_options: &[CopyLegacyOption],
) -> Result<CopyStatement, ParseError> {
    let relation = match source {
        CopySource::Table {
            table_name,
            columns,
        } => CopyRelation::Table {
            name: object_ref(table_name)?,
            columns: columns.iter().map(normalize_ident).collect(),
        },
        CopySource::Query(query) => {
            if !to {
                return Err(ParseError::syntax(
                    "COPY FROM requires a table, not a query",
                ));
            }
            CopyRelation::Query(query.clone())
        }
    };
    let direction = match (to, target) {
        (false, CopyTarget::Stdin) => CopyDirection::FromStdin,
        (true, CopyTarget::Stdout) => CopyDirection::ToStdout,
        (true, CopyTarget::File { filename }) => CopyDirection::ToFile(filename.clone()),
        (false, CopyTarget::File { .. }) => {
            return Err(ParseError::unsupported(
                "COPY FROM a server-side file is not supported; use COPY FROM STDIN (psql: \\copy)",
            ));
        }
        (_, CopyTarget::Program { .. }) => {
            return Err(ParseError::unsupported(
                "COPY with PROGRAM is not supported",
            ));
        }
        (true, CopyTarget::Stdin) => {
            return Err(ParseError::syntax("COPY TO cannot write to STDIN"));
        }
        (false, CopyTarget::Stdout) => {
            return Err(ParseError::syntax("COPY FROM cannot read from STDOUT"));
        }
    };

    let mut written = WrittenOptions::default();
    for option in options {
        apply_option(&mut written, option)?;
    }
    for option in legacy_options {
        apply_legacy_option(&mut written, option)?;
    }
    let options = resolve_options(written, &direction)?;
    if options.format == CopyFormat::Parquet && !matches!(direction, CopyDirection::ToFile(_)) {
        return Err(ParseError::unsupported(
            "FORMAT parquet is only supported for COPY … TO 'file'",
        ));
    }
    Ok(CopyStatement {
        source: relation,
        direction,
        options,
    })
}

fn apply_option(written: &mut WrittenOptions, option: &CopyOption) -> Result<(), ParseError> {
    match option {
        CopyOption::Format(ident) => {
            let format = match normalize_ident(ident).as_str() {
                "text" => CopyFormat::Text,
                "csv" => CopyFormat::Csv,
                "binary" => CopyFormat::Binary,
                "parquet" => CopyFormat::Parquet,
                other => {
                    return Err(ParseError::invalid_parameter(format!(
                        "COPY format \"{other}\" not recognized"
                    )));
                }
            };
            WrittenOptions::set(&mut written.format, format, "FORMAT")
        }
        CopyOption::Freeze(_) => Ok(()),
        CopyOption::Delimiter(c) => WrittenOptions::set(&mut written.delimiter, *c, "DELIMITER"),
        CopyOption::Null(s) => WrittenOptions::set(&mut written.null, s.clone(), "NULL"),
        CopyOption::Header(h) => WrittenOptions::set(&mut written.header, *h, "HEADER"),
        CopyOption::Quote(c) => WrittenOptions::set(&mut written.quote, *c, "QUOTE"),
        CopyOption::Escape(c) => WrittenOptions::set(&mut written.escape, *c, "ESCAPE"),
        CopyOption::ForceQuote(cols) => {
            let columns: Vec<String> = cols.iter().map(normalize_ident).collect();
            let force = if columns.len() == 1 && columns[0] == crate::parser::FORCE_QUOTE_ALL_MARKER
            {
                ForceColumns::All
            } else {
                ForceColumns::Columns(columns)
            };
            WrittenOptions::set(&mut written.force_quote, force, "FORCE_QUOTE")
        }
        CopyOption::ForceNotNull(cols) => WrittenOptions::set(
            &mut written.force_not_null,
            cols.iter().map(normalize_ident).collect(),
            "FORCE_NOT_NULL",
        ),
        CopyOption::ForceNull(cols) => WrittenOptions::set(
            &mut written.force_null,
            cols.iter().map(normalize_ident).collect(),
            "FORCE_NULL",
        ),
        CopyOption::Encoding(encoding) => {
            let normalized = encoding.to_uppercase().replace(['-', '_'], "");
            if normalized == "UTF8" {
                Ok(())
            } else {
                Err(ParseError::unsupported(format!(
                    "COPY encoding \"{encoding}\" is not supported; featuredb only speaks UTF8"
                )))
            }
        }
    }
}

fn apply_legacy_option(
    written: &mut WrittenOptions,
    option: &CopyLegacyOption,
) -> Result<(), ParseError> {
    match option {
        CopyLegacyOption::Binary => {
            WrittenOptions::set(&mut written.format, CopyFormat::Binary, "BINARY")
        }
        CopyLegacyOption::Delimiter(c) => {
            WrittenOptions::set(&mut written.delimiter, *c, "DELIMITER")
        }
        CopyLegacyOption::Null(s) => WrittenOptions::set(&mut written.null, s.clone(), "NULL"),
        CopyLegacyOption::Header => WrittenOptions::set(&mut written.header, true, "HEADER"),
        CopyLegacyOption::Csv(csv_options) => {
            WrittenOptions::set(&mut written.format, CopyFormat::Csv, "CSV")?;
            for csv_option in csv_options {
                match csv_option {
                    CopyLegacyCsvOption::Header => {
                        WrittenOptions::set(&mut written.header, true, "HEADER")?
                    }
                    CopyLegacyCsvOption::Quote(c) => {
                        WrittenOptions::set(&mut written.quote, *c, "QUOTE")?
                    }
                    CopyLegacyCsvOption::Escape(c) => {
                        WrittenOptions::set(&mut written.escape, *c, "ESCAPE")?
                    }
                    CopyLegacyCsvOption::ForceQuote(cols) => WrittenOptions::set(
                        &mut written.force_quote,
                        if cols.is_empty() {
                            ForceColumns::All
                        } else {
                            ForceColumns::Columns(cols.iter().map(normalize_ident).collect())
                        },
                        "FORCE QUOTE",
                    )?,
                    CopyLegacyCsvOption::ForceNotNull(cols) => WrittenOptions::set(
                        &mut written.force_not_null,
                        cols.iter().map(normalize_ident).collect(),
                        "FORCE NOT NULL",
                    )?,
                }
            }
            Ok(())
        }
        CopyLegacyOption::Parquet => {
            WrittenOptions::set(&mut written.format, CopyFormat::Parquet, "PARQUET")
        }
        other => Err(ParseError::unsupported(format!(
            "COPY option {other} is not supported"
        ))),
    }
}

/// Fills in defaults and applies PostgreSQL's consistency rules.
fn resolve_options(
    written: WrittenOptions,
    direction: &CopyDirection,
) -> Result<CopyOptions, ParseError> {
    let format = written.format.unwrap_or(CopyFormat::Text);
    let mut options = CopyOptions::defaults(format);
    let csv = format == CopyFormat::Csv;
    let is_from = *direction == CopyDirection::FromStdin;

    if matches!(format, CopyFormat::Binary | CopyFormat::Parquet)
        && (written.delimiter.is_some() || written.null.is_some() || written.header == Some(true))
    {
        return Err(ParseError::syntax(
            "cannot specify DELIMITER, NULL or HEADER in BINARY mode",
        ));
    }
    if !csv
        && (written.quote.is_some()
            || written.escape.is_some()
            || written.force_quote.is_some()
            || written.force_not_null.is_some()
            || written.force_null.is_some())
    {
        return Err(ParseError::syntax(
            "QUOTE, ESCAPE and FORCE options are only available in CSV mode",
        ));
    }
    if let Some(delimiter) = written.delimiter {
        if !delimiter.is_ascii() {
            return Err(ParseError::unsupported(
                "COPY delimiter must be a single one-byte character",
            ));
        }
        if matches!(delimiter, '\r' | '\n') {
            return Err(ParseError::invalid_parameter(
                "COPY delimiter cannot be newline or carriage return",
            ));
        }
        if !csv && (delimiter == '\\' || delimiter.is_ascii_alphanumeric() || delimiter == '.') {
            return Err(ParseError::invalid_parameter(format!(
                "COPY delimiter cannot be \"{delimiter}\""
            )));
        }
        options.delimiter = delimiter;
    }
    if let Some(null) = written.null {
        if null.contains(['\r', '\n']) {
            return Err(ParseError::invalid_parameter(
                "COPY null representation cannot use newline or carriage return",
            ));
        }
        options.null = null;
    }
    if let Some(header) = written.header {
        options.header = header;
    }
    if let Some(quote) = written.quote {
        if !quote.is_ascii() {
            return Err(ParseError::unsupported(
                "COPY quote must be a single one-byte character",
            ));
        }
        options.quote = quote;
        options.escape = quote;
    }
    if let Some(escape) = written.escape {
        if !escape.is_ascii() {
            return Err(ParseError::unsupported(
                "COPY escape must be a single one-byte character",
            ));
        }
        options.escape = escape;
    }
    if csv && options.delimiter == options.quote {
        return Err(ParseError::invalid_parameter(
            "COPY delimiter and quote must be different",
        ));
    }
    if options.null.contains(options.delimiter) {
        return Err(ParseError::invalid_parameter(
            "COPY delimiter must not appear in the NULL specification",
        ));
    }
    if let Some(force_quote) = written.force_quote {
        if is_from {
            return Err(ParseError::syntax(
                "COPY FORCE_QUOTE only available using COPY TO",
            ));
        }
        options.force_quote = force_quote;
    }
    if let Some(cols) = written.force_not_null {
        if !is_from {
            return Err(ParseError::syntax(
                "COPY FORCE_NOT_NULL only available using COPY FROM",
            ));
        }
        options.force_not_null = cols;
    }
    if let Some(cols) = written.force_null {
        if !is_from {
            return Err(ParseError::syntax(
                "COPY FORCE_NULL only available using COPY FROM",
            ));
        }
        options.force_null = cols;
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_statement;
    use crate::statement::Statement;

    fn copy(sql: &str) -> CopyStatement {
        match parse_statement(sql).unwrap() {
            Statement::Copy(c) => c,
            other => panic!("not a copy: {other:?}"),
        }
    }

    #[test]
    fn text_defaults() {
        let c = copy("COPY t FROM STDIN");
        assert_eq!(c.direction, CopyDirection::FromStdin);
        assert_eq!(c.options.format, CopyFormat::Text);
        assert_eq!(c.options.delimiter, '\t');
        assert_eq!(c.options.null, "\\N");
        assert!(!c.options.header);
    }

    #[test]
    fn csv_with_options() {
        let c = copy(
            "COPY public.t (a, \"B\") FROM STDIN WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'NA')",
        );
        assert_eq!(
            c.source,
            CopyRelation::Table {
                name: ObjectRef {
                    schema: Some("public".into()),
                    name: "t".into()
                },
                columns: vec!["a".into(), "B".into()]
            }
        );
        assert_eq!(c.options.format, CopyFormat::Csv);
        assert_eq!(c.options.delimiter, ';');
        assert_eq!(c.options.null, "NA");
        assert!(c.options.header);
    }

    #[test]
    fn legacy_csv_syntax() {
        let c = copy("COPY t FROM STDIN CSV HEADER");
        assert_eq!(c.options.format, CopyFormat::Csv);
        assert!(c.options.header);
        assert_eq!(c.options.delimiter, ',');
        assert_eq!(c.options.null, "");
    }

    #[test]
    fn copy_query_to_stdout() {
        let c = copy("COPY (SELECT 1) TO STDOUT WITH (FORMAT csv)");
        assert!(matches!(c.source, CopyRelation::Query(_)));
        assert_eq!(c.direction, CopyDirection::ToStdout);
    }

    #[test]
    fn force_quote_all() {
        let c = copy("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE *)");
        assert_eq!(c.options.force_quote, ForceColumns::All);
        let c = copy("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE (a))");
        assert_eq!(
            c.options.force_quote,
            ForceColumns::Columns(vec!["a".into()])
        );
    }

    #[test]
    fn rejects_inconsistent_options() {
        for sql in [
            "COPY t FROM STDIN (FORMAT text, QUOTE '\"')",
            "COPY t FROM STDIN (FORMAT csv, DELIMITER ',', QUOTE ',')",
            "COPY t FROM STDIN (FORMAT binary, HEADER)",
            "COPY t FROM STDIN (DELIMITER '\\')",
            "COPY t FROM STDIN (FORMAT xml)",
            "COPY t FROM STDIN (DELIMITER ',', DELIMITER ';')",
            "COPY t FROM '/etc/passwd'",
        ] {
            assert!(parse_statement(sql).is_err(), "{sql} should fail");
        }
    }
}

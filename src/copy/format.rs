//! The COPY data formats: splitting text and CSV input into records and
//! fields, and writing values as text or CSV, byte-for-byte as PostgreSQL.

use std::borrow::Cow;

use featuredb_sql::copy::{CopyFormat, CopyOptions};

/// One field of an input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<'a> {
    Null,
    Value(Cow<'a, [u8]>),
}

/// Where a record ends in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordEnd {
    /// Offset just past the record's terminating newline (or end of data).
    pub next: usize,
    /// Newlines consumed (more than one for CSV values spanning lines).
    pub lines: usize,
}

/// Splits records out of raw COPY input.
pub struct RecordReader {
    format: CopyFormat,
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: Vec<u8>,
    /// CSV: columns (by position) whose unquoted null string is a value.
    force_not_null: Vec<bool>,
    /// CSV: columns whose quoted null string is NULL.
    force_null: Vec<bool>,
}

/// The result of reading one record.
pub enum ReadOutcome<'a> {
    /// The buffer ends before the record does; wait for more data.
    Incomplete,
    /// The `\.` end-of-data marker.
    EndMarker(RecordEnd),
    /// A record; its fields are in the vector passed to `read`, and its raw
    /// bytes (newline excluded) in `raw`.
    Record { end: RecordEnd, raw: &'a [u8] },
}

/// A record is malformed (22P04 in PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl RecordReader {
    pub fn new(options: &CopyOptions, columns: &[String]) -> Self {
        Self {
            format: options.format,
            delimiter: options.delimiter as u8,
            quote: options.quote as u8,
            escape: options.escape as u8,
            null: options.null.as_bytes().to_vec(),
            force_not_null: columns
                .iter()
                .map(|c| options.force_not_null.contains(c))
                .collect(),
            force_null: columns
                .iter()
                .map(|c| options.force_null.contains(c))
                .collect(),
        }
    }

    /// Reads the record starting at `buf[start..]`. With `at_eof`, a final
    /// record without a newline is complete.
    /// `fields` is cleared and receives the record's fields (reusing one
    /// vector across records avoids an allocation per row).
    pub fn read<'a>(
        &self,
        buf: &'a [u8],
        start: usize,
        at_eof: bool,
        fields: &mut Vec<Field<'a>>,
    ) -> Result<ReadOutcome<'a>, FormatError> {
        fields.clear();
        match self.format {
            CopyFormat::Csv => self.read_csv(buf, start, at_eof, fields),
            _ => self.read_text(buf, start, at_eof, fields),
        }
    }

    fn read_text<'a>(
        &self,
        buf: &'a [u8],
        start: usize,
        at_eof: bool,
        fields: &mut Vec<Field<'a>>,
    ) -> Result<ReadOutcome<'a>, FormatError> {
        let rest = &buf[start..];
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], start + i + 1),
            None if at_eof && !rest.is_empty() => (rest, buf.len()),
            None => return Ok(ReadOutcome::Incomplete),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let end = RecordEnd { next, lines: 1 };
        if line == b"\\." {
            return Ok(ReadOutcome::EndMarker(end));
        }
        for raw in line.split(|b| *b == self.delimiter) {
            if raw == self.null.as_slice() {
                fields.push(Field::Null);
            } else if memchr::memchr(b'\\', raw).is_some() {
                fields.push(Field::Value(Cow::Owned(unescape_text(
                    raw,
                    self.delimiter,
                )?)));
            } else {
                fields.push(Field::Value(Cow::Borrowed(raw)));
            }
        }
        Ok(ReadOutcome::Record { end, raw: line })
    }

    fn read_csv<'a>(
        &self,
        buf: &'a [u8],
        start: usize,
        at_eof: bool,
        fields: &mut Vec<Field<'a>>,
    ) -> Result<ReadOutcome<'a>, FormatError> {
        let mut i = start;
        let mut lines = 0;
        // A record that is exactly `\.` ends the data.
        let line_end = memchr::memchr(b'\n', &buf[start..]).map(|p| start + p);
        if let Some(end) = line_end {
            let line = &buf[start..end];
            if line.strip_suffix(b"\r").unwrap_or(line) == b"\\." {
                return Ok(ReadOutcome::EndMarker(RecordEnd {
                    next: end + 1,
                    lines: 1,
                }));
            }
        } else if at_eof && &buf[start..] == b"\\." {
            return Ok(ReadOutcome::EndMarker(RecordEnd {
                next: buf.len(),
                lines: 1,
            }));
        }
        loop {
            let column = fields.len();
            if i < buf.len() && buf[i] == self.quote {
                // Quoted field: until a quote not followed by another (or by
                // the escape character's partner).
                let mut value: Vec<u8> = Vec::new();
                let mut j = i + 1;
                loop {
                    if j >= buf.len() {
                        if at_eof {
                            return Err(FormatError("unterminated CSV quoted field".into()));
                        }
                        return Ok(ReadOutcome::Incomplete);
                    }
                    let b = buf[j];
                    if b == self.escape
                        && self.escape != self.quote
                        && j + 1 < buf.len()
                        && (buf[j + 1] == self.quote || buf[j + 1] == self.escape)
                    {
                        value.push(buf[j + 1]);
                        j += 2;
                    } else if b == self.quote {
                        if j + 1 < buf.len()
                            && buf[j + 1] == self.quote
                            && self.escape == self.quote
                        {
                            value.push(self.quote);
                            j += 2;
                        } else if j + 1 >= buf.len() && !at_eof {
                            return Ok(ReadOutcome::Incomplete);
                        } else {
                            j += 1;
                            break;
                        }
                    } else {
                        if b == b'\n' {
                            lines += 1;
                        }
                        value.push(b);
                        j += 1;
                    }
                }
                // Text after the closing quote up to the delimiter is kept.
                while j < buf.len()
                    && buf[j] != self.delimiter
                    && buf[j] != b'\n'
                    && buf[j] != b'\r'
                {
                    value.push(buf[j]);
                    j += 1;
                }
                let is_null =
                    self.force_null.get(column).copied().unwrap_or(false) && value == self.null;
                fields.push(if is_null {
                    Field::Null
                } else {
                    Field::Value(Cow::Owned(value))
                });
                i = j;
            } else {
                let field_start = i;
                while i < buf.len() && buf[i] != self.delimiter && buf[i] != b'\n' {
                    i += 1;
                }
                if i >= buf.len() && !at_eof {
                    return Ok(ReadOutcome::Incomplete);
                }
                // A CR before the newline (or the end) belongs to the line end.
                let mut raw = &buf[field_start..i];
                if i >= buf.len() || buf[i] == b'\n' {
                    raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                }
                let force_not_null = self.force_not_null.get(column).copied().unwrap_or(false);
                fields.push(if raw == self.null.as_slice() && !force_not_null {
                    Field::Null
                } else {
                    Field::Value(Cow::Borrowed(raw))
                });
            }
            // After a field: delimiter, end of line, or end of data.
            if i >= buf.len() {
                if !at_eof {
                    return Ok(ReadOutcome::Incomplete);
                }
                return Ok(ReadOutcome::Record {
                    end: RecordEnd {
                        next: buf.len(),
                        lines: lines + 1,
                    },
                    raw: &buf[start..],
                });
            }
            match buf[i] {
                b if b == self.delimiter => {
                    i += 1;
                    if i >= buf.len() && !at_eof {
                        return Ok(ReadOutcome::Incomplete);
                    }
                }
                b'\r' if buf.get(i + 1) == Some(&b'\n') => {
                    return Ok(ReadOutcome::Record {
                        end: RecordEnd {
                            next: i + 2,
                            lines: lines + 1,
                        },
                        raw: &buf[start..i],
                    });
                }
                b'\r' if i + 1 >= buf.len() && !at_eof => return Ok(ReadOutcome::Incomplete),
                b'\n' | b'\r' => {
                    return Ok(ReadOutcome::Record {
                        end: RecordEnd {
                            next: i + 1,
                            lines: lines + 1,
                        },
                        raw: &buf[start..i],
                    });
                }
                _ => {
                    return Err(FormatError(
                        "unexpected character after quoted CSV field".into(),
                    ));
                }
            }
        }
    }
}

/// Resolves text-format backslash escapes: `\b \f \n \r \t \v \\`, octal
/// `\ooo`, hex `\xhh`, and a backslash before any other byte (which stands
/// for that byte).
fn unescape_text(raw: &[u8], _delimiter: u8) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&next) = raw.get(i + 1) else {
            // A trailing lone backslash is kept, as PostgreSQL does.
            out.push(b'\\');
            break;
        };
        i += 2;
        match next {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = (next - b'0') as u32;
                let mut digits = 1;
                while digits < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    value = value * 8 + (raw[i] - b'0') as u32;
                    i += 1;
                    digits += 1;
                }
                out.push((value & 0xff) as u8);
            }
            b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    value = value * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Writes one field of a COPY TO row in text format.
pub fn write_text_field(out: &mut Vec<u8>, value: &[u8], delimiter: u8) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0b => out.extend_from_slice(b"\\v"),
            d if d == delimiter => {
                out.push(b'\\');
                out.push(d);
            }
            _ => out.push(b),
        }
    }
}

/// Writes one field of a COPY TO row in CSV: quoted when it contains the
/// delimiter, the quote, a newline, equals the NULL string, or is forced.
pub fn write_csv_field(out: &mut Vec<u8>, value: &[u8], options: &CopyOptions, force: bool) {
    let delimiter = options.delimiter as u8;
    let quote = options.quote as u8;
    let escape = options.escape as u8;
    let needs_quotes = force
        || value == options.null.as_bytes()
        || value
            .iter()
            .any(|b| *b == delimiter || *b == quote || *b == b'\n' || *b == b'\r')
        || (value.first() == Some(&b'\\') && value == b"\\.");
    if !needs_quotes {
        out.extend_from_slice(value);
        return;
    }
    out.push(quote);
    for &b in value {
        if b == quote || b == escape {
            out.push(escape);
        }
        out.push(b);
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use featuredb_sql::parse_statement;
    use featuredb_sql::statement::Statement;

    use super::*;

    fn options(sql: &str) -> CopyOptions {
        match parse_statement(sql).unwrap() {
            Statement::Copy(c) => c.options,
            _ => unreachable!(),
        }
    }

    fn records(reader: &RecordReader, data: &[u8]) -> Vec<Vec<Option<String>>> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut fields = Vec::new();
        while pos < data.len() {
            match reader.read(data, pos, true, &mut fields).unwrap() {
                ReadOutcome::Record { end, .. } => {
                    out.push(
                        fields
                            .drain(..)
                            .map(|f| match f {
                                Field::Null => None,
                                Field::Value(v) => Some(String::from_utf8(v.into_owned()).unwrap()),
                            })
                            .collect(),
                    );
                    pos = end.next;
                }
                ReadOutcome::EndMarker(_) => break,
                ReadOutcome::Incomplete => panic!("incomplete at eof"),
            }
        }
        out
    }

    #[test]
    fn text_format() {
        let reader = RecordReader::new(&options("COPY t FROM STDIN"), &[]);
        let data = b"1\ta\\tb\t\\N\n2\t\\\\x\t\r\n\\.\nignored\n";
        assert_eq!(
            records(&reader, data),
            vec![
                vec![Some("1".into()), Some("a\tb".into()), None],
                vec![Some("2".into()), Some("\\x".into()), Some("".into())],
            ]
        );
    }

    #[test]
    fn text_incomplete_line_waits() {
        let reader = RecordReader::new(&options("COPY t FROM STDIN"), &[]);
        assert!(matches!(
            reader.read(b"1\t2", 0, false, &mut Vec::new()).unwrap(),
            ReadOutcome::Incomplete
        ));
    }

    #[test]
    fn csv_format() {
        let reader = RecordReader::new(&options("COPY t FROM STDIN (FORMAT csv)"), &[]);
        let data = b"1,\"a,b\",\n2,\"\",\"x\"\"y\"\n3,\"multi\nline\",z\r\n";
        assert_eq!(
            records(&reader, data),
            vec![
                vec![Some("1".into()), Some("a,b".into()), None],
                vec![Some("2".into()), Some("".into()), Some("x\"y".into())],
                vec![
                    Some("3".into()),
                    Some("multi\nline".into()),
                    Some("z".into())
                ],
            ]
        );
    }

    #[test]
    fn csv_incomplete_quote_waits() {
        let reader = RecordReader::new(&options("COPY t FROM STDIN (FORMAT csv)"), &[]);
        assert!(matches!(
            reader
                .read(b"1,\"ab\nc", 0, false, &mut Vec::new())
                .unwrap(),
            ReadOutcome::Incomplete
        ));
        assert!(reader.read(b"1,\"ab\nc", 0, true, &mut Vec::new()).is_err());
    }

    #[test]
    fn output_escaping() {
        let mut out = Vec::new();
        write_text_field(&mut out, b"a\tb\\c\n", b'\t');
        assert_eq!(out, b"a\\tb\\\\c\\n");
        let csv = options("COPY t TO STDOUT (FORMAT csv)");
        let mut out = Vec::new();
        write_csv_field(&mut out, b"a,\"b\"", &csv, false);
        assert_eq!(out, b"\"a,\"\"b\"\"\"");
        let mut out = Vec::new();
        write_csv_field(&mut out, b"", &csv, false);
        assert_eq!(out, b"\"\"");
    }
}

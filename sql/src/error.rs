//! Errors the dialect reports. The wire layer maps each kind to a SQLSTATE.

use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::TokenizerError;

/// What went wrong, independent of the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The text is not valid SQL (SQLSTATE 42601).
    Syntax,
    /// Valid SQL that featuredb does not support (0A000).
    Unsupported,
    /// An option or clause has a value that is not allowed (22023).
    InvalidParameter,
    /// A name is malformed, e.g. too many qualifiers (42602).
    InvalidName,
    /// A type name that does not exist or cannot be stored (42704).
    UndefinedType,
    /// The same column named twice (42701).
    DuplicateColumn,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub message: String,
    /// 1-based character position in the statement text, as PostgreSQL
    /// reports it in the ErrorResponse `P` field.
    pub position: Option<usize>,
}

impl ParseError {
    pub fn new(kind: ParseErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            position: None,
        }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(ParseErrorKind::Syntax, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ParseErrorKind::Unsupported, message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ParseErrorKind::InvalidParameter, message)
    }

    /// Shifts the position by `chars` characters: used when a statement was
    /// parsed on its own but the client sent it inside a longer query string.
    pub fn offset_by(mut self, chars: usize) -> Self {
        if let Some(p) = self.position.as_mut() {
            *p += chars;
        }
        self
    }

    /// Wraps sqlparser's error as is; [`ParseError::locate`] later turns the
    /// location in its message into a position.
    pub(crate) fn from_raw(err: ParserError) -> Self {
        let message = match err {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
            ParserError::RecursionLimitExceeded => "statement is nested too deeply".to_string(),
        };
        Self::syntax(message)
    }

    /// Resolves a location left in the message by [`ParseError::from_raw`].
    pub(crate) fn locate(self, text: &str) -> Self {
        if self.position.is_some() || self.kind != ParseErrorKind::Syntax {
            return self;
        }
        let (message, position) = split_location(&self.message, text);
        let message = if message.starts_with("syntax error") {
            message
        } else {
            format!("syntax error: {message}")
        };
        Self {
            message,
            position,
            ..self
        }
    }

    /// Converts sqlparser's error, recovering the position it embeds in the
    /// message ("… at Line: 1, Column: 8").
    pub(crate) fn from_parser(err: ParserError, text: &str) -> Self {
        let raw = match err {
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
            ParserError::RecursionLimitExceeded => {
                return Self::new(
                    ParseErrorKind::Syntax,
                    "statement is nested too deeply".to_string(),
                );
            }
        };
        let (message, position) = split_location(&raw, text);
        Self {
            kind: ParseErrorKind::Syntax,
            message: format!("syntax error: {message}"),
            position,
        }
    }

    pub(crate) fn from_tokenizer(err: TokenizerError, text: &str) -> Self {
        let position = char_position(text, err.location.line, err.location.column);
        Self {
            kind: ParseErrorKind::Syntax,
            message: format!("syntax error: {}", err.message),
            position,
        }
    }
}

/// Splits "message at Line: L, Column: C" into the message and a character
/// position within `text`.
fn split_location(raw: &str, text: &str) -> (String, Option<usize>) {
    if let Some(idx) = raw.rfind(" at Line: ") {
        let (message, location) = raw.split_at(idx);
        let mut numbers = location
            .trim_start_matches(" at Line: ")
            .split(", Column: ")
            .map(|s| s.trim().parse::<u64>().ok());
        if let (Some(Some(line)), Some(Some(column))) = (numbers.next(), numbers.next()) {
            return (message.to_string(), char_position(text, line, column));
        }
    }
    (raw.to_string(), None)
}

/// Converts a 1-based line and column (in characters) into a 1-based
/// character position in `text`.
pub fn char_position(text: &str, line: u64, column: u64) -> Option<usize> {
    if line == 0 || column == 0 {
        return None;
    }
    let mut position = 0usize;
    for (index, line_text) in text.split('\n').enumerate() {
        if index as u64 + 1 == line {
            return Some(position + column as usize);
        }
        position += line_text.chars().count() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_position_from_message() {
        let (msg, pos) = split_location(
            "Expected: end of statement, found: x at Line: 2, Column: 3",
            "ab\ncdx",
        );
        assert_eq!(msg, "Expected: end of statement, found: x");
        assert_eq!(pos, Some(6));
    }

    #[test]
    fn keeps_message_without_location() {
        let (msg, pos) = split_location("oops", "select");
        assert_eq!(msg, "oops");
        assert_eq!(pos, None);
    }
}

//! Splitting a query message into statements.
//!
//! A simple-protocol Query message may hold several statements. They are
//! split on top-level semicolons before parsing, so that each statement keeps
//! its own text (for error positions and for COPY, whose sqlparser grammar
//! would otherwise swallow the rest of the message as inline data).

use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::error::ParseError;

/// One statement of a query message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementText<'a> {
    /// The statement without its terminating semicolon.
    pub text: &'a str,
    /// How many characters of the message precede `text` (to shift error
    /// positions back into message coordinates).
    pub char_offset: usize,
}

/// Splits `sql` into statements, dropping empty ones (`;;`, comments only).
pub fn split_statements(sql: &str) -> Result<Vec<StatementText<'_>>, ParseError> {
    let dialect = crate::dialect::FeatureDbDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| ParseError::from_tokenizer(e, sql))?;

    let line_starts = line_starts(sql);
    let mut statements = Vec::new();
    let mut start_byte = 0usize;
    let mut has_content = false;
    let mut depth = 0i32;
    for token in &tokens {
        match &token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if token.token == Token::SemiColon && depth <= 0 {
            let end_byte = byte_offset(
                sql,
                &line_starts,
                token.span.start.line,
                token.span.start.column,
            );
            if has_content {
                statements.push(statement_text(sql, start_byte, end_byte));
            }
            start_byte = end_byte + 1;
            has_content = false;
            depth = 0;
        } else if !is_trivia(&token.token) {
            has_content = true;
        }
    }
    if has_content {
        statements.push(statement_text(sql, start_byte, sql.len()));
    }
    Ok(statements)
}

fn statement_text(sql: &str, start: usize, end: usize) -> StatementText<'_> {
    let raw = &sql[start..end];
    let trimmed_start = raw.len() - raw.trim_start().len();
    let text = raw.trim();
    StatementText {
        text,
        char_offset: sql[..start + trimmed_start].chars().count(),
    }
}

fn is_trivia(token: &Token) -> bool {
    matches!(
        token,
        Token::Whitespace(
            Whitespace::Space
                | Whitespace::Tab
                | Whitespace::Newline
                | Whitespace::SingleLineComment { .. }
                | Whitespace::MultiLineComment(_)
        ) | Token::EOF
    )
}

/// Byte offset of the first character of every line.
fn line_starts(sql: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// Converts sqlparser's 1-based (line, column-in-characters) to a byte offset.
fn byte_offset(sql: &str, line_starts: &[usize], line: u64, column: u64) -> usize {
    let line_start = line_starts
        .get(line.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(sql.len());
    sql[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map(|(i, _)| line_start + i)
        .unwrap_or(sql.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split_statements(sql)
            .unwrap()
            .into_iter()
            .map(|s| s.text)
            .collect()
    }

    #[test]
    fn splits_on_top_level_semicolons() {
        assert_eq!(texts("select 1; select 2"), vec!["select 1", "select 2"]);
        assert_eq!(
            texts("select ';'; select 2;"),
            vec!["select ';'", "select 2"]
        );
        assert_eq!(texts("select $$a;b$$"), vec!["select $$a;b$$"]);
        assert_eq!(texts("select 1 -- c;\n; x"), vec!["select 1 -- c;", "x"]);
    }

    #[test]
    fn drops_empty_statements() {
        assert!(texts("").is_empty());
        assert!(texts(" ; ;; ").is_empty());
        assert!(texts("-- just a comment").is_empty());
        assert_eq!(texts(";select 1;;"), vec!["select 1"]);
    }

    #[test]
    fn reports_character_offsets() {
        let parts = split_statements("é; select 1").unwrap();
        assert_eq!(parts[1].text, "select 1");
        assert_eq!(parts[1].char_offset, 3);
    }

    #[test]
    fn unterminated_string_is_a_syntax_error_with_position() {
        let err = split_statements("select 'abc").unwrap_err();
        assert_eq!(err.kind, crate::ParseErrorKind::Syntax);
        assert!(err.position.is_some());
    }
}

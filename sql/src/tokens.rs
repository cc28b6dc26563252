//! Token-level rewriting: the syntax sqlparser's grammar lacks is turned
//! into forms it parses before the statement is parsed (`temporal.rs`,
//! `asof.rs`). Rewrites work on the tokenizer's output, so strings,
//! quoted identifiers and comments are never mistaken for keywords.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::dialect::FeatureDbDialect;
use crate::error::ParseError;

/// A tokenized statement: its tokens, where each starts in the text, and
/// the indices of the significant ones (not whitespace or comments).
pub(crate) struct Tokens<'a> {
    pub sql: &'a str,
    pub tokens: Vec<TokenWithSpan>,
    starts: Vec<usize>,
    pub significant: Vec<usize>,
}

impl<'a> Tokens<'a> {
    pub fn new(sql: &'a str) -> Result<Self, ParseError> {
        let dialect = FeatureDbDialect::default();
        let tokens = Tokenizer::new(&dialect, sql)
            .tokenize_with_location()
            .map_err(|e| ParseError::from_tokenizer(e, sql))?;
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let starts = tokens
            .iter()
            .map(|t| {
                let line = t.span.start.line.saturating_sub(1) as usize;
                let line_start = line_starts.get(line).copied().unwrap_or(sql.len());
                sql[line_start..]
                    .char_indices()
                    .nth(t.span.start.column.saturating_sub(1) as usize)
                    .map(|(i, _)| line_start + i)
                    .unwrap_or(sql.len())
            })
            .collect();
        let significant = (0..tokens.len())
            .filter(|&i| {
                !matches!(tokens[i].token, Token::Whitespace(_)) && tokens[i].token != Token::EOF
            })
            .collect();
        Ok(Self {
            sql,
            tokens,
            starts,
            significant,
        })
    }

    /// The k-th significant token.
    pub fn get(&self, k: usize) -> Option<&Token> {
        self.significant.get(k).map(|&i| &self.tokens[i].token)
    }

    /// Byte offset where the k-th significant token starts.
    pub fn start(&self, k: usize) -> usize {
        self.significant
            .get(k)
            .map(|&i| self.starts[i])
            .unwrap_or(self.sql.len())
    }

    /// Byte offset where the k-th significant token ends (the tokenizer
    /// keeps whitespace and comments as tokens, so nothing is skipped).
    pub fn end(&self, k: usize) -> usize {
        self.significant
            .get(k)
            .and_then(|&i| self.starts.get(i + 1).copied())
            .unwrap_or(self.sql.len())
    }

    /// The text of significant tokens `from..=to`.
    pub fn text(&self, from: usize, to: usize) -> &'a str {
        &self.sql[self.start(from)..self.end(to)]
    }

    /// Is the k-th significant token the unquoted word `word`?
    pub fn is_word(&self, k: usize, word: &str) -> bool {
        self.get(k).is_some_and(|t| word_is(t, word))
    }

    /// Does the k-th significant token start the next clause of a FROM
    /// item (a join, WHERE, GROUP BY, a set operation …)? `LEFT(`/`RIGHT(`
    /// are functions, not joins.
    pub fn ends_from_item(&self, k: usize) -> bool {
        FROM_ITEM_END.iter().any(|w| self.is_word(k, w)) && self.get(k + 1) != Some(&Token::LParen)
    }

    /// 1-based character position of the k-th significant token.
    pub fn position(&self, k: usize) -> Option<usize> {
        Some(self.sql[..self.start(k)].chars().count() + 1)
    }
}

/// Words after which a FROM item (a relation and its join condition) is
/// over.
const FROM_ITEM_END: &[&str] = &[
    "join",
    "left",
    "right",
    "inner",
    "full",
    "cross",
    "natural",
    "asof",
    "where",
    "group",
    "having",
    "order",
    "limit",
    "offset",
    "union",
    "except",
    "intersect",
    "window",
    "qualify",
    "fetch",
];

pub(crate) fn word_is(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// Applies (start, end, replacement) byte ranges, sorted and disjoint.
pub(crate) fn apply(sql: &str, mut replacements: Vec<(usize, usize, String)>) -> String {
    replacements.sort_by_key(|r| (r.0, r.1));
    let mut out = String::with_capacity(sql.len() + 64);
    let mut at = 0;
    for (start, end, text) in replacements {
        out.push_str(&sql[at..start]);
        out.push_str(&text);
        at = end;
    }
    out.push_str(&sql[at..]);
    out
}

//! Temporal and version syntax that sqlparser's grammar lacks, rewritten
//! into forms it parses before the statement is parsed:
//!
//! - `FOR SYSTEM_TIME ALL` becomes `FOR SYSTEM_TIME AS OF <ALL_HISTORY>`,
//!   a marker identifier the engine recognises.
//! - `name VERSION n` (a feature view pinned to definition version n)
//!   becomes the quoted identifier `"name@vn"`, so that it can still be
//!   followed by `FOR SYSTEM_TIME …` and an alias. [`split_version`] takes
//!   it apart again.

use std::borrow::Cow;

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::dialect::FeatureDbDialect;
use crate::error::ParseError;

/// Identifier standing for `FOR SYSTEM_TIME ALL`.
pub const ALL_HISTORY: &str = "featuredb_all_history";

/// Separates a relation name from its pinned version (`"fv@v2"`).
const VERSION_SEPARATOR: &str = "@v";

/// Splits `"fv@v2"` into `("fv", Some(2))`.
pub fn split_version(name: &str) -> (&str, Option<u32>) {
    if let Some((base, version)) = name.rsplit_once(VERSION_SEPARATOR)
        && !base.is_empty()
        && let Ok(version) = version.parse::<u32>()
    {
        return (base, Some(version));
    }
    (name, None)
}

/// The name under which a pinned version is written back into SQL.
pub fn versioned_name(name: &str, version: u32) -> String {
    format!("{name}{VERSION_SEPARATOR}{version}")
}

fn is_trivia(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

fn word_is(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// Rewrites the syntax this module handles; returns the text unchanged
/// (borrowed) when there is none.
pub fn rewrite(sql: &str) -> Result<Cow<'_, str>, ParseError> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("system_time") && !lower.contains("version") {
        return Ok(Cow::Borrowed(sql));
    }
    let dialect = FeatureDbDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| ParseError::from_tokenizer(e, sql))?;
    let offsets = TokenOffsets::new(sql, &tokens);
    // Indices of significant tokens.
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !is_trivia(&tokens[i].token) && tokens[i].token != Token::EOF)
        .collect();
    let mut replacements: Vec<(usize, usize, String)> = Vec::new();
    let mut k = 0;
    while k < significant.len() {
        let token = |j: usize| significant.get(j).map(|&i| &tokens[i].token);
        // FOR SYSTEM_TIME ALL
        if token(k).is_some_and(|t| word_is(t, "for"))
            && token(k + 1).is_some_and(|t| word_is(t, "system_time"))
            && token(k + 2).is_some_and(|t| word_is(t, "all"))
        {
            let start = offsets.start(significant[k]);
            let end = offsets.end(significant[k + 2]);
            replacements.push((start, end, format!("FOR SYSTEM_TIME AS OF {ALL_HISTORY}")));
            k += 3;
            continue;
        }
        // name VERSION n
        if let (Some(Token::Word(name)), Some(version), Some(Token::Number(n, _))) =
            (token(k), token(k + 1), token(k + 2))
            && word_is(version, "version")
            && !(name.quote_style.is_none() && is_reserved(&name.value))
            && n.parse::<u32>().is_ok()
        {
            let folded = if name.quote_style.is_some() {
                name.value.clone()
            } else {
                name.value.to_lowercase()
            };
            let quoted = format!(
                "\"{}\"",
                versioned_name(&folded, n.parse().unwrap_or(0)).replace('"', "\"\"")
            );
            let start = offsets.start(significant[k]);
            let end = offsets.end(significant[k + 2]);
            replacements.push((start, end, quoted));
            k += 3;
            continue;
        }
        k += 1;
    }
    if replacements.is_empty() {
        return Ok(Cow::Borrowed(sql));
    }
    let mut out = String::with_capacity(sql.len() + 32);
    let mut at = 0;
    for (start, end, text) in replacements {
        out.push_str(&sql[at..start]);
        out.push_str(&text);
        at = end;
    }
    out.push_str(&sql[at..]);
    Ok(Cow::Owned(out))
}

/// Words that cannot name a relation before `VERSION n`.
fn is_reserved(word: &str) -> bool {
    matches!(
        word.to_ascii_lowercase().as_str(),
        "select" | "from" | "where" | "and" | "or" | "show" | "by" | "as" | "on" | "join"
    )
}

/// Byte offsets of tokens in the original text.
struct TokenOffsets {
    starts: Vec<usize>,
    len: usize,
}

impl TokenOffsets {
    fn new(sql: &str, tokens: &[TokenWithSpan]) -> Self {
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
        Self {
            starts,
            len: sql.len(),
        }
    }

    fn start(&self, index: usize) -> usize {
        self.starts[index]
    }

    /// A token ends where the next one starts (the tokenizer keeps
    /// whitespace and comments as tokens, so nothing is skipped).
    fn end(&self, index: usize) -> usize {
        self.starts.get(index + 1).copied().unwrap_or(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_all_history_and_versions() {
        assert_eq!(
            rewrite("SELECT * FROM fv FOR SYSTEM_TIME ALL WHERE x = 1").unwrap(),
            "SELECT * FROM fv FOR SYSTEM_TIME AS OF featuredb_all_history WHERE x = 1"
        );
        assert_eq!(
            rewrite("SELECT * FROM Spend VERSION 2 FOR SYSTEM_TIME AS OF now() AS s").unwrap(),
            "SELECT * FROM \"spend@v2\" FOR SYSTEM_TIME AS OF now() AS s"
        );
        assert_eq!(
            rewrite("SELECT * FROM public.\"My View\" VERSION 10").unwrap(),
            "SELECT * FROM public.\"My View@v10\""
        );
        // Strings and unrelated uses are untouched.
        let text = "SELECT 'fv VERSION 2', version() FROM t";
        assert_eq!(rewrite(text).unwrap(), text);
    }

    #[test]
    fn splits_versions() {
        assert_eq!(split_version("spend@v2"), ("spend", Some(2)));
        assert_eq!(split_version("spend"), ("spend", None));
        assert_eq!(split_version("a@vx"), ("a@vx", None));
    }
}

//! Temporal and version syntax that sqlparser's grammar lacks, rewritten
//! into forms it parses before the statement is parsed:
//!
//! - `FOR SYSTEM_TIME ALL` becomes `FOR SYSTEM_TIME AS OF <ALL_HISTORY>`,
//!   a marker identifier the engine recognises.
//! - `name VERSION n` (a feature view pinned to definition version n)
//!   becomes the quoted identifier `"name@vn"`, so that it can still be
//!   followed by `FOR SYSTEM_TIME …` and an alias. [`split_version`] takes
//!   it apart again.
//! - `fv AS OF t`, the short form, becomes `fv FOR SYSTEM_TIME AS OF t`.

use std::borrow::Cow;

use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::ParseError;
use crate::tokens::{Tokens, apply};

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

/// Rewrites the syntax this module handles; returns the text unchanged
/// (borrowed) when there is none.
pub fn rewrite(sql: &str) -> Result<Cow<'_, str>, ParseError> {
    let lower = sql.to_ascii_lowercase();
    // Most statements have none of it: skip tokenizing them.
    let words: Vec<&str> = lower.split_ascii_whitespace().collect();
    let as_of = words.windows(2).any(|w| w == ["as", "of"]);
    if !lower.contains("system_time") && !lower.contains("version") && !as_of {
        return Ok(Cow::Borrowed(sql));
    }
    let tokens = Tokens::new(sql)?;
    let mut replacements: Vec<(usize, usize, String)> = Vec::new();
    let mut k = 0;
    while k < tokens.significant.len() {
        // FOR SYSTEM_TIME ALL
        if tokens.is_word(k, "for")
            && tokens.is_word(k + 1, "system_time")
            && tokens.is_word(k + 2, "all")
        {
            replacements.push((
                tokens.start(k),
                tokens.end(k + 2),
                format!("FOR SYSTEM_TIME AS OF {ALL_HISTORY}"),
            ));
            k += 3;
            continue;
        }
        // The short form `fv AS OF t` of `fv FOR SYSTEM_TIME AS OF t`.
        if tokens.is_word(k, "as")
            && tokens.is_word(k + 1, "of")
            && !(k > 0
                && ["system_time", "timestamp", "version"]
                    .iter()
                    .any(|w| tokens.is_word(k - 1, w)))
        {
            replacements.push((
                tokens.start(k),
                tokens.end(k),
                "FOR SYSTEM_TIME AS".to_string(),
            ));
            k += 2;
            continue;
        }
        // name VERSION n
        if let (Some(Token::Word(name)), Some(Token::Number(n, _))) =
            (tokens.get(k), tokens.get(k + 2))
            && tokens.is_word(k + 1, "version")
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
            replacements.push((tokens.start(k), tokens.end(k + 2), quoted));
            k += 3;
            continue;
        }
        k += 1;
    }
    let rewritten = if replacements.is_empty() {
        Cow::Borrowed(sql)
    } else {
        Cow::Owned(apply(sql, replacements))
    };
    if !lower.contains("system_time") && !as_of {
        return Ok(rewritten);
    }
    Ok(match alias_after_version(&rewritten)? {
        Some(moved) => Cow::Owned(moved),
        None => rewritten,
    })
}

/// Words that, besides the end of the FROM item, end the time expression
/// of `FOR SYSTEM_TIME AS OF …`.
const VERSION_END: &[&str] = &["on", "using", "match_condition", "as"];

/// sqlparser prints a table's alias before its `FOR SYSTEM_TIME AS OF …`
/// but parses it only after: a stored definition (`fv AS f FOR
/// SYSTEM_TIME AS OF t.ts ON …`) would not read back. Moves such an alias
/// after the time expression; `None` when there is none.
fn alias_after_version(sql: &str) -> Result<Option<String>, ParseError> {
    let tokens = Tokens::new(sql)?;
    let mut replacements = Vec::new();
    for k in 2..tokens.significant.len() {
        if !(tokens.is_word(k, "for")
            && tokens.is_word(k + 1, "system_time")
            && tokens.is_word(k + 2, "as")
            && tokens.is_word(k + 3, "of"))
        {
            continue;
        }
        let alias_start = match (tokens.get(k - 2), tokens.get(k - 1)) {
            (_, Some(Token::Word(_))) if tokens.is_word(k - 2, "as") => k - 2,
            (Some(Token::Word(_)), Some(Token::Word(_)))
                if !["from", "join", "lateral"]
                    .iter()
                    .any(|w| tokens.is_word(k - 2, w)) =>
            {
                k - 1
            }
            _ => continue,
        };
        // The time expression runs to the next clause at its level.
        let mut depth = 0i32;
        let mut end = k + 3;
        let mut j = k + 4;
        while let Some(token) = tokens.get(j) {
            match token {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::Comma | Token::SemiColon if depth == 0 => break,
                _ if depth == 0
                    && (tokens.ends_from_item(j)
                        || VERSION_END.iter().any(|w| tokens.is_word(j, w))) =>
                {
                    break;
                }
                _ => {}
            }
            end = j;
            j += 1;
        }
        if end == k + 3 {
            continue;
        }
        let alias = tokens.text(k - 1, k - 1).trim().to_string();
        replacements.push((tokens.start(alias_start), tokens.start(k), String::new()));
        replacements.push((tokens.end(end), tokens.end(end), format!(" AS {alias} ")));
    }
    Ok((!replacements.is_empty()).then(|| apply(sql, replacements)))
}

/// Words that cannot name a relation before `VERSION n`.
fn is_reserved(word: &str) -> bool {
    matches!(
        word.to_ascii_lowercase().as_str(),
        "select" | "from" | "where" | "and" | "or" | "show" | "by" | "as" | "on" | "join"
    )
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
        assert_eq!(
            rewrite("SELECT * FROM s JOIN fv AS OF s.ts AS f ON true").unwrap(),
            "SELECT * FROM s JOIN fv FOR SYSTEM_TIME AS OF s.ts AS f ON true"
        );
        // An alias printed before the version (as sqlparser prints it)
        // moves after it, so that stored definitions read back.
        assert_eq!(
            rewrite(
                "SELECT * FROM s LEFT JOIN public.fv AS f FOR SYSTEM_TIME AS OF s.ts ON f.k = s.k"
            )
            .unwrap(),
            "SELECT * FROM s LEFT JOIN public.fv FOR SYSTEM_TIME AS OF s.ts AS f  ON f.k = s.k"
        );
        assert_eq!(
            rewrite("SELECT * FROM fv a FOR SYSTEM_TIME ALL WHERE x = 1").unwrap(),
            "SELECT * FROM fv FOR SYSTEM_TIME AS OF featuredb_all_history AS a  WHERE x = 1"
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

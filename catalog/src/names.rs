//! Names of catalog objects and how unqualified names resolve.

use std::fmt;

/// The one database a featuredb server exposes.
pub const DEFAULT_DATABASE: &str = "featuredb";

/// The schema unqualified names resolve to when `search_path` is untouched.
pub const DEFAULT_SCHEMA: &str = "public";

/// The schema of the registry's system tables (`featuredb.feature_views`,
/// `featuredb.jobs`, …).
pub const REGISTRY_SCHEMA: &str = "featuredb";

/// Schemas that the server provides itself. They are not Iceberg namespaces:
/// users cannot create tables in them, create or drop them.
pub const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "pg_catalog", REGISTRY_SCHEMA];

/// Whether `schema` is one of [`SYSTEM_SCHEMAS`].
pub fn is_system_schema(schema: &str) -> bool {
    SYSTEM_SCHEMAS.contains(&schema)
}

/// A schema-qualified object name, already normalised (unquoted identifiers
/// lower-cased, as PostgreSQL does).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.name)
        )
    }
}

/// Quotes an identifier the way PostgreSQL's `quote_ident` does: only when it
/// is not a plain lower-case identifier.
pub fn quote_ident(ident: &str) -> String {
    let plain = !ident.is_empty()
        && ident
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        ident.to_string()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote_ident("orders"), "orders");
        assert_eq!(quote_ident("Orders"), "\"Orders\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("1x"), "\"1x\"");
        assert_eq!(
            QualifiedName::new("public", "My Table").to_string(),
            "public.\"My Table\""
        );
    }
}

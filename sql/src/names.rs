//! Normalising names the way PostgreSQL does: unquoted identifiers fold to
//! lower case, quoted ones keep their spelling.

use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
use featuredb_catalog::DEFAULT_DATABASE;

use crate::error::{ParseError, ParseErrorKind};

/// An object name as written: schema is `None` when unqualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub schema: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// Folds one identifier.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// Resolves `[database.][schema.]name`. A database qualifier must name the
/// one database this server has.
pub fn object_ref(name: &ObjectName) -> Result<ObjectRef, ParseError> {
    let parts = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(normalize_ident(ident)),
            ObjectNamePart::Function(_) => Err(ParseError::new(
                ParseErrorKind::InvalidName,
                format!("improper qualified name: {name}"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match parts.as_slice() {
        [name] => Ok(ObjectRef {
            schema: None,
            name: name.clone(),
        }),
        [schema, name] => Ok(ObjectRef {
            schema: Some(schema.clone()),
            name: name.clone(),
        }),
        [database, schema, name] => {
            if database != DEFAULT_DATABASE {
                return Err(ParseError::unsupported(format!(
                    "cross-database references are not implemented: {name}"
                )));
            }
            Ok(ObjectRef {
                schema: Some(schema.clone()),
                name: name.clone(),
            })
        }
        _ => Err(ParseError::new(
            ParseErrorKind::InvalidName,
            format!("improper qualified name (too many dotted names): {name}"),
        )),
    }
}

/// A schema name: one identifier (optionally database-qualified).
pub fn schema_name(name: &ObjectName) -> Result<String, ParseError> {
    let object = object_ref(name)?;
    match object.schema {
        None => Ok(object.name),
        Some(database) if database == DEFAULT_DATABASE => Ok(object.name),
        Some(_) => Err(ParseError::new(
            ParseErrorKind::InvalidName,
            format!("improper schema name: {name}"),
        )),
    }
}

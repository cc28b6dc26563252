//! Statements that change a table's identity or contents without changing
//! its definition: `ALTER TABLE|VIEW … RENAME TO …` and `TRUNCATE`.
//! dbt swaps a rebuilt model in with the first and reloads seeds with the
//! second.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::ParseError;
use crate::names::{ObjectRef, normalize_ident, object_ref};

/// What kind of relation the statement named (`ALTER TABLE` may rename a
/// view, as in PostgreSQL; `ALTER VIEW` only views).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameTarget {
    Table,
    View,
}

/// `ALTER {TABLE|VIEW} [IF EXISTS] name RENAME TO new_name`. The new name
/// is unqualified: the relation stays in its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenameRelation {
    pub target: RenameTarget,
    pub name: ObjectRef,
    pub new_name: String,
    pub if_exists: bool,
}

/// `TRUNCATE [TABLE] name [, …]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateTables {
    pub names: Vec<ObjectRef>,
}

fn unqualified(name: &ast::ObjectName) -> Result<String, ParseError> {
    let parsed = object_ref(name)?;
    if parsed.schema.is_some() {
        return Err(ParseError::syntax(format!(
            "the new name must not be qualified: {name} (a renamed relation stays in its schema)"
        )));
    }
    Ok(parsed.name)
}

/// `ALTER TABLE`: only a lone `RENAME TO` is supported.
pub fn alter_table(alter: &ast::AlterTable) -> Result<RenameRelation, ParseError> {
    match alter.operations.as_slice() {
        [
            ast::AlterTableOperation::RenameTable {
                table_name:
                    ast::RenameTableNameKind::To(new_name) | ast::RenameTableNameKind::As(new_name),
            },
        ] if alter.table_type.is_none() => Ok(RenameRelation {
            target: RenameTarget::Table,
            name: object_ref(&alter.name)?,
            new_name: unqualified(new_name)?,
            if_exists: alter.if_exists,
        }),
        _ => Err(ParseError::unsupported(
            "ALTER TABLE supports only RENAME TO: featuredb tables are append-only Iceberg \
             tables whose columns are fixed at creation",
        )),
    }
}

/// Whether the tokens start `ALTER VIEW` (which sqlparser parses only as
/// `ALTER VIEW … AS query`).
pub(crate) fn is_alter_view(parser: &Parser) -> bool {
    let word = |offset: usize, keyword: Keyword| {
        matches!(&parser.peek_nth_token(offset).token,
            datafusion::sql::sqlparser::tokenizer::Token::Word(w) if w.keyword == keyword && w.quote_style.is_none())
    };
    word(0, Keyword::ALTER) && word(1, Keyword::VIEW)
}

/// `ALTER VIEW [IF EXISTS] name RENAME TO new_name`.
pub(crate) fn parse_alter_view(parser: &mut Parser) -> Result<RenameRelation, ParseError> {
    let syntax =
        |e: datafusion::sql::sqlparser::parser::ParserError| ParseError::syntax(e.to_string());
    parser
        .expect_keywords(&[Keyword::ALTER, Keyword::VIEW])
        .map_err(syntax)?;
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = parser.parse_object_name(false).map_err(syntax)?;
    if !parser.parse_keywords(&[Keyword::RENAME, Keyword::TO]) {
        return Err(ParseError::unsupported(
            "ALTER VIEW supports only RENAME TO; use CREATE OR REPLACE VIEW to change a view",
        ));
    }
    let new_name = parser.parse_identifier().map_err(syntax)?;
    Ok(RenameRelation {
        target: RenameTarget::View,
        name: object_ref(&name)?,
        new_name: normalize_ident(&new_name),
        if_exists,
    })
}

pub fn truncate(truncate: &ast::Truncate) -> Result<TruncateTables, ParseError> {
    if truncate.partitions.is_some() || truncate.on_cluster.is_some() {
        return Err(ParseError::unsupported(
            "TRUNCATE … PARTITION / ON CLUSTER is not supported",
        ));
    }
    if matches!(truncate.cascade, Some(ast::CascadeOption::Cascade)) {
        return Err(ParseError::unsupported(
            "TRUNCATE … CASCADE is not supported: featuredb has no foreign keys to follow",
        ));
    }
    Ok(TruncateTables {
        names: truncate
            .table_names
            .iter()
            .map(|t| object_ref(&t.name))
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use crate::{Statement, parse_statement};

    use super::*;

    #[test]
    fn renames() {
        let Statement::RenameRelation(rename) =
            parse_statement(r#"alter table "featuredb"."s"."t__dbt_tmp" rename to "t""#).unwrap()
        else {
            panic!("not a rename")
        };
        assert_eq!(rename.target, RenameTarget::Table);
        assert_eq!(rename.name.to_string(), "s.t__dbt_tmp");
        assert_eq!(rename.new_name, "t");
        let Statement::RenameRelation(rename) =
            parse_statement("ALTER VIEW IF EXISTS v RENAME TO W").unwrap()
        else {
            panic!("not a rename")
        };
        assert_eq!(rename.target, RenameTarget::View);
        assert!(rename.if_exists);
        assert_eq!(rename.new_name, "w");
        assert!(parse_statement("alter table t rename to s.u").is_err());
        assert!(parse_statement("alter table t add column c int").is_err());
        assert!(parse_statement("alter view v as select 1").is_err());
    }

    #[test]
    fn truncates() {
        let Statement::Truncate(truncate) = parse_statement("truncate table a, s.b").unwrap()
        else {
            panic!("not a truncate")
        };
        assert_eq!(truncate.names.len(), 2);
        assert!(matches!(
            parse_statement("truncate a").unwrap(),
            Statement::Truncate(_)
        ));
        assert!(parse_statement("truncate a cascade").is_err());
    }
}

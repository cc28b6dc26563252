//! Parsing one statement's text into a [`Statement`].

use datafusion::sql::sqlparser::ast::{self, ColumnOption, ObjectType, SchemaName};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use featuredb_catalog::ColumnDef;

use crate::copy::copy_statement;
use crate::cursor::{close_cursor, declare_cursor, fetch_cursor};
use crate::dialect::FeatureDbDialect;
use crate::error::ParseError;
use crate::names::{normalize_ident, object_ref, schema_name};
use crate::session::{TransactionStatement, reset_statement, set_statement, show_statement};
use crate::split::split_statements;
use crate::statement::{CreateSchema, CreateTable, CreateView, DropObjects, Statement};
use crate::types::column_type;

/// Parses a whole query message: every statement is parsed before any is
/// executed, so a syntax error anywhere runs nothing (as in PostgreSQL).
/// Error positions are relative to the whole message.
pub fn parse_query(sql: &str) -> Result<Vec<(String, Statement)>, ParseError> {
    split_statements(sql)?
        .into_iter()
        .map(|piece| {
            parse_statement(piece.text)
                .map(|statement| (piece.text.to_string(), statement))
                .map_err(|e| e.offset_by(piece.char_offset))
        })
        .collect()
}

/// Parses exactly one statement (no trailing statements allowed).
pub fn parse_statement(sql: &str) -> Result<Statement, ParseError> {
    if let Some(statement) = parse_special(sql) {
        return Ok(statement);
    }
    let temporal = crate::temporal::rewrite(sql)?;
    let rewritten = crate::asof::rewrite(&temporal)?;
    let sql_for_parser: &str = &rewritten;
    let dialect = FeatureDbDialect::default();
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql_for_parser)
        .map_err(|e| ParseError::from_parser(e, sql))?;
    if crate::feature::is_feature_statement(&parser) {
        let statement = crate::feature::parse_feature_statement(&mut parser)
            .map_err(|e| e.locate(sql_for_parser))?;
        expect_end(&mut parser, sql_for_parser)?;
        return Ok(Statement::Feature(statement));
    }
    if crate::alter::is_alter_view(&parser) {
        let rename = crate::alter::parse_alter_view(&mut parser)?;
        expect_end(&mut parser, sql_for_parser)?;
        return Ok(Statement::RenameRelation(rename));
    }
    let sql = sql_for_parser;
    if !starts_with_keyword(sql, "copy") {
        // The common case: parse from the tokens already made.
        let statement = parser
            .parse_statement()
            .map_err(|e| ParseError::from_parser(e, sql))?;
        expect_end(&mut parser, sql)?;
        return classify(statement);
    }
    // sqlparser's COPY … FROM STDIN grammar wants a semicolon followed by
    // inline data; the data arrives separately over the wire, so give it an
    // empty payload.
    let mut text = force_quote_all_as_list(sql);
    if !text.trim_end().ends_with(';') {
        text.push(';');
    }
    let text = text.as_str();
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| ParseError::from_parser(e, sql))?;
    let statement = parser
        .parse_statement()
        .map_err(|e| ParseError::from_parser(e, sql))?;
    expect_end(&mut parser, sql)?;
    classify(statement)
}

/// Allows one trailing semicolon, nothing else.
fn expect_end(parser: &mut Parser, sql: &str) -> Result<(), ParseError> {
    let _ = parser.consume_token(&Token::SemiColon);
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ParseError::from_parser(
            datafusion::sql::sqlparser::parser::ParserError::ParserError(format!(
                "Expected: end of statement, found: {} at Line: {}, Column: {}",
                next.token, next.span.start.line, next.span.start.column
            )),
            sql,
        ));
    }
    Ok(())
}

/// Marker column list for `FORCE_QUOTE *`, which sqlparser's grammar lacks.
pub(crate) const FORCE_QUOTE_ALL_MARKER: &str = "__featuredb_all_columns__";

/// Rewrites `FORCE_QUOTE *` as a column list sqlparser accepts.
fn force_quote_all_as_list(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let mut out = String::with_capacity(sql.len());
    let mut rest = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("force_quote") {
        let start = search + found;
        let after = start + "force_quote".len();
        let trimmed = lower[after..].trim_start();
        if trimmed.starts_with('*') {
            let star = after + (lower[after..].len() - trimmed.len());
            out.push_str(&sql[rest..after]);
            out.push_str(&format!(" ({FORCE_QUOTE_ALL_MARKER})"));
            rest = star + 1;
        }
        search = after;
    }
    out.push_str(&sql[rest..]);
    out
}

fn starts_with_keyword(sql: &str, keyword: &str) -> bool {
    let trimmed = sql.trim_start();
    trimmed.len() >= keyword.len()
        && trimmed[..keyword.len()].eq_ignore_ascii_case(keyword)
        && trimmed[keyword.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
}

/// Statements sqlparser does not know.
fn parse_special(sql: &str) -> Option<Statement> {
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.trim_end_matches(';').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["abort"] | ["abort", "transaction"] | ["abort", "work"] => {
            Some(Statement::Transaction(TransactionStatement::Rollback))
        }
        // PostgreSQL's `RESET TIME ZONE` spelling; sqlparser only knows
        // `RESET timezone`.
        ["reset", "time", "zone"] => Some(Statement::Reset(
            crate::session::ResetStatement::Variable("timezone".into()),
        )),
        _ => None,
    }
}

fn classify(statement: ast::Statement) -> Result<Statement, ParseError> {
    use ast::Statement as S;
    Ok(match statement {
        S::Query(_) | S::Insert(_) | S::Explain { .. } | S::ExplainTable { .. } => {
            Statement::Query(Box::new(statement))
        }
        S::Prepare { .. } | S::Execute { .. } | S::Deallocate { .. } => {
            Statement::Query(Box::new(statement))
        }
        S::ShowTables { .. } | S::ShowColumns { .. } | S::ShowFunctions { .. } => {
            Statement::Query(Box::new(statement))
        }
        S::CreateSchema {
            schema_name,
            if_not_exists,
            ..
        } => {
            let name = match &schema_name {
                SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                    schema_name_of(name)?
                }
                SchemaName::UnnamedAuthorization(_) => {
                    return Err(ParseError::unsupported(
                        "CREATE SCHEMA AUTHORIZATION without a schema name is not supported",
                    ));
                }
            };
            Statement::CreateSchema(CreateSchema {
                name,
                if_not_exists,
            })
        }
        S::CreateTable(create) => create_table(create)?,
        S::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } => {
            let drop = |names: &[ast::ObjectName]| -> Result<DropObjects, ParseError> {
                Ok(DropObjects {
                    names: names.iter().map(object_ref).collect::<Result<_, _>>()?,
                    if_exists,
                    cascade,
                })
            };
            match object_type {
                ObjectType::Table => Statement::DropTable(drop(&names)?),
                ObjectType::View => Statement::DropView(drop(&names)?),
                ObjectType::Schema => {
                    for name in &names {
                        schema_name_of(name)?;
                    }
                    Statement::DropSchema(drop(&names)?)
                }
                other => {
                    return Err(ParseError::unsupported(format!(
                        "DROP {other} is not supported"
                    )));
                }
            }
        }
        S::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            values,
        } => {
            if values
                .iter()
                .any(|v| v.as_deref().is_some_and(|v| !v.is_empty()))
            {
                return Err(ParseError::unsupported(
                    "inline COPY data is not supported; send rows with the COPY protocol",
                ));
            }
            Statement::Copy(copy_statement(
                &source,
                to,
                &target,
                &options,
                &legacy_options,
            )?)
        }
        S::Set(set) => Statement::Set(set_statement(&set)?),
        S::ShowVariable { variable } => Statement::Show(show_statement(&variable)),
        S::Reset(reset) => Statement::Reset(reset_statement(&reset.reset)),
        S::StartTransaction { statements, .. } if statements.is_empty() => {
            Statement::Transaction(TransactionStatement::Begin)
        }
        S::Commit { .. } => Statement::Transaction(TransactionStatement::Commit),
        S::Rollback {
            savepoint: None, ..
        } => Statement::Transaction(TransactionStatement::Rollback),
        S::Rollback {
            savepoint: Some(name),
            ..
        } => Statement::Transaction(TransactionStatement::RollbackTo(normalize_ident(&name))),
        S::Savepoint { name } => {
            Statement::Transaction(TransactionStatement::Savepoint(normalize_ident(&name)))
        }
        S::ReleaseSavepoint { name } => {
            Statement::Transaction(TransactionStatement::Release(normalize_ident(&name)))
        }
        S::Declare { stmts } => Statement::DeclareCursor(declare_cursor(&stmts)?),
        S::Fetch {
            name,
            direction,
            into: None,
            ..
        } => Statement::Fetch(fetch_cursor(&name, &direction)?),
        S::Close { cursor } => Statement::CloseCursor(close_cursor(&cursor)),
        S::Discard { object_type } => {
            if object_type == ast::DiscardObject::ALL {
                Statement::DiscardAll
            } else if object_type == ast::DiscardObject::TEMP {
                Statement::DiscardTemp
            } else {
                return Err(ParseError::unsupported(format!(
                    "DISCARD {object_type} is not supported"
                )));
            }
        }
        S::Update(_) | S::Delete(_) | S::Merge(_) => {
            return Err(ParseError::unsupported(
                "UPDATE, DELETE and MERGE are not supported: featuredb tables are append-only \
                 Iceberg tables",
            ));
        }
        S::Truncate(truncate) => Statement::Truncate(crate::alter::truncate(&truncate)?),
        S::AlterTable(alter) => Statement::RenameRelation(crate::alter::alter_table(&alter)?),
        S::CreateView(view) => {
            if view.materialized {
                return Err(ParseError::unsupported(
                    "CREATE MATERIALIZED VIEW is not supported: use a feature view with REFRESH",
                ));
            }
            if view.temporary {
                return Err(ParseError::unsupported("temporary views are not supported"));
            }
            if !view.columns.is_empty() {
                return Err(ParseError::unsupported(
                    "a column list in CREATE VIEW is not supported: name the columns with AS in the query",
                ));
            }
            Statement::CreateView(CreateView {
                name: object_ref(&view.name)?,
                or_replace: view.or_replace,
                if_not_exists: view.if_not_exists,
                query: view.query,
            })
        }
        other => {
            return Err(ParseError::unsupported(format!(
                "statement is not supported: {}",
                first_words(&other.to_string())
            )));
        }
    })
}

fn schema_name_of(name: &ast::ObjectName) -> Result<String, ParseError> {
    schema_name(name)
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn create_table(create: ast::CreateTable) -> Result<Statement, ParseError> {
    if create.or_replace {
        return Err(ParseError::unsupported(
            "CREATE OR REPLACE TABLE is not supported",
        ));
    }
    if matches!(
        create.on_commit,
        Some(ast::OnCommit::DeleteRows | ast::OnCommit::Drop)
    ) {
        return Err(ParseError::unsupported(
            "ON COMMIT DELETE ROWS / DROP is not supported: temporary tables keep their rows \
             until they are dropped or the session ends",
        ));
    }
    if create.external || create.location.is_some() {
        return Err(ParseError::unsupported(
            "external tables are not supported yet",
        ));
    }
    if create.like.is_some() || create.clone.is_some() {
        return Err(ParseError::unsupported(
            "CREATE TABLE … LIKE/CLONE is not supported",
        ));
    }
    if !create.constraints.is_empty() {
        return Err(ParseError::unsupported(
            "table constraints (PRIMARY KEY, UNIQUE, FOREIGN KEY, CHECK) are not supported: \
             featuredb tables are append-only and would not enforce them",
        ));
    }
    let mut columns = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        let name = normalize_ident(&column.name);
        if columns.iter().any(|c: &ColumnDef| c.name == name) {
            return Err(ParseError::new(
                crate::ParseErrorKind::DuplicateColumn,
                format!("column \"{name}\" specified more than once"),
            ));
        }
        let mut nullable = true;
        for option in &column.options {
            match &option.option {
                ColumnOption::Null => nullable = true,
                ColumnOption::NotNull => nullable = false,
                other => {
                    return Err(ParseError::unsupported(format!(
                        "column option {other} is not supported (column \"{name}\")"
                    )));
                }
            }
        }
        columns.push(ColumnDef {
            name,
            data_type: column_type(&column.data_type)?,
            nullable,
        });
    }
    if create.query.is_none() && columns.is_empty() {
        return Err(ParseError::syntax("a table must have at least one column"));
    }
    Ok(Statement::CreateTable(CreateTable {
        name: object_ref(&create.name)?,
        temporary: create.temporary,
        if_not_exists: create.if_not_exists,
        columns,
        query: create.query,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParseErrorKind;

    #[test]
    fn multi_statement_messages() {
        let parsed = parse_query("select 1; insert into t values (1);").unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(matches!(parsed[0].1, Statement::Query(_)));
        assert!(parsed[1].1.writes());
    }

    #[test]
    fn syntax_error_position_is_relative_to_the_message() {
        let err = parse_query("select 1; selec 2").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::Syntax);
        assert_eq!(err.position, Some(11));
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let err = parse_statement("select 1 2 3").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::Syntax);
    }

    #[test]
    fn create_and_drop() {
        match parse_statement("CREATE TABLE IF NOT EXISTS S.\"T\" (id bigint not null, v text)")
            .unwrap()
        {
            Statement::CreateTable(t) => {
                assert_eq!(t.name.schema.as_deref(), Some("s"));
                assert_eq!(t.name.name, "T");
                assert!(t.if_not_exists);
                assert!(!t.columns[0].nullable);
                assert!(t.columns[1].nullable);
            }
            other => panic!("{other:?}"),
        }
        match parse_statement("DROP TABLE IF EXISTS a, b.c CASCADE").unwrap() {
            Statement::DropTable(d) => {
                assert_eq!(d.names.len(), 2);
                assert!(d.if_exists && d.cascade);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_statement("CREATE TABLE t AS SELECT 1 AS x").unwrap(),
            Statement::CreateTable(CreateTable { query: Some(_), .. })
        ));
    }

    #[test]
    fn unsupported_statements_say_so() {
        for sql in [
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "CREATE TEMP TABLE t (a int) ON COMMIT DROP",
            "CREATE TABLE t (a int PRIMARY KEY)",
            "DECLARE c SCROLL CURSOR FOR SELECT 1",
            "FETCH BACKWARD 1 FROM c",
            "FETCH ABSOLUTE 3 FROM c",
        ] {
            let err = parse_statement(sql).unwrap_err();
            assert_eq!(err.kind, ParseErrorKind::Unsupported, "{sql}");
        }
    }

    #[test]
    fn parses_savepoints_and_cursors() {
        use crate::cursor::{CloseCursor, FetchCount, FetchCursor};
        assert_eq!(
            parse_statement("SAVEPOINT \"S1\"").unwrap(),
            Statement::Transaction(TransactionStatement::Savepoint("S1".to_string()))
        );
        assert_eq!(
            parse_statement("ROLLBACK TO SAVEPOINT s1").unwrap(),
            Statement::Transaction(TransactionStatement::RollbackTo("s1".to_string()))
        );
        assert_eq!(
            parse_statement("RELEASE s1").unwrap(),
            Statement::Transaction(TransactionStatement::Release("s1".to_string()))
        );
        match parse_statement("DECLARE \"Big\" CURSOR WITH HOLD FOR SELECT 1").unwrap() {
            Statement::DeclareCursor(declare) => {
                assert_eq!(declare.name, "Big");
                assert!(declare.hold);
            }
            other => panic!("{other:?}"),
        }
        for (sql, count) in [
            ("FETCH FORWARD 5 FROM c", FetchCount::Rows(5)),
            ("FETCH 2 IN c", FetchCount::Rows(2)),
            ("FETCH NEXT FROM c", FetchCount::Rows(1)),
            ("FETCH ALL FROM c", FetchCount::All),
            ("FETCH FORWARD ALL FROM c", FetchCount::All),
        ] {
            assert_eq!(
                parse_statement(sql).unwrap(),
                Statement::Fetch(FetchCursor {
                    name: "c".to_string(),
                    count
                }),
                "{sql}"
            );
        }
        assert_eq!(
            parse_statement("CLOSE ALL").unwrap(),
            Statement::CloseCursor(CloseCursor(None))
        );
    }
}

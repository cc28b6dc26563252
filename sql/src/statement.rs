//! The statements featuredb executes.

use datafusion::sql::sqlparser::ast;
use featuredb_catalog::ColumnDef;

use crate::alter::{RenameRelation, RenameTarget, TruncateTables};
use crate::copy::CopyStatement;
use crate::cursor::{CloseCursor, DeclareCursor, FetchCursor};
use crate::feature::FeatureStatement;
use crate::names::ObjectRef;
use crate::session::{ResetStatement, SetStatement, ShowStatement, TransactionStatement};

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// Planned and executed by DataFusion: SELECT, VALUES, INSERT, EXPLAIN, …
    Query(Box<ast::Statement>),
    CreateSchema(CreateSchema),
    DropSchema(DropObjects),
    CreateTable(CreateTable),
    DropTable(DropObjects),
    Copy(CopyStatement),
    Set(SetStatement),
    Show(ShowStatement),
    Reset(ResetStatement),
    Transaction(TransactionStatement),
    /// `DISCARD ALL`: back to a fresh session.
    DiscardAll,
    /// `DISCARD TEMP`: drop the session's temporary tables.
    DiscardTemp,
    /// Entities, feature views and feature services.
    Feature(FeatureStatement),
    CreateView(CreateView),
    DropView(DropObjects),
    DeclareCursor(DeclareCursor),
    Fetch(FetchCursor),
    CloseCursor(CloseCursor),
    /// `ALTER TABLE|VIEW … RENAME TO …`.
    RenameRelation(RenameRelation),
    Truncate(TruncateTables),
}

impl Statement {
    /// The command tag PostgreSQL reports for statements that return no
    /// rows (row-returning ones get `SELECT n`, `INSERT 0 n`, …).
    pub fn command_tag(&self) -> &'static str {
        match self {
            Statement::Query(_) => "SELECT",
            Statement::CreateSchema(_) => "CREATE SCHEMA",
            Statement::DropSchema(_) => "DROP SCHEMA",
            Statement::CreateTable(t) if t.query.is_some() => "SELECT",
            Statement::CreateTable(_) => "CREATE TABLE",
            Statement::DropTable(_) => "DROP TABLE",
            Statement::Copy(_) => "COPY",
            Statement::Set(_) => "SET",
            Statement::Show(_) => "SHOW",
            Statement::Reset(_) => "RESET",
            Statement::Transaction(TransactionStatement::Begin) => "BEGIN",
            Statement::Transaction(TransactionStatement::Commit) => "COMMIT",
            Statement::Transaction(
                TransactionStatement::Rollback | TransactionStatement::RollbackTo(_),
            ) => "ROLLBACK",
            Statement::Transaction(TransactionStatement::Savepoint(_)) => "SAVEPOINT",
            Statement::Transaction(TransactionStatement::Release(_)) => "RELEASE",
            Statement::DiscardAll => "DISCARD ALL",
            Statement::DiscardTemp => "DISCARD TEMP",
            Statement::Feature(feature) => feature.command_tag(),
            Statement::CreateView(_) => "CREATE VIEW",
            Statement::DropView(_) => "DROP VIEW",
            Statement::DeclareCursor(_) => "DECLARE CURSOR",
            Statement::Fetch(_) => "FETCH",
            Statement::CloseCursor(_) => "CLOSE CURSOR",
            Statement::RenameRelation(rename) => match rename.target {
                RenameTarget::Table => "ALTER TABLE",
                RenameTarget::View => "ALTER VIEW",
            },
            Statement::Truncate(_) => "TRUNCATE TABLE",
        }
    }

    /// Whether executing the statement may change stored data or the
    /// catalog (used to refuse writes in a failed transaction block and to
    /// report what ROLLBACK cannot undo).
    pub fn writes(&self) -> bool {
        match self {
            Statement::Query(statement) => matches!(**statement, ast::Statement::Insert(_)),
            Statement::CreateSchema(_)
            | Statement::DropSchema(_)
            | Statement::CreateTable(_)
            | Statement::DropTable(_)
            | Statement::CreateView(_)
            | Statement::DropView(_)
            | Statement::RenameRelation(_)
            | Statement::Truncate(_) => true,
            Statement::Copy(copy) => copy.direction == crate::copy::CopyDirection::FromStdin,
            Statement::Feature(feature) => !matches!(feature, FeatureStatement::Show(_)),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSchema {
    pub name: String,
    pub if_not_exists: bool,
}

/// `DROP TABLE|SCHEMA [IF EXISTS] a, b [CASCADE|RESTRICT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropObjects {
    pub names: Vec<ObjectRef>,
    pub if_exists: bool,
    pub cascade: bool,
}

/// `CREATE [OR REPLACE] VIEW name AS query`: a stored query.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    pub name: ObjectRef,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub query: Box<ast::Query>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub name: ObjectRef,
    /// `CREATE TEMPORARY TABLE`: session-local.
    pub temporary: bool,
    pub if_not_exists: bool,
    /// Declared columns; empty for `CREATE TABLE … AS` without a column list.
    pub columns: Vec<ColumnDef>,
    /// `CREATE TABLE … AS <query>`: columns come from the query's output.
    pub query: Option<Box<ast::Query>>,
}

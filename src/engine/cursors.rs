//! The cursor statements (`DECLARE`, `FETCH`, `CLOSE`): the session runs
//! the query and hands its row stream to the session's cursors
//! ([`crate::pgcompat::cursors`]).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use featuredb_sql::cursor::{CloseCursor, DeclareCursor, FetchCursor};

use super::outcome::{CommandTag, Outcome};
use super::prepare::Prepared;
use super::session::{Session, TransactionState};
use crate::error::{Error, Result};
use crate::pgcompat::column_names::rename_columns;

impl Session {
    pub(crate) async fn declare_cursor(
        &mut self,
        prepared: &Prepared,
        declare: &DeclareCursor,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        if !declare.hold && self.transaction_state() == TransactionState::Idle {
            return Err(Error::NoActiveTransaction("DECLARE CURSOR"));
        }
        if self.cursors.contains(&declare.name) {
            return Err(Error::DuplicateCursor(declare.name.clone()));
        }
        let plan = prepared
            .plan
            .clone()
            .ok_or_else(|| Error::internal("DECLARE without a planned query"))?;
        let Outcome::Rows { schema, stream, .. } = self.run_plan(plan, params).await? else {
            return Err(Error::FeatureNotSupported(
                "DECLARE CURSOR needs a query that returns rows".to_string(),
            ));
        };
        let opened_at =
            (self.transaction_state() != TransactionState::Idle).then(|| self.savepoint_depth());
        self.cursors.declare(
            &declare.name,
            rename_columns(&schema, &prepared.column_names),
            stream,
            declare.hold,
            opened_at,
        )?;
        Ok(Outcome::Command(CommandTag::new("DECLARE CURSOR")))
    }

    pub(crate) async fn fetch(&mut self, fetch: &FetchCursor) -> Result<Outcome> {
        let (schema, stream) = self.cursors.fetch(&fetch.name, fetch.count).await?;
        Ok(Outcome::Rows {
            schema,
            stream,
            tag: "FETCH",
        })
    }

    pub(crate) fn close_cursor(&mut self, close: &CloseCursor) -> Result<Outcome> {
        match &close.0 {
            Some(name) => self.cursors.close(name)?,
            None => self.cursors.close_all(),
        }
        Ok(Outcome::Command(CommandTag::new("CLOSE CURSOR")))
    }

    /// The row shape of cursor `name`, for Describe and for planning FETCH.
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.schema(name)
    }
}

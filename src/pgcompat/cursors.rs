//! SQL cursors of a session: `DECLARE name CURSOR FOR query` starts the
//! query and keeps its row stream; `FETCH n FROM name` takes the next rows;
//! `CLOSE` drops it. Drivers' server-side (named) cursors are built on
//! these. Cursors only move forward (no SCROLL, BACKWARD or MOVE).
//!
//! As in PostgreSQL, a cursor without `WITH HOLD` lives until its
//! transaction block ends and can only be declared inside one; a `WITH
//! HOLD` cursor lives until it is closed or the session ends. Cursor names
//! are also portal names: a protocol-level Describe of the portal `name`
//! describes the cursor (psycopg relies on it).

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use featuredb_sql::cursor::FetchCount;
use futures::StreamExt;

use crate::error::{Error, Result};

struct Cursor {
    schema: SchemaRef,
    /// Behind a mutex only so that a session (and its cursors) can be
    /// shared across threads; FETCH holds the session mutably and never
    /// waits on it.
    stream: tokio::sync::Mutex<SendableRecordBatchStream>,
    /// Rows of a batch a FETCH took only part of.
    pending: Option<RecordBatch>,
    hold: bool,
    /// Declared in the current transaction block, with this many
    /// savepoints set at the time; `None` once its block committed (or
    /// when declared outside one).
    opened_at: Option<usize>,
}

/// The cursors of one session, by name.
#[derive(Default)]
pub struct Cursors {
    open: HashMap<String, Cursor>,
}

impl Cursors {
    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.open.get(name).map(|c| c.schema.clone())
    }

    /// The transaction block ended: cursors without HOLD go. If it rolled
    /// back, so do the WITH HOLD cursors it declared (as in PostgreSQL,
    /// only a committed block's holdable cursors survive it).
    pub fn end_of_block(&mut self, committed: bool) {
        self.open
            .retain(|_, cursor| cursor.hold && (committed || cursor.opened_at.is_none()));
        for cursor in self.open.values_mut() {
            cursor.opened_at = None;
        }
    }

    /// `RELEASE` of the savepoint that was the `position + 1`-th: cursors
    /// declared after it now belong to the enclosing level.
    pub fn released(&mut self, position: usize) {
        for cursor in self.open.values_mut() {
            if let Some(at) = &mut cursor.opened_at {
                *at = (*at).min(position);
            }
        }
    }

    /// `ROLLBACK TO` the savepoint that was the `savepoints`-th: cursors
    /// declared after it go.
    pub fn rollback_to(&mut self, savepoints: usize) {
        self.open
            .retain(|_, cursor| cursor.opened_at.is_none_or(|at| at < savepoints));
    }

    pub fn close_all(&mut self) {
        self.open.clear();
    }

    /// Opens cursor `name` over `stream` (its rows shaped as `schema`).
    /// `opened_at`: the savepoints set in the current block when declared,
    /// `None` outside a block.
    pub fn declare(
        &mut self,
        name: &str,
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        hold: bool,
        opened_at: Option<usize>,
    ) -> Result<()> {
        if self.open.contains_key(name) {
            return Err(Error::DuplicateCursor(name.to_string()));
        }
        self.open.insert(
            name.to_string(),
            Cursor {
                schema,
                stream: tokio::sync::Mutex::new(stream),
                pending: None,
                hold,
                opened_at,
            },
        );
        Ok(())
    }

    /// Whether a cursor called `name` is open.
    pub fn contains(&self, name: &str) -> bool {
        self.open.contains_key(name)
    }

    /// The next `count` rows of cursor `name`, as a stream of its schema.
    pub async fn fetch(
        &mut self,
        name: &str,
        count: FetchCount,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let cursor = self
            .open
            .get_mut(name)
            .ok_or_else(|| Error::UndefinedCursor(name.to_string()))?;
        let wanted = match count {
            FetchCount::Rows(n) => usize::try_from(n).unwrap_or(usize::MAX),
            FetchCount::All => usize::MAX,
        };
        let mut batches = Vec::new();
        let mut taken = 0usize;
        while taken < wanted {
            let batch = match cursor.pending.take() {
                Some(batch) => batch,
                None => match cursor.stream.get_mut().next().await {
                    Some(batch) => batch.map_err(Error::from_datafusion)?,
                    None => break,
                },
            };
            let take = batch.num_rows().min(wanted - taken);
            if take < batch.num_rows() {
                cursor.pending = Some(batch.slice(take, batch.num_rows() - take));
            }
            taken += take;
            batches.push(batch.slice(0, take));
        }
        let schema = cursor.schema.clone();
        let stream = RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        );
        Ok((schema, Box::pin(stream)))
    }

    /// Closes cursor `name` (34000 if there is none).
    pub fn close(&mut self, name: &str) -> Result<()> {
        self.open
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Error::UndefinedCursor(name.to_string()))
    }
}

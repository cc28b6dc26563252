//! Portals: a bound statement and, once executing, its remaining rows.
//! Row-limited Execute messages fetch from the same stream, with
//! PortalSuspended between fetches.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use futures::{SinkExt, StreamExt};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::CommandComplete;

use super::connection::{Connection, Reply, StatementGuard};
use super::rows::data_rows;
use crate::engine::Prepared;
use crate::error::{Error, Result};
use crate::pgtypes::OutputContext;

pub struct Portal {
    pub statement: Arc<Prepared>,
    pub params: Vec<ScalarValue>,
    /// Result format codes as Bind sent them.
    pub result_format_codes: Vec<i16>,
    pub state: PortalState,
}

pub enum PortalState {
    Ready,
    Streaming(RowStream),
    Done,
}

/// Rows still to send.
pub struct RowStream {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    pub formats: Vec<i16>,
    pub tag: &'static str,
    pub context: OutputContext,
    /// A batch partly sent by a row-limited Execute, and the next row.
    pending: Option<(RecordBatch, usize)>,
}

pub enum Fetched {
    /// The row limit was reached; more rows may follow.
    Suspended,
    /// The stream ended after this many rows (in this fetch).
    Complete(usize),
}

impl RowStream {
    pub fn new(
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        formats: Vec<i16>,
        tag: &'static str,
        context: OutputContext,
    ) -> Self {
        Self {
            schema,
            stream,
            formats,
            tag,
            context,
            pending: None,
        }
    }
}

impl Connection {
    /// Sends up to `max_rows` rows (0: all) as DataRow messages. Checks for
    /// cancel and timeout before each batch.
    pub(super) async fn fetch_rows(
        &mut self,
        rows: &mut RowStream,
        max_rows: usize,
        guard: &StatementGuard,
    ) -> Reply<Result<Fetched>> {
        let mut sent = 0usize;
        loop {
            if max_rows > 0 && sent >= max_rows {
                return Ok(Ok(Fetched::Suspended));
            }
            let (batch, offset) = match rows.pending.take() {
                Some(pending) => pending,
                None => {
                    let next = guard
                        .run(async {
                            rows.stream
                                .next()
                                .await
                                .transpose()
                                .map_err(Error::from_datafusion)
                        })
                        .await;
                    match next {
                        Ok(Some(batch)) => (batch, 0),
                        Ok(None) => return Ok(Ok(Fetched::Complete(sent))),
                        Err(e) => return Ok(Err(e)),
                    }
                }
            };
            let available = batch.num_rows() - offset;
            let take = if max_rows > 0 {
                available.min(max_rows - sent)
            } else {
                available
            };
            let messages =
                match data_rows(&batch, offset, offset + take, &rows.formats, &rows.context) {
                    Ok(messages) => messages,
                    Err(e) => return Ok(Err(e)),
                };
            for message in messages {
                self.framed
                    .feed(PgWireBackendMessage::DataRow(message))
                    .await?;
            }
            sent += take;
            if offset + take < batch.num_rows() {
                rows.pending = Some((batch, offset + take));
            }
        }
    }

    /// Ends a row-returning statement: notices, then `SELECT n` (or the
    /// statement's own tag, e.g. `SHOW`).
    pub(super) async fn rows_complete(&mut self, tag: &'static str, count: usize) -> Reply {
        self.send_session_messages().await?;
        let tag = if tag == "SELECT" || tag == "FETCH" {
            format!("{tag} {count}")
        } else {
            tag.to_string()
        };
        self.command_complete(tag).await
    }

    /// `DEALLOCATE ALL` and `DISCARD ALL` deallocate the statements
    /// prepared with the protocol's Parse too: PostgreSQL keeps SQL-level
    /// and protocol-level prepared statements in one namespace (poolers
    /// reset server connections this way). The unnamed statement stays.
    pub(super) fn forget_statements_after(&mut self, tag: &crate::engine::CommandTag) {
        if matches!(tag.command, "DEALLOCATE ALL" | "DISCARD ALL") {
            self.statements.retain(|name, _| name.is_empty());
        }
    }

    pub(super) async fn command_complete(&mut self, tag: String) -> Reply {
        self.framed
            .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                tag,
            )))
            .await?;
        Ok(())
    }
}

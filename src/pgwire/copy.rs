//! The COPY sub-protocol: CopyInResponse and the CopyData/CopyDone/CopyFail
//! stream from the client; CopyOutResponse and CopyData rows to it.

use datafusion::execution::SendableRecordBatchStream;
use featuredb_sql::Statement;
use featuredb_sql::copy::CopyFormat;
use futures::{SinkExt, StreamExt};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyInResponse, CopyOutResponse};

use super::connection::{Connection, Reply, StatementGuard};
use crate::copy::{CopyEncoder, CopyFromStdin};
use crate::engine::CommandTag;
use crate::error::Error;

/// A COPY FROM STDIN waiting for data.
pub struct CopyInProgress {
    pub sink: Box<CopyFromStdin>,
    /// Started by the extended protocol (errors then wait for Sync).
    pub extended: bool,
    /// Statements of the same simple Query that follow the COPY.
    pub remaining: Vec<(String, Statement)>,
    /// Cancel and timeout of the COPY statement, across its messages.
    pub guard: StatementGuard,
}

impl Connection {
    pub(super) async fn start_copy_in(&mut self, progress: CopyInProgress) -> Reply {
        let columns = progress.sink.column_count();
        let format = progress.sink.format();
        let column_format = if format == CopyFormat::Binary { 1 } else { 0 };
        self.framed
            .feed(PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
                format.wire_format_code(),
                columns as i16,
                vec![column_format; columns],
            )))
            .await?;
        self.framed.flush().await?;
        self.copy_in = Some(progress);
        Ok(())
    }

    pub(super) async fn handle_copy_message(&mut self, message: PgWireFrontendMessage) -> Reply {
        let Some(mut progress) = self.copy_in.take() else {
            return Ok(());
        };
        match message {
            PgWireFrontendMessage::CopyData(data) => {
                let pushed = {
                    let CopyInProgress { sink, guard, .. } = &mut progress;
                    guard.run(sink.push(&data.data)).await
                };
                match pushed {
                    Ok(()) => {
                        self.copy_in = Some(progress);
                        Ok(())
                    }
                    Err(e) => self.fail_copy(progress, e).await,
                }
            }
            PgWireFrontendMessage::CopyDone(_) => {
                let CopyInProgress {
                    sink,
                    extended,
                    remaining,
                    guard,
                } = progress;
                match guard.run(sink.finish()).await {
                    Ok(rows) => {
                        self.session().on_write();
                        self.send_session_messages().await?;
                        self.command_complete(CommandTag::with_rows("COPY", rows).to_string())
                            .await?;
                        if extended {
                            Ok(())
                        } else {
                            self.run_simple_statements(remaining).await
                        }
                    }
                    Err(e) => {
                        self.report(&e).await?;
                        if extended {
                            self.skip_until_sync = true;
                            Ok(())
                        } else {
                            self.ready_for_query().await
                        }
                    }
                }
            }
            PgWireFrontendMessage::CopyFail(fail) => {
                self.fail_copy(
                    progress,
                    Error::BadCopyData {
                        message: format!("COPY from stdin failed: {}", fail.message),
                        context: "COPY".to_string(),
                        kind: crate::error::BadCopyDataKind::Format,
                    },
                )
                .await
            }
            // Drivers may send these while copying; they mean nothing here.
            PgWireFrontendMessage::Flush(_) | PgWireFrontendMessage::Sync(_) => {
                self.copy_in = Some(progress);
                Ok(())
            }
            other => {
                let name = format!("{other:?}");
                let name = name
                    .split(['(', ' '])
                    .next()
                    .unwrap_or("message")
                    .to_string();
                self.fail_copy(
                    progress,
                    Error::Protocol(format!(
                        "unexpected message type {name} during COPY from stdin"
                    )),
                )
                .await
            }
        }
    }

    /// The COPY failed: nothing it received is kept.
    async fn fail_copy(&mut self, progress: CopyInProgress, error: Error) -> Reply {
        let extended = progress.extended;
        drop(progress);
        self.report(&error).await?;
        if extended {
            self.skip_until_sync = true;
            Ok(())
        } else {
            self.ready_for_query().await
        }
    }

    /// Streams `COPY … TO STDOUT` output.
    pub(super) async fn copy_out(
        &mut self,
        encoder: CopyEncoder,
        format: CopyFormat,
        columns: usize,
        mut stream: SendableRecordBatchStream,
        guard: &StatementGuard,
    ) -> Reply<Result<(), Error>> {
        let column_format = if format == CopyFormat::Binary { 1 } else { 0 };
        self.framed
            .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                format.wire_format_code(),
                columns as i16,
                vec![column_format; columns],
            )))
            .await?;
        if let Some(preamble) = encoder.preamble() {
            self.framed
                .feed(PgWireBackendMessage::CopyData(CopyData::new(preamble)))
                .await?;
        }
        let mut rows = 0u64;
        loop {
            let next = guard
                .run(async {
                    stream
                        .next()
                        .await
                        .transpose()
                        .map_err(Error::from_datafusion)
                })
                .await;
            let batch = match next {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
            };
            let encoded = match encoder.encode(&batch) {
                Ok(encoded) => encoded,
                Err(e) => return Ok(Err(e)),
            };
            rows += encoded.len() as u64;
            for row in encoded {
                self.framed
                    .feed(PgWireBackendMessage::CopyData(CopyData::new(row)))
                    .await?;
            }
        }
        if let Some(trailer) = encoder.trailer() {
            self.framed
                .feed(PgWireBackendMessage::CopyData(CopyData::new(trailer)))
                .await?;
        }
        self.framed
            .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
            .await?;
        self.send_session_messages().await?;
        self.command_complete(CommandTag::with_rows("COPY", rows).to_string())
            .await?;
        Ok(Ok(()))
    }
}

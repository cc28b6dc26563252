//! The simple query protocol: one Query message, any number of statements,
//! results in text, then ReadyForQuery.

use featuredb_sql::Statement;
use futures::SinkExt;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::EmptyQueryResponse;

use super::connection::{Connection, Reply};
use super::copy::CopyInProgress;
use super::errors::notice_response;
use super::portal::{Fetched, RowStream};
use super::rows::{TEXT, write_lookup_rows, write_row_description};
use crate::engine::Outcome;
use crate::error::Error;

impl Connection {
    pub(super) async fn simple_query(&mut self, sql: &str) -> Reply {
        // A Query message destroys the unnamed statement and portal.
        self.statements.remove("");
        self.portals.remove("");
        let statements = match featuredb_sql::parse_query(sql) {
            Ok(statements) => statements,
            Err(e) => {
                self.report(&Error::Parse(e)).await?;
                return self.ready_for_query().await;
            }
        };
        if statements.is_empty() {
            self.framed
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
            return self.ready_for_query().await;
        }
        self.run_simple_statements(statements).await
    }

    /// Runs statements in order until one fails; a COPY FROM STDIN pauses
    /// the sequence until its data has arrived.
    pub(super) async fn run_simple_statements(
        &mut self,
        statements: Vec<(String, Statement)>,
    ) -> Reply {
        let mut remaining = statements.into_iter();
        while let Some((sql, statement)) = remaining.next() {
            let discard_all = matches!(statement, Statement::DiscardAll);
            let reports_progress = matches!(
                statement,
                Statement::Feature(featuredb_sql::feature::FeatureStatement::Refresh(_))
            );
            let guard = self.start_statement();
            let outcome = if reports_progress {
                self.run_reporting_progress(&guard, &sql, statement).await?
            } else {
                let session = self.session();
                guard
                    .run(async {
                        let prepared = session.plan_statement(&sql, statement, &[]).await?;
                        session.execute(&prepared, Vec::new()).await
                    })
                    .await
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    self.report(&e).await?;
                    return self.ready_for_query().await;
                }
            };
            if discard_all {
                self.statements.clear();
                self.portals.clear();
            }
            match outcome {
                Outcome::CopyIn(sink) => {
                    self.start_copy_in(CopyInProgress {
                        sink,
                        extended: false,
                        remaining: remaining.collect(),
                        guard,
                    })
                    .await?;
                    // ReadyForQuery follows the data (or the rest of the
                    // statements after it).
                    return Ok(());
                }
                outcome => {
                    if let Err(e) = self.send_simple_outcome(outcome, &guard).await? {
                        self.report(&e).await?;
                        return self.ready_for_query().await;
                    }
                }
            }
        }
        self.ready_for_query().await
    }

    /// Runs a long statement, sending its progress notices as they come
    /// (psql prints them while the statement runs).
    async fn run_reporting_progress(
        &mut self,
        guard: &super::connection::StatementGuard,
        sql: &str,
        statement: Statement,
    ) -> Reply<crate::error::Result<Outcome>> {
        let (sink, mut progress) = tokio::sync::mpsc::unbounded_channel();
        let Connection {
            session, framed, ..
        } = self;
        let session = session
            .as_mut()
            .expect("the session exists once startup completed");
        session.set_progress_sink(Some(sink));
        let outcome = {
            let work = guard.run(async {
                let prepared = session.plan_statement(sql, statement, &[]).await?;
                session.execute(&prepared, Vec::new()).await
            });
            tokio::pin!(work);
            loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    Some(notice) = progress.recv() => {
                        framed
                            .send(PgWireBackendMessage::NoticeResponse(notice_response(&notice)))
                            .await?;
                    }
                }
            }
        };
        session.set_progress_sink(None);
        while let Ok(notice) = progress.try_recv() {
            framed
                .feed(PgWireBackendMessage::NoticeResponse(notice_response(
                    &notice,
                )))
                .await?;
        }
        Ok(outcome)
    }

    /// Sends a statement's full result in text format.
    async fn send_simple_outcome(
        &mut self,
        outcome: Outcome,
        guard: &super::connection::StatementGuard,
    ) -> Reply<Result<(), Error>> {
        match outcome {
            Outcome::Rows {
                schema,
                stream,
                tag,
            } => {
                let formats = vec![TEXT; schema.fields().len()];
                write_row_description(self.framed.write_buffer_mut(), &schema, &formats);
                let context = self.session().output_context();
                let mut rows = RowStream::new(schema, stream, formats, tag, context);
                match self.fetch_rows(&mut rows, 0, guard).await? {
                    Ok(Fetched::Complete(count)) => {
                        self.rows_complete(tag, count).await?;
                        Ok(Ok(()))
                    }
                    Ok(Fetched::Suspended) => unreachable!("no row limit"),
                    Err(e) => Ok(Err(e)),
                }
            }
            Outcome::Lookup(rows) => {
                let formats = vec![TEXT; rows.schema().fields().len()];
                write_row_description(self.framed.write_buffer_mut(), rows.schema(), &formats);
                let context = self.session().output_context();
                match write_lookup_rows(self.framed.write_buffer_mut(), &rows, &formats, &context) {
                    Ok(count) => {
                        self.rows_complete("SELECT", count).await?;
                        Ok(Ok(()))
                    }
                    Err(e) => Ok(Err(e)),
                }
            }
            Outcome::Command(tag) => {
                self.send_session_messages().await?;
                self.forget_statements_after(&tag);
                self.command_complete(tag.to_string()).await?;
                Ok(Ok(()))
            }
            Outcome::CopyOut {
                encoder,
                format,
                columns,
                stream,
            } => self.copy_out(encoder, format, columns, stream, guard).await,
            Outcome::CopyIn(_) => unreachable!("handled by the caller"),
            Outcome::Empty => {
                self.framed
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                Ok(Ok(()))
            }
        }
    }
}

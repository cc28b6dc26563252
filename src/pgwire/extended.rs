//! The extended query protocol: Parse, Bind, Describe, Execute, Close, Sync.
//!
//! Statements are planned at Parse; Bind decodes parameters (text or binary)
//! into the types the plan expects; Execute runs the portal, honouring the
//! row limit with PortalSuspended. After an error, everything up to Sync is
//! skipped, as PostgreSQL does.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use featuredb_sql::Statement;
use futures::SinkExt;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Parse, ParseComplete,
    PortalSuspended, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::EmptyQueryResponse;

use super::connection::{Connection, Reply};
use super::copy::CopyInProgress;
use super::portal::{Fetched, Portal, PortalState, RowStream};
use super::rows::{BINARY, TEXT, result_formats, write_lookup_rows, write_row_description};
use crate::engine::Description;
use crate::engine::{Outcome, TransactionState};
use crate::error::{Error, Result};
use crate::pgtypes::{data_type_of_oid, parse_binary_param, parse_text_param, pg_type};
use crate::serving::LookupRows;

impl Connection {
    /// Reports an extended-protocol error and skips to the next Sync.
    async fn extended_error(&mut self, error: Error) -> Reply {
        self.report(&error).await?;
        self.skip_until_sync = true;
        Ok(())
    }

    pub(super) async fn parse(&mut self, parse: Parse) -> Reply {
        let name = parse.name.unwrap_or_default();
        if !name.is_empty() && self.statements.contains_key(&name) {
            return self
                .extended_error(Error::Parse(featuredb_sql::ParseError::new(
                    featuredb_sql::ParseErrorKind::InvalidName,
                    format!("prepared statement \"{name}\" already exists"),
                )))
                .await;
        }
        let declared: Vec<_> = parse
            .type_oids
            .iter()
            .map(|oid| data_type_of_oid(*oid))
            .collect();
        let guard = self.start_statement();
        let prepared = {
            let session = self.session();
            guard.run(session.prepare(&parse.query, &declared)).await
        };
        match prepared {
            Ok(mut prepared) => {
                prepared.declared_oids = parse.type_oids.clone();
                self.statements.insert(name, Arc::new(prepared));
                self.framed
                    .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
                    .await?;
                Ok(())
            }
            Err(e) => self.extended_error(e).await,
        }
    }

    pub(super) async fn bind(&mut self, bind: Bind) -> Reply {
        let statement_name = bind.statement_name.clone().unwrap_or_default();
        let portal_name = bind.portal_name.clone().unwrap_or_default();
        let Some(statement) = self.statements.get(&statement_name).cloned() else {
            return self
                .extended_error(Error::UndefinedPreparedStatement(statement_name))
                .await;
        };
        if !portal_name.is_empty() && self.portals.contains_key(&portal_name) {
            return self
                .extended_error(Error::Protocol(format!(
                    "portal \"{portal_name}\" already exists"
                )))
                .await;
        }
        let params = match self.decode_parameters(&statement, &bind) {
            Ok(params) => params,
            Err(e) => return self.extended_error(e).await,
        };
        if let Description::Rows(schema) = &statement.description
            && let Err(e) = result_formats(&bind.result_column_format_codes, schema.fields().len())
        {
            return self.extended_error(e).await;
        }
        self.portals.insert(
            portal_name,
            Portal {
                statement,
                params,
                result_format_codes: bind.result_column_format_codes,
                state: PortalState::Ready,
            },
        );
        self.framed
            .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    fn decode_parameters(
        &mut self,
        statement: &crate::engine::Prepared,
        bind: &Bind,
    ) -> Result<Vec<ScalarValue>> {
        let types = &statement.param_types;
        if bind.parameters.len() != types.len() {
            return Err(Error::Protocol(format!(
                "bind message supplies {} parameters, but prepared statement \"{}\" requires {}",
                bind.parameters.len(),
                bind.statement_name.as_deref().unwrap_or(""),
                types.len()
            )));
        }
        let codes = &bind.parameter_format_codes;
        let format = |index: usize| match codes.as_slice() {
            [] => TEXT,
            [code] => *code,
            codes => codes[index],
        };
        if codes.len() > 1 && codes.len() != types.len() {
            return Err(Error::Protocol(format!(
                "bind message has {} parameter formats but {} parameters",
                codes.len(),
                types.len()
            )));
        }
        let time_zone = self.session().settings().time_zone().clone();
        bind.parameters
            .iter()
            .zip(types)
            .enumerate()
            .map(|(index, (value, data_type))| {
                let format = format(index);
                let Some(bytes) = value else {
                    return Ok(ScalarValue::try_from(data_type)?);
                };
                let parsed = match format {
                    TEXT => {
                        let text = std::str::from_utf8(bytes).map_err(|_| {
                            Error::InvalidTextRepresentation {
                                message: "invalid byte sequence for encoding \"UTF8\"".to_string(),
                            }
                        })?;
                        parse_text_param(text, data_type, &time_zone)
                    }
                    BINARY => parse_binary_param(bytes, &pg_type(data_type), data_type),
                    other => Err(Error::Protocol(format!("unsupported format code: {other}"))),
                };
                parsed.map_err(|e| match e {
                    Error::InvalidTextRepresentation { message } => {
                        Error::InvalidTextRepresentation {
                            message: format!("{message} (parameter ${})", index + 1),
                        }
                    }
                    other => other,
                })
            })
            .collect()
    }

    pub(super) async fn describe(&mut self, describe: Describe) -> Reply {
        let name = describe.name.unwrap_or_default();
        match describe.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                let Some(statement) = self.statements.get(&name).cloned() else {
                    return self
                        .extended_error(Error::UndefinedPreparedStatement(name))
                        .await;
                };
                let types = statement
                    .param_types
                    .iter()
                    .enumerate()
                    .map(|(index, t)| match statement.declared_oids.get(index) {
                        Some(&declared) if declared != 0 => declared,
                        _ => pg_type(t).oid(),
                    })
                    .collect();
                self.framed
                    .feed(PgWireBackendMessage::ParameterDescription(
                        ParameterDescription::new(types),
                    ))
                    .await?;
                self.describe_result(&statement.description, &[]).await
            }
            TARGET_TYPE_BYTE_PORTAL => {
                let Some(portal) = self.portals.get(&name) else {
                    // SQL cursors are portals too (DECLARE name CURSOR).
                    if let Some(schema) = self.session().cursor_schema(&name) {
                        return self.describe_result(&Description::Rows(schema), &[]).await;
                    }
                    return self.extended_error(Error::UndefinedPortal(name)).await;
                };
                let description = portal.statement.description.clone();
                let codes = portal.result_format_codes.clone();
                self.describe_result(&description, &codes).await
            }
            other => {
                self.extended_error(Error::Protocol(format!(
                    "invalid DESCRIBE message subtype {other}"
                )))
                .await
            }
        }
    }

    async fn describe_result(&mut self, description: &Description, codes: &[i16]) -> Reply {
        match description {
            Description::NoData => {
                self.framed
                    .feed(PgWireBackendMessage::NoData(NoData::new()))
                    .await?;
            }
            Description::Rows(schema) => {
                let formats = result_formats(codes, schema.fields().len())
                    .unwrap_or_else(|_| vec![TEXT; schema.fields().len()]);
                write_row_description(self.framed.write_buffer_mut(), schema, &formats);
            }
        }
        Ok(())
    }

    pub(super) async fn execute(&mut self, execute: Execute) -> Reply {
        let name = execute.name.unwrap_or_default();
        let max_rows = execute.max_rows.max(0) as usize;
        let Some(mut portal) = self.portals.remove(&name) else {
            return self.extended_error(Error::UndefinedPortal(name)).await;
        };
        if matches!(portal.state, PortalState::Ready)
            && max_rows == 0
            && let Some(plan) = portal.statement.direct_lookup()
        {
            // The request path: no statement future, no cancel/timeout
            // guard (nothing here waits), rows written as stored, straight
            // from the lookup service.
            let session = self.session_ref();
            let looked_up = session
                .admit(&portal.statement, &portal.params)
                .and_then(|()| {
                    self.server.engine.lookups.look_up(
                        plan,
                        &portal.params,
                        session.settings().time_zone(),
                    )
                });
            match looked_up {
                Ok(Some(rows)) => return self.send_lookup_rows(name, portal, rows).await,
                // The view changed since Parse: the general path plans again.
                Ok(None) => {}
                Err(e) => return self.extended_error(e).await,
            }
        }
        let guard = self.start_statement();
        if matches!(portal.state, PortalState::Ready) {
            let discard_all = matches!(portal.statement.statement, Some(Statement::DiscardAll));
            let outcome = {
                let session = self.session();
                guard
                    .run(session.execute(&portal.statement, portal.params.clone()))
                    .await
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => return self.extended_error(e).await,
            };
            if discard_all {
                self.statements.clear();
                self.portals.clear();
            }
            let (schema, stream, tag) = match outcome {
                Outcome::Rows {
                    schema,
                    stream,
                    tag,
                } => (schema, stream, tag),
                Outcome::Lookup(rows) if max_rows == 0 => {
                    return self.send_lookup_rows(name, portal, rows).await;
                }
                Outcome::Lookup(rows) => {
                    // Row-limited: through the stream a portal suspends.
                    let schema = rows.schema().clone();
                    match rows.into_stream(&portal.params) {
                        Ok(stream) => (schema, stream, "SELECT"),
                        Err(e) => return self.extended_error(e).await,
                    }
                }
                Outcome::Command(tag) => {
                    self.send_session_messages().await?;
                    self.forget_statements_after(&tag);
                    self.command_complete(tag.to_string()).await?;
                    portal.state = PortalState::Done;
                    self.portals.insert(name, portal);
                    return Ok(());
                }
                Outcome::Empty => {
                    self.framed
                        .feed(PgWireBackendMessage::EmptyQueryResponse(
                            EmptyQueryResponse::new(),
                        ))
                        .await?;
                    return Ok(());
                }
                Outcome::CopyIn(sink) => {
                    return self
                        .start_copy_in(CopyInProgress {
                            sink,
                            extended: true,
                            remaining: Vec::new(),
                            guard,
                        })
                        .await;
                }
                Outcome::CopyOut {
                    encoder,
                    format,
                    columns,
                    stream,
                } => {
                    return match self
                        .copy_out(encoder, format, columns, stream, &guard)
                        .await?
                    {
                        Ok(()) => Ok(()),
                        Err(e) => self.extended_error(e).await,
                    };
                }
            };
            let formats = match result_formats(&portal.result_format_codes, schema.fields().len()) {
                Ok(formats) => formats,
                Err(e) => return self.extended_error(e).await,
            };
            let context = self.session().output_context();
            portal.state =
                PortalState::Streaming(RowStream::new(schema, stream, formats, tag, context));
        }
        match &mut portal.state {
            PortalState::Streaming(rows) => {
                let tag = rows.tag;
                let fetched = self.fetch_rows(rows, max_rows, &guard).await?;
                match fetched {
                    Ok(Fetched::Suspended) => {
                        self.framed
                            .feed(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()))
                            .await?;
                        self.portals.insert(name, portal);
                        Ok(())
                    }
                    Ok(Fetched::Complete(count)) => {
                        self.rows_complete(tag, count).await?;
                        portal.state = PortalState::Done;
                        self.portals.insert(name, portal);
                        Ok(())
                    }
                    Err(e) => self.extended_error(e).await,
                }
            }
            PortalState::Done => {
                self.command_complete("SELECT 0".to_string()).await?;
                self.portals.insert(name, portal);
                Ok(())
            }
            PortalState::Ready => unreachable!("started above"),
        }
    }

    /// Sends all of a lookup's rows and completes its portal.
    async fn send_lookup_rows(
        &mut self,
        name: String,
        mut portal: Portal,
        rows: LookupRows,
    ) -> Reply {
        let formats =
            match result_formats(&portal.result_format_codes, rows.schema().fields().len()) {
                Ok(formats) => formats,
                Err(e) => return self.extended_error(e).await,
            };
        let context = self.session().output_context();
        match write_lookup_rows(self.framed.write_buffer_mut(), &rows, &formats, &context) {
            Ok(count) => self.rows_complete("SELECT", count).await?,
            Err(e) => return self.extended_error(e).await,
        }
        portal.state = PortalState::Done;
        self.portals.insert(name, portal);
        Ok(())
    }

    pub(super) async fn close(&mut self, close: Close) -> Reply {
        let name = close.name.unwrap_or_default();
        match close.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                self.statements.remove(&name);
            }
            TARGET_TYPE_BYTE_PORTAL => {
                self.portals.remove(&name);
            }
            other => {
                return self
                    .extended_error(Error::Protocol(format!(
                        "invalid CLOSE message subtype {other}"
                    )))
                    .await;
            }
        }
        self.framed
            .feed(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    /// Sync ends the implicit transaction: portals close unless a
    /// transaction block is open.
    pub(super) async fn sync(&mut self) -> Reply {
        self.skip_until_sync = false;
        if self
            .session
            .as_ref()
            .is_none_or(|s| s.transaction_state() == TransactionState::Idle)
        {
            self.portals.clear();
        }
        self.ready_for_query().await
    }
}

//! One client connection: the message loop, the startup handshake, and the
//! helpers every protocol flow uses to answer.
//!
//! Messages are handled one at a time, in order. A statement runs under a
//! cancellation token (CancelRequest) and the session's statement_timeout;
//! the row stream is checked between batches, so cancel also stops a query
//! that is already sending rows.
//!
//! A connection runs on its protocol thread or on the query runtime and
//! moves between them by message (see `placement`): the loop hands the
//! message that needs the other runtime back to [`drive`], which detaches
//! the socket and carries on from that message over there.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::messages::response::{GssEncResponse, ReadyForQuery, SslResponse, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, ParameterStatus, SecretKey, Startup,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use tokio::sync::watch;
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cancel::{CancelHandle, CancelRegistry};
use super::codec::{CodecError, Phase, ServerCodec};
use super::copy::CopyInProgress;
use super::errors::{error_response, notice_response};
use super::portal::Portal;
use super::stream::ClientStream;
use crate::engine::{Engine, Prepared, Session, TransactionState};
use crate::error::Error;
use crate::error::ErrorReport;
use crate::placement::{ConnectionPlacement, Runtime, Runtimes, Work};
use featuredb_catalog::DEFAULT_DATABASE;

/// What every connection shares.
pub struct ServerContext {
    pub engine: Arc<Engine>,
    pub cancels: Arc<CancelRegistry>,
    pub max_message_size: usize,
    /// Flips to true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    pub runtimes: Runtimes,
    /// Every connection's tasks, wherever they run (shutdown waits for them).
    pub tasks: TaskTracker,
}

/// The socket failed or the client went away: the connection ends.
#[derive(Debug)]
pub struct Disconnected;

impl From<CodecError> for Disconnected {
    fn from(_: CodecError) -> Self {
        Disconnected
    }
}

pub type Reply<T = ()> = std::result::Result<T, Disconnected>;

pub struct Connection {
    pub(super) framed: Framed<ClientStream, ServerCodec>,
    pub(super) server: Arc<ServerContext>,
    /// Which thread serves the connection (see `placement`).
    placement: ConnectionPlacement,
    pub(super) session: Option<Session>,
    cancel: Option<CancelHandle>,
    pub(super) statements: HashMap<String, Arc<Prepared>>,
    pub(super) portals: HashMap<String, Portal>,
    /// After an error in the extended protocol, messages up to Sync are
    /// discarded.
    pub(super) skip_until_sync: bool,
    pub(super) copy_in: Option<CopyInProgress>,
}

/// Serves a new client: it starts on its home runtime.
pub fn serve(stream: ClientStream, server: Arc<ServerContext>) {
    stream.set_nodelay();
    let peer = stream.describe_peer();
    // Accepted on the query runtime: moved to its home if that differs.
    let (placement, runtime) = ConnectionPlacement::accept(&server.runtimes, stream.incoming_cpu());
    let framed = Framed::new(stream, ServerCodec::new(server.max_message_size));
    let connection = Connection {
        framed,
        server,
        placement,
        session: None,
        cancel: None,
        statements: HashMap::new(),
        portals: HashMap::new(),
        skip_until_sync: false,
        copy_in: None,
    };
    tracing::debug!(%peer, "connection opened");
    connection.continue_on(runtime, None);
}

/// Runs `connection` until it closes or needs the other runtime.
async fn drive(mut connection: Connection, first: Option<PgWireFrontendMessage>) {
    match connection.run(first).await {
        Ended::Closed => tracing::debug!("connection closed"),
        Ended::Move(runtime, message) => connection.continue_on(runtime, Some(message)),
    }
}

/// `framed` with its stream changed by `change`, buffers and codec kept.
fn with_stream(
    framed: Framed<ClientStream, ServerCodec>,
    change: impl FnOnce(ClientStream) -> std::io::Result<ClientStream>,
) -> std::io::Result<Framed<ClientStream, ServerCodec>> {
    let parts = framed.into_parts();
    let mut changed = FramedParts::new::<PgWireBackendMessage>(change(parts.io)?, parts.codec);
    changed.read_buf = parts.read_buf;
    changed.write_buf = parts.write_buf;
    Ok(Framed::from_parts(changed))
}

/// Why the message loop stopped.
enum Ended {
    Closed,
    /// This message is for the other runtime.
    Move(Runtime, PgWireFrontendMessage),
}

impl Connection {
    /// Carries on on `runtime`, starting with `first`.
    fn continue_on(mut self, runtime: Runtime, first: Option<PgWireFrontendMessage>) {
        let server = self.server.clone();
        let stream = self.framed.get_ref();
        let Some(handle) = self
            .placement
            .move_to(runtime, &server.runtimes, || stream.incoming_cpu())
        else {
            let task: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(drive(self, first));
            server.tasks.spawn(task);
            return;
        };
        // Replies already queued travel with the connection, as do bytes
        // read but not yet decoded.
        self.framed = match with_stream(self.framed, ClientStream::detach) {
            Ok(framed) => framed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot move a connection: closing it");
                return;
            }
        };
        let task: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            match with_stream(self.framed, ClientStream::attach) {
                Ok(framed) => {
                    self.framed = framed;
                    drive(self, first).await
                }
                Err(e) => tracing::warn!(error = %e, "cannot move a connection: closing it"),
            }
        });
        handle.spawn(server.tasks.track_future(task));
    }

    /// The runtime `message` should be handled on, if not this one. The
    /// protocol says what the message needs ([`Work`]); placement decides
    /// where that runs.
    fn move_for(&mut self, message: &PgWireFrontendMessage) -> Option<Runtime> {
        let lookup =
            |statement: Option<&Arc<Prepared>>| statement.is_some_and(|s| s.is_direct_lookup());
        let work = match message {
            _ if self.framed.codec().phase != Phase::Normal => Work::Stay,
            PgWireFrontendMessage::Sync(_) => Work::Sync,
            PgWireFrontendMessage::Describe(_)
            | PgWireFrontendMessage::Flush(_)
            | PgWireFrontendMessage::Close(_)
            | PgWireFrontendMessage::Terminate(_) => Work::Stay,
            _ if self.skip_until_sync => Work::Stay,
            PgWireFrontendMessage::Bind(bind)
                if self.copy_in.is_none()
                    && lookup(
                        self.statements
                            .get(bind.statement_name.as_deref().unwrap_or("")),
                    ) =>
            {
                Work::Lookup
            }
            // A lookup portal is executed where its Bind was handled.
            PgWireFrontendMessage::Execute(execute)
                if self.copy_in.is_none()
                    && lookup(
                        self.portals
                            .get(execute.name.as_deref().unwrap_or(""))
                            .map(|portal| &portal.statement),
                    ) =>
            {
                Work::Stay
            }
            _ => Work::Query,
        };
        let stream = self.framed.get_ref();
        self.placement
            .move_for(work, &self.server.runtimes, || stream.incoming_cpu())
    }

    async fn run(&mut self, mut first: Option<PgWireFrontendMessage>) -> Ended {
        let mut shutdown = self.server.shutdown.clone();
        loop {
            let message = if let Some(message) = first.take() {
                Some(Some(Ok(message)))
            } else {
                let stopping = async { shutdown.wait_for(|stop| *stop).await.is_ok() };
                tokio::select! {
                    biased;
                    message = self.framed.next() => Some(message),
                    true = stopping => None,
                }
            };
            let Some(message) = message else {
                let _ = self
                    .send_error(ErrorReport::fatal(
                        "57P01",
                        "terminating connection due to administrator command",
                    ))
                    .await;
                let _ = self.framed.flush().await;
                return Ended::Closed;
            };
            let message = match message {
                None => return Ended::Closed,
                Some(Ok(message)) => message,
                Some(Err(CodecError::Io(_))) => return Ended::Closed,
                Some(Err(e)) => {
                    let code = match e {
                        CodecError::TooLarge { .. } => "54000",
                        _ => "08P01",
                    };
                    let _ = self
                        .send_error(ErrorReport::fatal(code, e.to_string()))
                        .await;
                    let _ = self.framed.flush().await;
                    return Ended::Closed;
                }
            };
            if matches!(message, PgWireFrontendMessage::Terminate(_)) {
                return Ended::Closed;
            }
            if let Some(runtime) = self.move_for(&message) {
                return Ended::Move(runtime, message);
            }
            let is_query = matches!(message, PgWireFrontendMessage::Query(_));
            let handled = AssertUnwindSafe(self.handle(message)).catch_unwind().await;
            match handled {
                Ok(Ok(Continue::Yes)) => {}
                Ok(Ok(Continue::No)) | Ok(Err(Disconnected)) => return Ended::Closed,
                Err(panic) => {
                    let detail = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    tracing::error!(%detail, "panic while handling a message");
                    self.copy_in = None;
                    if let Some(session) = self.session.as_mut() {
                        session.on_error();
                    }
                    let error = Error::internal(format!("unexpected failure: {detail}")).report();
                    if self.send_error(error).await.is_err() {
                        return Ended::Closed;
                    }
                    if is_query {
                        if self.ready_for_query().await.is_err() {
                            return Ended::Closed;
                        }
                    } else {
                        self.skip_until_sync = true;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, message: PgWireFrontendMessage) -> Reply<Continue> {
        match self.framed.codec().phase {
            Phase::AwaitingSslRequest | Phase::AwaitingStartup => {
                self.handle_startup(message).await
            }
            Phase::Normal => {
                self.handle_normal(message).await?;
                Ok(Continue::Yes)
            }
        }
    }

    async fn handle_startup(&mut self, message: PgWireFrontendMessage) -> Reply<Continue> {
        match message {
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)) => {
                self.framed
                    .send(PgWireBackendMessage::SslResponse(SslResponse::Refuse))
                    .await?;
                self.framed.codec_mut().phase = Phase::AwaitingStartup;
                Ok(Continue::Yes)
            }
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                self.framed
                    .send(PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse))
                    .await?;
                self.framed.codec_mut().phase = Phase::AwaitingStartup;
                Ok(Continue::Yes)
            }
            PgWireFrontendMessage::CancelRequest(request) => {
                self.server.cancels.cancel(request.pid, &request.secret_key);
                Ok(Continue::No)
            }
            PgWireFrontendMessage::Startup(startup) => self.startup(startup).await,
            _ => {
                self.send_error(ErrorReport::fatal("08P01", "expected a startup message"))
                    .await?;
                self.framed.flush().await?;
                Ok(Continue::No)
            }
        }
    }

    /// Checks the startup packet and opens the session. No password is
    /// asked: the embedded default trusts local clients.
    async fn startup(&mut self, startup: Startup) -> Reply<Continue> {
        if startup.protocol_number_major != 3 {
            self.send_error(ErrorReport::fatal(
                "0A000",
                format!(
                    "unsupported frontend protocol {}.{}: server supports 3.0",
                    startup.protocol_number_major, startup.protocol_number_minor
                ),
            ))
            .await?;
            self.framed.flush().await?;
            return Ok(Continue::No);
        }
        let user = startup.parameters.get("user").cloned().unwrap_or_default();
        if user.is_empty() {
            self.send_error(ErrorReport::fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            ))
            .await?;
            self.framed.flush().await?;
            return Ok(Continue::No);
        }
        let database = startup
            .parameters
            .get("database")
            .cloned()
            .unwrap_or_else(|| user.clone());
        if database != DEFAULT_DATABASE {
            self.send_error(ErrorReport::fatal(
                "3D000",
                format!("database \"{database}\" does not exist"),
            ))
            .await?;
            self.framed.flush().await?;
            return Ok(Continue::No);
        }
        if startup.protocol_number_minor > 0 {
            // We speak 3.0: tell newer clients so.
            self.framed
                .feed(PgWireBackendMessage::NegotiateProtocolVersion(
                    pgwire::messages::startup::NegotiateProtocolVersion::new(0, Vec::new()),
                ))
                .await?;
        }
        let mut session = match self.server.engine.new_session(&user) {
            Ok(session) => session,
            Err(e) => {
                self.send_error(ErrorReport::fatal("XX000", e.to_string()))
                    .await?;
                self.framed.flush().await?;
                return Ok(Continue::No);
            }
        };
        session.apply_startup_parameters(startup.parameters.iter());
        let pid = session.backend_pid();
        let secret: i32 = rand_secret();
        self.cancel = Some(self.server.cancels.register(pid, secret));

        self.framed
            .feed(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        for (name, value) in session.settings().reported() {
            self.framed
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_string(),
                    value,
                )))
                .await?;
        }
        self.framed
            .feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
                pid,
                SecretKey::I32(secret),
            )))
            .await?;
        self.session = Some(session);
        self.framed.codec_mut().phase = Phase::Normal;
        self.ready_for_query().await?;
        Ok(Continue::Yes)
    }

    async fn handle_normal(&mut self, message: PgWireFrontendMessage) -> Reply {
        if self.copy_in.is_some() {
            return self.handle_copy_message(message).await;
        }
        match message {
            PgWireFrontendMessage::Query(query) => self.simple_query(&query.query).await,
            PgWireFrontendMessage::Sync(_) => self.sync().await,
            // Also while skipping to Sync after an error: the client may be
            // waiting (after Parse/Describe/Flush) for that very error.
            PgWireFrontendMessage::Flush(_) => {
                self.framed.flush().await?;
                Ok(())
            }
            _ if self.skip_until_sync => Ok(()),
            PgWireFrontendMessage::Parse(parse) => self.parse(parse).await,
            PgWireFrontendMessage::Bind(bind) => self.bind(bind).await,
            PgWireFrontendMessage::Describe(describe) => self.describe(describe).await,
            PgWireFrontendMessage::Execute(execute) => self.execute(execute).await,
            PgWireFrontendMessage::Close(close) => self.close(close).await,
            // Leftovers of a COPY that already failed.
            PgWireFrontendMessage::CopyData(_)
            | PgWireFrontendMessage::CopyDone(_)
            | PgWireFrontendMessage::CopyFail(_) => Ok(()),
            other => {
                self.send_error(ErrorReport::fatal(
                    "08P01",
                    format!("unexpected message in this state: {other:?}")
                        .chars()
                        .take(200)
                        .collect::<String>(),
                ))
                .await?;
                self.framed.flush().await?;
                Err(Disconnected)
            }
        }
    }

    pub(super) fn session_ref(&self) -> &Session {
        self.session
            .as_ref()
            .expect("the session exists once startup completed")
    }

    pub(super) fn session(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("the session exists once startup completed")
    }

    /// A token for the statement about to run.
    pub(super) fn start_statement(&self) -> StatementGuard {
        let token = self
            .cancel
            .as_ref()
            .map(CancelHandle::start_statement)
            .unwrap_or_default();
        let deadline = self
            .session
            .as_ref()
            .and_then(|s| s.settings().statement_timeout())
            .map(|timeout| Instant::now() + timeout);
        StatementGuard { token, deadline }
    }

    pub(super) async fn send_error(&mut self, error: ErrorReport) -> Reply {
        self.framed
            .feed(PgWireBackendMessage::ErrorResponse(error_response(error)))
            .await?;
        Ok(())
    }

    /// Reports a failed statement: the error, and the transaction block
    /// becomes failed.
    pub(super) async fn report(&mut self, error: &Error) -> Reply {
        if let Some(session) = self.session.as_mut() {
            session.on_error();
            // Notices raised before the failure are still worth seeing.
            let notices = session.take_notices();
            for notice in notices {
                self.framed
                    .feed(PgWireBackendMessage::NoticeResponse(notice_response(
                        &notice,
                    )))
                    .await?;
            }
        }
        if !matches!(error, Error::QueryCanceled | Error::StatementTimeout) {
            tracing::debug!(error = ?error, "statement failed");
        }
        self.send_error(error.report()).await
    }

    /// Sends notices and parameter changes the session produced.
    pub(super) async fn send_session_messages(&mut self) -> Reply {
        let (notices, changes) = {
            let session = self.session();
            session.apply_deferred_settings();
            (session.take_notices(), session.take_reported_changes())
        };
        for notice in notices {
            self.framed
                .feed(PgWireBackendMessage::NoticeResponse(notice_response(
                    &notice,
                )))
                .await?;
        }
        for change in changes {
            self.framed
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    change.name.to_string(),
                    change.value,
                )))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn ready_for_query(&mut self) -> Reply {
        let status = match self.session.as_ref().map(Session::transaction_state) {
            Some(TransactionState::InBlock) => TransactionStatus::Transaction,
            Some(TransactionState::Failed) => TransactionStatus::Error,
            _ => TransactionStatus::Idle,
        };
        self.framed
            .feed(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        // On a protocol thread the reply goes out with the others of this
        // turn of its event loop (see `placement::outbox`). The socket stays open until
        // the send is done: nothing cancels a connection at this await (it
        // is outside every select), and the thread's sender runs in the
        // same turn of the same event loop.
        #[cfg(target_os = "linux")]
        if let (Some(outbox), Some(fd)) = (
            crate::placement::outbox::current(),
            self.framed.get_ref().raw_fd(),
        ) {
            let reply = self.framed.write_buffer_mut().split().freeze();
            let sent = match outbox.queue(fd, reply.clone()).await {
                Ok(crate::placement::outbox::Sent::Bytes(sent)) => sent.min(reply.len()),
                // Part of the reply may be on the wire: sending it again
                // would corrupt the stream.
                Ok(crate::placement::outbox::Sent::Lost) => return Err(Disconnected),
                // The outbox dropped the reply unsent (it cannot: it runs
                // as long as the thread); write it here.
                Err(_) => 0,
            };
            if sent == reply.len() {
                return Ok(());
            }
            // The socket's buffer was full or the send failed: the rest is
            // written as usual (a broken socket fails there).
            let write_buffer = self.framed.write_buffer_mut();
            let unsent = write_buffer.split();
            write_buffer.extend_from_slice(&reply[sent..]);
            write_buffer.extend_from_slice(&unsent);
        }
        self.framed.flush().await?;
        Ok(())
    }
}

pub(super) enum Continue {
    Yes,
    No,
}

/// Cancellation and timeout for one statement.
pub struct StatementGuard {
    pub token: CancellationToken,
    pub deadline: Option<Instant>,
}

impl StatementGuard {
    /// Runs `future` unless the statement is cancelled or times out first.
    pub async fn run<T>(
        &self,
        future: impl Future<Output = crate::error::Result<T>>,
    ) -> crate::error::Result<T> {
        let timeout = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = future => result,
            _ = self.token.cancelled() => Err(Error::QueryCanceled),
            _ = timeout => Err(Error::StatementTimeout),
        }
    }
}

fn rand_secret() -> i32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() as i32
}

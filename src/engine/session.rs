//! A client session: its settings, its transaction-block state, and the
//! DataFusion context its queries run in.
//!
//! Transactions: featuredb commits every statement on its own (each write
//! is an Iceberg commit). BEGIN/COMMIT/ROLLBACK are accepted so that
//! drivers and tools work, and the session tracks the block the way
//! PostgreSQL reports it (idle / in block / failed). After an error inside a
//! block, statements are refused with 25P02 until ROLLBACK, as clients
//! expect. ROLLBACK cannot undo writes that already committed; it says so
//! with a WARNING.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use featuredb_sql::Statement;
use featuredb_sql::session::{ResetStatement, SetStatement, TransactionStatement};

use super::outcome::{CommandTag, Outcome};
use super::planner::Planner;
use super::shared::Engine;
use crate::error::{Error, Result};
use crate::features::NameScope;
use crate::notice::Notice;
use crate::pgcompat::cursors::Cursors;
use crate::pgcompat::functions;
use crate::pgcompat::pg_catalog::Relations;
use crate::pgcompat::settings::{ReportedChange, SessionSettings, SettingsView};
use crate::pgcompat::temp_tables::TempTables;
use crate::pgtypes::OutputContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    Idle,
    InBlock,
    Failed,
}

pub struct Session {
    pub(crate) engine: Arc<Engine>,
    /// Plans this session's statements, in its DataFusion context.
    pub(crate) planner: Planner,
    pub(crate) settings: SessionSettings,
    user: String,
    backend_pid: i32,
    transaction: TransactionState,
    /// Writes committed inside the current transaction block.
    writes_in_block: u64,
    /// Savepoints of the current block, oldest first, with the writes
    /// committed in the block when each was set.
    savepoints: Vec<(String, u64)>,
    /// For each savepoint, the settings (and pending SET LOCALs) when it
    /// was set: ROLLBACK TO puts them back.
    savepoint_settings: Vec<(
        SessionSettings,
        std::collections::BTreeMap<String, SessionSettings>,
    )>,
    pub(crate) cursors: Cursors,
    /// `set_config(name, value, is_local)` calls of the running statement.
    deferred_settings: functions::DeferredSettings,
    pub(crate) notices: Vec<Notice>,
    /// Where progress notices go while a statement runs (the connection
    /// sends them at once); without one they wait for the statement's end.
    pub(crate) progress_sink: Option<tokio::sync::mpsc::UnboundedSender<Notice>>,
    reported: Vec<ReportedChange>,
    /// Every SQL-level prepared statement, with the rows it returns (none
    /// for an INSERT), for describing `EXECUTE name` (DataFusion does not
    /// describe it).
    pub(crate) sql_prepared: HashMap<String, Option<SchemaRef>>,
    /// This session's temporary tables.
    pub(crate) temp: Arc<TempTables>,
    /// The settings before the current block's first SET (a rollback puts
    /// them back), and the settings it SET LOCAL (a commit puts those back).
    settings_before_block: Option<SessionSettings>,
    local_settings: std::collections::BTreeMap<String, SessionSettings>,
    /// featuredb's objects as this session's catalog shows them.
    relations: Relations,
    /// The settings as this session's `pg_settings` shows them.
    settings_view: SettingsView,
}

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, user: &str, backend_pid: i32) -> Result<Self> {
        let temp = Arc::new(TempTables::new(backend_pid));
        let settings_view = SettingsView::default();
        let relations = engine
            .catalog_relations()
            .for_session(temp.clone(), settings_view.clone());
        let deferred_settings = functions::DeferredSettings::default();
        let ctx = super::context::session_context(
            &engine,
            user,
            backend_pid,
            &relations,
            &temp,
            &deferred_settings,
        )?;
        let planner = Planner::new(
            engine.offline.clone(),
            engine.registry.clone(),
            ctx,
            temp.clone(),
        );
        let mut session = Self {
            engine,
            planner,
            settings: SessionSettings::new(user),
            user: user.to_string(),
            backend_pid,
            transaction: TransactionState::Idle,
            writes_in_block: 0,
            savepoints: Vec::new(),
            savepoint_settings: Vec::new(),
            cursors: Default::default(),
            deferred_settings,
            notices: Vec::new(),
            progress_sink: None,
            reported: Vec::new(),
            sql_prepared: HashMap::new(),
            temp,
            settings_before_block: None,
            local_settings: Default::default(),
            relations,
            settings_view,
        };
        session.apply_settings();
        session.reported.clear();
        Ok(session)
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    pub fn transaction_state(&self) -> TransactionState {
        self.transaction
    }

    /// Applies the parameters of the startup message.
    pub fn apply_startup_parameters<'a>(
        &mut self,
        parameters: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) {
        for (name, value) in parameters {
            match name.as_str() {
                "user" | "database" | "replication" => {}
                "options" => {
                    // `-c name=value` pairs, as libpq's PGOPTIONS sends them.
                    let mut words = value.split_whitespace();
                    while let Some(word) = words.next() {
                        let assignment = if word == "-c" {
                            words.next()
                        } else {
                            word.strip_prefix("-c").or_else(|| word.strip_prefix("--"))
                        };
                        if let Some((name, value)) = assignment.and_then(|a| a.split_once('=')) {
                            self.settings.apply_startup(&name.replace('-', "_"), value);
                        }
                    }
                }
                _ => self.settings.apply_startup(name, value),
            }
        }
        self.apply_settings();
        self.reported.clear();
    }

    /// Value formatting for this session's results.
    pub fn output_context(&self) -> OutputContext {
        self.settings.output_context()
    }

    /// Applies the settings `set_config()` calls made during the statement
    /// that just completed (a function cannot change its session while the
    /// query runs). A value the setting refuses becomes a WARNING.
    pub fn apply_deferred_settings(&mut self) {
        let calls = std::mem::take(
            &mut *self
                .deferred_settings
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (name, value, local) in calls {
            // set_config(…, true) outside a block lasts for its statement,
            // which is over (PostgreSQL does not warn).
            if local && self.transaction == TransactionState::Idle {
                continue;
            }
            let set = SetStatement {
                name: name.to_lowercase(),
                value: featuredb_sql::session::SetValue::Values(vec![value]),
                local,
            };
            if let Err(error) = self.set(&set) {
                self.notice(Notice::warning(
                    "01000",
                    format!("set_config('{name}', …) was not applied: {error}"),
                ));
            }
        }
    }

    /// Notices raised by the last statement.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Reported parameters that changed (sent as ParameterStatus).
    pub fn take_reported_changes(&mut self) -> Vec<ReportedChange> {
        std::mem::take(&mut self.reported)
    }

    pub(crate) fn notice(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    /// Sends progress notices to `sink` from now on (`None`: queue them).
    pub fn set_progress_sink(&mut self, sink: Option<tokio::sync::mpsc::UnboundedSender<Notice>>) {
        self.progress_sink = sink;
    }

    /// How names resolve in this session now.
    pub(crate) fn names(&self) -> NameScope {
        self.planner.names()
    }

    /// Pushes settings into DataFusion and the settings-dependent functions.
    pub(crate) fn apply_settings(&mut self) {
        *self
            .settings_view
            .write()
            .unwrap_or_else(|e| e.into_inner()) = self.settings.pg_settings_rows();
        self.planner
            .apply_settings(&self.settings, &self.relations, self.output_context());
    }

    /// Refuses statements in a failed transaction block (25P02).
    pub(crate) fn check_transaction(&self, statement: &Statement) -> Result<()> {
        if self.transaction == TransactionState::Failed
            && !matches!(
                statement,
                Statement::Transaction(
                    TransactionStatement::Rollback
                        | TransactionStatement::Commit
                        | TransactionStatement::RollbackTo(_)
                )
            )
        {
            return Err(Error::InFailedTransaction);
        }
        Ok(())
    }

    /// Records that a statement failed (a block becomes failed).
    pub fn on_error(&mut self) {
        // Settings a failed statement's set_config() calls asked for are
        // not applied.
        self.deferred_settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if self.transaction == TransactionState::InBlock {
            self.transaction = TransactionState::Failed;
        }
    }

    /// Records that a statement that writes completed.
    pub fn on_write(&mut self) {
        if self.transaction != TransactionState::Idle {
            self.writes_in_block += 1;
        }
    }

    pub(crate) fn transaction_control(
        &mut self,
        statement: &TransactionStatement,
    ) -> Result<Outcome> {
        let tag = match (statement.clone(), self.transaction) {
            (
                TransactionStatement::Savepoint(_)
                | TransactionStatement::Release(_)
                | TransactionStatement::RollbackTo(_),
                _,
            ) => return self.savepoint_control(statement),
            (TransactionStatement::Begin, TransactionState::Idle) => {
                self.transaction = TransactionState::InBlock;
                self.writes_in_block = 0;
                "BEGIN"
            }
            (TransactionStatement::Begin, _) => {
                self.notice(Notice::warning(
                    "25001",
                    "there is already a transaction in progress",
                ));
                "BEGIN"
            }
            (TransactionStatement::Commit, TransactionState::Idle)
            | (TransactionStatement::Rollback, TransactionState::Idle) => {
                self.notice(Notice::warning(
                    "25P01",
                    "there is no transaction in progress",
                ));
                if *statement == TransactionStatement::Commit {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                }
            }
            (TransactionStatement::Commit, TransactionState::InBlock) => {
                self.transaction = TransactionState::Idle;
                "COMMIT"
            }
            // COMMIT of a failed block rolls back, as in PostgreSQL.
            (TransactionStatement::Commit, TransactionState::Failed)
            | (TransactionStatement::Rollback, _) => {
                if self.writes_in_block > 0 {
                    self.notice(Notice::warning(
                        "01000",
                        format!(
                            "featuredb commits every statement immediately: {} write statement(s) \
                             in this transaction block were committed and are not rolled back",
                            self.writes_in_block
                        ),
                    ));
                }
                self.transaction = TransactionState::Idle;
                "ROLLBACK"
            }
        };
        if self.transaction == TransactionState::Idle {
            self.writes_in_block = 0;
            self.savepoints.clear();
            self.savepoint_settings.clear();
            self.cursors.end_of_block(tag == "COMMIT");
            self.settings_at_end_of_block(tag == "COMMIT");
        }
        Ok(Outcome::Command(CommandTag::new(tag)))
    }

    /// How many savepoints the current block has set.
    pub(crate) fn savepoint_depth(&self) -> usize {
        self.savepoints.len()
    }

    /// SAVEPOINT, RELEASE and ROLLBACK TO inside a block.
    fn savepoint_control(&mut self, statement: &TransactionStatement) -> Result<Outcome> {
        match statement {
            TransactionStatement::Savepoint(name) => {
                if self.transaction == TransactionState::Idle {
                    return Err(Error::NoActiveTransaction("SAVEPOINT"));
                }
                self.savepoints.push((name.clone(), self.writes_in_block));
                self.savepoint_settings
                    .push((self.settings.clone(), self.local_settings.clone()));
                Ok(Outcome::Command(CommandTag::new("SAVEPOINT")))
            }
            TransactionStatement::Release(name) => {
                if self.transaction == TransactionState::Idle {
                    return Err(Error::NoActiveTransaction("RELEASE SAVEPOINT"));
                }
                let position = self.savepoint_position(name)?;
                self.savepoints.truncate(position);
                self.savepoint_settings.truncate(position);
                self.cursors.released(position);
                Ok(Outcome::Command(CommandTag::new("RELEASE")))
            }
            TransactionStatement::RollbackTo(name) => {
                if self.transaction == TransactionState::Idle {
                    return Err(Error::NoActiveTransaction("ROLLBACK TO SAVEPOINT"));
                }
                let position = self.savepoint_position(name)?;
                // The savepoint stays, later ones go; the block is usable again.
                let writes_before = self.savepoints[position].1;
                self.savepoints.truncate(position + 1);
                self.cursors.rollback_to(position + 1);
                // Settings are put back as they were at the savepoint.
                self.savepoint_settings.truncate(position + 1);
                if let Some((settings, local)) = self.savepoint_settings.get(position).cloned() {
                    let changes = self.settings.restore_from(&settings, None);
                    self.local_settings = local;
                    self.reported.extend(changes);
                    self.apply_settings();
                }
                self.transaction = TransactionState::InBlock;
                if self.writes_in_block > writes_before {
                    self.notice(Notice::warning(
                        "01000",
                        format!(
                            "featuredb commits every statement immediately: {} write statement(s) \
                             since savepoint \"{name}\" were committed and are not rolled back",
                            self.writes_in_block - writes_before
                        ),
                    ));
                }
                Ok(Outcome::Command(CommandTag::new("ROLLBACK")))
            }
            TransactionStatement::Begin
            | TransactionStatement::Commit
            | TransactionStatement::Rollback => Err(Error::internal("not a savepoint command")),
        }
    }

    /// The index of the newest savepoint called `name` (3B001 if none).
    fn savepoint_position(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| Error::UndefinedSavepoint(name.to_string()))
    }

    pub(crate) fn set(&mut self, set: &SetStatement) -> Result<Outcome> {
        if set.local && self.transaction == TransactionState::Idle {
            self.notice(Notice::warning(
                "25P01",
                "SET LOCAL can only be used in transaction blocks",
            ));
            return Ok(Outcome::Command(CommandTag::new("SET")));
        }
        if set.name.starts_with("datafusion.") {
            let value = match &set.value {
                featuredb_sql::session::SetValue::Values(values) => values.join(","),
                featuredb_sql::session::SetValue::Default => {
                    return Err(Error::FeatureNotSupported(format!(
                        "RESET of {} is not supported",
                        set.name
                    )));
                }
            };
            self.planner.set_datafusion_option(&set.name, &value)?;
            return Ok(Outcome::Command(CommandTag::new("SET")));
        }
        if self.transaction != TransactionState::Idle {
            // Settings are transactional, as in PostgreSQL: remember the
            // values before the block's first change (ROLLBACK restores
            // them), and before a SET LOCAL of a setting (COMMIT restores
            // it, unless a plain SET or RESET of it came later).
            if self.settings_before_block.is_none() {
                self.settings_before_block = Some(self.settings.clone());
            }
            let name = SessionSettings::canonical_name(&set.name);
            if set.local {
                self.local_settings
                    .entry(name)
                    .or_insert_with(|| self.settings.clone());
            } else {
                self.local_settings.remove(&name);
            }
        }
        if let Some(change) = self.settings.set(&set.name, &set.value)? {
            self.reported.push(change);
        }
        self.apply_settings();
        Ok(Outcome::Command(CommandTag::new("SET")))
    }

    /// The block ended: a rollback undoes its SETs, a commit its SET
    /// LOCALs.
    fn settings_at_end_of_block(&mut self, committed: bool) {
        let local = std::mem::take(&mut self.local_settings);
        let Some(before) = self.settings_before_block.take() else {
            return;
        };
        let mut changes = Vec::new();
        if committed {
            if local.is_empty() {
                return;
            }
            for (name, saved) in &local {
                let only = std::collections::BTreeSet::from([name.clone()]);
                changes.extend(self.settings.restore_from(saved, Some(&only)));
            }
        } else {
            changes = self.settings.restore_from(&before, None);
        }
        self.reported.extend(changes);
        self.apply_settings();
    }

    pub(crate) fn reset(&mut self, reset: &ResetStatement) -> Result<Outcome> {
        if self.transaction != TransactionState::Idle && self.settings_before_block.is_none() {
            self.settings_before_block = Some(self.settings.clone());
        }
        // A RESET outlives the block's SET LOCAL of the same setting.
        match reset {
            ResetStatement::All => self.local_settings.clear(),
            ResetStatement::Variable(name) => {
                self.local_settings
                    .remove(&SessionSettings::canonical_name(name));
            }
        }
        match reset {
            ResetStatement::All => {
                let changes = self.settings.reset_all();
                self.reported.extend(changes);
            }
            ResetStatement::Variable(name) => {
                if let Some(change) = self.settings.reset(name)? {
                    self.reported.push(change);
                }
            }
        }
        self.apply_settings();
        Ok(Outcome::Command(CommandTag::new("RESET")))
    }

    /// `DISCARD ALL`: settings back to defaults; the serving layer also
    /// drops prepared statements and portals.
    /// Records SQL-level prepared statement `name` and the rows it returns.
    pub(crate) fn remember_sql_prepared(&mut self, name: &str, rows: Option<SchemaRef>) {
        self.sql_prepared.insert(name.to_string(), rows);
    }

    pub(crate) fn forget_sql_prepared(&mut self, name: &str) {
        self.sql_prepared.remove(name);
    }

    /// `DEALLOCATE ALL` (unless a statement is named `all`).
    pub(crate) fn is_deallocate_all(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("all") && !self.sql_prepared.contains_key(name)
    }

    /// `DEALLOCATE ALL`: drops every SQL-level prepared statement.
    pub(crate) async fn deallocate_all(&mut self) -> Result<()> {
        let names: Vec<String> = self.sql_prepared.keys().cloned().collect();
        for name in names {
            let plan = datafusion::logical_expr::LogicalPlan::Statement(
                datafusion::logical_expr::Statement::Deallocate(
                    datafusion::logical_expr::Deallocate { name: name.clone() },
                ),
            );
            self.planner
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(Error::from_datafusion)?;
            self.sql_prepared.remove(&name);
        }
        Ok(())
    }

    pub(crate) async fn discard_all(&mut self) -> Result<Outcome> {
        if self.transaction != TransactionState::Idle {
            return Err(Error::FeatureNotSupported(
                "DISCARD ALL cannot run inside a transaction block".to_string(),
            ));
        }
        self.deallocate_all().await?;
        self.cursors.close_all();
        self.temp.drop_all();
        let changes = self.settings.reset_all();
        self.reported.extend(changes);
        self.apply_settings();
        Ok(Outcome::Command(CommandTag::new("DISCARD ALL")))
    }

    pub(crate) fn discard_temp(&mut self) -> Result<Outcome> {
        self.temp.drop_all();
        Ok(Outcome::Command(CommandTag::new("DISCARD TEMP")))
    }
}

//! `REFRESH FEATURE VIEW`: materializing a view into its offline history
//! (an Iceberg table of its own) and, for ONLINE views, the online store.
//!
//! What a refresh reads is fixed by Iceberg snapshots, not wall clock:
//! each input table's tail is flushed, and the sequence number of its
//! current snapshot becomes the refresh's upper bound. A view that is a
//! plain SELECT over one table (the shape whose rows map one-to-one to
//! input rows) refreshes incrementally: it reads only the commits after
//! the last applied sequence number (`featuredb_write_ordered` with a
//! range). Any other view is recomputed in full when an input changed.
//!
//! Crash safety, in the order things become durable:
//! 1. the new rows are appended to the view's offline table in one Iceberg
//!    commit whose summary records the input sequence numbers
//!    ([`REFRESH_INPUTS_PROPERTY`]) — a crash before leaves nothing;
//! 2. the online rows and the new [`Materialization`] are written in one
//!    redb transaction — a crash before leaves the offline table ahead of
//!    the online store, which the next refresh detects from the summary
//!    and repairs by recomputing the online rows for exactly that range.
//!
//! The two overlap without changing that order: the offline data files
//! are finished and committed by a task of their own ([`OfflineCommit`])
//! while the online rows are decided and written into the redb
//! transaction, which commits only once the offline commit has succeeded.
//!
//! A full refresh writes a new generation (a new offline table and rows
//! table); the old ones are dropped once the new state is committed, and
//! leftovers of an interrupted full refresh are dropped by the next one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema};
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, SetExpr, TableFactor, Value,
};
use featuredb_catalog::names::quote_ident;
use featuredb_catalog::{
    ColumnDef, ColumnType, Dependency, FeatureViewVersion, ObjectKind, QualifiedName,
    RegistryState, TableSchemaDef,
};
use featuredb_sql::feature::RefreshFeatureViews;
use futures::StreamExt;

mod integer_winners;
mod newest;
mod row_arena;

use self::newest::{MergedWinners, NewestRows, SortedWinners};
use super::outcome::{CommandTag, Notice, Outcome};
use super::resolve::ResolveMode;
use super::session::Session;
use super::temporal::{TemporalClause, parse_query, view_sql};
use crate::error::{Error, Result};
use crate::offline::TableHandle;
use crate::offline::write_order::WRITE_ORDER_COLUMN;
use crate::offline::writer::DataFileWriter;
use crate::online::codec;
use crate::online::{
    Job, MATERIALIZED_SCHEMA, Materialization, OnlineChange, OnlineStore, OwnedRows,
};

/// Snapshot summary property of a view's offline table: the input
/// sequence numbers its rows cover (JSON object `"schema.table@uuid": n`).
pub const REFRESH_INPUTS_PROPERTY: &str = "featuredb.refresh-inputs";

/// The column carrying each computed row's tie-breaker.
const TIE_COLUMN: &str = "featuredb_refresh_tie";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshKind {
    Full,
    Incremental,
    Unchanged,
}

impl RefreshKind {
    fn as_str(self) -> &'static str {
        match self {
            RefreshKind::Full => "full",
            RefreshKind::Incremental => "incremental",
            RefreshKind::Unchanged => "unchanged",
        }
    }
}

/// Which rows of the view a pass computes.
enum Rows {
    /// The rows of input commits in `(after, through]` (views over one
    /// table).
    Range { after: i64, through: i64 },
    /// Every row (any view).
    All,
}

/// What a pass produced.
struct Computed {
    rows_out: u64,
    newest: MergedWinners,
    phases: Phases,
    /// The offline commit of its rows, still running.
    offline: OfflineCommit,
}

/// A pass's offline commit: its data files finished (flushed, fsynced),
/// then appended in one Iceberg commit. It runs in a task of its own
/// while the online rows are prepared; the online store commits after it
/// (see the module comment), and a refresh waits for it before it
/// returns, whatever happened meanwhile: it holds the view's refresh
/// lock, and the next refresh must see this commit's outcome.
struct OfflineCommit(Option<tokio::task::JoinHandle<Result<()>>>);

impl OfflineCommit {
    fn none() -> Self {
        Self(None)
    }

    /// Waits for the commit, from blocking code (the online apply);
    /// waiting again returns at once.
    fn wait_blocking(&mut self) -> Result<()> {
        match self.0.take() {
            None => Ok(()),
            Some(commit) => tokio::runtime::Handle::current()
                .block_on(commit)
                .map_err(|e| Error::internal(format!("the offline commit failed: {e}")))?,
        }
    }
}

/// Where a refresh's time went, logged at debug level: a slow refresh is
/// diagnosed with `--log-level featuredb=debug`, not a profiler.
#[derive(Debug, Default)]
struct Phases {
    /// Flushing the inputs' logged writes, fixing their snapshots, and
    /// recording the job.
    prepare: Duration,
    /// Planning the view's query.
    plan: Duration,
    /// Reading inputs, computing rows, writing the offline Parquet files
    /// and the newest row per key, in every partition.
    partitions: Duration,
    /// Setting up the merge of the partitions' newest rows; the merge
    /// itself runs within the online apply, while the rows are decided
    /// (incremental) or written (full).
    merge: Duration,
    /// Waiting for the offline commit (finishing the data files and the
    /// Iceberg commit), which runs while the online rows are prepared:
    /// only what it takes beyond them.
    offline_commit: Duration,
    /// The online store's redb transaction, publishing its rows to lookups
    /// (for a full refresh, also merging the partitions' newest rows),
    /// including the wait for the offline commit.
    online_apply: Duration,
}

impl Phases {
    /// The pass's last phase: applies its online change, committing it
    /// once `offline` has committed, with `job`'s final record; then logs
    /// the phases.
    fn apply_online(
        mut self,
        store: &Arc<OnlineStore>,
        view: &QualifiedName,
        job: &mut RunningJob,
        state: Materialization,
        change: OnlineChange,
        mut offline: OfflineCommit,
    ) -> Result<Arc<Materialization>> {
        let applying = Instant::now();
        let mut waited = Duration::ZERO;
        let applied = tokio::task::block_in_place(|| {
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.apply_after(
                    view,
                    state,
                    change,
                    || {
                        let waiting = Instant::now();
                        let committed = offline.wait_blocking();
                        waited = waiting.elapsed();
                        committed
                    },
                    |state| {
                        job.record.online_keys = state.online_keys;
                        job.finish(Ok(()));
                        job.recorded_finished = true;
                        Some(job.record.clone())
                    },
                )
            }));
            // Also when the apply failed, or panicked, before it waited:
            // the commit must not outlive the refresh lock.
            let committed = offline.wait_blocking();
            match applied {
                Ok(applied) => applied.and_then(|applied| committed.map(|()| applied)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })?;
        crate::failpoint::crash_point("refresh-after-online-commit");
        self.online_apply = applying.elapsed();
        self.offline_commit = waited;
        self.log(view, &job.record.kind);
        Ok(applied)
    }

    fn log(&self, view: &QualifiedName, kind: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            view = %view,
            kind,
            prepare_ms = ms(self.prepare),
            plan_ms = ms(self.plan),
            partitions_ms = ms(self.partitions),
            merge_ms = ms(self.merge),
            offline_commit_ms = ms(self.offline_commit),
            online_apply_ms = ms(self.online_apply),
            "refresh phases"
        );
    }
}

/// A refresh's job: its record in `featuredb.jobs`, and when it started.
struct RunningJob {
    record: Job,
    started: Instant,
    /// Whether its final record was committed with the refresh's state
    /// (see [`Phases::apply_online`]). If that commit then failed, the
    /// failure is recorded over it.
    recorded_finished: bool,
}

impl RunningJob {
    /// Marks the job finished, now, with `outcome`.
    fn finish(&mut self, outcome: std::result::Result<(), &Error>) {
        let job = &mut self.record;
        job.finished_at = Some(now());
        job.duration_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        match outcome {
            Ok(()) => job.status = "succeeded".into(),
            Err(e) => {
                job.status = "failed".into();
                job.error = Some(e.to_string());
            }
        }
    }
}

/// The definition fields a materialization depends on.
pub(crate) fn shape_of(view: &FeatureViewVersion) -> String {
    serde_json::json!({
        "query": view.query,
        "keys": view.keys,
        "timestamp": view.timestamp,
        "columns": view.columns,
    })
    .to_string()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Offline table names of a view: `<schema>__<view>__g<generation>`.
fn offline_table_prefix(view: &QualifiedName) -> String {
    format!("{}__{}__g", view.schema, view.name)
}

/// How a refresh names an input table: its name and its Iceberg table
/// UUID, so that a different table that later takes the name (a rename, a
/// drop and create) is a different input, refreshed in full.
fn input_key(table: &TableHandle) -> Result<String> {
    Ok(format!(
        "{}@{}",
        table.name,
        table.current()?.metadata().uuid()
    ))
}

/// Whether every commit in `(after, through]` only appended rows: an
/// incremental refresh reads what those commits added, which is the whole
/// change only if nothing was removed (TRUNCATE commits a `delete`).
fn only_appends(table: &TableHandle, after: i64, through: i64) -> bool {
    let Ok(current) = table.current() else {
        return false;
    };
    after <= through
        && current
            .metadata()
            .snapshots()
            .filter(|s| s.sequence_number() > after && s.sequence_number() <= through)
            .all(|s| s.summary().operation == iceberg::spec::Operation::Append)
}

/// The sequence number of a table's current snapshot (0: none yet).
fn current_sequence(table: &TableHandle) -> Result<i64> {
    Ok(table
        .current()?
        .metadata()
        .current_snapshot()
        .map(|s| s.sequence_number())
        .unwrap_or(0))
}

/// Rows the input commits in `(after, through]` added, from the snapshot
/// summaries (for progress; 0 when unknown).
fn added_rows(table: &TableHandle, after: i64, through: i64) -> u64 {
    let Ok(current) = table.current() else {
        return 0;
    };
    current
        .metadata()
        .snapshots()
        .filter(|s| s.sequence_number() > after && s.sequence_number() <= through)
        .filter_map(|s| s.summary().additional_properties.get("added-records"))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// Rows a table holds now, from its current snapshot's summary (for
/// progress; 0 when unknown).
fn total_rows(table: &TableHandle) -> u64 {
    table
        .current()
        .ok()
        .and_then(|t| {
            t.metadata()
                .current_snapshot()
                .and_then(|s| s.summary().additional_properties.get("total-records"))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// The input sequence numbers the newest snapshot of a view's offline
/// table records.
fn committed_inputs(table: &TableHandle) -> Result<Option<BTreeMap<String, i64>>> {
    let current = table.current()?;
    let Some(snapshot) = current.metadata().current_snapshot() else {
        return Ok(None);
    };
    Ok(snapshot
        .summary()
        .additional_properties
        .get(REFRESH_INPUTS_PROPERTY)
        .and_then(|text| serde_json::from_str(text).ok()))
}

/// Tables a view reads, through the feature views and plain views it
/// reads. Dependencies are followed by name to whatever relation has that
/// name now (see [`ObjectKind::refers_to`]).
fn base_tables(
    registry: &RegistryState,
    view: &FeatureViewVersion,
    found: &mut BTreeSet<QualifiedName>,
    depth: usize,
) -> Result<()> {
    base_tables_of(registry, &view.dependencies, found, depth)
}

fn base_tables_of(
    registry: &RegistryState,
    dependencies: &[Dependency],
    found: &mut BTreeSet<QualifiedName>,
    depth: usize,
) -> Result<()> {
    if depth > 32 {
        return Err(Error::FeatureNotSupported(
            "feature views are nested too deeply".into(),
        ));
    }
    for dependency in dependencies {
        if !dependency.kind.is_relation() {
            continue;
        }
        if let Some(inner) = registry.views.get(&dependency.name) {
            let version = match dependency.version {
                Some(v) => inner.version(v).unwrap_or(inner.current()),
                None => inner.current(),
            };
            base_tables(registry, version, found, depth + 1)?;
        } else if let Some(inner) = registry.sql_views.get(&dependency.name) {
            base_tables_of(registry, &inner.dependencies, found, depth + 1)?;
        } else if dependency.kind != ObjectKind::FeatureService {
            found.insert(dependency.name.clone());
        }
    }
    Ok(())
}

/// The views to refresh for `targets`: each once, every view after the
/// views it reads.
fn refresh_order(registry: &RegistryState, targets: &[QualifiedName]) -> Vec<QualifiedName> {
    fn visit(
        registry: &RegistryState,
        name: &QualifiedName,
        order: &mut Vec<QualifiedName>,
        visiting: &mut BTreeSet<QualifiedName>,
    ) {
        if order.contains(name) || !visiting.insert(name.clone()) {
            return;
        }
        if let Some(view) = registry.views.get(name) {
            let mut read = BTreeSet::new();
            feature_views_read(registry, &view.current().dependencies, &mut read, 0);
            for inner in &read {
                visit(registry, inner, order, visiting);
            }
        }
        order.push(name.clone());
    }
    /// Feature views read directly or through plain views.
    fn feature_views_read(
        registry: &RegistryState,
        dependencies: &[Dependency],
        read: &mut BTreeSet<QualifiedName>,
        depth: usize,
    ) {
        for dependency in dependencies {
            if registry.views.contains_key(&dependency.name) {
                read.insert(dependency.name.clone());
            } else if let Some(view) = registry.sql_views.get(&dependency.name)
                && depth < 32
            {
                feature_views_read(registry, &view.dependencies, read, depth + 1);
            }
        }
    }
    let mut order = Vec::new();
    let mut visiting = BTreeSet::new();
    for target in targets {
        visit(registry, target, &mut order, &mut visiting);
    }
    order
}

/// The write-ordered query of a one-table view, reading only the commits
/// in `(after, through]`.
fn ranged_query(write_ordered: &str, after: i64, through: i64) -> Result<String> {
    let mut query = parse_query(write_ordered)?;
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(Error::internal("write-ordered query is not a SELECT"));
    };
    let Some(TableFactor::Table {
        args: Some(args), ..
    }) = select.from.first_mut().map(|f| &mut f.relation)
    else {
        return Err(Error::internal(
            "write-ordered query reads no table function",
        ));
    };
    let text = |s: &str| {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
            Value::SingleQuotedString(s.to_string()),
        )))
    };
    let number = |n: i64| {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(Value::Number(
            n.to_string(),
            false,
        ))))
    };
    args.args.truncate(2);
    args.args.push(text(WRITE_ORDER_COLUMN));
    args.args.push(number(after));
    args.args.push(number(through));
    Ok(query.to_string())
}

/// The SQL computing a pass's rows: the view's columns and a tie-breaker
/// (greater wins among rows with the same key and event time).
fn rows_sql(view: &FeatureViewVersion, rows: &Rows) -> Result<String> {
    let columns: Vec<String> = view.columns.iter().map(|c| quote_ident(&c.name)).collect();
    match rows {
        Rows::Range { after, through } => {
            let write_ordered = view.write_ordered_query.as_deref().ok_or_else(|| {
                Error::internal("incremental refresh of a view without write order")
            })?;
            Ok(format!(
                "SELECT {}, {WRITE_ORDER_COLUMN} AS {TIE_COLUMN} FROM ({}) AS featuredb_history",
                columns.join(", "),
                ranged_query(write_ordered, *after, *through)?
            ))
        }
        Rows::All => Ok(view_sql(
            view,
            &TemporalClause::AsOfJoinHistory {
                tie_column: TIE_COLUMN.to_string(),
            },
        )),
    }
}

/// The declared columns of a view's offline table.
fn offline_schema(view: &FeatureViewVersion) -> Result<TableSchemaDef> {
    let columns = view
        .columns
        .iter()
        .map(|c| {
            let data_type = c.column_type.clone().ok_or_else(|| {
                Error::FeatureNotSupported(format!(
                    "column {} of type {} cannot be materialized",
                    c.name, c.data_type
                ))
            })?;
            Ok(ColumnDef {
                name: c.name.clone(),
                data_type,
                nullable: true,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TableSchemaDef { columns })
}

/// Whether every column of the view can be held online.
fn online_storable(view: &FeatureViewVersion) -> Result<()> {
    for column in &view.columns {
        let storable = column
            .column_type
            .as_ref()
            .is_some_and(|t| codec::supported(&t.to_arrow()));
        if !storable {
            return Err(Error::FeatureNotSupported(format!(
                "column {} of type {} cannot be held in the online store",
                column.name, column.data_type
            )));
        }
    }
    let ts = view
        .columns
        .iter()
        .find(|c| c.name == view.timestamp)
        .and_then(|c| c.column_type.as_ref());
    match ts {
        Some(
            ColumnType::Timestamp
            | ColumnType::TimestampTz
            | ColumnType::Date
            | ColumnType::SmallInt
            | ColumnType::Integer
            | ColumnType::BigInt,
        ) => Ok(()),
        _ => Err(Error::FeatureNotSupported(format!(
            "the online store needs a timestamp, date or integer event time; {} is not",
            view.timestamp
        ))),
    }
}

impl Session {
    pub(crate) async fn refresh_feature_views(
        &mut self,
        refresh: &RefreshFeatureViews,
    ) -> Result<Outcome> {
        let registry = self.engine.registry.snapshot();
        let mut targets = Vec::new();
        for name in &refresh.names {
            let found = self
                .find(&registry, ObjectKind::FeatureView, name)
                .ok_or_else(|| Self::undefined(ObjectKind::FeatureView, name))?;
            targets.push(found);
        }
        for name in refresh_order(&registry, &targets) {
            let full = refresh.full && targets.contains(&name);
            self.refresh_view(&registry, &name, full).await?;
        }
        Ok(Outcome::Command(CommandTag::new("REFRESH FEATURE VIEW")))
    }

    /// Refreshes one view, recording the job.
    async fn refresh_view(
        &mut self,
        registry: &RegistryState,
        name: &QualifiedName,
        full: bool,
    ) -> Result<()> {
        let view = registry
            .views
            .get(name)
            .ok_or_else(|| Error::UndefinedTable {
                name: name.to_string(),
                position: None,
            })?
            .current()
            .clone();
        let online = self.engine.online.clone();
        let lock = online.refresh_lock(name);
        let _serialised = lock.lock().await;
        // The view may have been dropped or replaced while we waited.
        let now_current = self
            .engine
            .registry
            .snapshot()
            .views
            .get(name)
            .map(|v| v.current().version);
        if now_current != Some(view.version) {
            return Err(Error::ObjectInUse(format!(
                "feature view {name} was dropped or replaced while its refresh waited; run it again"
            )));
        }
        let mut job = RunningJob {
            record: Job {
                id: online.next_job_id(),
                view: name.to_string(),
                version: view.version,
                kind: "pending".into(),
                status: "running".into(),
                started_at: now(),
                finished_at: None,
                rows_in: 0,
                rows_out: 0,
                online_keys: 0,
                duration_ms: None,
                error: None,
            },
            started: Instant::now(),
            recorded_finished: false,
        };
        online.record_job(&job.record)?;
        let outcome = self
            .refresh_view_inner(registry, name, &view, full, &mut job)
            .await;
        // A refresh that committed a state recorded its job with it, as
        // finished when the commit began; its duration is amended to
        // include the commit (not fsynced: a crash before the next durable
        // commit keeps the first). The others (nothing to apply, or
        // failed) are recorded here.
        job.finish(outcome.as_ref().map(|_| ()));
        let recorded = if outcome.is_ok() && job.recorded_finished {
            online.amend_job(&job.record)
        } else {
            online.record_job(&job.record)
        };
        if let Err(e) = recorded {
            tracing::warn!(job = job.record.id, error = %e, "could not record a refresh job");
        }
        if outcome.is_ok() {
            let job = &job.record;
            self.notice(Notice::informational(
                "00000",
                format!(
                    "refreshed feature view {name} ({}): {} input rows, {} rows written, {} keys online, {:.3} s",
                    job.kind,
                    job.rows_in,
                    job.rows_out,
                    job.online_keys,
                    job.duration_ms.unwrap_or_default() / 1000.0
                ),
            ));
        }
        outcome
    }

    async fn refresh_view_inner(
        &mut self,
        registry: &RegistryState,
        name: &QualifiedName,
        view: &FeatureViewVersion,
        full: bool,
        job: &mut RunningJob,
    ) -> Result<()> {
        let preparing = Instant::now();
        let engine = self.engine.clone();
        let offline = engine.offline.clone();
        let online_store = engine.online.clone();
        let wants_online = view.online;
        if wants_online {
            online_storable(view)?;
        }
        let schema_def = offline_schema(view)?;

        // What the inputs hold now: flush their logged writes, then fix
        // each one's snapshot.
        let mut tables = BTreeSet::new();
        base_tables(registry, view, &mut tables, 0)?;
        let mut inputs = BTreeMap::new();
        let mut handles = BTreeMap::new();
        for table in &tables {
            let handle =
                offline
                    .table(&table.schema, &table.name)
                    .ok_or_else(|| Error::UndefinedTable {
                        name: table.to_string(),
                        position: None,
                    })?;
            handle.flush().await?;
            let key = input_key(&handle)?;
            inputs.insert(key.clone(), current_sequence(&handle)?);
            handles.insert(key, handle);
        }
        let one_table = (view.write_ordered_query.is_some() && handles.len() == 1)
            .then(|| handles.keys().next().cloned())
            .flatten();

        let shape = shape_of(view);
        let mut state = online_store
            .materialization(name)
            .filter(|s| s.shape == shape)
            .map(|s| (*s).clone());
        offline.ensure_internal_schema(MATERIALIZED_SCHEMA).await?;
        self.drop_stale_generations(name, state.as_ref()).await?;

        // Repair: the offline table is ahead of the online store when a
        // refresh stopped between its two commits.
        if let (Some(current), Some(input)) = (&mut state, &one_table)
            && let Some(table) = offline.table(MATERIALIZED_SCHEMA, &current.offline_table)
            && let Some(committed) = committed_inputs(&table)?
            && committed.get(input).copied().unwrap_or(0)
                > current.inputs.get(input).copied().unwrap_or(0)
        {
            let after = current.inputs.get(input).copied().unwrap_or(0);
            let through = committed.get(input).copied().unwrap_or(0);
            tracing::info!(view = %name, after, through, "repairing the online store after an interrupted refresh");
            let computed = self
                .compute_rows(
                    name,
                    view,
                    &Rows::Range { after, through },
                    None,
                    current.online,
                    None,
                )
                .await?;
            let mut repaired = current.clone();
            repaired.inputs = committed;
            let change = upsert(current.online, computed.newest);
            let applied = apply_online(&online_store, name, repaired, change)?;
            *current = (*applied).clone();
        }

        let kind = match (&state, &one_table) {
            (Some(current), _)
                if !full && current.inputs == inputs && current.online == wants_online =>
            {
                RefreshKind::Unchanged
            }
            (Some(current), Some(input))
                if !full
                    && (current.online || !wants_online)
                    && current.inputs.get(input).is_some_and(|&after| {
                        only_appends(&handles[input], after, inputs[input])
                    }) =>
            {
                RefreshKind::Incremental
            }
            _ => RefreshKind::Full,
        };
        job.record.kind = kind.as_str().to_string();
        online_store.record_job(&job.record)?;
        let prepared = preparing.elapsed();
        match kind {
            RefreshKind::Unchanged => {
                if let Some(current) = state {
                    job.record.online_keys = current.online_keys;
                    if current.version != view.version {
                        let mut updated = current;
                        updated.version = view.version;
                        apply_online(&online_store, name, updated, OnlineChange::None)?;
                    }
                }
                Ok(())
            }
            RefreshKind::Incremental => {
                let current = state.expect("incremental refresh has a state");
                let input = one_table.expect("incremental refresh has one input");
                let after = current.inputs.get(&input).copied().unwrap_or(0);
                let through = inputs[&input];
                job.record.rows_in = added_rows(&handles[&input], after, through);
                let table = offline
                    .table(MATERIALIZED_SCHEMA, &current.offline_table)
                    .ok_or_else(|| {
                        Error::internal(format!(
                            "offline table {} of {name} is missing",
                            current.offline_table
                        ))
                    })?;
                let computed = self
                    .compute_rows(
                        name,
                        view,
                        &Rows::Range { after, through },
                        Some((table, &inputs)),
                        current.online,
                        Some(job.record.rows_in),
                    )
                    .await?;
                job.record.rows_out = computed.rows_out;
                let mut next = current.clone();
                next.inputs = inputs;
                next.version = view.version;
                next.refreshed_at = now();
                let mut phases = computed.phases;
                let change = upsert(next.online, computed.newest);
                phases.prepare = prepared;
                phases.apply_online(&online_store, name, job, next, change, computed.offline)?;
                Ok(())
            }
            RefreshKind::Full => {
                let previous = online_store.materialization(name);
                let generation = previous.as_ref().map(|p| p.generation + 1).unwrap_or(1);
                let offline_table = format!("{}{generation}", offline_table_prefix(name));
                let table_name = QualifiedName::new(MATERIALIZED_SCHEMA, &offline_table);
                // A leftover of an interrupted full refresh.
                offline.drop_table(&table_name, true).await?;
                let table = offline
                    .create_table(&table_name, &schema_def, false)
                    .await?
                    .ok_or_else(|| Error::internal("new offline table already exists"))?;
                let rows = match &one_table {
                    Some(input) => {
                        job.record.rows_in = total_rows(&handles[input]);
                        Rows::Range {
                            after: 0,
                            through: inputs[input],
                        }
                    }
                    None => {
                        job.record.rows_in = handles.values().map(|h| total_rows(h)).sum();
                        Rows::All
                    }
                };
                let computed = self
                    .compute_rows(
                        name,
                        view,
                        &rows,
                        Some((table, &inputs)),
                        wants_online,
                        Some(job.record.rows_in),
                    )
                    .await?;
                job.record.rows_out = computed.rows_out;
                let mut next = Materialization::new(
                    shape,
                    view.version,
                    generation,
                    offline_table,
                    inputs,
                    wants_online,
                );
                next.refreshed_at = now();
                let change = if wants_online {
                    OnlineChange::Replace(Box::new(computed.newest))
                } else {
                    OnlineChange::Replace(Box::new(OwnedRows::new(std::iter::empty())))
                };
                let mut phases = computed.phases;
                phases.prepare = prepared;
                // (Applying a new generation also warms its rows in the
                // background.)
                let applied = phases.apply_online(
                    &online_store,
                    name,
                    job,
                    next,
                    change,
                    computed.offline,
                )?;
                if let Some(previous) = previous
                    && previous.offline_table != applied.offline_table
                {
                    let old = QualifiedName::new(MATERIALIZED_SCHEMA, &previous.offline_table);
                    if let Err(e) = offline.drop_table(&old, true).await {
                        tracing::warn!(table = %old, error = %e, "could not drop an old generation");
                    }
                }
                Ok(())
            }
        }
    }

    /// Deletes what refreshes kept of dropped feature views: online rows,
    /// state and offline tables. The drop itself is already committed, so
    /// failures here are logged, not returned (the next refresh of a view
    /// with the same name drops leftover tables).
    pub(crate) async fn forget_materializations(&self, dropped: &[(ObjectKind, QualifiedName)]) {
        for (kind, name) in dropped {
            if *kind != ObjectKind::FeatureView {
                continue;
            }
            let online = self.engine.online.clone();
            // A refresh of the view that is running finishes first (its
            // state must not outlive the drop).
            let lock = online.refresh_lock(name);
            let _serialised = lock.lock().await;
            let view = name.clone();
            if let Err(e) = tokio::task::block_in_place(|| online.remove(&view)) {
                tracing::warn!(view = %name, error = %e, "could not delete the online rows of a dropped view");
            }
            if let Err(e) = self.drop_stale_generations(name, None).await {
                tracing::warn!(view = %name, error = %e, "could not drop the offline tables of a dropped view");
            }
        }
    }

    /// Drops offline tables of `view` other than the current one (left by
    /// an interrupted full refresh, or by a dropped definition).
    async fn drop_stale_generations(
        &self,
        view: &QualifiedName,
        state: Option<&Materialization>,
    ) -> Result<()> {
        let current = self
            .engine
            .online
            .materialization(view)
            .map(|s| s.offline_table.clone());
        let keep = state.map(|s| s.offline_table.clone()).or(current);
        let prefix = offline_table_prefix(view);
        for table in self.engine.offline.table_names(MATERIALIZED_SCHEMA) {
            let generation = table.strip_prefix(&prefix);
            let ours =
                generation.is_some_and(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_digit()));
            if ours && Some(&table) != keep.as_ref() {
                self.engine
                    .offline
                    .drop_table(&QualifiedName::new(MATERIALIZED_SCHEMA, &table), true)
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs one pass: computes the view's rows, appends them to `offline`
    /// (with the input sequence numbers in the same commit), and keeps the
    /// newest row per key when `online`. Each partition of the query is
    /// processed by its own task (its own data files and newest rows); the
    /// newest rows are merged at the end, which is exact because the
    /// tie-breaker is comparable across partitions.
    #[allow(clippy::too_many_arguments)]
    async fn compute_rows(
        &mut self,
        name: &QualifiedName,
        view: &FeatureViewVersion,
        rows: &Rows,
        offline: Option<(Arc<TableHandle>, &BTreeMap<String, i64>)>,
        online: bool,
        expected_rows: Option<u64>,
    ) -> Result<Computed> {
        let mut phases = Phases::default();
        let planning = Instant::now();
        let sql = rows_sql(view, rows)?;
        let query = parse_query(&sql)?;
        let statement = ast::Statement::Query(query);
        let registry = self.engine.registry.snapshot();
        let (plan, _) = self
            .plan_query_in(&registry, ResolveMode::Definition, &sql, &statement, &[])
            .await?;
        let frame = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(Error::from_datafusion)?;
        let task_context = Arc::new(frame.task_ctx());
        let mut physical = frame
            .create_physical_plan()
            .await
            .map_err(Error::from_datafusion)?;
        if let Rows::Range { .. } = rows {
            physical = spread_over_partitions(
                physical,
                task_context.session_config().target_partitions(),
            )?;
        }
        let streams = datafusion::physical_plan::execute_stream_partitioned(physical, task_context)
            .map_err(Error::from_datafusion)?;
        phases.plan = planning.elapsed();
        let computing = Instant::now();
        let shape = Arc::new(RowShape::of(view)?);
        // The keys the last refresh held, or a partition's share of the
        // rows to read if fewer (an incremental pass over 1% of the rows
        // must not allocate — and fault in — maps for all the keys): each
        // partition's map starts that large.
        let partitions = streams.len().max(1) as u64;
        let capacity_hint = self
            .engine
            .online
            .materialization(name)
            .map(|m| m.online_keys)
            .unwrap_or(0)
            .min(expected_rows.map_or(u64::MAX, |rows| rows.div_ceil(partitions)))
            as usize;
        let rows_done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for stream in streams {
            let shape = shape.clone();
            let table = offline.as_ref().map(|(table, _)| table.clone());
            let rows_done = rows_done.clone();
            tasks.spawn(async move {
                process_partition(stream, shape, table, online, capacity_hint, rows_done).await
            });
        }

        // Join the partitions, reporting progress while they run.
        let mut results = Vec::new();
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
        ticker.tick().await;
        let mut reported = 0;
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(result)) => results.push(result?),
                    Some(Err(e)) => return Err(Error::internal(format!("refresh task failed: {e}"))),
                },
                _ = ticker.tick() => {
                    let done = rows_done.load(std::sync::atomic::Ordering::Relaxed);
                    if done > reported {
                        reported = done;
                        let percent = expected_rows
                            .filter(|&e| e > 0)
                            .map(|e| format!(" (~{:.0}% of the input)", (done as f64 / e as f64 * 100.0).min(100.0)))
                            .unwrap_or_default();
                        self.progress(Notice::informational(
                            "00000",
                            format!("refresh of {name}: {done} rows computed{percent}"),
                        ));
                    }
                }
            }
        }

        phases.partitions = computing.elapsed();
        let merging = Instant::now();
        let mut rows_out = 0;
        let mut runs = Vec::with_capacity(results.len());
        let mut finishing = Vec::with_capacity(results.len());
        for partition in results {
            rows_out += partition.rows_out;
            runs.push(partition.newest);
            finishing.extend(partition.files);
        }
        let offline = match offline {
            Some((_, inputs)) => {
                let properties = HashMap::from([(
                    REFRESH_INPUTS_PROPERTY.to_string(),
                    serde_json::to_string(inputs)
                        .map_err(|e| Error::internal(format!("encoding refresh inputs: {e}")))?,
                )]);
                OfflineCommit(Some(tokio::spawn(commit_offline(finishing, properties))))
            }
            None => OfflineCommit::none(),
        };
        let newest = SortedWinners::merge(runs);
        phases.merge = merging.elapsed();
        Ok(Computed {
            rows_out,
            newest,
            phases,
            offline,
        })
    }
}

/// Appends the files the partitions are finishing to the view's offline
/// table in one commit (none if they hold no rows).
async fn commit_offline(
    finishing: Vec<tokio::task::JoinHandle<Result<crate::offline::WrittenFiles>>>,
    properties: HashMap<String, String>,
) -> Result<()> {
    let mut written: Option<crate::offline::WrittenFiles> = None;
    for files in finishing {
        let files = files
            .await
            .map_err(|e| Error::internal(format!("finishing data files failed: {e}")))??;
        match &mut written {
            Some(all) => all.absorb(files),
            None => written = Some(files),
        }
    }
    if let Some(written) = written
        && written.rows() > 0
    {
        written.commit_with_properties(properties).await?;
        crate::failpoint::crash_point("refresh-after-offline-commit");
    }
    Ok(())
}

/// `plan`'s batches dealt round-robin to `partitions` outputs. Each
/// output's rows are written and ranked by a task of its own; an
/// incremental pass reads few files, often one with one row group, which
/// is one busy partition (the others empty) and one busy core. Dealt out,
/// the reading runs in one task while the others write and rank.
fn spread_over_partitions(
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    partitions: usize,
) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    use datafusion::physical_plan::Partitioning;
    let spread = datafusion::physical_plan::repartition::RepartitionExec::try_new(
        plan,
        Partitioning::RoundRobinBatch(partitions),
    )
    .map_err(Error::from_datafusion)?;
    Ok(Arc::new(spread))
}

/// The online change of an incremental pass.
fn upsert(online: bool, newest: MergedWinners) -> OnlineChange {
    if online {
        OnlineChange::Upsert(newest.into_upserts())
    } else {
        OnlineChange::None
    }
}

/// Commits a refresh's online change and state (blocking: redb fsyncs).
fn apply_online(
    store: &Arc<OnlineStore>,
    view: &QualifiedName,
    state: Materialization,
    change: OnlineChange,
) -> Result<Arc<Materialization>> {
    tokio::task::block_in_place(|| store.apply(view, state, change))
}

/// Where a view's columns are in the rows a refresh computes.
struct RowShape {
    /// The view's columns in their declared types.
    target: Arc<Schema>,
    key_indices: Vec<usize>,
    key_types: Vec<DataType>,
    ts_index: usize,
}

impl RowShape {
    fn of(view: &FeatureViewVersion) -> Result<Self> {
        let target = Arc::new(Schema::new(
            view.columns
                .iter()
                .map(|c| {
                    let data_type = c
                        .column_type
                        .as_ref()
                        .map(ColumnType::to_arrow)
                        .unwrap_or(DataType::Null);
                    datafusion::arrow::datatypes::Field::new(&c.name, data_type, true)
                })
                .collect::<Vec<_>>(),
        ));
        let key_indices: Vec<usize> = view
            .keys
            .iter()
            .map(|k| view.columns.iter().position(|c| &c.name == k))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::internal("a key column is missing from the view"))?;
        let ts_index = view
            .columns
            .iter()
            .position(|c| c.name == view.timestamp)
            .ok_or_else(|| Error::internal("the timestamp column is missing from the view"))?;
        let key_types = key_indices
            .iter()
            .map(|&i| target.field(i).data_type().clone())
            .collect();
        Ok(Self {
            target,
            key_indices,
            key_types,
            ts_index,
        })
    }
}

/// What one partition of a refresh produced.
struct PartitionOutput {
    rows_out: u64,
    newest: SortedWinners,
    /// Its data files, being finished by a task of their own (flushing
    /// and fsyncing while the newest rows are sorted and merged).
    files: Option<tokio::task::JoinHandle<Result<crate::offline::WrittenFiles>>>,
}

async fn process_partition(
    mut stream: datafusion::execution::SendableRecordBatchStream,
    shape: Arc<RowShape>,
    table: Option<Arc<TableHandle>>,
    online: bool,
    capacity_hint: usize,
    rows_done: Arc<std::sync::atomic::AtomicU64>,
) -> Result<PartitionOutput> {
    let mut writer = match table {
        Some(table) => Some(DataFileWriter::new(table).await?),
        None => None,
    };
    let mut newest = NewestRows::new(&shape.key_types, capacity_hint);
    let mut rows_out = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::from_datafusion)?;
        let tie_column = batch.num_columns() - 1;
        let tie = cast(batch.column(tie_column), &DataType::Int64)?;
        let tie = tie.as_primitive::<Int64Type>();
        let columns = shape
            .target
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let column = batch.column(i);
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    cast(column, field.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let out = RecordBatch::try_new(shape.target.clone(), columns)?;
        if online {
            newest.offer_batch(&out, &shape.key_indices, shape.ts_index, tie)?;
        }
        rows_out += out.num_rows() as u64;
        rows_done.fetch_add(out.num_rows() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(writer) = &mut writer {
            writer.write(out).await?;
        }
    }
    let files = writer.map(|writer| tokio::spawn(writer.finish()));
    Ok(PartitionOutput {
        rows_out,
        newest: newest.into_sorted(),
        files,
    })
}

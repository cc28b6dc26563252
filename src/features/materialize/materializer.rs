//! Refreshing views as jobs: in dependency order, one job per view, and
//! for each the kind of refresh its state and inputs call for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use featuredb_catalog::{
    FeatureViewVersion, ObjectKind, QualifiedName, Registry, RegistryState, timestamp_now as now,
};

use super::apply::{apply_online, upsert};
use super::compute::{WindowCollect, window_collect};
use super::definition::{Rows, offline_schema, offline_table_prefix, online_storable, shape_of};
use super::inputs::{
    added_rows, base_tables, committed_inputs, current_sequence, input_key, only_appends,
    refresh_order, total_rows,
};
use crate::error::{Error, Result};
use crate::features::planner::SqlPlanner;
use crate::jobs::{JobRunner, RunningJob};
use crate::notice::{Notice, NoticeSink};
use crate::offline::{OfflineStore, TableHandle};
use crate::online::{
    MATERIALIZED_SCHEMA, Materialization, OnlineChange, OnlineStore, OwnedRows, WindowEvent,
};

/// Refreshes feature views: what a session's REFRESH calls, and what a
/// scheduler or a stream pipeline will. Every refresh of a view is a job
/// ([`JobRunner`]): one at a time per view, recorded in `featuredb.jobs`.
pub struct Materializer {
    pub(super) offline: Arc<OfflineStore>,
    pub(super) online: Arc<OnlineStore>,
    pub(super) registry: Arc<Registry>,
    pub(super) jobs: Arc<JobRunner>,
}

/// Who asked for a refresh: the planner its queries go through (with the
/// caller's settings), and where its notices go.
pub struct Caller<'a> {
    pub planner: &'a mut dyn SqlPlanner,
    pub notices: NoticeSink<'a>,
}

/// How to refresh a view.
#[derive(Clone)]
struct How {
    /// Recompute from scratch.
    full: bool,
    /// Commit the inputs' logged writes first (a stream's refresh stores
    /// only what its source committed).
    flush_inputs: bool,
    /// What a windowed view keeps of its rows for its windows (set once
    /// the view is known).
    windows: Option<Arc<WindowCollect>>,
}

/// What a refresh changes of a windowed view's rows in memory.
enum WindowUpdate {
    /// Rows added (incremental), stored through the refresh's snapshot.
    Store(Vec<(Vec<u8>, WindowEvent)>),
    /// Every row (full).
    Reset(Vec<(Vec<u8>, WindowEvent)>),
}

/// What a refresh reads, fixed before it decides anything.
struct FixedInputs {
    /// Input key → the sequence number of the snapshot read.
    inputs: BTreeMap<String, i64>,
    handles: BTreeMap<String, Arc<TableHandle>>,
    /// The input of a one-table view (which refreshes incrementally).
    one_table: Option<String>,
    /// When the refresh started preparing.
    preparing: Instant,
    /// What a windowed view keeps of its rows for its windows.
    windows: Option<Arc<WindowCollect>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshKind {
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

impl Materializer {
    pub fn new(
        offline: Arc<OfflineStore>,
        online: Arc<OnlineStore>,
        registry: Arc<Registry>,
        jobs: Arc<JobRunner>,
    ) -> Self {
        Self {
            offline,
            online,
            registry,
            jobs,
        }
    }

    /// Refreshes `targets` (feature views of `registry`), each once and
    /// every view after the views it reads; `full` recomputes the targets
    /// (the views they read refresh as they need).
    pub async fn refresh(
        &self,
        registry: &RegistryState,
        targets: &[QualifiedName],
        full: bool,
        caller: &mut Caller<'_>,
    ) -> Result<()> {
        for name in refresh_order(registry, targets) {
            let full = full && targets.contains(&name);
            let how = How {
                full,
                flush_inputs: true,
                windows: None,
            };
            self.refresh_view(registry, &name, how, caller).await?;
        }
        Ok(())
    }

    /// Stores what a streaming view's source committed since its last
    /// refresh: an incremental refresh of `name` alone that does not flush
    /// the source (the stream engine calls it after each commit to the
    /// source; flushing here would commit again, and again). The rows it
    /// stores leave the stream's memory.
    pub async fn refresh_stream(
        &self,
        registry: &RegistryState,
        name: &QualifiedName,
        caller: &mut Caller<'_>,
    ) -> Result<()> {
        let how = How {
            full: false,
            flush_inputs: false,
            windows: None,
        };
        self.refresh_view(registry, name, how, caller).await
    }

    /// Refreshes one view, as a job.
    async fn refresh_view(
        &self,
        registry: &RegistryState,
        name: &QualifiedName,
        mut how: How,
        caller: &mut Caller<'_>,
    ) -> Result<()> {
        let defined = registry
            .views
            .get(name)
            .ok_or_else(|| Error::UndefinedTable {
                name: name.to_string(),
                position: None,
            })?
            .current();
        how.windows = window_collect(defined)?;
        let view = defined.materialized_form().into_owned();
        let turn = self.jobs.lock(name).await;
        // The view may have been dropped or replaced while we waited.
        let now_current = self
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
        let mut job = self.jobs.start(turn, name, view.version)?;
        let outcome = self
            .refresh_view_inner(registry, name, &view, how, &mut job, caller)
            .await;
        // A refresh that committed a state recorded its job with it; the
        // others (nothing to apply, or failed) are recorded here.
        let job = self.jobs.finish(job, outcome.as_ref().map(|_| ()));
        if outcome.is_ok() {
            caller.notices.notice(Notice::informational(
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
        &self,
        registry: &RegistryState,
        name: &QualifiedName,
        view: &FeatureViewVersion,
        how: How,
        job: &mut RunningJob,
        caller: &mut Caller<'_>,
    ) -> Result<()> {
        let preparing = Instant::now();
        let offline = self.offline.clone();
        if view.online {
            online_storable(view)?;
        }

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
            if how.flush_inputs {
                handle.flush().await?;
            }
            let key = input_key(&handle)?;
            inputs.insert(key.clone(), current_sequence(&handle)?);
            handles.insert(key, handle);
        }
        let one_table = (view.write_ordered_query.is_some() && handles.len() == 1)
            .then(|| handles.keys().next().cloned())
            .flatten();
        // The logged writes this refresh stores: streamed rows of these
        // leave memory once it has published.
        let stored_through = match &one_table {
            Some(input) => Some(handles[input].wal_watermark_at(inputs[input])?),
            None => None,
        };
        let fixed = FixedInputs {
            inputs,
            handles,
            one_table,
            preparing,
            windows: how.windows.clone(),
        };
        let update = self
            .refresh_fixed(name, view, how.full, fixed, job, caller)
            .await?;
        let through = stored_through.unwrap_or(0);
        if let Some(windows) = &how.windows {
            let shape = windows.shape.clone();
            let stored = match update {
                WindowUpdate::Store(events) => self.online.store_window_events(
                    name,
                    &shape,
                    through,
                    events,
                    windows.keep_after,
                ),
                WindowUpdate::Reset(events) => {
                    self.online.reset_window_events(
                        name,
                        &shape,
                        through,
                        events,
                        windows.keep_after,
                    );
                    true
                }
            };
            if !stored || !self.online.has_window_events(name, &shape) {
                self.rebuild_window_events(name, view, windows, caller)
                    .await?;
            }
        }
        if stored_through.is_some() {
            self.online.prune_streamed(name, through);
        }
        Ok(())
    }

    /// Computes a windowed view's rows in memory from its source, up to
    /// the snapshot its last refresh stored (after a restart, or when
    /// they were lost).
    pub async fn rebuild_window_events(
        &self,
        name: &QualifiedName,
        view: &FeatureViewVersion,
        windows: &Arc<WindowCollect>,
        caller: &mut Caller<'_>,
    ) -> Result<()> {
        let shape = shape_of(view);
        let Some(state) = self
            .online
            .materialization(name)
            .filter(|s| s.shape == shape)
        else {
            return Ok(());
        };
        let mut tables = BTreeSet::new();
        base_tables(&self.registry.snapshot(), view, &mut tables, 0)?;
        let one_table = match (tables.iter().next(), &view.write_ordered_query) {
            (Some(table), Some(_)) if tables.len() == 1 => {
                self.offline.table(&table.schema, &table.name)
            }
            _ => None,
        };
        let (rows, through) = match &one_table {
            Some(handle) => {
                let through = state.inputs.get(&input_key(handle)?).copied().unwrap_or(0);
                (
                    Rows::Range { after: 0, through },
                    handle.wal_watermark_at(through)?,
                )
            }
            None => (Rows::All, 0),
        };
        let computed = self
            .compute_rows(caller, name, view, &rows, None, false, None, Some(windows))
            .await?;
        self.online.reset_window_events(
            name,
            &windows.shape,
            through,
            computed.window_events,
            windows.keep_after,
        );
        Ok(())
    }

    /// Decides the kind of refresh and runs it, from the inputs fixed.
    async fn refresh_fixed(
        &self,
        name: &QualifiedName,
        view: &FeatureViewVersion,
        full: bool,
        fixed: FixedInputs,
        job: &mut RunningJob,
        caller: &mut Caller<'_>,
    ) -> Result<WindowUpdate> {
        let FixedInputs {
            inputs,
            handles,
            one_table,
            preparing,
            windows,
        } = fixed;
        let windows = windows.as_ref();
        let mut repaired_events = Vec::new();
        let offline = self.offline.clone();
        let online_store = self.online.clone();
        let wants_online = view.online;
        let schema_def = offline_schema(view)?;

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
                    caller,
                    name,
                    view,
                    &Rows::Range { after, through },
                    None,
                    current.online,
                    None,
                    windows,
                )
                .await?;
            repaired_events = computed.window_events;
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
        self.jobs.update(job)?;
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
                Ok(WindowUpdate::Store(repaired_events))
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
                        caller,
                        name,
                        view,
                        &Rows::Range { after, through },
                        Some((table, &inputs)),
                        current.online,
                        Some(job.record.rows_in),
                        windows,
                    )
                    .await?;
                let mut events = std::mem::take(&mut repaired_events);
                events.extend(computed.window_events);
                job.record.rows_out = computed.rows_out;
                let mut next = current.clone();
                next.inputs = inputs;
                next.version = view.version;
                next.refreshed_at = now();
                let mut phases = computed.phases;
                let change = upsert(next.online, computed.newest);
                phases.prepare = prepared;
                phases.apply_online(&online_store, name, job, next, change, computed.offline)?;
                Ok(WindowUpdate::Store(events))
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
                        caller,
                        name,
                        view,
                        &rows,
                        Some((table, &inputs)),
                        wants_online,
                        Some(job.record.rows_in),
                        windows,
                    )
                    .await?;
                let events = computed.window_events;
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
                Ok(WindowUpdate::Reset(events))
            }
        }
    }

    /// Deletes what refreshes kept of dropped feature views: online rows,
    /// state and offline tables. The drop itself is already committed, so
    /// failures here are logged, not returned (the next refresh of a view
    /// with the same name drops leftover tables).
    pub async fn forget(&self, dropped: &[(ObjectKind, QualifiedName)]) {
        for (kind, name) in dropped {
            if *kind != ObjectKind::FeatureView {
                continue;
            }
            // A refresh of the view that is running finishes first (its
            // state must not outlive the drop).
            let _turn = self.jobs.lock(name).await;
            let online = self.online.clone();
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
            .online
            .materialization(view)
            .map(|s| s.offline_table.clone());
        let keep = state.map(|s| s.offline_table.clone()).or(current);
        let prefix = offline_table_prefix(view);
        for table in self.offline.table_names(MATERIALIZED_SCHEMA) {
            let generation = table.strip_prefix(&prefix);
            let ours =
                generation.is_some_and(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_digit()));
            if ours && Some(&table) != keep.as_ref() {
                self.offline
                    .drop_table(&QualifiedName::new(MATERIALIZED_SCHEMA, &table), true)
                    .await?;
            }
        }
        Ok(())
    }
}

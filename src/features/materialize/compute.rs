//! A pass: the view's query, each of its partitions processed by a task of
//! its own (cast to the view's types, written to offline data files, the
//! newest row per key kept), the partitions' newest rows merged at the end,
//! and the data files committed to the offline table by a task of their
//! own while the online rows are applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::sql::sqlparser::ast;
use featuredb_catalog::{FeatureViewVersion, QualifiedName};
use futures::StreamExt;

use super::apply::Phases;
use super::definition::shape_of;
use super::definition::{RowShape, Rows, rows_sql};
use super::inputs::REFRESH_INPUTS_PROPERTY;
use super::materializer::{Caller, Materializer};
use super::newest::{MergedWinners, NewestRows, SortedWinners};
use crate::error::{Error, Result};
use crate::features::resolve::ResolveMode;
use crate::features::temporal::parse_query;
use crate::features::windows::{WindowArguments, WindowedView, oldest_needed, windowed_view};
use crate::notice::Notice;
use crate::offline::TableHandle;
use crate::offline::writer::DataFileWriter;
use crate::online::WindowEvent;

/// What a pass produced.
pub(super) struct Computed {
    pub(super) rows_out: u64,
    /// The rows windowed features may still count (windowed views).
    pub(super) window_events: Vec<(Vec<u8>, WindowEvent)>,
    pub(super) newest: MergedWinners,
    pub(super) phases: Phases,
    /// The offline commit of its rows, still running.
    pub(super) offline: OfflineCommit,
}

/// What a pass keeps of a windowed view's rows for its windows: the
/// rows at or after `keep_after`, as `arguments` says.
pub struct WindowCollect {
    pub arguments: WindowArguments,
    pub keep_after: i64,
    /// Which rows in memory these are ([`window_rows_shape`]).
    pub shape: String,
}

/// What a refresh of `view` (as defined, not its materialized form)
/// keeps for its windows, if it is windowed.
pub fn window_collect(view: &FeatureViewVersion) -> Result<Option<Arc<WindowCollect>>> {
    let Some(windowed) = windowed_view(view)? else {
        return Ok(None);
    };
    let arguments = WindowArguments::of(view, &windowed)?;
    let keep_after = oldest_needed(arguments.widest_micros);
    Ok(Some(Arc::new(WindowCollect {
        arguments,
        keep_after,
        shape: window_rows_shape(view, &windowed),
    })))
}

/// Which rows in memory serve `view`'s windows: those of its materialized
/// shape kept for these windows (a wider window needs rows a narrower one
/// let go).
pub fn window_rows_shape(view: &FeatureViewVersion, windowed: &WindowedView) -> String {
    format!("{}|{:?}", shape_of(view), windowed.features)
}

/// A pass's offline commit: its data files finished (flushed, fsynced),
/// then appended in one Iceberg commit. It runs in a task of its own
/// while the online rows are prepared; the online store commits after it
/// (see the module comment), and a refresh waits for it before it
/// returns, whatever happened meanwhile: it holds the view's turn (its
/// job), and the next refresh must see this commit's outcome.
pub(super) struct OfflineCommit(Option<tokio::task::JoinHandle<Result<()>>>);

impl OfflineCommit {
    pub(super) fn none() -> Self {
        Self(None)
    }

    /// Waits for the commit, from blocking code (the online apply);
    /// waiting again returns at once.
    pub(super) fn wait_blocking(&mut self) -> Result<()> {
        match self.0.take() {
            None => Ok(()),
            Some(commit) => tokio::runtime::Handle::current()
                .block_on(commit)
                .map_err(|e| Error::internal(format!("the offline commit failed: {e}")))?,
        }
    }
}

impl Materializer {
    /// Runs one pass: computes the view's rows, appends them to `offline`
    /// (with the input sequence numbers in the same commit), and keeps the
    /// newest row per key when `online`. Each partition of the query is
    /// processed by its own task (its own data files and newest rows); the
    /// newest rows are merged at the end, which is exact because the
    /// tie-breaker is comparable across partitions.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn compute_rows(
        &self,
        caller: &mut Caller<'_>,
        name: &QualifiedName,
        view: &FeatureViewVersion,
        rows: &Rows,
        offline: Option<(Arc<TableHandle>, &BTreeMap<String, i64>)>,
        online: bool,
        expected_rows: Option<u64>,
        windows: Option<&Arc<WindowCollect>>,
    ) -> Result<Computed> {
        let mut phases = Phases::default();
        let planning = Instant::now();
        let sql = rows_sql(view, rows)?;
        let query = parse_query(&sql)?;
        let statement = ast::Statement::Query(query);
        let registry = self.registry.snapshot();
        let (plan, _) = caller
            .planner
            .plan(&registry, ResolveMode::Definition, &sql, &statement, &[])
            .await?;
        let state = caller.planner.state();
        let task_context = Arc::new(datafusion::execution::TaskContext::from(&state));
        let mut physical = state
            .create_physical_plan(&plan)
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
            let windows = windows.cloned();
            tasks.spawn(async move {
                process_partition(
                    stream,
                    shape,
                    table,
                    online,
                    capacity_hint,
                    rows_done,
                    windows,
                )
                .await
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
                        caller.notices.progress(Notice::informational(
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
        let mut window_events = Vec::new();
        for mut partition in results {
            rows_out += partition.rows_out;
            window_events.append(&mut partition.window_events);
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
            window_events,
            newest,
            phases,
            offline,
        })
    }
}

/// Appends the files the partitions are finishing to the view's offline
/// table in one commit (none if they hold no rows).
pub(super) async fn commit_offline(
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
pub(super) fn spread_over_partitions(
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

/// What one partition of a refresh produced.
pub(super) struct PartitionOutput {
    pub(super) rows_out: u64,
    pub(super) window_events: Vec<(Vec<u8>, WindowEvent)>,
    pub(super) newest: SortedWinners,
    /// Its data files, being finished by a task of their own (flushing
    /// and fsyncing while the newest rows are sorted and merged).
    pub(super) files: Option<tokio::task::JoinHandle<Result<crate::offline::WrittenFiles>>>,
}

pub(super) async fn process_partition(
    mut stream: datafusion::execution::SendableRecordBatchStream,
    shape: Arc<RowShape>,
    table: Option<Arc<TableHandle>>,
    online: bool,
    capacity_hint: usize,
    rows_done: Arc<std::sync::atomic::AtomicU64>,
    windows: Option<Arc<WindowCollect>>,
) -> Result<PartitionOutput> {
    let mut window_events = Vec::new();
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
        let out = shape.cast(&batch)?;
        if online {
            newest.offer_batch(&out, &shape.key_indices, shape.ts_index, tie)?;
        }
        if let Some(windows) = &windows {
            window_events.append(&mut windows.arguments.events(&out, |_| 0, windows.keep_after)?);
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
        window_events,
        newest: newest.into_sorted(),
        files,
    })
}

//! Which streaming views each table feeds, and applying a write to them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use featuredb_catalog::{QualifiedName, Registry};

use crate::error::Result;
use crate::features::Materializer;
use crate::features::materialize::{Caller, WindowCollect, shape_of, window_collect};
use crate::features::planner::SqlPlanner;
use crate::features::streaming::{RowPipeline, offer_rows};
use crate::features::windows::oldest_needed;
use crate::notice::NoticeSink;
use crate::offline::{OfflineStore, WriteObserver};
use crate::online::{OnlineStore, ViewStream};

/// Where the stream engine gets planners (with default settings) for the
/// work it does on its own: compiling pipelines, storing refreshes.
pub trait PlannerSource: Send + Sync {
    fn planner(&self) -> Result<Box<dyn SqlPlanner>>;
}

/// One streaming view fed by a table.
pub(super) struct Feed {
    pub(super) view: QualifiedName,
    /// The view version the pipeline was compiled from.
    version: u32,
    pipeline: RowPipeline,
    pub(super) stream: Arc<ViewStream>,
    /// A windowed view's windows: what they keep of each row.
    windows: Option<Arc<WindowCollect>>,
    /// The source table's Iceberg UUID when compiled: a table that later
    /// takes its name (renamed in, dropped and created) is another source,
    /// whose log sequence numbers start again.
    source_uuid: Option<String>,
}

pub struct StreamEngine {
    pub(super) registry: Arc<Registry>,
    pub(super) offline: Arc<OfflineStore>,
    pub(super) online: Arc<OnlineStore>,
    pub(super) materializer: Arc<Materializer>,
    pub(super) planners: OnceLock<Arc<dyn PlannerSource>>,
    /// Source table → the views it feeds.
    feeds: RwLock<HashMap<QualifiedName, Vec<Arc<Feed>>>>,
    /// Views whose source committed rows not yet stored by a refresh.
    pub(super) unstored: Mutex<BTreeSet<QualifiedName>>,
    pub(super) wake: tokio::sync::Notify,
    /// Serialises reloads (two DDL statements finishing together).
    reloading: tokio::sync::Mutex<()>,
}

impl StreamEngine {
    pub fn new(
        registry: Arc<Registry>,
        offline: Arc<OfflineStore>,
        online: Arc<OnlineStore>,
        materializer: Arc<Materializer>,
    ) -> Self {
        Self {
            registry,
            offline,
            online,
            materializer,
            planners: OnceLock::new(),
            feeds: RwLock::default(),
            unstored: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn planner(&self) -> Result<Box<dyn SqlPlanner>> {
        self.planners
            .get()
            .ok_or_else(|| crate::error::Error::internal("the stream engine has not started"))?
            .planner()
    }

    /// Starts streaming: hears every write from now on, replays the rows
    /// sources logged before a restart, and stores (refreshes) whatever
    /// their commits hold that no refresh stored yet.
    pub async fn start(self: &Arc<Self>, planners: Arc<dyn PlannerSource>) -> Result<()> {
        let _ = self.planners.set(planners);
        self.offline.observers().set(self.clone());
        self.reload().await?;
        self.rebuild_windows().await;
        let feeds: Vec<(QualifiedName, Arc<Feed>)> = self
            .read_feeds()
            .iter()
            .flat_map(|(table, feeds)| feeds.iter().map(|f| (table.clone(), f.clone())))
            .collect();
        for (table, feed) in &feeds {
            if let Some(handle) = self.offline.table(&table.schema, &table.name) {
                for (seq, batch) in handle.tail_records()? {
                    apply(&self.online, feed, seq, &batch);
                }
            }
        }
        // Rows a flush committed before the crash but no refresh stored
        // are neither in the tail nor online yet: store them before the
        // server takes connections. A view that fails here is retried by
        // the worker.
        let mut stored = std::collections::HashSet::new();
        for (_, feed) in &feeds {
            if !stored.insert(feed.view.clone()) {
                continue;
            }
            if let Err(e) = super::worker::store(self, &feed.view).await {
                tracing::warn!(view = %feed.view, error = %e, "could not store a stream's committed rows at startup; retrying");
                feed.stream.failed(e.to_string());
                self.mark_unstored(&feed.view);
            }
        }
        super::worker::spawn(Arc::downgrade(self));
        Ok(())
    }

    /// Follows the registry: compiles a pipeline for each streaming view
    /// (keeping those whose version did not change) and ends the streams
    /// of views that no longer stream. Returns the views compiled anew
    /// (new, replaced, or just made STREAMING).
    pub async fn reload(&self) -> Result<Vec<QualifiedName>> {
        let _reloading = self.reloading.lock().await;
        let registry = self.registry.snapshot();
        let existing: HashMap<QualifiedName, Arc<Feed>> = self
            .read_feeds()
            .values()
            .flatten()
            .map(|f| (f.view.clone(), f.clone()))
            .collect();
        let mut feeds: HashMap<QualifiedName, Vec<Arc<Feed>>> = HashMap::new();
        let mut streaming = Vec::new();
        let mut compiled = Vec::new();
        let mut planner: Option<Box<dyn SqlPlanner>> = None;
        for (name, view) in &registry.views {
            let view = view.current();
            if !view.streaming {
                continue;
            }
            streaming.push(name.clone());
            let feed = match existing.get(name) {
                Some(feed)
                    if feed.version == view.version
                        && feed.source_uuid == self.source_uuid(&feed.pipeline.source) =>
                {
                    feed.clone()
                }
                other => {
                    if let Some(feed) = other
                        && feed.source_uuid != self.source_uuid(&feed.pipeline.source)
                    {
                        // Rows streamed from another table (whose log
                        // numbers mean nothing here) must not be taken
                        // for the new one's.
                        self.online.end_stream(name);
                        self.online.drop_window_events(name);
                    }
                    compiled.push(name.clone());
                    let planner = match &mut planner {
                        Some(planner) => planner,
                        None => planner.insert(self.planner()?),
                    };
                    match RowPipeline::compile(name, view, &registry, planner.as_mut()).await {
                        Ok(pipeline) => {
                            let stream = self.online.stream(
                                name,
                                &shape_of(view),
                                &pipeline.source.to_string(),
                            );
                            Arc::new(Feed {
                                view: name.clone(),
                                version: view.version,
                                source_uuid: self.source_uuid(&pipeline.source),
                                pipeline,
                                stream,
                                windows: window_collect(view)?,
                            })
                        }
                        Err(e) => {
                            // Its sources changed under it (a table
                            // altered): the view stays as it is, refreshed
                            // in batch, and says why.
                            tracing::warn!(view = %name, error = %e, "cannot stream feature view");
                            let stream = self.online.stream(name, &shape_of(view), "");
                            stream.failed(e.to_string());
                            continue;
                        }
                    }
                }
            };
            feeds
                .entry(feed.pipeline.source.clone())
                .or_default()
                .push(feed);
        }
        for name in self.online.streaming_views() {
            if !streaming.contains(&name) {
                self.online.end_stream(&name);
            }
        }
        *self.feeds.write().unwrap_or_else(|p| p.into_inner()) = feeds;
        Ok(compiled)
    }

    /// Computes the rows of every windowed view with stored rows (they
    /// are kept in memory only): from its source, up to what its last
    /// refresh stored. A view whose rows cannot be computed is served by
    /// the planner until its next refresh.
    async fn rebuild_windows(&self) {
        let registry = self.registry.snapshot();
        for (name, view) in &registry.views {
            let view = view.current();
            let collect = match window_collect(view) {
                Ok(Some(collect)) => collect,
                _ => continue,
            };
            let started = Instant::now();
            let outcome = async {
                let mut planner = self.planner()?;
                let mut notices = Vec::new();
                let mut caller = Caller {
                    planner: planner.as_mut(),
                    notices: NoticeSink::new(&mut notices, None),
                };
                self.materializer
                    .rebuild_window_events(name, &view.materialized_form(), &collect, &mut caller)
                    .await
            }
            .await;
            match outcome {
                Ok(()) => {
                    tracing::info!(view = %name, elapsed = ?started.elapsed(), "rebuilt the rows of windowed features")
                }
                Err(e) => {
                    tracing::warn!(view = %name, error = %e, "cannot rebuild the rows of windowed features")
                }
            }
        }
    }

    fn source_uuid(&self, table: &QualifiedName) -> Option<String> {
        let handle = self.offline.table(&table.schema, &table.name)?;
        let current = handle.current().ok()?;
        Some(current.metadata().uuid().to_string())
    }

    fn read_feeds(&self) -> std::sync::RwLockReadGuard<'_, HashMap<QualifiedName, Vec<Arc<Feed>>>> {
        self.feeds.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the worker to store `view`'s committed rows (after a refresh
    /// that failed elsewhere).
    pub fn retry(&self, view: &QualifiedName) {
        self.mark_unstored(view);
    }

    pub(super) fn mark_unstored(&self, view: &QualifiedName) {
        self.unstored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(view.clone());
        self.wake.notify_one();
    }

    /// The stream of a view, if it streams.
    pub(super) fn feed(&self, view: &QualifiedName) -> Option<Arc<Feed>> {
        self.read_feeds()
            .values()
            .flatten()
            .find(|f| &f.view == view)
            .cloned()
    }
}

/// Runs one logged write through a view's pipeline into its stream (and
/// a windowed view's rows in memory).
fn apply(online: &OnlineStore, feed: &Feed, seq: u64, batch: &RecordBatch) {
    let started = Instant::now();
    let outcome = feed.pipeline.apply(batch).and_then(|rows| {
        offer_rows(&feed.stream, &feed.pipeline.shape, &rows, seq)?;
        if let Some(windows) = &feed.windows {
            let keep_after = oldest_needed(windows.arguments.widest_micros);
            let events = windows.arguments.events(&rows, |_| seq, keep_after)?;
            online.stream_window_events(&feed.view, &windows.shape, events, keep_after);
        }
        Ok(())
    });
    match outcome {
        Ok(_) => feed.stream.applied(started.elapsed().as_micros() as u64),
        Err(e) => {
            // The write is durable and stays so; its rows reach the view
            // when a refresh stores them (which reports the same error if
            // it is in the data).
            tracing::warn!(view = %feed.view, error = %e, "could not stream a write");
            feed.stream.failed(e.to_string());
        }
    }
}

impl WriteObserver for StreamEngine {
    fn logged(&self, table: &QualifiedName, seq: u64, batch: &RecordBatch) {
        if let Some(feeds) = self.read_feeds().get(table) {
            for feed in feeds {
                apply(&self.online, feed, seq, batch);
            }
        }
    }

    fn committed(&self, table: &QualifiedName) {
        let views: Vec<QualifiedName> = match self.read_feeds().get(table) {
            Some(feeds) => feeds.iter().map(|f| f.view.clone()).collect(),
            None => return,
        };
        for view in &views {
            self.mark_unstored(view);
        }
    }
}

//! What every session of one server shares: the stores, the registry, the
//! services that work on them (lookups, refresh jobs), and the runtime
//! queries run on.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Weak};

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use featuredb_catalog::Registry;

use super::catalog::FeatureDbCatalogList;
use super::planner::Planner;
use super::session::Session;
use crate::error::{Error, Result};
use crate::features::system_tables::RegistrySchema;
use crate::features::{Materializer, SqlPlanner};
use crate::jobs::{JobRecords, JobRunner};
use crate::offline::OfflineStore;
use crate::online::OnlineStore;
use crate::pgcompat::functions::DeferredSettings;
use crate::pgcompat::pg_catalog::Relations;
use crate::pgcompat::settings::{SessionSettings, SettingsView};
use crate::pgcompat::temp_tables::TempTables;
use crate::serving::LookupService;
use crate::stream::{PlannerSource, StreamEngine};

/// Who work without a session (a background planner's) runs as.
const BACKGROUND_USER: &str = "featuredb";

/// Engine-wide tuning.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Parallelism of query execution (DataFusion target partitions).
    pub target_partitions: usize,
    /// Rows per Arrow batch.
    pub batch_size: usize,
    /// Memory all queries together may use before spilling or failing.
    pub memory_limit: Option<usize>,
    /// When logged small writes are committed to Iceberg.
    pub flush: crate::offline::FlushPolicy,
    /// Bytes of decoded rows the online store caches in memory.
    pub online_cache_bytes: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            batch_size: 8192,
            memory_limit: None,
            flush: crate::offline::FlushPolicy::default(),
            online_cache_bytes: 256 << 20,
        }
    }
}

/// Planners for the stream engine's own work. Weak: the stream engine is
/// part of the engine and must not keep it alive.
struct BackgroundPlanners(Weak<Engine>);

impl PlannerSource for BackgroundPlanners {
    fn planner(&self) -> Result<Box<dyn SqlPlanner>> {
        let engine = self
            .0
            .upgrade()
            .ok_or_else(|| Error::internal("the server is shutting down"))?;
        Ok(Box::new(engine.background_planner()?))
    }
}

/// State shared by every session of one server.
pub struct Engine {
    pub offline: Arc<OfflineStore>,
    pub online: Arc<OnlineStore>,
    pub registry: Arc<Registry>,
    /// Online lookups, for every serving path.
    pub lookups: Arc<LookupService>,
    /// Refreshes, as jobs.
    pub materializer: Arc<Materializer>,
    pub jobs: Arc<JobRunner>,
    /// Keeps STREAMING views current as rows are written.
    pub stream: Arc<StreamEngine>,
    /// The registry's system tables (`featuredb.*`).
    system_tables: Arc<RegistrySchema>,
    /// featuredb's objects (and roles) as PostgreSQL's catalog shows them.
    relations: Relations,
    runtime: Arc<RuntimeEnv>,
    options: EngineOptions,
    next_backend_pid: AtomicI32,
}

impl Engine {
    /// Opens the data directory: the offline store and scratch space for
    /// queries that spill.
    pub async fn open(data_dir: &Path, options: EngineOptions) -> Result<Arc<Self>> {
        let offline = Arc::new(OfflineStore::open(data_dir).await?);
        offline.start_flusher(options.flush);
        let registry = Arc::new(Registry::open(&data_dir.join("registry.db")).await?);
        let online = Arc::new(OnlineStore::open(
            &data_dir.join("online.redb"),
            options.online_cache_bytes,
        )?);
        online.warm_all();
        let jobs = Arc::new(JobRunner::new(Arc::new(JobRecords::open(
            online.database(),
        )?)));
        let lookups = Arc::new(LookupService::new(registry.clone(), online.clone()));
        let materializer = Arc::new(Materializer::new(
            offline.clone(),
            online.clone(),
            registry.clone(),
            jobs.clone(),
        ));
        let spill_dir = data_dir.join("tmp");
        if spill_dir.exists() {
            // Spill files of a previous process are garbage.
            let _ = std::fs::remove_dir_all(&spill_dir);
        }
        std::fs::create_dir_all(&spill_dir)
            .map_err(|e| Error::io(format!("creating {}", spill_dir.display()), e))?;
        let mut runtime = RuntimeEnvBuilder::new().with_temp_file_path(&spill_dir);
        if let Some(limit) = options.memory_limit {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let runtime = runtime.build_arc()?;
        let system_tables = Arc::new(RegistrySchema::new(
            registry.clone(),
            online.clone(),
            jobs.records().clone(),
        ));
        let relations = Relations::new(offline.clone(), registry.clone(), system_tables.clone());
        let stream = Arc::new(StreamEngine::new(
            registry.clone(),
            offline.clone(),
            online.clone(),
            materializer.clone(),
        ));
        let engine = Arc::new(Self {
            system_tables,
            relations,
            offline,
            online,
            registry,
            lookups,
            materializer,
            jobs,
            stream,
            runtime,
            options,
            next_backend_pid: AtomicI32::new(1000),
        });
        engine
            .stream
            .start(Arc::new(BackgroundPlanners(Arc::downgrade(&engine))))
            .await?;
        Ok(engine)
    }

    /// A planner with default settings, for work that no session started
    /// (a scheduled refresh, a stream pipeline): what such work hands the
    /// [`Materializer`] instead of a session's planner.
    pub fn background_planner(self: &Arc<Self>) -> Result<Planner> {
        let temp = Arc::new(TempTables::new(0));
        let settings = SessionSettings::new(BACKGROUND_USER);
        let relations = self
            .relations
            .for_session(temp.clone(), SettingsView::default());
        let ctx = super::context::session_context(
            self,
            BACKGROUND_USER,
            0,
            &relations,
            &temp,
            &DeferredSettings::default(),
        )?;
        let mut planner = Planner::new(self.offline.clone(), self.registry.clone(), ctx, temp);
        planner.apply_settings(&settings, &relations, settings.output_context());
        Ok(planner)
    }

    /// A new session for a connection.
    pub fn new_session(self: &Arc<Self>, user: &str) -> Result<Session> {
        let pid = self.next_backend_pid.fetch_add(1, Ordering::Relaxed);
        self.relations.add_role(user);
        Session::new(self.clone(), user, pid)
    }

    /// The catalog a session plans against: every schema, plus the
    /// session's temporary tables (`relations` is the session's view of
    /// featuredb's objects, temporary tables and settings included).
    pub(crate) fn session_catalogs(
        &self,
        relations: Relations,
        temp: &Arc<TempTables>,
    ) -> Result<Arc<FeatureDbCatalogList>> {
        Ok(Arc::new(FeatureDbCatalogList::new(
            self.offline.clone(),
            self.registry.clone(),
            self.system_tables.clone(),
            relations,
            temp.clone(),
        )?))
    }

    /// featuredb's objects as PostgreSQL's catalog describes them.
    pub(crate) fn catalog_relations(&self) -> Relations {
        self.relations.clone()
    }

    pub(crate) fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    pub(crate) fn options(&self) -> &EngineOptions {
        &self.options
    }
}

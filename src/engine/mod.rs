//! The engine: sessions that parse, plan and execute statements against the
//! offline store, with DataFusion running every query.

pub mod asof;
pub mod catalog;
pub mod checked_arithmetic;
pub mod column_names;
pub mod cursors;
pub mod ddl;
pub mod expr_rewrite;
pub mod features;
pub mod functions;
pub mod lookup;
pub mod outcome;
pub mod pg_catalog;
pub mod pg_semantics;
pub mod plan;
pub mod refresh;
pub mod rename;
pub mod resolve;
pub mod session;
pub mod settings;
pub mod system_tables;
pub mod temp_tables;
pub mod temporal;
pub mod timestamps;
pub mod unknown_literals;
pub mod views;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use featuredb_catalog::Registry;

pub use lookup::LookupRows;
pub use outcome::{CommandTag, Notice, Outcome};
pub use plan::Prepared;
pub use session::{Session, TransactionState};

use self::catalog::FeatureDbCatalogList;
use crate::error::{Error, Result};
use crate::offline::OfflineStore;
use crate::online::OnlineStore;

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

/// State shared by every session of one server.
pub struct Engine {
    pub offline: Arc<OfflineStore>,
    pub online: Arc<OnlineStore>,
    pub registry: Arc<Registry>,
    /// featuredb's objects (and roles) as PostgreSQL's catalog shows them.
    relations: pg_catalog::Relations,
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
        let relations =
            pg_catalog::Relations::new(offline.clone(), registry.clone(), online.clone());
        Ok(Arc::new(Self {
            relations,
            offline,
            online,
            registry,
            runtime,
            options,
            next_backend_pid: AtomicI32::new(1000),
        }))
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
        relations: pg_catalog::Relations,
        temp: &Arc<temp_tables::TempTables>,
    ) -> Result<Arc<FeatureDbCatalogList>> {
        Ok(Arc::new(FeatureDbCatalogList::new(
            self.offline.clone(),
            self.registry.clone(),
            self.online.clone(),
            relations,
            temp.clone(),
        )?))
    }

    /// featuredb's objects as PostgreSQL's catalog describes them.
    pub(crate) fn catalog_relations(&self) -> pg_catalog::Relations {
        self.relations.clone()
    }

    pub(crate) fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    pub(crate) fn options(&self) -> &EngineOptions {
        &self.options
    }
}

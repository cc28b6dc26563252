//! The online store itself: the redb database, the row cache in front of
//! it, and each view's current state. Reads, writes and cache warming are
//! in `read`, `write` and `warm`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use featuredb_catalog::QualifiedName;
use moka::sync::Cache;
use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::blocks::CachedBlock;
use super::delta;
use super::pending::PendingRows;
use super::rows::StoredRow;
use super::state::{Materialization, load_index};
use crate::error::{Error, Result};

pub(super) const MATERIALIZATIONS: TableDefinition<&str, &str> =
    TableDefinition::new("materializations");

/// Replaces `out` with the cache key of `key` in the rows table `cache_id`.
pub(super) fn cache_key(cache_id: u64, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&cache_id.to_le_bytes());
    out.extend_from_slice(key);
}

/// Replaces `out` with the cache key of block `block` of the base
/// `block_cache_id` names.
pub(super) fn block_cache_key(block_cache_id: u64, block: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&block_cache_id.to_le_bytes());
    out.extend_from_slice(&(block as u32).to_le_bytes());
}

/// A row cache entry.
#[derive(Debug, Clone)]
pub(super) enum Cached {
    /// A delta row (or a row of a per-key base).
    Row(StoredRow),
    /// A base block.
    Block(CachedBlock),
}

/// The row cache's size, as `featuredb.online_cache` shows it.
pub struct CacheUsage {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub entries: u64,
    /// Entries that are base blocks (the others are rows).
    pub blocks: u64,
}

/// `[rows table id: u64][encoded key]`: a slice of it looks a row up
/// without allocating.
pub(super) type CacheKey = Box<[u8]>;

pub struct OnlineStore {
    /// Shared with the job records (the `jobs` module), whose table lives
    /// here so that a refresh's record commits with its state.
    pub(super) db: Arc<Database>,
    pub(super) cache: Cache<CacheKey, Cached, ahash::RandomState>,
    pub(super) states: RwLock<HashMap<QualifiedName, Arc<Materialization>>>,
    /// Rows committed by a refresh that are not in `cache` yet.
    pub(super) pending: Arc<PendingRows>,
    /// Shared by cache fills, exclusive for a refresh's commit.
    pub(super) fill_lock: RwLock<()>,
    /// Rows of streaming views not yet stored by a refresh.
    pub(super) streamed: super::streamed::StreamedRows,
    /// The rows windowed features aggregate.
    pub(super) windows: super::window_events::WindowRows,
}

pub(super) fn storage<E: std::fmt::Display>(context: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::OnlineStore(format!("{context}: {e}"))
}

impl OnlineStore {
    /// Opens (or creates) the store; `cache_bytes` bounds the row cache.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self> {
        let db = Database::builder()
            .create(path)
            .map_err(storage("opening the online store"))?;
        let mut states = HashMap::new();
        {
            let mut write = db
                .begin_write()
                .map_err(storage("opening the online store"))?;
            write
                .set_durability(Durability::Immediate)
                .map_err(storage("opening"))?;
            {
                let table = write
                    .open_table(MATERIALIZATIONS)
                    .map_err(storage("opening the online store"))?;
                for entry in table.iter().map_err(storage("reading materializations"))? {
                    let (name, state) = entry.map_err(storage("reading materializations"))?;
                    let name: QualifiedName = serde_json::from_str(name.value())
                        .map_err(storage("decoding a view name"))?;
                    let state: Materialization = serde_json::from_str(state.value())
                        .map_err(storage("decoding a materialization"))?;
                    let state = state.derive(&name);
                    states.insert(name, Arc::new(state));
                }
            }
            for state in states.values() {
                delta::migrate_per_key(&write, &state.per_key_delta_table(), &state.delta_table)?;
            }
            write
                .commit()
                .map_err(storage("opening the online store"))?;
        }
        for state in states.values_mut() {
            let mut loaded = (**state).clone();
            loaded.index = Arc::new(load_index(&db, &loaded)?);
            *state = Arc::new(loaded);
        }
        let cache = Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|key: &CacheKey, value: &Cached| {
                let size = match value {
                    Cached::Row(row) => row.data.len(),
                    Cached::Block(block) => block.size(),
                };
                (key.len() + size + 64).min(u32::MAX as usize) as u32
            })
            .build_with_hasher(ahash::RandomState::new());
        Ok(Self {
            db: Arc::new(db),
            cache,
            states: RwLock::new(states),
            pending: Arc::default(),
            fill_lock: RwLock::new(()),
            streamed: Default::default(),
            windows: Default::default(),
        })
    }

    /// The database the store keeps its tables in, for the job records
    /// that share it (`jobs::JobRecords`).
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    /// Whether any view was ever refreshed (queries skip the lookup check
    /// until one was).
    pub fn has_materializations(&self) -> bool {
        self.states.read().map(|s| !s.is_empty()).unwrap_or(false)
    }

    /// What the last refresh of `view` applied, if it was ever refreshed.
    pub fn materialization(&self, view: &QualifiedName) -> Option<Arc<Materialization>> {
        self.states.read().ok()?.get(view).cloned()
    }

    /// How much of the row cache is in use (after applying the cache's
    /// pending bookkeeping, so the numbers are current).
    pub fn cache_usage(&self) -> CacheUsage {
        self.cache.run_pending_tasks();
        CacheUsage {
            capacity_bytes: self.cache.policy().max_capacity().unwrap_or(u64::MAX),
            used_bytes: self.cache.weighted_size(),
            entries: self.cache.entry_count(),
            blocks: self
                .cache
                .iter()
                .filter(|(_, value)| matches!(value, Cached::Block(_)))
                .count() as u64,
        }
    }
}

//! The online store: the newest row per key of each materialized feature
//! view, for lookups on the request path.
//!
//! Durable state lives in one redb database (`DIR/online.redb`):
//! - `materializations`: per feature view, what its last refresh applied
//!   ([`Materialization`]: the input snapshots, the offline table, the
//!   generation of its online rows);
//! - per view and generation, a base table (`rows:<view>:<generation>`)
//!   and a delta table (`delta-runs:…`), both holding blocks of rows in
//!   key order, encoded key → `[event time][row]` (see [`codec`],
//!   [`blocks`]). A full refresh writes the base; each incremental refresh
//!   adds a run of blocks to the delta ([`delta`]), which a lookup reads
//!   first. Random keys spread over a large base touch nearly every block,
//!   so an upsert of 1% of the keys would rewrite all of it; a run costs
//!   about as much as it has rows. The delta is merged into the base (in
//!   the refresh's transaction) once it holds an eighth as many keys;
//! - `jobs`: the history of refreshes ([`Job`]).
//!
//! A refresh writes its online rows and its new [`Materialization`] in one
//! write transaction, committed with fsync: after a crash the store holds
//! exactly the last completed refresh. A full refresh writes a new
//! generation and deletes the old one in that same transaction.
//!
//! In front of redb sits a moka cache, bounded by bytes with a weigher,
//! of base blocks (a block base's rows, 64 keys an entry, found through an
//! in-memory index of the blocks' first keys: [`index`]) and of delta rows
//! (one entry per key; a lookup asks the delta's key filter first). Values
//! stay encoded: printing from the stored bytes is cheaper than the memory
//! decoded values take. A refresh publishes the rows it changed
//! as pending ([`pending`]) with its commit, and a background thread moves
//! them into the cache, so lookups after a refresh do not touch redb and
//! the refresh does not wait for the cache; a lookup that misses (after a
//! restart, or an evicted row) reads redb and fills the cache under a
//! shared lock, which the refresh holds exclusively while it commits and
//! publishes, so a fill can never put back a value older than the one
//! committed.

mod blocks;
pub mod codec;
mod delta;
mod index;
mod pending;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use featuredb_catalog::QualifiedName;
use moka::sync::Cache;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};

use self::blocks::{BaseLayout, BlockBuilder, CachedBlock};
use self::delta::DeltaRuns;
use self::index::BlockIndex;
use self::pending::PendingRows;
use crate::error::{Error, Result};

const MATERIALIZATIONS: TableDefinition<&str, &str> = TableDefinition::new("materializations");
const JOBS: TableDefinition<u64, &str> = TableDefinition::new("jobs");

/// Upserts of at least this many rows read the stored rows on two threads.
const PARALLEL_UPSERT_READS: usize = 16_384;

/// A delta smaller than this is never merged (merging rewrites the base).
const MIN_DELTA_MERGE: u64 = 65_536;

/// What the last completed refresh of a feature view applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Materialization {
    /// The definition materialized: query, keys, time and columns. A
    /// version that changes only TTL, ONLINE or descriptions keeps it.
    pub shape: String,
    /// The view version last refreshed.
    pub version: u32,
    /// Bumped by every full refresh: names the offline table and the
    /// online rows table.
    pub generation: u32,
    /// The view's offline history: a table in [`MATERIALIZED_SCHEMA`].
    pub offline_table: String,
    /// For each input table (`schema.table`), the sequence number of the
    /// Iceberg snapshot whose rows are applied.
    pub inputs: BTreeMap<String, i64>,
    /// Whether online rows are kept (the view was ONLINE).
    pub online: bool,
    /// Keys held online.
    pub online_keys: u64,
    pub refreshed_at: String,
    /// Random, chosen by each full refresh: tells the cache entries of this
    /// generation apart from those of a dropped view of the same name,
    /// whose generations also started at 1 (and whose entries may still be
    /// cached). 0 in states written before it existed.
    #[serde(default)]
    pub incarnation: u64,
    /// How the base table holds its rows ([`blocks`]); states written
    /// before blocks existed hold one entry per key.
    #[serde(default)]
    base_layout: BaseLayout,
    /// The redb tables of the online rows (derived, not stored).
    #[serde(skip)]
    rows_table: Arc<str>,
    #[serde(skip)]
    delta_table: Arc<str>,
    /// Identifies the rows table in cache keys (derived, not stored).
    #[serde(skip)]
    cache_id: u64,
    /// The view (derived, not stored).
    #[serde(skip)]
    view: Option<QualifiedName>,
    /// How lookups find rows in memory (derived: built when the state is
    /// loaded or applied).
    #[serde(skip)]
    index: Arc<RowsIndex>,
}

/// What lookups keep in memory for a generation's rows (see [`index`]).
#[derive(Debug, Default)]
struct RowsIndex {
    /// The base's blocks; `None` for a per-key base, whose rows are cached
    /// one by one.
    blocks: Option<Arc<BlockIndex>>,
    /// The delta's runs: shared by the generation's states until a merge
    /// empties the delta (the states before it keep theirs).
    delta: Arc<DeltaRuns>,
    /// Names this base's blocks in the cache: a merge rewrites blocks, and
    /// cached blocks of the base before it must not be found after it.
    block_cache_id: u64,
}

impl RowsIndex {
    fn new(blocks: Option<BlockIndex>) -> Self {
        Self {
            blocks: blocks.map(Arc::new),
            delta: Arc::default(),
            block_cache_id: uuid::Uuid::new_v4().as_u64_pair().0,
        }
    }
}

/// The schema holding the offline history of materialized views.
pub const MATERIALIZED_SCHEMA: &str = "featuredb_materialized";

impl Materialization {
    /// A state not yet applied (`apply` fills in the derived fields).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shape: String,
        version: u32,
        generation: u32,
        offline_table: String,
        inputs: BTreeMap<String, i64>,
        online: bool,
    ) -> Self {
        Self {
            shape,
            version,
            generation,
            offline_table,
            inputs,
            online,
            online_keys: 0,
            refreshed_at: String::new(),
            incarnation: uuid::Uuid::new_v4().as_u64_pair().0,
            base_layout: BaseLayout::Blocks,
            rows_table: Arc::from(""),
            delta_table: Arc::from(""),
            cache_id: 0,
            view: None,
            index: Arc::default(),
        }
    }

    fn rows_table_name(view: &QualifiedName, generation: u32) -> String {
        format!("rows:{view}:{generation}")
    }

    /// Fills in the derived fields for `view`.
    fn derive(mut self, view: &QualifiedName) -> Self {
        let name = Self::rows_table_name(view, self.generation);
        self.cache_id =
            ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one((&name, self.incarnation));
        self.rows_table = Arc::from(name);
        self.delta_table = Arc::from(format!("delta-runs:{view}:{}", self.generation));
        self.view = Some(view.clone());
        self
    }

    /// The delta table of stores written before the delta held runs: one
    /// entry per key (see [`delta::migrate_per_key`]).
    fn per_key_delta_table(&self) -> String {
        self.delta_table.replacen("delta-runs:", "delta:", 1)
    }

    fn cache_key(&self, key: &[u8], buffer: &mut Vec<u8>) {
        cache_key(self.cache_id, key, buffer);
    }
}

/// Replaces `out` with the cache key of `key` in the rows table `cache_id`.
fn cache_key(cache_id: u64, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&cache_id.to_le_bytes());
    out.extend_from_slice(key);
}

/// Replaces `out` with the cache key of block `block` of the base
/// `block_cache_id` names.
fn block_cache_key(block_cache_id: u64, block: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&block_cache_id.to_le_bytes());
    out.extend_from_slice(&(block as u32).to_le_bytes());
}

/// A row cache entry.
#[derive(Debug, Clone)]
enum Cached {
    /// A delta row (or a row of a per-key base).
    Row(StoredRow),
    /// A base block.
    Block(CachedBlock),
}

/// Which of a state's tables a warm loads into the cache.
#[derive(Debug, Clone, Copy)]
enum WarmedTable {
    /// The delta's runs, row by row.
    Delta,
    /// A blocks base, block by block.
    BaseBlocks,
    /// A per-key base, row by row.
    BaseRows,
}

/// What probing one state found.
enum Probe {
    Found(Option<StoredRow>),
    /// The state is no longer current and redb was about to be read: the
    /// probe must start again from the current state.
    Stale,
}

type RowsTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;
type RowsTableMut<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

/// A generation's tables that exist, read newest rows first: delta, then
/// base.
struct RowsTables {
    delta: Option<RowsTable>,
    /// What the delta holds.
    runs: Arc<DeltaRuns>,
    base: Option<RowsTable>,
    layout: BaseLayout,
}

impl RowsTables {
    fn open(read: &redb::ReadTransaction, state: &Materialization) -> Result<Self> {
        let open = |name: &str| {
            let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
            match read.open_table(definition) {
                Ok(table) => Ok(Some(table)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(storage("reading")(e)),
            }
        };
        Ok(Self {
            delta: open(&state.delta_table)?,
            runs: state.index.delta.clone(),
            base: open(&state.rows_table)?,
            layout: state.base_layout,
        })
    }

    /// The stored value of `key`, from the first table holding it, handed
    /// to `f`.
    fn find<R>(&self, key: &[u8], f: impl Fn(&[u8]) -> Result<R>) -> Result<Option<R>> {
        if let Some(row) = self.find_in_delta(key, &f)? {
            return Ok(Some(row));
        }
        self.find_in_base(key, f)
    }

    /// The stored value of `key` in the base, handed to `f`.
    fn find_in_base<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> Result<R>) -> Result<Option<R>> {
        match &self.base {
            Some(base) => blocks::find(base, self.layout, key, f),
            None => Ok(None),
        }
    }

    /// The base block whose first key is `first_key`, which the view's
    /// block index names: not finding it means the store is corrupt.
    fn base_block(&self, first_key: &[u8]) -> Result<CachedBlock> {
        let stored = self
            .base
            .as_ref()
            .map(|base| base.get(first_key))
            .transpose()
            .map_err(storage("reading"))?
            .flatten()
            .ok_or_else(|| {
                Error::OnlineStore(
                    "corrupt online store: a block its index names is missing".into(),
                )
            })?;
        CachedBlock::parse(stored.value())
    }

    /// The stored value of `key` in the delta, handed to `f`.
    fn find_in_delta<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>> {
        match &self.delta {
            Some(delta) => self.runs.hold().find(delta, key, f),
            None => Ok(None),
        }
    }
}

/// A stored row: `[event time: i64][values…]` (see [`codec`]), alone or
/// within a cached block.
#[derive(Debug, Clone)]
pub struct StoredRow {
    data: Arc<[u8]>,
    start: u32,
    end: u32,
}

impl StoredRow {
    /// A row that is all of `data` (at least 8 bytes: checked when read).
    fn new(data: Arc<[u8]>) -> Self {
        let end = data.len() as u32;
        Self {
            data,
            start: 0,
            end,
        }
    }

    /// A row of `event_time` and encoded `values`, in one allocation.
    fn from_parts(event_time: i64, values: &[u8]) -> Self {
        let data = event_time.to_le_bytes().into_iter();
        Self::new(Arc::from_iter(data.chain(values.iter().copied())))
    }

    /// The row at `range` of `data` (at least 8 bytes: checked when read).
    fn within(data: Arc<[u8]>, range: std::ops::Range<usize>) -> Self {
        Self {
            data,
            start: range.start as u32,
            end: range.end as u32,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.start as usize..self.end as usize]
    }

    pub fn event_time(&self) -> i64 {
        i64::from_le_bytes(self.bytes()[..8].try_into().expect("checked when read"))
    }

    /// The encoded values.
    pub fn values(&self) -> &[u8] {
        &self.bytes()[8..]
    }
}

/// A row to write: its encoded key and its stored form, built once (in
/// one allocation) and moved from the refresh into the store and cache.
pub struct RowUpdate {
    pub key: Vec<u8>,
    stored: StoredRow,
}

impl RowUpdate {
    pub fn new(key: Vec<u8>, event_time: i64, values: &[u8]) -> Self {
        Self {
            key,
            stored: StoredRow::from_parts(event_time, values),
        }
    }

    pub fn event_time(&self) -> i64 {
        self.stored.event_time()
    }

    /// The encoded values.
    pub fn values(&self) -> &[u8] {
        self.stored.values()
    }
}

/// One row of a new generation, borrowed from whatever produces it.
pub struct RowRef<'a> {
    pub key: &'a [u8],
    pub event_time: i64,
    pub row: &'a [u8],
}

/// A new generation's rows in key order, lent one at a time: a full
/// refresh's million rows are written without allocating (or freeing)
/// one by one.
pub trait GenerationRows: Send {
    fn next_row(&mut self) -> Option<RowRef<'_>>;
}

/// Owned rows (in key order) as [`GenerationRows`].
pub struct OwnedRows<I> {
    rows: I,
    current: Option<RowUpdate>,
}

impl<I: Iterator<Item = RowUpdate> + Send> OwnedRows<I> {
    pub fn new(rows: impl IntoIterator<IntoIter = I>) -> Self {
        OwnedRows {
            rows: rows.into_iter(),
            current: None,
        }
    }
}

impl<I: Iterator<Item = RowUpdate> + Send> GenerationRows for OwnedRows<I> {
    fn next_row(&mut self) -> Option<RowRef<'_>> {
        self.current = self.rows.next();
        self.current.as_ref().map(|row| RowRef {
            key: &row.key,
            event_time: row.event_time(),
            row: row.values(),
        })
    }
}

/// A new generation's rows.
pub type RowUpdates = Box<dyn GenerationRows>;

/// What an upsert does with one row.
struct Upsert {
    /// No row was stored for the key.
    new_key: bool,
    /// The key and stored form of the row, unless the stored row is newer.
    write: Option<(Vec<u8>, StoredRow)>,
}

/// Upserted rows in key order, one per key, produced while they are
/// decided: a refresh merges its partitions' winners into them on a thread
/// of its own (see [`OnlineStore::decide_upserts`]).
pub struct Upserts {
    rows: Box<dyn Iterator<Item = RowUpdate> + Send>,
    /// At least as many as the rows.
    most: usize,
}

impl Upserts {
    pub fn new(rows: impl Iterator<Item = RowUpdate> + Send + 'static, most: usize) -> Self {
        Self {
            rows: Box::new(rows),
            most,
        }
    }

    /// The rows, [`UPSERT_CHUNK`] at a time.
    fn chunks(mut self) -> impl Iterator<Item = Vec<RowUpdate>> + Send {
        std::iter::from_fn(move || {
            let chunk: Vec<RowUpdate> = self.rows.by_ref().take(UPSERT_CHUNK).collect();
            (!chunk.is_empty()).then_some(chunk)
        })
    }
}

impl Iterator for Upserts {
    type Item = RowUpdate;

    fn next(&mut self) -> Option<RowUpdate> {
        self.rows.next()
    }
}

impl From<Vec<RowUpdate>> for Upserts {
    fn from(rows: Vec<RowUpdate>) -> Self {
        let most = rows.len();
        Self::new(rows.into_iter(), most)
    }
}

/// How many upserts are decided and handed to the writer at a time.
const UPSERT_CHUNK: usize = 2048;

/// How a refresh changes a view's online rows.
pub enum OnlineChange {
    /// None (the view is not ONLINE, or nothing changed).
    None,
    /// Upsert into the current generation: a row replaces the stored one
    /// unless the stored one is newer (a tie goes to the refresh, which
    /// read rows written later).
    Upsert(Upserts),
    /// Replace every row: a new generation. The rows come in key order,
    /// produced as they are written (see [`write_generation`]).
    Replace(RowUpdates),
}

/// The row cache's size, as `featuredb.online_cache` shows it.
pub struct CacheUsage {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub entries: u64,
    /// Entries that are base blocks (the others are rows).
    pub blocks: u64,
}

/// One REFRESH of one view, as `featuredb.jobs` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub view: String,
    pub version: u32,
    /// `full`, `incremental` or `unchanged`.
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub rows_in: u64,
    pub rows_out: u64,
    pub online_keys: u64,
    pub duration_ms: Option<f64>,
    pub error: Option<String>,
}

/// `[rows table id: u64][encoded key]`: a slice of it looks a row up
/// without allocating.
type CacheKey = Box<[u8]>;

pub struct OnlineStore {
    db: Database,
    cache: Cache<CacheKey, Cached, ahash::RandomState>,
    states: RwLock<HashMap<QualifiedName, Arc<Materialization>>>,
    /// Rows committed by a refresh that are not in `cache` yet.
    pending: Arc<PendingRows>,
    /// Shared by cache fills, exclusive for a refresh's commit.
    fill_lock: RwLock<()>,
    refresh_locks: std::sync::Mutex<HashMap<QualifiedName, Arc<tokio::sync::Mutex<()>>>>,
    next_job: AtomicU64,
}

fn storage<E: std::fmt::Display>(context: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::OnlineStore(format!("{context}: {e}"))
}

impl OnlineStore {
    /// Opens (or creates) the store; `cache_bytes` bounds the row cache.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self> {
        let db = Database::builder()
            .create(path)
            .map_err(storage("opening the online store"))?;
        let mut states = HashMap::new();
        let mut next_job = 1;
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
            {
                // Refreshes that were running when the server stopped did
                // not complete: nothing of theirs was applied.
                let mut jobs = write.open_table(JOBS).map_err(storage("opening jobs"))?;
                let mut interrupted = Vec::new();
                for entry in jobs.iter().map_err(storage("reading jobs"))? {
                    let (id, job) = entry.map_err(storage("reading jobs"))?;
                    next_job = next_job.max(id.value() + 1);
                    let job: Job =
                        serde_json::from_str(job.value()).map_err(storage("decoding a job"))?;
                    if job.status == "running" {
                        interrupted.push(job);
                    }
                }
                for mut job in interrupted {
                    job.status = "failed".into();
                    job.error = Some("interrupted: the server stopped during the refresh".into());
                    let text = serde_json::to_string(&job).map_err(storage("encoding a job"))?;
                    jobs.insert(job.id, text.as_str())
                        .map_err(storage("writing jobs"))?;
                }
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
            db,
            cache,
            states: RwLock::new(states),
            pending: Arc::default(),
            fill_lock: RwLock::new(()),
            refresh_locks: Default::default(),
            next_job: AtomicU64::new(next_job),
        })
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

    /// Serialises refreshes of one view.
    pub fn refresh_lock(&self, view: &QualifiedName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .refresh_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(view.clone()).or_default().clone()
    }

    /// The stored row for `key` (encoded), if any, in `state` or, if a
    /// refresh replaced it meanwhile, in the view's current state. `buffer`
    /// is scratch space for cache keys.
    pub fn get(
        &self,
        state: &Materialization,
        key: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<Option<StoredRow>> {
        let mut fresh: Option<Arc<Materialization>> = None;
        loop {
            let current = fresh.as_deref().unwrap_or(state);
            match self.probe(current, key, buffer)? {
                Probe::Found(row) => return Ok(row),
                Probe::Stale => match current.view.as_ref().and_then(|v| self.materialization(v)) {
                    Some(next) => fresh = Some(next),
                    None => return Ok(None),
                },
            }
        }
    }

    /// Looks `key` up in `state`: rows a refresh just published, then the
    /// delta (if its filter may hold the key), then the base block that
    /// would hold it — each from the cache, or from redb under the fill
    /// lock (which a refresh holds exclusively while it commits and
    /// publishes), then cached.
    fn probe(&self, state: &Materialization, key: &[u8], buffer: &mut Vec<u8>) -> Result<Probe> {
        if let Some(row) = self.pending.get(state.cache_id, key) {
            return Ok(Probe::Found(Some(row)));
        }
        let index = &state.index;
        let Some(blocks) = &index.blocks else {
            // A per-key base: every row is cached by itself.
            return self.probe_row(state, key, buffer, true);
        };
        if index.delta.may_hold(key) {
            match self.probe_row(state, key, buffer, false)? {
                Probe::Found(None) => {}
                found => return Ok(found),
            }
        }
        let Some(block) = blocks.block_of(key) else {
            return Ok(Probe::Found(None));
        };
        block_cache_key(index.block_cache_id, block, buffer);
        if let Some(Cached::Block(cached)) = self.cache.get(buffer.as_slice()) {
            return Ok(Probe::Found(cached.find(key)));
        }
        let Some((_fill, read)) = self.read_to_fill(state)? else {
            return Ok(Probe::Stale);
        };
        let cached = RowsTables::open(&read, state)?.base_block(blocks.first_key(block))?;
        let row = cached.find(key);
        self.cache
            .insert(Box::from(buffer.as_slice()), Cached::Block(cached));
        Ok(Probe::Found(row))
    }

    /// A row cached by itself: from the cache, or from redb's delta (and,
    /// with `per_key_base`, its per-key base).
    fn probe_row(
        &self,
        state: &Materialization,
        key: &[u8],
        buffer: &mut Vec<u8>,
        per_key_base: bool,
    ) -> Result<Probe> {
        state.cache_key(key, buffer);
        if let Some(Cached::Row(row)) = self.cache.get(buffer.as_slice()) {
            return Ok(Probe::Found(Some(row)));
        }
        let Some((_fill, read)) = self.read_to_fill(state)? else {
            return Ok(Probe::Stale);
        };
        let mut tables = RowsTables::open(&read, state)?;
        if !per_key_base {
            tables.base = None;
        }
        let Some(row) = tables.find(key, stored_row)? else {
            return Ok(Probe::Found(None));
        };
        self.cache
            .insert(Box::from(buffer.as_slice()), Cached::Row(row.clone()));
        Ok(Probe::Found(Some(row)))
    }

    /// A read of redb whose rows may be cached: under the fill lock (which
    /// a refresh holds exclusively while it commits and publishes), and
    /// only while `state` is its view's current state, whose index then
    /// describes what redb holds. `None` when it is not current: the
    /// lookup starts again from the current state.
    fn read_to_fill(
        &self,
        state: &Materialization,
    ) -> Result<Option<(std::sync::RwLockReadGuard<'_, ()>, redb::ReadTransaction)>> {
        let fill = self
            .fill_lock
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !self.is_current(state) {
            return Ok(None);
        }
        let read = self.db.begin_read().map_err(storage("reading"))?;
        Ok(Some((fill, read)))
    }

    /// Whether `state` holds the same rows as its view's current state
    /// (the same generation and base).
    fn is_current(&self, state: &Materialization) -> bool {
        let Some(view) = &state.view else {
            return true;
        };
        self.materialization(view).is_some_and(|current| {
            current.cache_id == state.cache_id
                && current.index.block_cache_id == state.index.block_cache_id
        })
    }

    /// Applies a refresh: its online rows and its new state, atomically
    /// and durably.
    pub fn apply(
        self: &Arc<Self>,
        view: &QualifiedName,
        state: Materialization,
        change: OnlineChange,
    ) -> Result<Arc<Materialization>> {
        self.apply_after(view, state, change, || Ok(()), |_| None)
    }

    /// [`Self::apply`], committing only once `before_commit` has succeeded
    /// (a refresh's offline commit, which runs while the rows are
    /// prepared); if it fails, nothing is applied. The job `finished_job`
    /// returns for the state about to be committed is recorded in the same
    /// transaction: a refresh's outcome and its record commit together,
    /// with one fsync instead of two.
    pub fn apply_after(
        self: &Arc<Self>,
        view: &QualifiedName,
        state: Materialization,
        change: OnlineChange,
        before_commit: impl FnOnce() -> Result<()>,
        finished_job: impl FnOnce(&Materialization) -> Option<Job>,
    ) -> Result<Arc<Materialization>> {
        let mut state = state.derive(view);
        let previous = self.materialization(view);
        // The same generation keeps its index unless its base is rewritten.
        state.index = match &previous {
            Some(previous) if previous.rows_table == state.rows_table => previous.index.clone(),
            _ => Arc::new(RowsIndex::new(None)),
        };
        let mut rewrote_base = false;
        // A run written to the delta, recorded in its runs once committed.
        let mut new_run = None;
        let name_key = serde_json::to_string(view).map_err(storage("encoding a view name"))?;
        let writing = std::time::Instant::now();
        let write = self.begin_durable_write()?;
        let mut changed: Vec<(Vec<u8>, StoredRow)> = Vec::new();
        let base: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&state.rows_table);
        let delta: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&state.delta_table);
        // A new generation takes the layout its state names; the current
        // one keeps the layout it was written in.
        if !matches!(change, OnlineChange::Replace(_))
            && let Some(previous) = previous
                .as_ref()
                .filter(|p| p.rows_table == state.rows_table)
        {
            state.base_layout = previous.base_layout;
        }
        match change {
            OnlineChange::None => {}
            OnlineChange::Replace(rows) => {
                write.delete_table(base).map_err(storage("writing"))?;
                write.delete_table(delta).map_err(storage("writing"))?;
                let mut table = write.open_table(base).map_err(storage("writing"))?;
                // A new generation is warmed afterwards, not written
                // through: nothing to remember per row.
                let (keys, blocks) = write_generation(&mut table, rows, state.base_layout)?;
                state.online_keys = keys;
                state.index = Arc::new(RowsIndex::new(
                    (state.base_layout == BaseLayout::Blocks).then_some(blocks),
                ));
                rewrote_base = true;
            }
            OnlineChange::Upsert(rows) => {
                // Which rows win is decided from the committed state (see
                // `decide_upserts`); the winners, in key order, become the
                // delta's next run.
                let base_table = write.open_table(base).map_err(storage("writing"))?;
                let mut delta_table = write.open_table(delta).map_err(storage("writing"))?;
                let mut new_keys = 0u64;
                self.decide_upserts(&state, rows, |decision| {
                    new_keys += u64::from(decision.new_key);
                    changed.extend(decision.write);
                    Ok(())
                })?;
                state.online_keys =
                    previous.as_ref().map(|p| p.online_keys).unwrap_or(0) + new_keys;
                let runs = state.index.delta.clone();
                let run = runs.next_run();
                let run_blocks = delta::write_run(
                    &mut delta_table,
                    run,
                    changed
                        .iter()
                        .map(|(key, row)| (key.as_slice(), row.bytes())),
                )?;
                // Merge once the delta holds an eighth of the base's keys.
                let base_keys = base_table.len().map_err(storage("writing"))?;
                let delta_keys =
                    runs.keys() + runs.new_keys(changed.iter().map(|(key, _)| key.as_slice()));
                drop(base_table);
                // (A blocks base counts blocks: about BLOCK_ROWS keys each.)
                let base_keys = match state.base_layout {
                    BaseLayout::PerKey => base_keys,
                    BaseLayout::Blocks => base_keys * blocks::BLOCK_ROWS as u64,
                };
                if delta_keys > (base_keys / 8).max(MIN_DELTA_MERGE) {
                    let mut base_table = write.open_table(base).map_err(storage("writing"))?;
                    let newest = delta::newest_rows(&delta_table)?;
                    let blocks = match state.base_layout {
                        BaseLayout::PerKey => {
                            for (key, value) in &newest {
                                base_table
                                    .insert(key.as_slice(), value.as_slice())
                                    .map_err(storage("merging"))?;
                            }
                            None
                        }
                        BaseLayout::Blocks => Some(blocks::merge_delta(&mut base_table, newest)?),
                    };
                    drop(delta_table);
                    write.delete_table(delta).map_err(storage("merging"))?;
                    // A new base and an empty delta; states before this one
                    // keep theirs (lookups holding them stay consistent).
                    state.index = Arc::new(RowsIndex::new(blocks));
                    rewrote_base = true;
                } else if !changed.is_empty() {
                    new_run = Some((runs, run, run_blocks));
                }
            }
        }
        if let Some(previous) = &previous
            && previous.rows_table != state.rows_table
        {
            delete_rows_tables(&write, previous)?;
        }
        {
            let mut table = write
                .open_table(MATERIALIZATIONS)
                .map_err(storage("writing"))?;
            let text = serde_json::to_string(&state).map_err(storage("encoding"))?;
            table
                .insert(name_key.as_str(), text.as_str())
                .map_err(storage("writing"))?;
        }
        let written = writing.elapsed();
        let waiting = std::time::Instant::now();
        before_commit()?;
        let waited = waiting.elapsed();
        if let Some(job) = finished_job(&state) {
            insert_job(&write, &job)?;
        }
        let committing = std::time::Instant::now();
        let _filling = self.commit_state_change(write)?;
        let committed = committing.elapsed();
        // Before the rows are published (and can be moved out of `pending`
        // into the cache), so that no lookup holding a state of this
        // generation passes over them.
        if let Some((runs, run, run_blocks)) = new_run {
            runs.add(
                run,
                run_blocks,
                changed.iter().map(|(key, _)| key.as_slice()),
            );
        }
        // Lookups after a refresh find its rows in memory: pending until a
        // background thread has moved them into the cache. A new
        // generation (a full refresh) is warmed afterwards instead
        // (`warm`), so that the refresh does not wait for it.
        self.pending.publish(&self.cache, state.cache_id, changed);
        let state = Arc::new(state);
        self.states
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(view.clone(), state.clone());
        if rewrote_base && state.online {
            self.warm(view);
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            view = %view,
            write_ms = ms(written),
            wait_ms = ms(waited),
            commit_ms = ms(committed),
            "online apply phases"
        );
        Ok(state)
    }

    /// For each upserted row, in order, hands `apply` whether its key is
    /// new and the row itself unless the stored row is newer (a tie goes
    /// to the refresh, which read rows written later). The reads — delta
    /// first, then base — see the committed state, whatever the caller's
    /// write transaction has inserted since (redb readers never see
    /// uncommitted writes), and that write excludes other writers.
    ///
    /// Large changes run as a pipeline: a thread takes the rows a chunk at
    /// a time (merging a refresh's partitions as it goes) and deals the
    /// chunks to two deciding threads in turn, each with its own read
    /// transaction; `apply` (the writer, this thread) takes their
    /// decisions back in the same turn, so in key order. Merging and
    /// deciding overlap instead of following each other.
    fn decide_upserts(
        &self,
        state: &Materialization,
        rows: Upserts,
        mut apply: impl FnMut(Upsert) -> Result<()>,
    ) -> Result<()> {
        // Decides each chunk of `chunks` into one chunk of decisions for
        // `out`, which returns false once the writer has failed.
        let decide = |chunks: &mut dyn Iterator<Item = Vec<RowUpdate>>,
                      out: &mut dyn FnMut(Vec<Upsert>) -> bool|
         -> Result<()> {
            let read = self.db.begin_read().map_err(storage("reading"))?;
            let tables = RowsTables::open(&read, state)?;
            let mut stored_times = StoredTimes::new(self, state, &tables);
            for chunk in chunks {
                let mut decisions = Vec::with_capacity(chunk.len());
                for row in chunk {
                    let stored_time = stored_times.of(&row.key)?;
                    decisions.push(Upsert {
                        new_key: stored_time.is_none(),
                        write: stored_time
                            .is_none_or(|t| t <= row.event_time())
                            .then_some((row.key, row.stored)),
                    });
                }
                if !out(decisions) {
                    break;
                }
            }
            Ok(())
        };
        if rows.most < PARALLEL_UPSERT_READS {
            let mut failed = None;
            decide(&mut rows.chunks(), &mut |decisions| {
                for decision in decisions {
                    if let Err(e) = apply(decision) {
                        failed = Some(e);
                        return false;
                    }
                }
                true
            })?;
            return failed.map_or(Ok(()), Err);
        }
        std::thread::scope(|scope| {
            let (to_deciders, deciders_rows): (Vec<_>, Vec<_>) = (0..2)
                .map(|_| std::sync::mpsc::channel::<Vec<RowUpdate>>())
                .unzip();
            let (deciders_out, decisions): (Vec<_>, Vec<_>) = (0..2)
                .map(|_| std::sync::mpsc::channel::<Vec<Upsert>>())
                .unzip();
            let dealer = scope.spawn(move || {
                for (turn, chunk) in [0, 1].into_iter().cycle().zip(rows.chunks()) {
                    if to_deciders[turn].send(chunk).is_err() {
                        break; // a decider has stopped
                    }
                }
            });
            let deciders: Vec<_> = deciders_rows
                .into_iter()
                .zip(deciders_out)
                .map(|(chunks, out)| {
                    scope.spawn(move || {
                        decide(&mut chunks.into_iter(), &mut |decisions| {
                            out.send(decisions).is_ok()
                        })
                    })
                })
                .collect();
            let mut written = Ok(());
            // Chunk n comes from decider n % 2: the first decider that has
            // none left means there are none left.
            for turn in [0, 1].into_iter().cycle() {
                let Ok(chunk) = decisions[turn].recv() else {
                    break;
                };
                if let Err(e) = chunk.into_iter().try_for_each(&mut apply) {
                    written = Err(e);
                    break;
                }
            }
            // Dropping the receivers stops the deciders (and with them the
            // dealer) after a failure.
            drop(decisions);
            let panicked = || Error::internal("a thread deciding online upserts panicked");
            for decider in deciders {
                decider.join().map_err(|_| panicked())??;
            }
            dealer.join().map_err(|_| panicked())?;
            written
        })
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

    /// Loads a view's rows into the cache in the background, in key order,
    /// until the cache is 80% full or the view's rows change generation.
    /// After a full refresh only the base table holds rows worth loading
    /// (the refresh's own changes go through the cache already).
    pub fn warm(self: &Arc<Self>, view: &QualifiedName) {
        let store = Arc::clone(self);
        let view = view.clone();
        std::thread::spawn(move || store.warm_view(&view, false));
    }

    /// Loads every materialized view's rows into the cache in the
    /// background: after a restart the cache is empty, and without this the
    /// first lookup of each key would read redb. Incrementally refreshed rows
    /// (the delta) come first: they replace base rows.
    pub fn warm_all(self: &Arc<Self>) {
        let views: Vec<QualifiedName> = match self.states.read() {
            Ok(states) => states.keys().cloned().collect(),
            Err(_) => return,
        };
        if views.is_empty() {
            return;
        }
        let store = Arc::clone(self);
        std::thread::spawn(move || {
            for view in views {
                store.warm_view(&view, true);
            }
        });
    }

    fn warm_view(&self, view: &QualifiedName, with_delta: bool) {
        let Some(state) = self.materialization(view).filter(|state| state.online) else {
            return;
        };
        let started = std::time::Instant::now();
        let mut warmed = if with_delta {
            self.warm_table(view, &state, WarmedTable::Delta)
        } else {
            Ok(true)
        };
        if let Ok(true) = warmed {
            let base = match state.base_layout {
                BaseLayout::Blocks => WarmedTable::BaseBlocks,
                BaseLayout::PerKey => WarmedTable::BaseRows,
            };
            warmed = self.warm_table(view, &state, base);
        }
        match warmed {
            Ok(_) => tracing::debug!(
                view = %view,
                ms = started.elapsed().as_secs_f64() * 1000.0,
                cached_bytes = self.cache.weighted_size(),
                "online cache warmed"
            ),
            Err(e) => {
                tracing::warn!(view = %view, error = %e, "could not warm the online cache")
            }
        }
    }

    /// Caches the rows of one of `state`'s tables, in table order, a chunk
    /// at a time: a blocks base as blocks, other tables row by row (a
    /// per-key base skipping keys the delta may hold). Stops early (false)
    /// when the cache is 80% full or the view's rows change generation or
    /// base.
    fn warm_table(
        &self,
        view: &QualifiedName,
        state: &Materialization,
        warmed: WarmedTable,
    ) -> Result<bool> {
        const CHUNK: usize = 10_000;
        let budget = self.cache.policy().max_capacity().unwrap_or(u64::MAX) / 10 * 8;
        let table_name = match warmed {
            WarmedTable::Delta => &state.delta_table,
            WarmedTable::BaseBlocks | WarmedTable::BaseRows => &state.rows_table,
        };
        let blocks = match warmed {
            WarmedTable::BaseBlocks => state.index.blocks.as_deref(),
            WarmedTable::BaseRows | WarmedTable::Delta => None,
        };
        let mut last: Option<Vec<u8>> = None;
        let mut next_block = 0usize;
        let mut buffer = Vec::new();
        loop {
            // A chunk at a time under the fill lock: a refresh committing
            // in between cannot be overwritten with older rows.
            let _fill = self
                .fill_lock
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match self.materialization(view) {
                Some(current)
                    if current.cache_id == state.cache_id
                        && current.index.block_cache_id == state.index.block_cache_id => {}
                _ => return Ok(false),
            }
            if self.cache.weighted_size() >= budget {
                return Ok(false);
            }
            let read = self.db.begin_read().map_err(storage("warming"))?;
            let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(table_name);
            let table = match read.open_table(definition) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(true),
                Err(e) => return Err(storage("warming")(e)),
            };
            let range = match &last {
                None => table.range::<&[u8]>(..),
                Some(key) => table.range::<&[u8]>((
                    std::ops::Bound::Excluded(key.as_slice()),
                    std::ops::Bound::Unbounded,
                )),
            }
            .map_err(storage("warming"))?;
            let entries_per_chunk = match warmed {
                WarmedTable::BaseRows => CHUNK,
                WarmedTable::BaseBlocks | WarmedTable::Delta => CHUNK / blocks::BLOCK_ROWS,
            };
            let mut count = 0;
            for entry in range.take(entries_per_chunk) {
                let (key, value) = entry.map_err(storage("warming"))?;
                let (key, value) = (key.value(), value.value());
                match (warmed, blocks) {
                    (WarmedTable::BaseBlocks, Some(blocks)) => {
                        // The index and the table must agree block for block.
                        if next_block >= blocks.len() || blocks.first_key(next_block) != key {
                            return Ok(false);
                        }
                        block_cache_key(state.index.block_cache_id, next_block, &mut buffer);
                        let block = CachedBlock::parse(value)?;
                        self.cache
                            .insert(Box::from(buffer.as_slice()), Cached::Block(block));
                        next_block += 1;
                    }
                    (WarmedTable::BaseBlocks, None) => return Ok(false),
                    (WarmedTable::BaseRows, _) => {
                        // A row the delta may hold is not the key's newest.
                        if !state.index.delta.may_hold(key) {
                            state.cache_key(key, &mut buffer);
                            self.cache.insert(
                                Box::from(buffer.as_slice()),
                                Cached::Row(stored_row(value)?),
                            );
                        }
                    }
                    // Runs come oldest first: a key's newest row is cached
                    // last.
                    (WarmedTable::Delta, _) => {
                        for row in blocks::rows(value) {
                            let (row_key, row_value) = row?;
                            state.cache_key(row_key, &mut buffer);
                            self.cache.insert(
                                Box::from(buffer.as_slice()),
                                Cached::Row(stored_row(row_value)?),
                            );
                        }
                    }
                }
                last = Some(key.to_vec());
                count += 1;
            }
            // moka applies inserts lazily; settle them so that the weighted
            // size is current.
            self.cache.run_pending_tasks();
            if count < entries_per_chunk {
                return Ok(true);
            }
        }
    }

    /// Forgets a view (DROP FEATURE VIEW): its state and online rows.
    pub fn remove(&self, view: &QualifiedName) -> Result<Option<Arc<Materialization>>> {
        let Some(previous) = self.materialization(view) else {
            return Ok(None);
        };
        let name_key = serde_json::to_string(view).map_err(storage("encoding a view name"))?;
        let write = self.begin_durable_write()?;
        delete_rows_tables(&write, &previous)?;
        {
            let mut table = write
                .open_table(MATERIALIZATIONS)
                .map_err(storage("writing"))?;
            table
                .remove(name_key.as_str())
                .map_err(storage("writing"))?;
        }
        let _filling = self.commit_state_change(write)?;
        self.states
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(view);
        Ok(Some(previous))
    }

    /// Commits `write`, which changes online rows, under the fill lock;
    /// the caller holds the returned guard until it has published the
    /// change (rows and state), so that no cache fill reads redb before
    /// the commit and writes its row into the cache after the publish.
    ///
    /// Only the commit and the publish hold it: lookups that miss the
    /// cache wait for those, not for a refresh preparing its rows. (Lock
    /// order: the redb write, then the fill lock; fills take the fill lock
    /// and only read, which never waits for a writer.)
    fn commit_state_change(
        &self,
        write: redb::WriteTransaction,
    ) -> Result<std::sync::RwLockWriteGuard<'_, ()>> {
        let filling = self
            .fill_lock
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        write.commit().map_err(storage("committing"))?;
        Ok(filling)
    }

    /// A write transaction whose commit returns once it is on disk.
    fn begin_durable_write(&self) -> Result<redb::WriteTransaction> {
        let mut write = self.db.begin_write().map_err(storage("writing"))?;
        write
            .set_durability(Durability::Immediate)
            .map_err(storage("writing"))?;
        Ok(write)
    }

    /// A new job id.
    pub fn next_job_id(&self) -> u64 {
        self.next_job.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a job's current state, durably: a job that was running
    /// when the server stopped is reported as interrupted after restart.
    pub fn record_job(&self, job: &Job) -> Result<()> {
        self.write_job(job, Durability::Immediate)
    }

    /// Records a job again without waiting for the disk: the update
    /// becomes durable with the next durable commit, and a crash before
    /// that keeps the job's last durable record.
    pub fn amend_job(&self, job: &Job) -> Result<()> {
        self.write_job(job, Durability::None)
    }

    fn write_job(&self, job: &Job, durability: Durability) -> Result<()> {
        let mut write = self.db.begin_write().map_err(storage("writing jobs"))?;
        write
            .set_durability(durability)
            .map_err(storage("writing jobs"))?;
        insert_job(&write, job)?;
        write.commit().map_err(storage("writing jobs"))
    }

    /// Every recorded job, oldest first.
    pub fn jobs(&self) -> Result<Vec<Job>> {
        let read = self.db.begin_read().map_err(storage("reading jobs"))?;
        let table = match read.open_table(JOBS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage("reading jobs")(e)),
        };
        let mut jobs = Vec::new();
        for entry in table.iter().map_err(storage("reading jobs"))? {
            let (_, job) = entry.map_err(storage("reading jobs"))?;
            jobs.push(serde_json::from_str(job.value()).map_err(storage("decoding a job"))?);
        }
        Ok(jobs)
    }
}

/// The event times of the rows a state holds, for deciding upserts (see
/// [`OnlineStore::decide_upserts`]), which come in key order: consecutive
/// keys of one base block share one read of it, from the row cache when it
/// holds the block. Reading each key's block from redb (a range search,
/// then a scan of the block) was most of a 1% refresh's online apply.
/// Cached blocks are what redb holds: a base's blocks never change (a
/// merge writes a new base, whose blocks are cached under a new name).
/// The delta is read from redb, and only for keys its filter may hold.
struct StoredTimes<'a> {
    store: &'a OnlineStore,
    state: &'a Materialization,
    tables: &'a RowsTables,
    /// The delta's runs, read-locked once for all the keys.
    runs: delta::HeldRuns<'a>,
    /// The base block read last, and its number.
    block: Option<(usize, CachedBlock)>,
    cache_key: Vec<u8>,
}

impl<'a> StoredTimes<'a> {
    fn new(store: &'a OnlineStore, state: &'a Materialization, tables: &'a RowsTables) -> Self {
        Self {
            store,
            state,
            tables,
            runs: state.index.delta.hold(),
            block: None,
            cache_key: Vec::new(),
        }
    }

    /// The event time of the row stored for `key`, if any.
    fn of(&mut self, key: &[u8]) -> Result<Option<i64>> {
        if self.runs.may_hold(key)
            && let Some(delta) = &self.tables.delta
            && let Some(time) = self.runs.find(delta, key, stored_event_time)?
        {
            return Ok(Some(time));
        }
        let index = &self.state.index;
        let Some(blocks) = &index.blocks else {
            // A per-key base (or none yet): one read per key.
            return self.tables.find_in_base(key, stored_event_time);
        };
        // Keys come in order: most fall in the block read last.
        let last_block_holds = |(read, _): &(usize, CachedBlock)| {
            blocks.first_key(*read) <= key
                && (*read + 1 == blocks.len() || key < blocks.first_key(*read + 1))
        };
        let number = match &self.block {
            Some(last) if last_block_holds(last) => last.0,
            _ => match blocks.block_of(key) {
                Some(number) => number,
                None => return Ok(None),
            },
        };
        let block = match &self.block {
            Some((read, block)) if *read == number => block,
            _ => {
                block_cache_key(index.block_cache_id, number, &mut self.cache_key);
                let block = match self.store.cache.get(self.cache_key.as_slice()) {
                    Some(Cached::Block(block)) => block,
                    _ => self.tables.base_block(blocks.first_key(number))?,
                };
                &self.block.insert((number, block)).1
            }
        };
        Ok(block.event_time(key))
    }
}

/// The in-memory index of `state`'s rows as redb holds them: the blocks'
/// first keys, the delta's keys.
fn load_index(db: &Database, state: &Materialization) -> Result<RowsIndex> {
    if !state.online {
        return Ok(RowsIndex::new(None));
    }
    let read = db.begin_read().map_err(storage("reading"))?;
    let tables = RowsTables::open(&read, state)?;
    let mut blocks = BlockIndex::default();
    if state.base_layout == BaseLayout::Blocks
        && let Some(base) = &tables.base
    {
        for entry in base.iter().map_err(storage("reading"))? {
            blocks.push(entry.map_err(storage("reading"))?.0.value());
        }
    }
    let mut index = RowsIndex::new((state.base_layout == BaseLayout::Blocks).then_some(blocks));
    if let Some(delta) = &tables.delta {
        index.delta = Arc::new(delta::load(delta)?);
    }
    Ok(index)
}

/// Writes a new generation's rows (in key order) into its empty `table`;
/// returns how many there are and (for blocks) the blocks' index.
/// Producing the entries — merging a refresh's partitions, building the
/// stored values and blocks — runs on a second thread, a chunk ahead, so
/// that this one only inserts into the B-tree.
fn write_generation(
    table: &mut RowsTableMut<'_>,
    mut rows: RowUpdates,
    layout: BaseLayout,
) -> Result<(u64, BlockIndex)> {
    const CHUNK: usize = 4096;
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<(Vec<u8>, Vec<u8>)>>(4);
        let producer = scope.spawn(move || {
            let mut chunk: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(CHUNK);
            let mut count = 0u64;
            let mut builder = BlockBuilder::default();
            let mut index = BlockIndex::default();
            let mut value = Vec::new();
            while let Some(row) = rows.next_row() {
                count += 1;
                let entry = match layout {
                    BaseLayout::PerKey => {
                        let mut value = Vec::with_capacity(8 + row.row.len());
                        store_value(row.event_time, row.row, &mut value);
                        Some((row.key.to_vec(), value))
                    }
                    BaseLayout::Blocks => {
                        store_value(row.event_time, row.row, &mut value);
                        let block = builder.push(row.key, &value);
                        if let Some((first_key, _)) = &block {
                            index.push(first_key);
                        }
                        block
                    }
                };
                chunk.extend(entry);
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if sender.send(full).is_err() {
                        return (count, index); // the writer failed
                    }
                }
            }
            if let Some((first_key, block)) = builder.finish() {
                index.push(&first_key);
                chunk.push((first_key, block));
            }
            if !chunk.is_empty() {
                let _ = sender.send(chunk);
            }
            (count, index)
        });
        for chunk in receiver {
            for (key, value) in &chunk {
                table
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(storage("writing"))?;
            }
        }
        producer
            .join()
            .map_err(|_| Error::internal("a thread building online rows panicked"))
    })
}

/// Replaces `out` with the stored form of a row: `[event time][row]`.
fn store_value(event_time: i64, row: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&event_time.to_le_bytes());
    out.extend_from_slice(row);
}

/// Inserts (or replaces) `job`'s record in `write`.
fn insert_job(write: &redb::WriteTransaction, job: &Job) -> Result<()> {
    let mut table = write.open_table(JOBS).map_err(storage("writing jobs"))?;
    let text = serde_json::to_string(job).map_err(storage("encoding a job"))?;
    table
        .insert(job.id, text.as_str())
        .map_err(storage("writing jobs"))?;
    Ok(())
}

/// Deletes a generation's online rows (base and delta).
fn delete_rows_tables(write: &redb::WriteTransaction, state: &Materialization) -> Result<()> {
    let per_key_delta = state.per_key_delta_table();
    for name in [&*state.rows_table, &*state.delta_table, &per_key_delta] {
        let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
        write.delete_table(definition).map_err(storage("writing"))?;
    }
    Ok(())
}

fn stored_row(value: &[u8]) -> Result<StoredRow> {
    stored_event_time(value)?;
    Ok(StoredRow::new(Arc::from(value)))
}

fn stored_event_time(value: &[u8]) -> Result<i64> {
    value
        .get(..8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("eight bytes")))
        .ok_or_else(|| Error::OnlineStore("corrupt online record: no event time".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(key: u32, event_time: i64, value: u8) -> RowUpdate {
        RowUpdate::new(key.to_be_bytes().to_vec(), event_time, &[value])
    }

    fn read(store: &OnlineStore, view: &QualifiedName, key: u32) -> Option<(i64, u8)> {
        let state = store.materialization(view).unwrap();
        store
            .get(&state, &key.to_be_bytes(), &mut Vec::new())
            .unwrap()
            .map(|row| (row.event_time(), row.values()[0]))
    }

    /// Large upserts are decided by a pipeline (a dealing thread, two
    /// deciding threads, the writer): every row must still be judged
    /// against what is stored, and written in key order.
    #[test]
    fn large_upserts_are_decided_in_order_against_the_stored_rows() {
        let (_dir, _path, view, store) = fresh_store();
        store
            .apply(
                &view,
                state(),
                OnlineChange::Replace(Box::new(OwnedRows::new(
                    (0..40_000).map(|k| update(k, 10, 1)),
                ))),
            )
            .unwrap();
        // 50k rows, an odd number of chunks: even keys older than what is
        // stored (kept out where a row exists), odd keys newer.
        let upserts: Vec<RowUpdate> = (20_000..70_000)
            .map(|k| update(k, if k % 2 == 0 { 5 } else { 20 }, 2))
            .collect();
        assert!(upserts.len() >= PARALLEL_UPSERT_READS);
        assert_eq!(upserts.len().div_ceil(UPSERT_CHUNK) % 2, 1);
        let applied = store
            .apply(&view, state(), OnlineChange::Upsert(upserts.into()))
            .unwrap();
        assert_eq!(applied.online_keys, 70_000);
        for (key, expected) in [
            (0, (10, 1)),
            (19_999, (10, 1)),
            (20_000, (10, 1)),
            (20_001, (20, 2)),
            (39_998, (10, 1)),
            (39_999, (20, 2)),
            (40_000, (5, 2)),
            (69_999, (20, 2)),
        ] {
            assert_eq!(read(&store, &view, key), Some(expected), "key {key}");
        }
        assert_eq!(read(&store, &view, 70_000), None);
    }

    #[test]
    fn upserts_go_to_the_delta_which_merges_into_the_base() {
        upserts_merge_into_a_base_of(BaseLayout::Blocks);
    }

    /// Stores written before bases were blocked keep their per-key base
    /// until their next full refresh; upserts and merges must still work.
    #[test]
    fn per_key_bases_of_older_stores_still_take_upserts() {
        upserts_merge_into_a_base_of(BaseLayout::PerKey);
    }

    /// A store in a new directory (its path), and the view tests use.
    fn fresh_store() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        QualifiedName,
        Arc<OnlineStore>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("online.redb");
        let store = Arc::new(OnlineStore::open(&path, 1 << 20).unwrap());
        (dir, path, QualifiedName::new("public", "v"), store)
    }

    fn state() -> Materialization {
        Materialization::new("shape".into(), 1, 1, "t".into(), BTreeMap::new(), true)
    }

    /// A store written when the delta held one entry per key: opening it
    /// moves those rows into a run, which lookups and the next upsert see.
    #[test]
    fn per_key_deltas_of_older_stores_are_read_after_opening() {
        let (_dir, path, view, store) = fresh_store();
        let applied = store
            .apply(
                &view,
                state(),
                OnlineChange::Replace(Box::new(OwnedRows::new((0..100).map(|k| update(k, 10, 1))))),
            )
            .unwrap();
        let per_key_name = applied.per_key_delta_table();
        let per_key: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&per_key_name);
        let write = store.db.begin_write().unwrap();
        {
            let mut table = write.open_table(per_key).unwrap();
            let mut value = Vec::new();
            store_value(20, &[9], &mut value);
            table
                .insert(1u32.to_be_bytes().as_slice(), value.as_slice())
                .unwrap();
        }
        write.commit().unwrap();
        drop(applied);
        close(store);

        let store = Arc::new(OnlineStore::open(&path, 1 << 20).unwrap());
        assert_eq!(read(&store, &view, 1), Some((20, 9)));
        assert_eq!(read(&store, &view, 2), Some((10, 1)));
        store
            .apply(
                &view,
                state(),
                OnlineChange::Upsert(vec![update(1, 15, 3), update(2, 30, 4)].into()),
            )
            .unwrap();
        assert_eq!(read(&store, &view, 1), Some((20, 9)));
        assert_eq!(read(&store, &view, 2), Some((30, 4)));
        let read_txn = store.db.begin_read().unwrap();
        assert!(matches!(
            read_txn.open_table(per_key),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
    }

    #[test]
    fn states_written_before_blocks_decode_as_per_key() {
        let mut text = serde_json::to_value(Materialization::new(
            "shape".into(),
            1,
            1,
            "t".into(),
            BTreeMap::new(),
            true,
        ))
        .unwrap();
        text.as_object_mut().unwrap().remove("base_layout");
        let state: Materialization = serde_json::from_value(text).unwrap();
        assert_eq!(state.base_layout, BaseLayout::PerKey);
    }

    /// Drops `store` once no background thread (a cache warm) holds it, so
    /// that the database can be opened again.
    fn close(store: Arc<OnlineStore>) {
        let started = std::time::Instant::now();
        while Arc::strong_count(&store) > 1 {
            assert!(started.elapsed().as_secs() < 30, "the store is still held");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn upserts_merge_into_a_base_of(layout: BaseLayout) {
        let (_dir, path, view, store) = fresh_store();
        let mut first = state();
        first.base_layout = layout;
        store
            .apply(
                &view,
                first,
                OnlineChange::Replace(Box::new(OwnedRows::new((0..100).map(|k| update(k, 10, 1))))),
            )
            .unwrap();
        // Newer rows win, older ones do not, ties go to the refresh.
        let applied = store
            .apply(
                &view,
                state(),
                OnlineChange::Upsert(
                    vec![
                        update(1, 20, 2),
                        update(2, 5, 2),
                        update(3, 10, 3),
                        update(500, 1, 4),
                    ]
                    .into(),
                ),
            )
            .unwrap();
        assert_eq!(applied.online_keys, 101);
        assert_eq!(read(&store, &view, 1), Some((20, 2)));
        assert_eq!(read(&store, &view, 2), Some((10, 1)));
        assert_eq!(read(&store, &view, 3), Some((10, 3)));
        assert_eq!(read(&store, &view, 500), Some((1, 4)));
        assert_eq!(read(&store, &view, 9999), None);
        close(store);

        // After a restart (cold cache) the delta still wins over the base;
        // a large upsert merges the delta into the base.
        let store = Arc::new(OnlineStore::open(&path, 1 << 20).unwrap());
        assert_eq!(read(&store, &view, 1), Some((20, 2)));
        let many: Vec<RowUpdate> = (1000..1000 + MIN_DELTA_MERGE as u32 + 10)
            .map(|k| update(k, 7, 5))
            .collect();
        let before = store.materialization(&view).unwrap();
        let applied = store
            .apply(&view, state(), OnlineChange::Upsert(many.into()))
            .unwrap();
        // A lookup that took its state before the merge still reads what
        // the store holds now.
        for (key, expected) in [
            (1u32, Some((20, 2))),
            (1005, Some((7, 5))),
            (50, Some((10, 1))),
            (99_999, None),
        ] {
            let row = store
                .get(&before, &key.to_be_bytes(), &mut Vec::new())
                .unwrap()
                .map(|row| (row.event_time(), row.values()[0]));
            assert_eq!(row, expected, "key {key}");
        }
        assert_eq!(applied.online_keys, 101 + MIN_DELTA_MERGE + 10);
        let read_txn = store.db.begin_read().unwrap();
        let delta: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&applied.delta_table);
        assert!(matches!(
            read_txn.open_table(delta),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        drop(read_txn);
        close(store);
        let store = Arc::new(OnlineStore::open(&path, 1 << 20).unwrap());
        assert_eq!(read(&store, &view, 1), Some((20, 2)));
        assert_eq!(read(&store, &view, 1005), Some((7, 5)));
        assert_eq!(read(&store, &view, 50), Some((10, 1)));
        assert_eq!(store.materialization(&view).unwrap().base_layout, layout);
    }
}

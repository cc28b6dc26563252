//! What the last completed refresh of a feature view applied
//! ([`Materialization`]), and what lookups keep in memory to find its rows
//! ([`RowsIndex`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use featuredb_catalog::QualifiedName;
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::blocks::BaseLayout;
use super::delta::{self, DeltaRuns};
use super::index::BlockIndex;
use super::store::{cache_key, storage};
use super::tables::RowsTables;
use crate::error::Result;

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
    pub(super) base_layout: BaseLayout,
    /// The redb tables of the online rows (derived, not stored).
    #[serde(skip)]
    pub(super) rows_table: Arc<str>,
    #[serde(skip)]
    pub(super) delta_table: Arc<str>,
    /// Identifies the rows table in cache keys (derived, not stored).
    #[serde(skip)]
    pub(super) cache_id: u64,
    /// The view (derived, not stored).
    #[serde(skip)]
    pub(super) view: Option<QualifiedName>,
    /// How lookups find rows in memory (derived: built when the state is
    /// loaded or applied).
    #[serde(skip)]
    pub(super) index: Arc<RowsIndex>,
}

/// What lookups keep in memory for a generation's rows (see [`index`]).
#[derive(Debug, Default)]
pub(super) struct RowsIndex {
    /// The base's blocks; `None` for a per-key base, whose rows are cached
    /// one by one.
    pub(super) blocks: Option<Arc<BlockIndex>>,
    /// The delta's runs: shared by the generation's states until a merge
    /// empties the delta (the states before it keep theirs).
    pub(super) delta: Arc<DeltaRuns>,
    /// Names this base's blocks in the cache: a merge rewrites blocks, and
    /// cached blocks of the base before it must not be found after it.
    pub(super) block_cache_id: u64,
}

impl RowsIndex {
    pub(super) fn new(blocks: Option<BlockIndex>) -> Self {
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

    pub(super) fn rows_table_name(view: &QualifiedName, generation: u32) -> String {
        format!("rows:{view}:{generation}")
    }

    /// Fills in the derived fields for `view`.
    pub(super) fn derive(mut self, view: &QualifiedName) -> Self {
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
    pub(super) fn per_key_delta_table(&self) -> String {
        self.delta_table.replacen("delta-runs:", "delta:", 1)
    }

    pub(super) fn cache_key(&self, key: &[u8], buffer: &mut Vec<u8>) {
        cache_key(self.cache_id, key, buffer);
    }
}

/// The in-memory index of `state`'s rows as redb holds them: the blocks'
/// first keys, the delta's keys.
pub(super) fn load_index(db: &Database, state: &Materialization) -> Result<RowsIndex> {
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

//! Warming the row cache in the background: after a restart (every view)
//! and after a full refresh (its new generation).

use std::sync::Arc;

use featuredb_catalog::QualifiedName;
use redb::{ReadableDatabase, TableDefinition};

use super::blocks::{self, BaseLayout, CachedBlock};
use super::rows::stored_row;
use super::state::Materialization;
use super::store::{Cached, OnlineStore, block_cache_key, storage};
use crate::error::Result;

/// Which of a state's tables a warm loads into the cache.
#[derive(Debug, Clone, Copy)]
pub(super) enum WarmedTable {
    /// The delta's runs, row by row.
    Delta,
    /// A blocks base, block by block.
    BaseBlocks,
    /// A per-key base, row by row.
    BaseRows,
}

impl OnlineStore {
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

    pub(super) fn warm_view(&self, view: &QualifiedName, with_delta: bool) {
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
    pub(super) fn warm_table(
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
}

//! Lookups: a key's stored row, from rows a refresh just published, the
//! row cache, or redb (filling the cache).

use std::sync::Arc;

use redb::ReadableDatabase;

use super::rows::{StoredRow, stored_row};
use super::state::Materialization;
use super::store::{Cached, OnlineStore, block_cache_key, storage};
use super::tables::RowsTables;
use crate::error::Result;

/// What probing one state found.
pub(super) enum Probe {
    Found(Option<StoredRow>),
    /// The state is no longer current and redb was about to be read: the
    /// probe must start again from the current state.
    Stale,
}

impl OnlineStore {
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
            let stale = match self.probe(current, key, buffer)? {
                Probe::Found(row) => {
                    let (row, streams) = self.with_streamed(current, key, row);
                    // A refresh may have stored (and dropped from memory)
                    // a streamed row after this state's row was found:
                    // then the stored row is in the newer state. The
                    // publish comes before the drop, so a state that is
                    // still the latest here saw it.
                    if !streams || self.is_latest(current) {
                        return Ok(row);
                    }
                    true
                }
                Probe::Stale => true,
            };
            if stale {
                match current.view.as_ref().and_then(|v| self.materialization(v)) {
                    Some(next) => fresh = Some(next),
                    None => return Ok(None),
                }
            }
        }
    }

    /// Looks `key` up in `state`: rows a refresh just published, then the
    /// delta (if its filter may hold the key), then the base block that
    /// would hold it — each from the cache, or from redb under the fill
    /// lock (which a refresh holds exclusively while it commits and
    /// publishes), then cached.
    pub(super) fn probe(
        &self,
        state: &Materialization,
        key: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<Probe> {
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
    pub(super) fn probe_row(
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
    pub(super) fn read_to_fill(
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

    /// Whether `state` is its view's latest published state (an
    /// incremental refresh publishes a new one with the same rows table).
    pub(super) fn is_latest(&self, state: &Materialization) -> bool {
        let Some(view) = &state.view else {
            return true;
        };
        self.materialization(view)
            .is_some_and(|latest| std::ptr::eq(Arc::as_ptr(&latest), state))
    }

    /// Whether `state` holds the same rows as its view's current state
    /// (the same generation and base).
    pub(super) fn is_current(&self, state: &Materialization) -> bool {
        let Some(view) = &state.view else {
            return true;
        };
        self.materialization(view).is_some_and(|current| {
            current.cache_id == state.cache_id
                && current.index.block_cache_id == state.index.block_cache_id
        })
    }
}

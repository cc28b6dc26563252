//! Rows a refresh committed that are not in the row cache yet.
//!
//! moka's inserts cost about a microsecond each: writing the 100k rows of a
//! 1% refresh through to the cache kept the refresh waiting ~90 ms after
//! its commit. Instead a refresh publishes the rows it changed — sorted by
//! key, as refreshes produce them — as one batch, which lookups
//! binary-search before the cache, and a background thread moves batches
//! into the cache, oldest first, dropping each once all of its rows are in.
//!
//! Why this never serves a stale row:
//! - a batch is published under the fill lock with the commit that wrote
//!   its rows, so a lookup sees either the old state or the batch;
//! - newer batches are searched first, and the mover drains batches in
//!   publication order, one mover at a time, so the cache ends with the
//!   newest row of each key;
//! - a batch leaves only after its rows are in the cache; if the cache
//!   evicts one, the lookup fills it from redb, which holds the commit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use moka::sync::Cache;

use super::rows::StoredRow;
use super::store::{CacheKey, Cached, cache_key};

/// Batches of at least this many rows are moved into the cache on two
/// threads (moka takes inserts concurrently).
const PARALLEL_MOVE: usize = 16_384;

#[derive(Default)]
pub struct PendingRows {
    /// Oldest first.
    batches: RwLock<Vec<Arc<Batch>>>,
    /// Rows in all batches: lookups skip the lock while there are none.
    rows: AtomicUsize,
    /// Held by the one thread moving batches into the cache.
    mover: Mutex<()>,
}

/// One refresh's changed rows of one rows table.
struct Batch {
    cache_id: u64,
    /// Sorted by key, one row per key.
    rows: Vec<(Vec<u8>, StoredRow)>,
}

impl PendingRows {
    /// The newest pending row of `key` in the rows table `cache_id`.
    pub fn get(&self, cache_id: u64, key: &[u8]) -> Option<StoredRow> {
        if self.rows.load(Ordering::Acquire) == 0 {
            return None;
        }
        let batches = self
            .batches
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        batches
            .iter()
            .rev()
            .filter(|batch| batch.cache_id == cache_id)
            .find_map(|batch| {
                batch
                    .rows
                    .binary_search_by(|(stored, _)| stored.as_slice().cmp(key))
                    .ok()
                    .map(|index| batch.rows[index].1.clone())
            })
    }

    /// Whether every published batch is in the cache.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.rows.load(Ordering::Acquire) == 0
    }

    /// Publishes a refresh's changed rows (the caller holds the fill lock
    /// and has committed them) and starts moving them into `cache`.
    pub fn publish(
        self: &Arc<Self>,
        cache: &Cache<CacheKey, Cached, ahash::RandomState>,
        cache_id: u64,
        mut rows: Vec<(Vec<u8>, StoredRow)>,
    ) {
        if rows.is_empty() {
            return;
        }
        if !rows.is_sorted_by(|a, b| a.0 < b.0) {
            // Lookups binary-search: sort, keeping the last row of a key.
            rows.reverse();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows.dedup_by(|later, earlier| later.0 == earlier.0);
        }
        let count = rows.len();
        self.batches
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::new(Batch { cache_id, rows }));
        self.rows.fetch_add(count, Ordering::AcqRel);
        let pending = Arc::clone(self);
        let thread_cache = cache.clone();
        let spawned = std::thread::Builder::new()
            .name("featuredb-cache-writer".into())
            .spawn(move || pending.move_into(&thread_cache));
        if let Err(e) = spawned {
            // No thread: move them on this one rather than keep them.
            tracing::warn!(error = %e, "could not start a cache writer thread");
            self.move_into(cache);
        }
    }

    /// Moves every batch into the cache, oldest first.
    fn move_into(&self, cache: &Cache<CacheKey, Cached, ahash::RandomState>) {
        let _mover = self
            .mover
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            let oldest = self
                .batches
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .first()
                .cloned();
            let Some(batch) = oldest else {
                return;
            };
            let insert = |rows: &[(Vec<u8>, StoredRow)]| {
                let mut buffer = Vec::new();
                for (key, row) in rows {
                    cache_key(batch.cache_id, key, &mut buffer);
                    cache.insert(Box::from(buffer.as_slice()), Cached::Row(row.clone()));
                }
            };
            if batch.rows.len() >= PARALLEL_MOVE {
                let (first, second) = batch.rows.split_at(batch.rows.len() / 2);
                std::thread::scope(|scope| {
                    scope.spawn(|| insert(second));
                    insert(first);
                });
            } else {
                insert(&batch.rows);
            }
            let mut batches = self
                .batches
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            batches.retain(|other| !Arc::ptr_eq(other, &batch));
            self.rows.fetch_sub(batch.rows.len(), Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: u8) -> StoredRow {
        let mut bytes = 7i64.to_le_bytes().to_vec();
        bytes.push(value);
        StoredRow::new(Arc::from(bytes))
    }

    fn key_in(cache_id: u64, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        cache_key(cache_id, key, &mut out);
        out
    }

    fn wait_until_moved(pending: &PendingRows) {
        let started = std::time::Instant::now();
        while !pending.is_empty() {
            assert!(started.elapsed().as_secs() < 30, "rows never moved");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn newest_batch_wins_and_all_rows_end_in_the_cache() {
        let cache = Cache::builder().build_with_hasher(ahash::RandomState::new());
        let pending = Arc::new(PendingRows::default());
        // Hold the mover so that lookups must find the rows pending.
        let held = pending.mover.lock().unwrap();
        pending.publish(
            &cache,
            1,
            vec![(vec![1], row(10)), (vec![2], row(20)), (vec![3], row(30))],
        );
        // Unsorted, and a key twice: the later row counts.
        pending.publish(
            &cache,
            1,
            vec![(vec![3], row(31)), (vec![2], row(21)), (vec![3], row(32))],
        );
        pending.publish(&cache, 2, vec![(vec![1], row(99))]);
        let value = |key: u8| pending.get(1, &[key]).map(|r| r.values()[0]);
        assert_eq!(value(1), Some(10));
        assert_eq!(value(2), Some(21));
        assert_eq!(value(3), Some(32));
        assert_eq!(value(4), None);
        assert_eq!(pending.get(2, &[1]).map(|r| r.values()[0]), Some(99));
        assert!(cache.get(key_in(1, &[1]).as_slice()).is_none());
        drop(held);

        wait_until_moved(&pending);
        assert_eq!(pending.get(1, &[1]).map(|r| r.values()[0]), None);
        let cached = |id: u64, key: u8| {
            cache.get(key_in(id, &[key]).as_slice()).map(|r| match r {
                Cached::Row(row) => row.values()[0],
                Cached::Block(_) => unreachable!("rows are cached as rows"),
            })
        };
        assert_eq!(cached(1, 1), Some(10));
        assert_eq!(cached(1, 2), Some(21));
        assert_eq!(cached(1, 3), Some(32));
        assert_eq!(cached(2, 1), Some(99));
    }

    #[test]
    fn large_batches_move_on_two_threads() {
        let cache = Cache::builder().build_with_hasher(ahash::RandomState::new());
        let pending = Arc::new(PendingRows::default());
        let rows: Vec<_> = (0..PARALLEL_MOVE as u32 + 5)
            .map(|k| (k.to_be_bytes().to_vec(), row((k % 251) as u8)))
            .collect();
        pending.publish(&cache, 5, rows);
        wait_until_moved(&pending);
        for k in [0u32, 1, PARALLEL_MOVE as u32 + 4] {
            let cached = cache.get(key_in(5, &k.to_be_bytes()).as_slice());
            let value = cached.map(|r| match r {
                Cached::Row(row) => row.values()[0],
                Cached::Block(_) => unreachable!("rows are cached as rows"),
            });
            assert_eq!(value, Some((k % 251) as u8));
        }
    }
}

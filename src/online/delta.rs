//! The delta: the rows incremental refreshes upserted since the base was
//! last written, as runs of blocks, one run per refresh.
//!
//! Why runs: the delta used to hold one redb entry per key, and inserting
//! a 1% refresh's 100k rows into its B-tree took 65–70 ms (0.7 µs an
//! insert), most of the refresh's online apply. A refresh's winners come in
//! key order, so it writes them as one run of blocks, as a full refresh
//! writes the base ([`super::blocks`]): 1.6k inserts for 100k rows. A run
//! is never rewritten; a key's newest row is in the newest run holding it.
//! All runs are merged into the base together, once they hold an eighth as
//! many keys as it (see `OnlineStore::apply`).
//!
//! Blocks are keyed `[run: u32 big-endian][first key]`, so the table reads
//! run by run, each in key order. In memory ([`DeltaRuns`]) each run keeps
//! its blocks' first keys, and a map from key hashes to the newest run
//! holding a key of that hash tells a lookup whether to read the delta at
//! all and which block to read (more than one only when hashes collide).
//!
//! Stores written before runs existed hold one entry per key in a table of
//! another name; opening the store moves those rows into a run
//! ([`migrate_per_key`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use redb::ReadableTable;

use super::blocks::{self, BlockBuilder};
use super::index::BlockIndex;
use crate::error::{Error, Result};

type Table<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

/// The runs a generation's delta holds: shared by every state of the
/// generation until a merge empties the delta. A run is added once its
/// refresh has committed, before the refresh publishes its rows, so a
/// lookup holding any state of the generation never misses a row the
/// delta has.
#[derive(Debug, Default)]
pub struct DeltaRuns {
    runs: RwLock<Runs>,
}

#[derive(Debug, Default)]
struct Runs {
    /// Key hash → the newest run holding a key of that hash.
    newest: HashMap<u64, u32, ahash::RandomState>,
    /// Run → its blocks' first keys.
    blocks: BTreeMap<u32, BlockIndex>,
}

/// Hashes are compared across threads and restarts: fixed seeds.
fn key_hash(key: &[u8]) -> u64 {
    ahash::RandomState::with_seeds(7, 11, 13, 17).hash_one(key)
}

fn reading(e: impl std::fmt::Display) -> Error {
    Error::OnlineStore(format!("reading the delta: {e}"))
}

/// The redb key of run `run`'s block starting at `first_key`.
fn block_key(run: u32, first_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + first_key.len());
    key.extend_from_slice(&run.to_be_bytes());
    key.extend_from_slice(first_key);
    key
}

/// A block key's run and first key.
fn split_block_key(key: &[u8]) -> Result<(u32, &[u8])> {
    let (run, first_key) = key
        .split_at_checked(4)
        .ok_or_else(|| Error::OnlineStore("corrupt online store: a delta key".into()))?;
    Ok((
        u32::from_be_bytes(run.try_into().expect("four bytes")),
        first_key,
    ))
}

impl DeltaRuns {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Runs> {
        self.runs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The runs as they are now, held for many reads in a row: a refresh
    /// deciding 100k upserts on two threads takes the lock twice, not
    /// 200k times (each taking writes the lock's cache line, which then
    /// moves between the cores).
    pub fn hold(&self) -> HeldRuns<'_> {
        HeldRuns(self.read())
    }

    /// Whether the delta may hold `key` (false: it certainly does not).
    pub fn may_hold(&self, key: &[u8]) -> bool {
        self.hold().may_hold(key)
    }

    /// How many keys the delta holds (keys whose hashes collide count once).
    pub fn keys(&self) -> u64 {
        self.read().newest.len() as u64
    }

    /// How many of `keys` the delta does not hold yet.
    pub fn new_keys<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> u64 {
        let runs = self.read();
        keys.into_iter()
            .filter(|key| !runs.newest.contains_key(&key_hash(key)))
            .count() as u64
    }

    /// The number the next run takes.
    pub fn next_run(&self) -> u32 {
        self.read()
            .blocks
            .last_key_value()
            .map_or(0, |(run, _)| run + 1)
    }

    /// Adds a committed run: its blocks' index and its keys.
    pub fn add<'k>(&self, run: u32, blocks: BlockIndex, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut runs = self
            .runs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in keys {
            runs.newest.insert(key_hash(key), run);
        }
        runs.blocks.insert(run, blocks);
    }
}

/// [`DeltaRuns`] read-locked (see [`DeltaRuns::hold`]). Runs are only
/// added by the refresh that holds the view's turn (its job), after its
/// reads: holding this while deciding its upserts blocks no one.
pub struct HeldRuns<'a>(std::sync::RwLockReadGuard<'a, Runs>);

impl HeldRuns<'_> {
    /// Whether the delta may hold `key` (false: it certainly does not).
    pub fn may_hold(&self, key: &[u8]) -> bool {
        !self.0.newest.is_empty() && self.0.newest.contains_key(&key_hash(key))
    }

    /// `key`'s newest stored value in `table` (the delta these runs
    /// describe), handed to `f`.
    pub fn find<T, R>(
        &self,
        table: &T,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let runs = &self.0;
        let Some(&newest) = runs.newest.get(&key_hash(key)) else {
            return Ok(None);
        };
        // The newest run holding the key is the mapped one unless another
        // key of the same hash is newer: then an older one.
        for (&run, run_blocks) in runs.blocks.range(..=newest).rev() {
            let Some(block) = run_blocks.block_of(key) else {
                continue;
            };
            let stored = table
                .get(block_key(run, run_blocks.first_key(block)).as_slice())
                .map_err(reading)?
                .ok_or_else(|| {
                    Error::OnlineStore(
                        "corrupt online store: a delta block its index names is missing".into(),
                    )
                })?;
            if let Some(value) = blocks::find_in_block(stored.value(), key)? {
                return f(value).map(Some);
            }
        }
        Ok(None)
    }
}

/// Writes `rows` (in key order, one per key: encoded key, stored value) as
/// run `run` of the delta `table`; returns the run's blocks' index.
pub fn write_run<'r>(
    table: &mut Table<'_>,
    run: u32,
    rows: impl IntoIterator<Item = (&'r [u8], &'r [u8])>,
) -> Result<BlockIndex> {
    let writing = |e: redb::StorageError| Error::OnlineStore(format!("writing the delta: {e}"));
    let mut index = BlockIndex::default();
    let mut builder = BlockBuilder::default();
    let mut write = |first_key: Vec<u8>, block: Vec<u8>| -> Result<()> {
        table
            .insert(block_key(run, &first_key).as_slice(), block.as_slice())
            .map_err(writing)?;
        index.push(&first_key);
        Ok(())
    };
    for (key, value) in rows {
        if let Some((first_key, block)) = builder.push(key, value) {
            write(first_key, block)?;
        }
    }
    if let Some((first_key, block)) = builder.finish() {
        write(first_key, block)?;
    }
    Ok(index)
}

/// Reads back the runs of a delta `table` (opening the store).
pub fn load<T>(table: &T) -> Result<DeltaRuns>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let mut runs = Runs::default();
    // Runs come oldest first: a newer run's keys replace an older one's.
    for entry in table.iter().map_err(reading)? {
        let (key, block) = entry.map_err(reading)?;
        let (run, first_key) = split_block_key(key.value())?;
        runs.blocks.entry(run).or_default().push(first_key);
        for row in blocks::rows(block.value()) {
            runs.newest.insert(key_hash(row?.0), run);
        }
    }
    Ok(DeltaRuns {
        runs: RwLock::new(runs),
    })
}

/// Every key's newest row in a delta `table`, in key order: what a merge
/// into the base writes.
pub fn newest_rows<T>(table: &T) -> Result<Vec<(Vec<u8>, Vec<u8>)>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let mut rows: Vec<(Vec<u8>, u32, Vec<u8>)> = Vec::new();
    for entry in table.iter().map_err(reading)? {
        let (key, block) = entry.map_err(reading)?;
        let (run, _) = split_block_key(key.value())?;
        for row in blocks::rows(block.value()) {
            let (key, value) = row?;
            rows.push((key.to_vec(), run, value.to_vec()));
        }
    }
    // By key, newest run first; then the first of each key.
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    rows.dedup_by(|later, first| later.0 == first.0);
    Ok(rows
        .into_iter()
        .map(|(key, _, value)| (key, value))
        .collect())
}

/// Moves the rows of a delta written before runs existed (one entry per
/// key, in the table `per_key`) into a run of the delta `runs`, and deletes
/// `per_key`. Nothing to do, and nothing written, if `per_key` does not
/// exist.
pub fn migrate_per_key(write: &redb::WriteTransaction, per_key: &str, runs: &str) -> Result<()> {
    let migrating = |e: redb::Error| Error::OnlineStore(format!("migrating the delta: {e}"));
    // Opening a table in a write transaction creates it: look first, so
    // that a store without a legacy delta stays untouched.
    let exists = write
        .list_tables()
        .map_err(|e| migrating(e.into()))?
        .any(|table| redb::TableHandle::name(&table) == per_key);
    if !exists {
        return Ok(());
    }
    let old: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(per_key);
    let rows: Vec<(Vec<u8>, Vec<u8>)> = {
        let table = write.open_table(old).map_err(|e| migrating(e.into()))?;
        let mut rows = Vec::new();
        for entry in table.iter().map_err(|e| migrating(e.into()))? {
            let (key, value) = entry.map_err(|e| migrating(e.into()))?;
            rows.push((key.value().to_vec(), value.value().to_vec()));
        }
        rows
    };
    let new: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(runs);
    let mut table = write.open_table(new).map_err(|e| migrating(e.into()))?;
    let run = match table.last().map_err(|e| migrating(e.into()))? {
        Some((key, _)) => split_block_key(key.value())?.0 + 1,
        None => 0,
    };
    write_run(
        &mut table,
        run,
        rows.iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice())),
    )?;
    drop(table);
    write.delete_table(old).map_err(|e| migrating(e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    const DELTA: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("delta");

    fn key(k: u32) -> [u8; 4] {
        k.to_be_bytes()
    }

    /// Writes runs of (key, value) rows; returns the database and the runs
    /// as `add` would have recorded them.
    fn written(runs: &[Vec<(u32, u8)>]) -> (tempfile::TempDir, redb::Database, DeltaRuns) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let delta = DeltaRuns::default();
        let write = db.begin_write().unwrap();
        {
            let mut table = write.open_table(DELTA).unwrap();
            for rows in runs {
                let rows: Vec<([u8; 4], [u8; 1])> =
                    rows.iter().map(|&(k, v)| (key(k), [v])).collect();
                let run = delta.next_run();
                let index = write_run(
                    &mut table,
                    run,
                    rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                )
                .unwrap();
                delta.add(run, index, rows.iter().map(|(k, _)| k.as_slice()));
            }
        }
        write.commit().unwrap();
        (dir, db, delta)
    }

    fn get(db: &redb::Database, delta: &DeltaRuns, k: u32) -> Option<u8> {
        let read = db.begin_read().unwrap();
        let table = read.open_table(DELTA).unwrap();
        delta.hold().find(&table, &key(k), |v| Ok(v[0])).unwrap()
    }

    #[test]
    fn the_newest_run_holding_a_key_wins() {
        let (_dir, db, delta) = written(&[
            (0..300).map(|k| (k * 2, 1)).collect(),
            vec![(4, 2), (5, 2), (1000, 2)],
            vec![(5, 3)],
        ]);
        assert_eq!(delta.next_run(), 3);
        assert_eq!(get(&db, &delta, 0), Some(1));
        assert_eq!(get(&db, &delta, 4), Some(2));
        assert_eq!(get(&db, &delta, 5), Some(3));
        assert_eq!(get(&db, &delta, 598), Some(1));
        assert_eq!(get(&db, &delta, 1000), Some(2));
        assert_eq!(get(&db, &delta, 3), None);
        assert!(!delta.may_hold(&key(3)));
        assert!(delta.may_hold(&key(5)));
        assert_eq!(delta.keys(), 302);
        assert_eq!(delta.new_keys([key(5).as_slice(), &key(7)]), 1);

        // Read back from the table, the runs answer the same.
        let read = db.begin_read().unwrap();
        let table = read.open_table(DELTA).unwrap();
        let loaded = load(&table).unwrap();
        assert_eq!(loaded.next_run(), 3);
        for k in [0, 3, 4, 5, 598, 1000] {
            assert_eq!(get(&db, &loaded, k), get(&db, &delta, k), "key {k}");
        }
        // A merge takes each key's newest row, in key order.
        let newest = newest_rows(&table).unwrap();
        assert_eq!(newest.len(), 302);
        assert!(newest.windows(2).all(|w| w[0].0 < w[1].0));
        let value = |k: u32| newest.iter().find(|(key_, _)| key_ == &key(k)).unwrap().1[0];
        assert_eq!((value(2), value(4), value(5), value(1000)), (1, 2, 3, 2));
    }

    #[test]
    fn a_key_whose_hash_maps_to_a_newer_run_is_found_in_its_own() {
        let (_dir, db, delta) = written(&[vec![(1, 1)], vec![(2, 2)]]);
        // As if key 1's hash collided with key 2's, written later.
        delta
            .runs
            .write()
            .unwrap()
            .newest
            .insert(key_hash(&key(1)), 1);
        assert_eq!(get(&db, &delta, 1), Some(1));
        assert_eq!(get(&db, &delta, 2), Some(2));
    }

    #[test]
    fn per_key_deltas_of_older_stores_become_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let old: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("old");
        let write = db.begin_write().unwrap();
        {
            let mut table = write.open_table(old).unwrap();
            for k in 0..100u32 {
                table.insert(key(k).as_slice(), [7u8].as_slice()).unwrap();
            }
        }
        migrate_per_key(&write, "old", "delta").unwrap();
        // Nothing left to migrate: a second call does nothing.
        migrate_per_key(&write, "old", "delta").unwrap();
        write.commit().unwrap();
        let write = db.begin_write().unwrap();
        migrate_per_key(&write, "never", "nor-this").unwrap();
        let names: Vec<String> = write
            .list_tables()
            .unwrap()
            .map(|table| redb::TableHandle::name(&table).to_string())
            .collect();
        assert_eq!(
            names,
            ["delta"],
            "a store without a legacy delta is untouched"
        );
        write.abort().unwrap();
        let read = db.begin_read().unwrap();
        assert!(matches!(
            read.open_table(old),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        let table = read.open_table(DELTA).unwrap();
        let delta = load(&table).unwrap();
        assert_eq!(delta.keys(), 100);
        assert_eq!(get(&db, &delta, 42), Some(7));
        assert_eq!(newest_rows(&table).unwrap().len(), 100);
    }
}

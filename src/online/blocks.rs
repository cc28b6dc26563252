//! How a generation's base table holds its rows.
//!
//! A base table written before blocks existed holds one redb entry per key
//! ([`BaseLayout::PerKey`]). Every full refresh now writes blocks
//! ([`BaseLayout::Blocks`]): runs of up to [`BLOCK_ROWS`] consecutive keys
//! (fewer if they would not fit one redb page) in one entry, keyed by the
//! run's first key.
//! Why: a full refresh of 1M keys spent 0.65–0.7 s inserting 1M entries
//! into redb's B-tree on one thread, most of a second of a 2.5–3 s refresh;
//! as blocks it inserts 16k. A read finds the block with the greatest first
//! key not above the key it wants and scans it (keys are in order).
//!
//! A block is `[rows: u32]` then per row `[key length: u32][key][value
//! length: u32][value]`, little-endian; values are stored rows
//! (`[event time][values]`).

use std::sync::Arc;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::StoredRow;
use super::index::BlockIndex;
use crate::error::{Error, Result};

/// A block closes at this many rows…
pub const BLOCK_ROWS: usize = 64;
/// …or before a row would take its redb entry past one page (redb's
/// default page size, which the store keeps). A leaf holding an entry
/// larger than a page takes two: blocks that closed just past 4 KiB
/// doubled the store's size, and what every full refresh writes and
/// fsyncs (159 MB for 1M rows of 73 bytes).
const PAGE_BYTES: usize = 4096;
/// What a redb leaf holding one entry needs beside the entry's key and
/// value (its header and the entry's key and value end offsets), plus
/// room for a prefix a caller puts before the block's first key (a delta
/// run's number).
const ENTRY_OVERHEAD: usize = 12 + 8;

/// The layout of a generation's base table (the delta is always per key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseLayout {
    /// One entry per key: states written before blocks existed carry no
    /// layout and are read this way.
    #[default]
    PerKey,
    /// Runs of consecutive keys per entry.
    Blocks,
}

/// Builds blocks from rows given in key order.
pub struct BlockBuilder {
    first_key: Vec<u8>,
    block: Vec<u8>,
    rows: u32,
}

impl Default for BlockBuilder {
    fn default() -> Self {
        Self {
            first_key: Vec::new(),
            block: Self::empty_block(),
            rows: 0,
        }
    }
}

impl BlockBuilder {
    fn empty_block() -> Vec<u8> {
        let mut block = Vec::with_capacity(PAGE_BYTES);
        block.extend_from_slice(&0u32.to_le_bytes());
        block
    }

    /// Adds a row (keys must ascend); returns a block that is complete:
    /// the one before the row if the row does not fit it, or the one the
    /// row completes. A row too large for a page alone has a block (and
    /// an entry of several pages) of its own.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let row_bytes = 4 + key.len() + 4 + value.len();
        let full = (self.rows > 0
            && ENTRY_OVERHEAD + self.first_key.len() + self.block.len() + row_bytes > PAGE_BYTES)
            .then(|| self.take());
        if self.rows == 0 {
            self.first_key.clear();
            self.first_key.extend_from_slice(key);
        }
        self.block
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.block.extend_from_slice(key);
        self.block
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.block.extend_from_slice(value);
        self.rows += 1;
        // (A block closed before this row holds none, so at most one
        // block closes per row.)
        full.or_else(|| (self.rows as usize >= BLOCK_ROWS).then(|| self.take()))
    }

    /// The block being built, if it has rows.
    pub fn finish(mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        (self.rows > 0).then(|| self.take())
    }

    fn take(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut block = std::mem::replace(&mut self.block, Self::empty_block());
        block[..4].copy_from_slice(&self.rows.to_le_bytes());
        self.rows = 0;
        (std::mem::take(&mut self.first_key), block)
    }
}

/// The rows of a block, in key order: (key, stored value).
pub fn rows(block: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8])>> {
    let mut pos = 4;
    let count = block
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
        .unwrap_or(0);
    let mut failed = block.len() < 4;
    let mut remaining = count;
    std::iter::from_fn(move || {
        if failed {
            failed = false;
            remaining = 0;
            return Some(Err(corrupt()));
        }
        if remaining == 0 {
            return None;
        }
        remaining -= 1;
        let row = read_part(block, &mut pos).and_then(|key| Ok((key, read_part(block, &mut pos)?)));
        if row.is_err() {
            remaining = 0;
        }
        Some(row)
    })
}

fn read_part<'a>(block: &'a [u8], pos: &mut usize) -> Result<&'a [u8]> {
    let len = block
        .get(*pos..*pos + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize)
        .ok_or_else(corrupt)?;
    let part = block.get(*pos + 4..*pos + 4 + len).ok_or_else(corrupt)?;
    *pos += 4 + len;
    Ok(part)
}

fn corrupt() -> Error {
    Error::OnlineStore("corrupt online record: a truncated block".into())
}

/// A block as the row cache holds it: its bytes, checked once, with a small
/// hash table of its keys and where each row starts, all in one allocation
/// (`[slots][row starts][block]`). A binary search over the rows touched a
/// new cache line at every step (a fifth of a lookup's CPU waited on them);
/// the table finds a key's row in one probe. One allocation, held inline in
/// the cache entry, because each separate one is one more cache miss per
/// lookup (with a million keys read at random the blocks are not in the CPU
/// caches): in profiles of 100-key lookups `find` went from 20% of the
/// server's CPU to 15% (end to end, within this machine's noise).
#[derive(Debug, Clone)]
pub struct CachedBlock {
    data: Arc<[u8]>,
    /// Open addressing, a power of two at least twice the rows: a slot is 1
    /// + the row index of a key hashed there, 0 for empty.
    slots: u32,
}

/// Hash of a key within a block (any fixed function will do).
fn slot_hash(key: &[u8]) -> usize {
    ahash::RandomState::with_seeds(3, 5, 7, 9).hash_one(key) as usize
}

impl CachedBlock {
    /// Checks a block read from a base table.
    pub fn parse(block: &[u8]) -> Result<Self> {
        let mut starts = Vec::with_capacity(BLOCK_ROWS);
        let mut hashes = Vec::with_capacity(BLOCK_ROWS);
        let mut pos = 4;
        for row in rows(block) {
            let (key, value) = row?;
            if value.len() < 8 {
                return Err(Error::OnlineStore(
                    "corrupt online record: no event time".into(),
                ));
            }
            starts.push(pos as u32);
            hashes.push(slot_hash(key));
            pos += 8 + key.len() + value.len();
        }
        // Row indexes must fit a slot byte: blocks close at BLOCK_ROWS rows.
        if starts.len() >= u8::MAX as usize {
            return Err(corrupt());
        }
        let slots = (starts.len() * 2).next_power_of_two().max(2);
        let mut data = vec![0u8; slots + 4 * starts.len() + block.len()];
        let mask = slots - 1;
        for (row, hash) in hashes.into_iter().enumerate() {
            let mut slot = hash & mask;
            while data[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            data[slot] = row as u8 + 1;
        }
        let body = slots + 4 * starts.len();
        for (row, start) in starts.iter().enumerate() {
            let at = slots + 4 * row;
            let start = u32::try_from(*start as usize + body).map_err(|_| corrupt())?;
            data[at..at + 4].copy_from_slice(&start.to_le_bytes());
        }
        data[body..].copy_from_slice(block);
        Ok(Self {
            data: Arc::from(data),
            slots: slots as u32,
        })
    }

    /// Row `index`'s key and where its value is in `data`.
    fn row(&self, index: usize) -> (&[u8], std::ops::Range<usize>) {
        let length = |at: usize| {
            u32::from_le_bytes(self.data[at..at + 4].try_into().expect("four bytes")) as usize
        };
        let start = length(self.slots as usize + 4 * index);
        let key_end = start + 4 + length(start);
        let value_start = key_end + 4;
        (
            &self.data[start + 4..key_end],
            value_start..value_start + length(key_end),
        )
    }

    /// The first key, if the block has rows.
    #[cfg(test)]
    pub fn first_key(&self) -> Option<&[u8]> {
        let has_rows = self.data[..self.slots as usize]
            .iter()
            .any(|&slot| slot != 0);
        has_rows.then(|| self.row(0).0)
    }

    /// `key`'s stored row, if the block holds it.
    pub fn find(&self, key: &[u8]) -> Option<StoredRow> {
        self.locate(key)
            .map(|value| StoredRow::within(self.data.clone(), value))
    }

    /// The event time of `key`'s stored row, if the block holds it (without
    /// taking a reference to the block, as [`Self::find`] does: threads
    /// deciding a refresh's upserts share blocks).
    pub fn event_time(&self, key: &[u8]) -> Option<i64> {
        self.locate(key).map(|value| {
            i64::from_le_bytes(
                self.data[value.start..value.start + 8]
                    .try_into()
                    .expect("checked when parsed"),
            )
        })
    }

    /// Where `key`'s stored row is in `data`, if the block holds it.
    fn locate(&self, key: &[u8]) -> Option<std::ops::Range<usize>> {
        let mask = self.slots as usize - 1;
        let mut slot = slot_hash(key) & mask;
        loop {
            let row = self.data[slot];
            if row == 0 {
                return None;
            }
            let (row_key, value) = self.row(row as usize - 1);
            if row_key == key {
                return Some(value);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Bytes held, for the cache's weigher.
    pub fn size(&self) -> usize {
        self.data.len()
    }
}

/// `key`'s stored value in a base table of `layout`, handed to `f`.
pub fn find<T, R>(
    table: &T,
    layout: BaseLayout,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> Result<R>,
) -> Result<Option<R>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let reading = |e: redb::StorageError| Error::OnlineStore(format!("reading: {e}"));
    match layout {
        BaseLayout::PerKey => match table.get(key).map_err(reading)? {
            Some(stored) => f(stored.value()).map(Some),
            None => Ok(None),
        },
        BaseLayout::Blocks => {
            let Some(entry) = table.range::<&[u8]>(..=key).map_err(reading)?.next_back() else {
                return Ok(None);
            };
            let (_, block) = entry.map_err(reading)?;
            find_in_block(block.value(), key)?.map(f).transpose()
        }
    }
}

/// `key`'s value in `block`, if the block holds it.
pub fn find_in_block<'b>(block: &'b [u8], key: &[u8]) -> Result<Option<&'b [u8]>> {
    for row in rows(block) {
        let (row_key, value) = row?;
        match row_key.cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Ok(Some(value)),
            std::cmp::Ordering::Greater => break,
        }
    }
    Ok(None)
}

/// Merges the delta's rows (in key order, one per key) into a blocks base
/// table: delta rows replace base rows of the same key (the delta only
/// ever holds winners). A group of
/// blocks at a time is read, merged and written back, so memory stays
/// bounded whatever the table's size; groups no delta key falls into are
/// left alone. Returns the merged base's block index.
pub fn merge_delta(
    base: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    delta: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<BlockIndex> {
    let mut index = BlockIndex::default();
    const GROUP: usize = 1024;
    let merging = |e: redb::StorageError| Error::OnlineStore(format!("merging: {e}"));
    let mut delta_rows = delta.into_iter().peekable();
    // The first key of the next group's first block (None: the start).
    let mut from: Option<Vec<u8>> = None;
    loop {
        // Old blocks of this group, their rows, and where the next begins.
        let mut old_keys: Vec<Vec<u8>> = Vec::new();
        let mut rows_in_group: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut next: Option<Vec<u8>> = None;
        {
            let range = match &from {
                None => base.range::<&[u8]>(..),
                Some(key) => base.range::<&[u8]>(key.as_slice()..),
            }
            .map_err(merging)?;
            for entry in range {
                let (key, block) = entry.map_err(merging)?;
                if old_keys.len() == GROUP {
                    next = Some(key.value().to_vec());
                    break;
                }
                old_keys.push(key.value().to_vec());
                for row in rows(block.value()) {
                    let (key, value) = row?;
                    rows_in_group.push((key.to_vec(), value.to_vec()));
                }
            }
        }
        // A group no delta key falls into stays as it is.
        let touched = delta_rows
            .peek()
            .is_some_and(|(key, _)| next.as_deref().is_none_or(|n| key.as_slice() < n));
        if !touched {
            for key in &old_keys {
                index.push(key);
            }
            match next {
                Some(key) => {
                    from = Some(key);
                    continue;
                }
                None => return Ok(index),
            }
        }
        // The delta's rows below the next group, merged in.
        let mut builder = BlockBuilder::default();
        let mut blocks = Vec::new();
        let mut base_rows = rows_in_group.into_iter().peekable();
        loop {
            let delta_key = delta_rows
                .peek()
                .map(|(key, _)| key)
                .filter(|key| next.as_deref().is_none_or(|n| key.as_slice() < n));
            let take_delta = match (delta_key, base_rows.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(d), Some((b, _))) => d <= b,
            };
            let full = if take_delta {
                let (key, value) = delta_rows.next().expect("peeked a row");
                if base_rows.peek().is_some_and(|(b, _)| *b == key) {
                    base_rows.next(); // replaced
                }
                builder.push(&key, &value)
            } else {
                let (key, value) = base_rows.next().expect("peeked a row");
                builder.push(&key, &value)
            };
            blocks.extend(full);
        }
        blocks.extend(builder.finish());
        for key in &old_keys {
            base.remove(key.as_slice()).map_err(merging)?;
        }
        for (first_key, block) in &blocks {
            base.insert(first_key.as_slice(), block.as_slice())
                .map_err(merging)?;
            index.push(first_key);
        }
        match next {
            Some(key) => from = Some(key),
            None => return Ok(index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    #[test]
    fn blocks_hold_rows_in_order_and_close_when_full() {
        let mut builder = BlockBuilder::default();
        let mut blocks = Vec::new();
        for k in 0..150u32 {
            blocks.extend(builder.push(&k.to_be_bytes(), &[k as u8]));
        }
        blocks.extend(builder.finish());
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[1].0, 64u32.to_be_bytes());
        let all: Vec<(Vec<u8>, Vec<u8>)> = blocks
            .iter()
            .flat_map(|(_, block)| rows(block).map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec()))))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(all.len(), 150);
        assert_eq!(all[149], (149u32.to_be_bytes().to_vec(), vec![149]));
        // A large value has a block of its own.
        let mut builder = BlockBuilder::default();
        assert!(builder.push(b"a", &[1; 10]).is_none());
        let (first, block) = builder.push(b"b", &[0; PAGE_BYTES]).unwrap();
        assert_eq!(
            (first.as_slice(), rows(&block).count()),
            (b"a".as_slice(), 1)
        );
        let (first, block) = builder.push(b"c", &[2; 10]).unwrap();
        assert_eq!(
            (first.as_slice(), rows(&block).count()),
            (b"b".as_slice(), 1)
        );
        assert_eq!(builder.finish().unwrap().0, b"c");
    }

    #[test]
    fn a_block_and_its_key_fit_one_redb_page() {
        // Rows of the size a feature row has (a 64-bit key, an event time
        // and six numbers): a block closes before the page is full.
        let mut builder = BlockBuilder::default();
        let mut blocks = Vec::new();
        for k in 0..60_000u64 {
            blocks.extend(builder.push(&k.to_be_bytes(), &[7; 8 + 49]));
        }
        blocks.extend(builder.finish());
        for (first_key, block) in &blocks {
            assert!(ENTRY_OVERHEAD + first_key.len() + block.len() <= PAGE_BYTES);
        }
        // …and holds as many rows as fit.
        assert!(rows(&blocks[0].1).count() >= (PAGE_BYTES - 64) / (4 + 8 + 4 + 57));

        // Written to redb, a block fills one page: hardly a byte of the
        // leaves is wasted (a block just past a page wasted almost one).
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut base = write.open_table(BASE).unwrap();
            for (key, block) in &blocks {
                base.insert(key.as_slice(), block.as_slice()).unwrap();
            }
            let stats = redb::ReadableTableMetadata::stats(&base).unwrap();
            assert_eq!(stats.leaf_pages(), blocks.len() as u64);
            let wasted = stats.fragmented_bytes() / blocks.len() as u64;
            assert!(wasted < 512, "{wasted} bytes wasted per block");
        }
        write.commit().unwrap();
    }

    #[test]
    fn cached_blocks_find_their_rows() {
        let mut builder = BlockBuilder::default();
        for k in (0..100u32).step_by(2) {
            let mut value = (k as i64).to_le_bytes().to_vec();
            value.push(k as u8);
            builder.push(&k.to_be_bytes(), &value);
        }
        let (_, block) = builder.finish().unwrap();
        let cached = CachedBlock::parse(&block).unwrap();
        assert_eq!(cached.first_key(), Some(0u32.to_be_bytes().as_slice()));
        for k in 0..100u32 {
            let found = cached.find(&k.to_be_bytes());
            if k % 2 == 0 {
                let row = found.unwrap();
                assert_eq!(
                    (row.event_time(), row.values()),
                    (k as i64, [k as u8].as_slice())
                );
            } else {
                assert!(found.is_none());
            }
        }
        // A value too short to hold an event time is refused.
        let mut builder = BlockBuilder::default();
        builder.push(b"k", b"short");
        assert!(CachedBlock::parse(&builder.finish().unwrap().1).is_err());
    }

    #[test]
    fn truncated_blocks_are_errors() {
        let mut builder = BlockBuilder::default();
        builder.push(b"key", b"value");
        let (_, block) = builder.finish().unwrap();
        for len in [0, 2, 6, block.len() - 1] {
            assert!(rows(&block[..len]).any(|r| r.is_err()), "length {len}");
        }
    }

    const BASE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("base");

    /// A database whose blocks base holds `base_keys` (value 1), merged
    /// with a delta of `delta_keys` (value 2). Keys are big-endian u32s.
    fn merged(
        base_keys: impl Iterator<Item = u32>,
        delta_keys: impl Iterator<Item = u32>,
    ) -> (tempfile::TempDir, redb::Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut base = write.open_table(BASE).unwrap();
            let mut builder = BlockBuilder::default();
            let mut blocks = Vec::new();
            for k in base_keys {
                blocks.extend(builder.push(&k.to_be_bytes(), &[1]));
            }
            blocks.extend(builder.finish());
            for (key, block) in &blocks {
                base.insert(key.as_slice(), block.as_slice()).unwrap();
            }
            let delta = delta_keys
                .map(|k| (k.to_be_bytes().to_vec(), vec![2u8]))
                .collect();
            // The index it returns names the blocks the base now has.
            let index = merge_delta(&mut base, delta).unwrap();
            let first_keys: Vec<Vec<u8>> = base
                .iter()
                .unwrap()
                .map(|entry| entry.unwrap().0.value().to_vec())
                .collect();
            assert_eq!(index.len(), first_keys.len());
            for (block, key) in first_keys.iter().enumerate() {
                assert_eq!(index.first_key(block), key.as_slice());
            }
        }
        write.commit().unwrap();
        (dir, db)
    }

    #[test]
    fn delta_merges_into_blocks_group_by_group() {
        // Base: even keys 10..200_010; delta: every third key from 0 (below
        // the base) to past its end.
        let (_dir, db) = merged((10..200_010u32).step_by(2), (0..210_000u32).step_by(3));
        let read = db.begin_read().unwrap();
        let base = read.open_table(BASE).unwrap();
        let get = |k: u32| find(&base, BaseLayout::Blocks, &k.to_be_bytes(), |v| Ok(v[0])).unwrap();
        for k in [
            0, 3, 9, 10, 12, 15, 16, 200_008, 200_010, 209_997, 1_000_000, 11, 13,
        ] {
            let expected = if k % 3 == 0 && k < 210_000 {
                Some(2)
            } else if k % 2 == 0 && (10..200_010).contains(&k) {
                Some(1)
            } else {
                None
            };
            assert_eq!(get(k), expected, "key {k}");
        }
        // Every block is in order and within the size limit.
        let mut previous: Option<Vec<u8>> = None;
        let mut total = 0;
        for entry in base.iter().unwrap() {
            let (first, block) = entry.unwrap();
            let keys: Vec<Vec<u8>> = rows(block.value()).map(|r| r.unwrap().0.to_vec()).collect();
            assert_eq!(keys[0], first.value());
            assert!(keys.len() <= BLOCK_ROWS);
            assert!(keys.windows(2).all(|w| w[0] < w[1]));
            if let Some(previous) = &previous {
                assert!(previous < &keys[0]);
            }
            previous = keys.last().cloned();
            total += keys.len();
        }
        let expected = (0..210_000u32)
            .filter(|k| k % 3 == 0 || (k % 2 == 0 && (10..200_010).contains(k)))
            .count();
        assert_eq!(total, expected);
    }

    #[test]
    fn a_sparse_delta_leaves_untouched_groups_alone() {
        // 200k keys: about three groups of blocks; the delta touches the
        // last group and adds a key past the end.
        let (_dir, db) = merged(0..200_000u32, [150_000u32, 150_001, 300_000].into_iter());
        let read = db.begin_read().unwrap();
        let base = read.open_table(BASE).unwrap();
        let get = |k: u32| find(&base, BaseLayout::Blocks, &k.to_be_bytes(), |v| Ok(v[0])).unwrap();
        assert_eq!(get(5), Some(1));
        assert_eq!(get(70_000), Some(1));
        assert_eq!(get(149_999), Some(1));
        assert_eq!(get(150_000), Some(2));
        assert_eq!(get(150_001), Some(2));
        assert_eq!(get(199_999), Some(1));
        assert_eq!(get(250_000), None);
        assert_eq!(get(300_000), Some(2));
        let total: usize = base
            .iter()
            .unwrap()
            .map(|e| rows(e.unwrap().1.value()).count())
            .sum();
        assert_eq!(total, 200_001);
    }
}

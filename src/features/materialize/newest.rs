//! The newest row per key among the rows a refresh computes: what the
//! online store receives.
//!
//! "Newest" is the greatest (event time, tie-breaker); rows with a NULL key
//! or event time never count (an AS OF read skips them too). A one-column
//! integer key, the common case, is held as a number: no key encoding,
//! hashing or byte comparison per row. Any other key is held encoded.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};

use super::integer_winners::{self, Entry, IntegerWinners};
use super::row_arena::{RowArena, RowPlace};
use crate::error::Result;
use crate::online::{GenerationRows, RowRef, RowUpdate, Upserts};
use crate::online::{KeyEncoder, RowEncoder};

type Map<K> = HashMap<K, Winner, ahash::RandomState>;

/// The row kept for a key: its order, and where its encoded values sit in
/// its partition's row arena.
///
/// Why an arena rather than a vector per row: a full refresh keeps 1M rows
/// per partition, each allocated on a partition's thread; merging them on
/// another thread then spent most of its time in the allocator freeing
/// them (cross-thread frees), and reading them meant a cache miss each.
///
/// Why 24 bytes: with its integer key a winner fills half a cache line, so
/// a probe of the winner table touches one line, not one and a half
/// ([`integer_winners`]).
#[derive(Debug, Clone, Copy)]
pub struct Winner {
    pub(super) event_time: i64,
    tie: i64,
    place: RowPlace,
}

impl Winner {
    /// What a winner table's empty slots hold: no row is ever there.
    pub(super) const EMPTY: Winner = Winner {
        event_time: 0,
        tie: 0,
        place: RowPlace::NOWHERE,
    };

    pub(super) fn is_empty(&self) -> bool {
        self.place == RowPlace::NOWHERE
    }

    /// A winner whose row is empty, at the start of its arena.
    #[cfg(test)]
    pub(super) fn of_empty_row_at(event_time: i64) -> Winner {
        Winner {
            event_time,
            tie: 0,
            place: RowPlace::new(0, 0).expect("an empty row fits"),
        }
    }

    fn loses_to(&self, event_time: i64, tie: i64) -> bool {
        (self.event_time, self.tie) <= (event_time, tie)
    }
}

pub struct NewestRows {
    keys: Keys,
    /// The kept rows' encoded values (where a newer row for a key goes:
    /// see [`RowArena::replace`]).
    rows: RowArena,
    /// How many keys the caller expects: the arena is sized for them at
    /// the first batch (growing 45 MB by doubling copies it all again).
    expected_keys: usize,
}

enum Keys {
    /// One integer key column (`key_type` is its type).
    Integer {
        map: IntegerWinners,
        key_type: DataType,
    },
    Encoded(Map<Vec<u8>>),
}

impl NewestRows {
    pub fn new(key_types: &[DataType], capacity: usize) -> Self {
        let map_capacity = capacity.min(1 << 24);
        let keys = match key_types {
            [key_type @ (DataType::Int16 | DataType::Int32 | DataType::Int64)] => Keys::Integer {
                map: IntegerWinners::with_capacity(map_capacity),
                key_type: key_type.clone(),
            },
            _ => Keys::Encoded(Map::with_capacity_and_hasher(
                map_capacity,
                Default::default(),
            )),
        };
        NewestRows {
            keys,
            rows: RowArena::new(),
            expected_keys: map_capacity,
        }
    }

    /// Offers every row of `batch` (the view's columns, in its declared
    /// types); `ties` holds each row's tie-breaker.
    pub fn offer_batch(
        &mut self,
        batch: &RecordBatch,
        key_indices: &[usize],
        ts_index: usize,
        ties: &Int64Array,
    ) -> Result<()> {
        // Event times as plain numbers: timestamps and dates reinterpret.
        let times = cast(batch.column(ts_index), &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        let encoder = RowEncoder::new(batch.columns());
        if self.rows.is_unallocated() {
            self.rows.reserve(self.expected_keys, encoder.size_hint());
        }
        let arena = &mut self.rows;
        match &mut self.keys {
            Keys::Integer { map, .. } => {
                let keys = cast(batch.column(key_indices[0]), &DataType::Int64)?;
                let keys = keys.as_primitive::<Int64Type>();
                let positions: Vec<u64> = keys.values().iter().map(|&k| map.position(k)).collect();
                for row in 0..batch.num_rows() {
                    if let Some(&ahead) = positions.get(row + integer_winners::PREFETCH_AHEAD) {
                        map.prefetch(ahead);
                    }
                    if keys.is_null(row) || times.is_null(row) {
                        continue;
                    }
                    let offered = Offered {
                        event_time: times.value(row),
                        tie: ties.value(row),
                        encoder: &encoder,
                        row,
                    };
                    match map.entry(keys.value(row), positions[row]) {
                        Entry::Kept(winner) => offered.replace(winner, arena)?,
                        Entry::Vacant(vacant) => vacant.insert(offered.new_winner(arena)?),
                    }
                }
            }
            Keys::Encoded(map) => {
                let mut key = Vec::new();
                'rows: for row in 0..batch.num_rows() {
                    if times.is_null(row) {
                        continue;
                    }
                    key.clear();
                    for &k in key_indices {
                        let column = batch.column(k);
                        if column.is_null(row) {
                            continue 'rows;
                        }
                        KeyEncoder::array_value(column.as_ref(), row, &mut key)?;
                    }
                    let (event_time, tie) = (times.value(row), ties.value(row));
                    let offered = Offered {
                        event_time,
                        tie,
                        encoder: &encoder,
                        row,
                    };
                    offered.offer(map, arena, key.as_slice())?;
                }
            }
        }
        Ok(())
    }

    /// The newest rows in encoded key order (redb inserts in key order
    /// touch each page once). Each partition sorts its own rows in its own
    /// task, so the sorting runs in parallel; [`SortedWinners::merge`]
    /// then only interleaves. The arena is rewritten in key order here
    /// too (its random reads run in parallel, the merge's are sequential)
    /// and loses the rows that lost.
    pub fn into_sorted(self) -> SortedWinners {
        let arena = self.rows;
        match self.keys {
            Keys::Integer { map, key_type } => {
                // Sorted as numbers whose order is the encoded keys' byte
                // order: no byte comparisons, no casts, and no encoding
                // until the merge.
                let width = match key_type {
                    DataType::Int16 => 2,
                    DataType::Int32 => 4,
                    _ => 8,
                };
                // Sorted where the table held them: no copy of a million
                // entries into fresh memory.
                let mut winners = map.into_entries();
                winners.sort_unstable_by_key(|slot| encoded_order(slot.key, width));
                let rows = arena.copy_in_order(&mut winners, |slot| &mut slot.winner.place);
                SortedWinners {
                    keys: SortedKeys::Integer { width, winners },
                    rows,
                }
            }
            Keys::Encoded(map) => {
                let mut winners: Vec<(Vec<u8>, Winner)> = map.into_iter().collect();
                winners.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let rows = arena.copy_in_order(&mut winners, |(_, winner)| &mut winner.place);
                SortedWinners {
                    keys: SortedKeys::Encoded(winners),
                    rows,
                }
            }
        }
    }
}

/// The byte order of an integer key's encoding (`width` little-endian
/// bytes) as a number: the bytes read most significant first.
fn encoded_order(key: i64, width: usize) -> u64 {
    let bits = 8 * width as u32;
    let low = if width == 8 {
        key as u64
    } else {
        key as u64 & ((1u64 << bits) - 1)
    };
    low.swap_bytes() >> (64 - bits)
}

/// One partition's newest rows, in encoded key order, with their arena.
pub struct SortedWinners {
    keys: SortedKeys,
    rows: RowArena,
}

enum SortedKeys {
    /// One integer key column of `width` bytes, in [`encoded_order`];
    /// encoded when merged (off the partitions' threads: a full refresh
    /// merges while it writes the online store).
    Integer {
        width: usize,
        winners: Vec<integer_winners::Slot>,
    },
    Encoded(Vec<(Vec<u8>, Winner)>),
}

impl SortedWinners {
    fn len(&self) -> usize {
        match &self.keys {
            SortedKeys::Integer { winners, .. } => winners.len(),
            SortedKeys::Encoded(winners) => winners.len(),
        }
    }

    /// Merges the partitions' runs lazily; a key in several keeps its
    /// newest row (tie-breakers compare across partitions).
    pub fn merge(runs: Vec<SortedWinners>) -> MergedWinners {
        // Runs of one view share their key's shape; anything else is
        // merged by encoded key, which is always correct.
        let integer_width = match runs.first().map(|run| &run.keys) {
            Some(SortedKeys::Integer { width, .. }) => Some(*width),
            _ => None,
        };
        let same_width = |run: &SortedWinners| matches!(run.keys, SortedKeys::Integer { width, .. } if Some(width) == integer_width);
        let mut arenas = Vec::with_capacity(runs.len());
        let most_rows = runs.iter().map(SortedWinners::len).sum();
        let keys = if let Some(width) = integer_width
            && runs.iter().all(same_width)
        {
            let mut key_runs = Vec::with_capacity(runs.len());
            for (index, run) in runs.into_iter().enumerate() {
                if let SortedKeys::Integer { winners, .. } = run.keys {
                    // Merged by (order, key): the key breaks no tie, it
                    // travels along.
                    let by_order = winners
                        .into_iter()
                        .map(move |slot| ((encoded_order(slot.key, width), slot.key), slot.winner));
                    key_runs.push(Box::new(tagged(by_order, index)) as Run<(u64, i64)>);
                }
                arenas.push(run.rows);
            }
            MergedKeys::Integer {
                width,
                winners: merge_runs(key_runs),
            }
        } else {
            let mut key_runs = Vec::with_capacity(runs.len());
            for (index, run) in runs.into_iter().enumerate() {
                let encoded = run.keys.into_encoded().into_iter();
                key_runs.push(Box::new(tagged(encoded, index)) as Run<Vec<u8>>);
                arenas.push(run.rows);
            }
            MergedKeys::Encoded(merge_runs(key_runs))
        };
        MergedWinners {
            keys,
            arenas,
            key: Vec::new(),
            most_rows,
        }
    }
}

impl SortedKeys {
    fn into_encoded(self) -> Vec<(Vec<u8>, Winner)> {
        match self {
            SortedKeys::Integer { width, winners } => winners
                .into_iter()
                .map(|slot| (KeyEncoder::integer(slot.key, width), slot.winner))
                .collect(),
            SortedKeys::Encoded(winners) => winners,
        }
    }
}

/// Run `index`'s winners, each tagged with the run (whose arena holds its
/// row) as the merge reads it: no separate pass over a million entries.
fn tagged<K>(
    winners: impl Iterator<Item = (K, Winner)>,
    index: usize,
) -> impl Iterator<Item = Tagged<K>> {
    let run = u32::try_from(index).expect("fewer than 2^32 partitions");
    winners.map(move |(key, winner)| (key, winner, run))
}

/// A key, its winner, and which run's arena holds the winner's row.
type Tagged<K> = (K, Winner, u32);

type Run<K> = Box<dyn Iterator<Item = Tagged<K>> + Send>;

/// Sorted runs merged pairwise, lazily.
fn merge_runs<K: Ord + Send + 'static>(mut runs: Vec<Run<K>>) -> Run<K> {
    while runs.len() > 1 {
        let mut next: Vec<Run<K>> = Vec::with_capacity(runs.len().div_ceil(2));
        let mut pairs = runs.into_iter();
        while let Some(a) = pairs.next() {
            next.push(match pairs.next() {
                Some(b) => Box::new(MergeTwo {
                    a: a.peekable(),
                    b: b.peekable(),
                }),
                None => a,
            });
        }
        runs = next;
    }
    runs.pop().unwrap_or_else(|| Box::new(std::iter::empty()))
}

enum MergedKeys {
    Integer {
        width: usize,
        winners: Run<(u64, i64)>,
    },
    Encoded(Run<Vec<u8>>),
}

/// The newest row per key of every partition, in key order, merged as it
/// is read: a full refresh streams it into the online store's writer
/// instead of building a merged copy of a million rows first. Rows are
/// lent ([`GenerationRows`]), not allocated one by one.
pub struct MergedWinners {
    keys: MergedKeys,
    arenas: Vec<RowArena>,
    /// The current row's encoded key.
    key: Vec<u8>,
    /// The runs' rows: at least the merged rows (keys in several runs
    /// come out once).
    most_rows: usize,
}

impl MergedWinners {
    /// The merged rows as upserts, produced as they are taken (by the
    /// online store, on a thread of its own while others decide them).
    pub fn into_upserts(mut self) -> Upserts {
        let most = self.most_rows;
        let rows = std::iter::from_fn(move || {
            self.next_row()
                .map(|row| RowUpdate::new(row.key.to_vec(), row.event_time, row.row))
        });
        Upserts::new(rows, most)
    }

    #[cfg(test)]
    fn into_updates(self) -> Vec<RowUpdate> {
        self.into_upserts().collect()
    }
}

impl GenerationRows for MergedWinners {
    fn next_row(&mut self) -> Option<RowRef<'_>> {
        let (winner, run) = match &mut self.keys {
            MergedKeys::Integer { width, winners } => {
                let ((_, key), winner, run) = winners.next()?;
                self.key.clear();
                KeyEncoder::integer_into(key, *width, &mut self.key);
                (winner, run)
            }
            MergedKeys::Encoded(winners) => {
                let (key, winner, run) = winners.next()?;
                self.key = key;
                (winner, run)
            }
        };
        Some(RowRef {
            key: &self.key,
            event_time: winner.event_time,
            row: self.arenas[run as usize].row(winner.place),
        })
    }
}

/// Two runs in key order interleaved; of a key in both, the newer row.
struct MergeTwo<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<K, A, B> Iterator for MergeTwo<A, B>
where
    K: Ord,
    A: Iterator<Item = Tagged<K>>,
    B: Iterator<Item = Tagged<K>>,
{
    type Item = Tagged<K>;

    fn next(&mut self) -> Option<Self::Item> {
        let order = match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return None,
        };
        match order {
            std::cmp::Ordering::Less => self.a.next(),
            std::cmp::Ordering::Greater => self.b.next(),
            std::cmp::Ordering::Equal => {
                let (x, y) = (self.a.next()?, self.b.next()?);
                Some(if x.1.loses_to(y.1.event_time, y.1.tie) {
                    y
                } else {
                    x
                })
            }
        }
    }
}

/// One row of a batch, offered for its key.
struct Offered<'a> {
    event_time: i64,
    tie: i64,
    encoder: &'a RowEncoder<'a>,
    row: usize,
}

impl Offered<'_> {
    /// Keeps the row for `key` if it is newer than the one kept.
    fn offer<K, Q>(&self, map: &mut Map<K>, arena: &mut RowArena, key: &Q) -> Result<()>
    where
        K: Borrow<Q> + Hash + Eq,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match map.get_mut(key) {
            Some(winner) => self.replace(winner, arena),
            None => {
                map.insert(key.to_owned(), self.new_winner(arena)?);
                Ok(())
            }
        }
    }

    /// Takes `winner`'s place if the row is newer.
    fn replace(&self, winner: &mut Winner, arena: &mut RowArena) -> Result<()> {
        if !winner.loses_to(self.event_time, self.tie) {
            return Ok(());
        }
        let newer = arena.push(self.encoder, self.row)?;
        winner.place = arena.replace(winner.place, newer);
        winner.event_time = self.event_time;
        winner.tie = self.tie;
        Ok(())
    }

    /// The winner of a key seen for the first time.
    fn new_winner(&self, arena: &mut RowArena) -> Result<Winner> {
        Ok(Winner {
            event_time: self.event_time,
            tie: self.tie,
            place: arena.push(self.encoder, self.row)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_order_is_the_encoded_byte_order() {
        for width in [2usize, 4, 8] {
            let bits = 8 * width as u32;
            let (min, max) = (i64::MIN >> (64 - bits), i64::MAX >> (64 - bits));
            let mut keys = vec![
                0,
                1,
                -1,
                255,
                256,
                257,
                -256,
                65_535,
                min,
                max,
                min + 1,
                max - 1,
            ];
            keys.retain(|k| (min..=max).contains(k));
            let mut by_order = keys.clone();
            by_order.sort_by_key(|&k| encoded_order(k, width));
            let mut by_bytes = keys.clone();
            by_bytes.sort_by_key(|&k| KeyEncoder::integer(k, width));
            assert_eq!(by_order, by_bytes, "width {width}");
        }
    }

    /// A run of (key, event time, tie, one-byte row).
    fn run(entries: Vec<(u8, i64, i64, u8)>) -> SortedWinners {
        let rows = RowArena::of(entries.iter().map(|e| e.3).collect());
        let winners = entries
            .into_iter()
            .enumerate()
            .map(|(start, (key, event_time, tie, _))| {
                let winner = Winner {
                    event_time,
                    tie,
                    place: RowPlace::new(start, 1).unwrap(),
                };
                (vec![key], winner)
            })
            .collect();
        SortedWinners {
            keys: SortedKeys::Encoded(winners),
            rows,
        }
    }

    #[test]
    fn merged_runs_keep_the_newest_row_per_key_in_key_order() {
        let a = run(vec![(1, 10, 1, b'a'), (3, 5, 2, b'a'), (7, 1, 3, b'a')]);
        let b = run(vec![(2, 1, 4, b'b'), (3, 5, 9, b'b'), (7, 0, 8, b'b')]);
        let c = run(vec![(3, 4, 20, b'c'), (9, 1, 21, b'c')]);
        let merged = SortedWinners::merge(vec![a, b, c]).into_updates();
        let got: Vec<(u8, u8)> = merged.iter().map(|u| (u.key[0], u.values()[0])).collect();
        assert_eq!(
            got,
            vec![(1, b'a'), (2, b'b'), (3, b'b'), (7, b'a'), (9, b'c')]
        );
    }

    #[test]
    fn newer_rows_of_any_length_replace_kept_ones() {
        use datafusion::arrow::array::{ArrayRef, StringArray};
        use std::sync::Arc;
        // Key 1's rows get shorter (replaced in place), then longer
        // (appended); key 2's row sits between them in the arena.
        let batch = |keys: Vec<i64>, times: Vec<i64>, texts: Vec<&str>| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(Int64Array::from(times)),
                Arc::new(StringArray::from(texts)),
            ];
            RecordBatch::try_from_iter(["k", "t", "s"].into_iter().zip(columns)).unwrap()
        };
        let mut newest = NewestRows::new(&[DataType::Int64], 0);
        let offers = [
            batch(vec![1, 2], vec![1, 1], vec!["aaaa", "x"]),
            batch(vec![1], vec![2], vec!["bb"]),
            batch(vec![1, 2], vec![0, 0], vec!["old", "old"]),
            batch(vec![1], vec![3], vec!["cccccc"]),
        ];
        for (tie, b) in offers.iter().enumerate() {
            let ties = Int64Array::from(vec![tie as i64; b.num_rows()]);
            newest.offer_batch(b, &[0], 1, &ties).unwrap();
        }
        let merged = SortedWinners::merge(vec![newest.into_sorted()]).into_updates();
        let expected = |b: RecordBatch| {
            let mut out = Vec::new();
            RowEncoder::new(b.columns()).encode(0, &mut out).unwrap();
            out
        };
        let rows: Vec<(Vec<u8>, i64, Vec<u8>)> = merged
            .into_iter()
            .map(|u| (u.key.clone(), u.event_time(), u.values().to_vec()))
            .collect();
        let mut want = vec![
            (
                KeyEncoder::integer(1, 8),
                3,
                expected(batch(vec![1], vec![3], vec!["cccccc"])),
            ),
            (
                KeyEncoder::integer(2, 8),
                1,
                expected(batch(vec![2], vec![1], vec!["x"])),
            ),
        ];
        want.sort();
        assert_eq!(rows, want);
    }

    #[test]
    fn integer_runs_merge_by_encoded_key() {
        use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch};
        use std::sync::Arc;
        // Two partitions of (key int, time, tie): key 5 in both (the second
        // is newer), negative and positive keys interleaved.
        let partition = |keys: Vec<i32>, times: Vec<i32>, ties: Vec<i64>| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int32Array::from(keys)),
                Arc::new(Int32Array::from(times)),
            ];
            let batch =
                RecordBatch::try_from_iter([("k", columns[0].clone()), ("t", columns[1].clone())])
                    .unwrap();
            let mut newest = NewestRows::new(&[DataType::Int32], 4);
            newest
                .offer_batch(&batch, &[0], 1, &Int64Array::from(ties))
                .unwrap();
            newest.into_sorted()
        };
        let a = partition(vec![5, -1, 300], vec![1, 1, 1], vec![0, 1, 2]);
        let b = partition(vec![5, 2], vec![2, 1], vec![3, 4]);
        let merged = SortedWinners::merge(vec![a, b]).into_updates();
        let mut expected: Vec<Vec<u8>> = [-1, 2, 5, 300]
            .into_iter()
            .map(|k| KeyEncoder::integer(k, 4))
            .collect();
        expected.sort();
        let keys: Vec<Vec<u8>> = merged.iter().map(|u| u.key.clone()).collect();
        assert_eq!(keys, expected);
        let five = merged
            .iter()
            .find(|u| u.key == KeyEncoder::integer(5, 4))
            .unwrap();
        assert_eq!(five.event_time(), 2);
    }
}

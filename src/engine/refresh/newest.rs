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

use crate::error::Result;
use crate::online::RowUpdate;
use crate::online::codec::{self, RowEncoder};

type Map<K> = HashMap<K, Winner, ahash::RandomState>;

pub struct Winner {
    event_time: i64,
    tie: i64,
    /// The row's values, encoded.
    row: Vec<u8>,
}

impl Winner {
    fn loses_to(&self, event_time: i64, tie: i64) -> bool {
        (self.event_time, self.tie) <= (event_time, tie)
    }
}

pub enum NewestRows {
    /// One integer key column (`key_type` is its type).
    Integer {
        map: Map<i64>,
        key_type: DataType,
    },
    Encoded(Map<Vec<u8>>),
}

impl NewestRows {
    pub fn new(key_types: &[DataType], capacity: usize) -> Self {
        let map_capacity = capacity.min(1 << 24);
        match key_types {
            [key_type @ (DataType::Int16 | DataType::Int32 | DataType::Int64)] => {
                NewestRows::Integer {
                    map: Map::with_capacity_and_hasher(map_capacity, Default::default()),
                    key_type: key_type.clone(),
                }
            }
            _ => NewestRows::Encoded(Map::with_capacity_and_hasher(
                map_capacity,
                Default::default(),
            )),
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
        let rows = RowEncoder::new(batch.columns());
        match self {
            NewestRows::Integer { map, .. } => {
                let keys = cast(batch.column(key_indices[0]), &DataType::Int64)?;
                let keys = keys.as_primitive::<Int64Type>();
                for row in 0..batch.num_rows() {
                    if keys.is_null(row) || times.is_null(row) {
                        continue;
                    }
                    let (event_time, tie) = (times.value(row), ties.value(row));
                    offer(map, &keys.value(row), event_time, tie, &rows, row)?;
                }
            }
            NewestRows::Encoded(map) => {
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
                        codec::encode_array_value(column.as_ref(), row, &mut key)?;
                    }
                    let (event_time, tie) = (times.value(row), ties.value(row));
                    offer(map, key.as_slice(), event_time, tie, &rows, row)?;
                }
            }
        }
        Ok(())
    }

    /// The newest rows in encoded key order (redb inserts in key order
    /// touch each page once). Each partition sorts its own rows in its own
    /// task, so the sorting runs in parallel; [`SortedWinners::merge`]
    /// then only interleaves.
    pub fn into_sorted(self) -> SortedWinners {
        match self {
            NewestRows::Integer { map, key_type } => {
                // Sorted as numbers whose order is the encoded keys' byte
                // order: no byte comparisons, no casts, and no encoding
                // until the merge.
                let width = match key_type {
                    DataType::Int16 => 2,
                    DataType::Int32 => 4,
                    _ => 8,
                };
                let mut winners: Vec<((u64, i64), Winner)> = map
                    .into_iter()
                    .map(|(key, winner)| ((encoded_order(key, width), key), winner))
                    .collect();
                winners.sort_unstable_by_key(|(order, _)| *order);
                SortedWinners::Integer { width, winners }
            }
            NewestRows::Encoded(map) => {
                let mut winners: Vec<(Vec<u8>, Winner)> = map.into_iter().collect();
                winners.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                SortedWinners::Encoded(winners)
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

/// One partition's newest rows, in encoded key order.
pub enum SortedWinners {
    /// One integer key column of `width` bytes: each key with its
    /// [`encoded_order`], encoded when merged (off the partitions'
    /// threads: a full refresh merges while it writes the online store).
    Integer {
        width: usize,
        winners: Vec<((u64, i64), Winner)>,
    },
    Encoded(Vec<(Vec<u8>, Winner)>),
}

impl SortedWinners {
    /// Merges the partitions' runs lazily; a key in several keeps its
    /// newest row (tie-breakers compare across partitions).
    pub fn merge(runs: Vec<SortedWinners>) -> MergedWinners {
        let to_update = |(key, winner): (Vec<u8>, Winner)| RowUpdate {
            key,
            event_time: winner.event_time,
            row: winner.row,
        };
        // Runs of one view share their key's shape; anything else is
        // merged by encoded key, which is always correct.
        let integer_width = match runs.first() {
            Some(SortedWinners::Integer { width, .. }) => Some(*width),
            _ => None,
        };
        if let Some(width) = integer_width
            && runs
                .iter()
                .all(|run| matches!(run, SortedWinners::Integer { width: w, .. } if *w == width))
        {
            let runs = runs
                .into_iter()
                .filter_map(|run| match run {
                    SortedWinners::Integer { winners, .. } => Some(winners),
                    SortedWinners::Encoded(_) => None,
                })
                .collect();
            return MergedWinners(Box::new(
                merge_runs(runs)
                    .map(move |((_, key), winner)| (codec::encode_integer_key(key, width), winner))
                    .map(to_update),
            ));
        }
        let runs = runs.into_iter().map(SortedWinners::into_encoded).collect();
        MergedWinners(Box::new(merge_runs(runs).map(to_update)))
    }

    fn into_encoded(self) -> Vec<(Vec<u8>, Winner)> {
        match self {
            SortedWinners::Integer { width, winners } => winners
                .into_iter()
                .map(|((_, key), winner)| (codec::encode_integer_key(key, width), winner))
                .collect(),
            SortedWinners::Encoded(winners) => winners,
        }
    }
}

type Run<K> = Box<dyn Iterator<Item = (K, Winner)> + Send>;

/// Sorted runs merged pairwise, lazily.
fn merge_runs<K: Ord + Send + 'static>(runs: Vec<Vec<(K, Winner)>>) -> Run<K> {
    let mut runs: Vec<Run<K>> = runs
        .into_iter()
        .map(|run| Box::new(run.into_iter()) as Run<K>)
        .collect();
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

/// The newest row per key of every partition, in key order, merged as it
/// is read: a full refresh streams it into the online store's writer
/// instead of building a merged copy of a million rows first.
pub struct MergedWinners(Box<dyn Iterator<Item = RowUpdate> + Send>);

impl MergedWinners {
    pub fn into_updates(self) -> Vec<RowUpdate> {
        self.collect()
    }
}

impl Iterator for MergedWinners {
    type Item = RowUpdate;

    fn next(&mut self) -> Option<RowUpdate> {
        self.0.next()
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
    A: Iterator<Item = (K, Winner)>,
    B: Iterator<Item = (K, Winner)>,
{
    type Item = (K, Winner);

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

/// Keeps row `row` of `batch` for `key` if it is newer than the one kept.
fn offer<K, Q>(
    map: &mut Map<K>,
    key: &Q,
    event_time: i64,
    tie: i64,
    rows: &RowEncoder<'_>,
    row: usize,
) -> Result<()>
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    match map.get_mut(key) {
        Some(winner) if !winner.loses_to(event_time, tie) => {}
        Some(winner) => {
            winner.event_time = event_time;
            winner.tie = tie;
            winner.row.clear();
            rows.encode(row, &mut winner.row)?;
        }
        None => {
            // Growing a vector value by value reallocates it several times.
            let mut encoded = Vec::with_capacity(rows.size_hint());
            rows.encode(row, &mut encoded)?;
            map.insert(
                key.to_owned(),
                Winner {
                    event_time,
                    tie,
                    row: encoded,
                },
            );
        }
    }
    Ok(())
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
            by_bytes.sort_by_key(|&k| codec::encode_integer_key(k, width));
            assert_eq!(by_order, by_bytes, "width {width}");
        }
    }

    fn winner(event_time: i64, tie: i64, row: u8) -> Winner {
        Winner {
            event_time,
            tie,
            row: vec![row],
        }
    }

    #[test]
    fn merged_runs_keep_the_newest_row_per_key_in_key_order() {
        let run = |entries: Vec<(u8, Winner)>| {
            SortedWinners::Encoded(entries.into_iter().map(|(k, w)| (vec![k], w)).collect())
        };
        let a = run(vec![
            (1, winner(10, 1, b'a')),
            (3, winner(5, 2, b'a')),
            (7, winner(1, 3, b'a')),
        ]);
        let b = run(vec![
            (2, winner(1, 4, b'b')),
            (3, winner(5, 9, b'b')),
            (7, winner(0, 8, b'b')),
        ]);
        let c = run(vec![(3, winner(4, 20, b'c')), (9, winner(1, 21, b'c'))]);
        let merged = SortedWinners::merge(vec![a, b, c]).into_updates();
        let got: Vec<(u8, u8)> = merged.iter().map(|u| (u.key[0], u.row[0])).collect();
        assert_eq!(
            got,
            vec![(1, b'a'), (2, b'b'), (3, b'b'), (7, b'a'), (9, b'c')]
        );
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
            .map(|k| codec::encode_integer_key(k, 4))
            .collect();
        expected.sort();
        let keys: Vec<Vec<u8>> = merged.iter().map(|u| u.key.clone()).collect();
        assert_eq!(keys, expected);
        let five = merged
            .iter()
            .find(|u| u.key == codec::encode_integer_key(5, 4))
            .unwrap();
        assert_eq!(five.event_time, 2);
    }
}

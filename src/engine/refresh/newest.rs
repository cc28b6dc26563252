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
use datafusion::common::ScalarValue;

use crate::error::Result;
use crate::online::{RowUpdate, codec};

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

    pub fn len(&self) -> usize {
        match self {
            NewestRows::Integer { map, .. } => map.len(),
            NewestRows::Encoded(map) => map.len(),
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
        match self {
            NewestRows::Integer { map, .. } => {
                let keys = cast(batch.column(key_indices[0]), &DataType::Int64)?;
                let keys = keys.as_primitive::<Int64Type>();
                for row in 0..batch.num_rows() {
                    if keys.is_null(row) || times.is_null(row) {
                        continue;
                    }
                    let (event_time, tie) = (times.value(row), ties.value(row));
                    offer(map, &keys.value(row), event_time, tie, batch, row)?;
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
                    offer(map, key.as_slice(), event_time, tie, batch, row)?;
                }
            }
        }
        Ok(())
    }

    /// Merges another partition's newest rows (tie-breakers compare across
    /// partitions).
    pub fn merge(&mut self, other: NewestRows) {
        fn merge_maps<K: Hash + Eq>(into: &mut Map<K>, from: Map<K>) {
            for (key, winner) in from {
                match into.get_mut(&key) {
                    Some(current) if !current.loses_to(winner.event_time, winner.tie) => {}
                    Some(current) => *current = winner,
                    None => {
                        into.insert(key, winner);
                    }
                }
            }
        }
        if other.len() > self.len() {
            let smaller = std::mem::replace(self, other);
            return self.merge(smaller);
        }
        match (self, other) {
            (NewestRows::Integer { map, .. }, NewestRows::Integer { map: from, .. }) => {
                merge_maps(map, from)
            }
            (NewestRows::Encoded(map), NewestRows::Encoded(from)) => merge_maps(map, from),
            _ => unreachable!("partitions of one refresh hold keys alike"),
        }
    }

    /// The newest rows as online store updates, in encoded key order
    /// (redb inserts in key order touch each page once).
    pub fn into_updates(self) -> Result<Vec<RowUpdate>> {
        let mut updates: Vec<RowUpdate> = match self {
            NewestRows::Integer { map, key_type } => map
                .into_iter()
                .map(|(key, winner)| {
                    let mut encoded = Vec::with_capacity(9);
                    let key = ScalarValue::Int64(Some(key)).cast_to(&key_type)?;
                    codec::encode_scalar(&key, &mut encoded)?;
                    Ok(RowUpdate {
                        key: encoded,
                        event_time: winner.event_time,
                        row: winner.row,
                    })
                })
                .collect::<Result<_>>()?,
            NewestRows::Encoded(map) => map
                .into_iter()
                .map(|(key, winner)| RowUpdate {
                    key,
                    event_time: winner.event_time,
                    row: winner.row,
                })
                .collect(),
        };
        updates.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(updates)
    }
}

/// Keeps row `row` of `batch` for `key` if it is newer than the one kept.
fn offer<K, Q>(
    map: &mut Map<K>,
    key: &Q,
    event_time: i64,
    tie: i64,
    batch: &RecordBatch,
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
            encode_row(batch, row, &mut winner.row)?;
        }
        None => {
            let mut encoded = Vec::new();
            encode_row(batch, row, &mut encoded)?;
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

fn encode_row(batch: &RecordBatch, row: usize, out: &mut Vec<u8>) -> Result<()> {
    for column in batch.columns() {
        codec::encode_array_value(column.as_ref(), row, out)?;
    }
    Ok(())
}

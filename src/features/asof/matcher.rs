//! Finding each spine row's match.
//!
//! The spine is indexed, the right side streamed past it: spine rows are
//! grouped by key and sorted by time in each group ([`SpineIndex`]). A right
//! row with key k and time ts can only be the match of the spine rows of
//! group k at or after ts (backward joins): it is recorded as a
//! [`Candidate`] at the first such position, found by binary search, if it
//! beats the one already there. Once every right row has been seen, a sweep
//! through each group carries the best candidate forward (backward in
//! time, for forward joins), so each spine row ends up with the best right
//! row at or before its time. Then the bounds (tolerance, TTL) are checked.
//!
//! Why this way round: training spines are usually much smaller than
//! feature histories, so the index is small (cache-friendly), the right side
//! never needs sorting and is consumed as it streams. Workers split the
//! groups between them ([`Share`]); each right row is routed to the worker
//! owning its group ([`SpineIndex::route`]).
//! Work is O(N log N + M log(N/K)) for N spine rows, M right rows, K keys.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, Result as DFResult};

use super::logical::Direction;

/// No right row (an empty candidate slot, or no match).
pub const NO_ROW: u64 = u64::MAX;

/// The place of a right row: the reader (right partition) that kept it,
/// the batch among the reader's, and the row in the batch.
pub fn location(reader: usize, batch: usize, row: usize) -> u64 {
    ((reader as u64) << 56) | ((batch as u64) << 32) | row as u64
}

pub fn reader_batch_row(location: u64) -> (usize, usize, usize) {
    (
        (location >> 56) as usize,
        ((location >> 32) & 0xff_ffff) as usize,
        (location & 0xffff_ffff) as usize,
    )
}

/// Most batches one reader may keep (24 bits of a location).
pub const MAX_BATCHES_PER_READER: usize = 1 << 24;

/// Most right partitions (8 bits of a location).
pub const MAX_READERS: usize = 1 << 8;

/// A right row that may be some spine rows' match.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub time: i64,
    /// Greatest wins among equal times (the write order).
    pub tie: i64,
    pub row: u64,
}

impl Candidate {
    pub const NONE: Candidate = Candidate {
        time: 0,
        tie: 0,
        row: NO_ROW,
    };

    fn is_none(&self) -> bool {
        self.row == NO_ROW
    }

    /// Is `self` a better match than `other`?
    #[inline]
    fn beats(&self, other: &Candidate, backward: bool) -> bool {
        if other.is_none() {
            return !self.is_none();
        }
        if self.is_none() {
            return false;
        }
        if self.time != other.time {
            return (self.time > other.time) == backward;
        }
        self.tie > other.tie
    }
}

/// A spine position as a worker sees it: the spine row's time next to the
/// time of the best candidate so far, so that the binary search and the
/// comparison touch the same cache lines (16 bytes: a million positions
/// fit in the shared cache). The rest of the candidate is apart, in
/// [`Slots::rest`], read on equal times and written on a better match.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub time: i64,
    pub best_time: i64,
}

/// One worker's slots for its share of the positions.
pub struct Slots {
    search: Vec<Slot>,
    /// (tie, row) of each position's best candidate; row is [`NO_ROW`]
    /// while there is none.
    rest: Vec<(i64, u64)>,
}

impl Slots {
    /// Bytes per position.
    pub const BYTES_PER_POSITION: usize = size_of::<Slot>() + size_of::<(i64, u64)>();
}

/// The groups one worker matches: their positions are contiguous.
#[derive(Debug, Clone)]
pub struct Share {
    pub groups: std::ops::Range<u32>,
    first_position: usize,
    end_position: usize,
}

impl Share {
    pub fn positions(&self) -> std::ops::Range<usize> {
        self.first_position..self.end_position
    }
}

/// Maps key values to dense group numbers.
pub enum KeyMap {
    /// One integer key column, the common case: no encoding.
    Integer(HashMap<i64, u32>),
    /// Integer keys in a range not much larger than their number: the
    /// group is `table[key - min]` (u32::MAX for none), no hashing.
    Dense { min: i64, table: Vec<u32> },
    /// Any other keys, in Arrow's row format.
    Rows {
        converter: RowConverter,
        groups: HashMap<Box<[u8]>, u32>,
    },
}

/// The keys of one batch, ready for lookups.
pub enum BatchKeys {
    Integer(ArrayRef),
    Rows(Rows, Option<BooleanArray>),
}

impl KeyMap {
    pub fn new(key_types: &[DataType]) -> DFResult<Self> {
        if let [single] = key_types
            && single.is_integer()
            && *single != DataType::UInt64
        {
            return Ok(KeyMap::Integer(HashMap::default()));
        }
        let fields = key_types
            .iter()
            .map(|t| SortField::new(t.clone()))
            .collect();
        Ok(KeyMap::Rows {
            converter: RowConverter::new(fields)?,
            groups: HashMap::default(),
        })
    }

    /// Encodes key columns of one batch. Rows with a NULL in any key are
    /// marked so they never match.
    pub fn encode(&self, keys: &[ArrayRef]) -> DFResult<BatchKeys> {
        match self {
            KeyMap::Integer(_) | KeyMap::Dense { .. } => {
                Ok(BatchKeys::Integer(cast(&keys[0], &DataType::Int64)?))
            }
            KeyMap::Rows { converter, .. } => {
                let rows = converter.convert_columns(keys)?;
                let valid = if keys.iter().any(|k| k.null_count() > 0) {
                    let len = keys.first().map(|k| k.len()).unwrap_or(0);
                    Some(BooleanArray::from_iter(
                        (0..len).map(|i| Some(keys.iter().all(|k| k.is_valid(i)))),
                    ))
                } else {
                    None
                };
                Ok(BatchKeys::Rows(rows, valid))
            }
        }
    }

    /// The group of row `i`, creating it if new. `None` for NULL keys.
    fn insert(&mut self, keys: &BatchKeys, i: usize) -> Option<u32> {
        match (self, keys) {
            (KeyMap::Integer(map), BatchKeys::Integer(array)) => {
                if array.is_null(i) {
                    return None;
                }
                let value = array.as_primitive::<Int64Type>().value(i);
                let next = map.len() as u32;
                Some(*map.entry(value).or_insert(next))
            }
            (KeyMap::Rows { groups, .. }, BatchKeys::Rows(rows, valid)) => {
                if valid.as_ref().is_some_and(|v| !v.value(i)) {
                    return None;
                }
                let row = rows.row(i);
                if let Some(group) = groups.get(row.as_ref()) {
                    return Some(*group);
                }
                let next = groups.len() as u32;
                groups.insert(row.as_ref().into(), next);
                Some(next)
            }
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            KeyMap::Integer(map) => map.len(),
            KeyMap::Dense { table, .. } => table.iter().filter(|g| **g != u32::MAX).count(),
            KeyMap::Rows { groups, .. } => groups.len(),
        }
    }

    /// Switches integer keys to a direct table when their range allows.
    fn densify(self) -> KeyMap {
        let KeyMap::Integer(map) = self else {
            return self;
        };
        let (Some(&min), Some(&max)) = (map.keys().min(), map.keys().max()) else {
            return KeyMap::Integer(map);
        };
        let span = (max as i128 - min as i128 + 1) as u128;
        if span > (4 * map.len() as u128).max(1 << 16) || span > 1 << 26 {
            return KeyMap::Integer(map);
        }
        let mut table = vec![u32::MAX; span as usize];
        for (&key, &group) in &map {
            table[(key - min) as usize] = group;
        }
        KeyMap::Dense { min, table }
    }

    /// The group of integer key `key`, if the spine has it.
    #[inline]
    fn group_of(&self, key: i64) -> Option<u32> {
        match self {
            KeyMap::Integer(map) => map.get(&key).copied(),
            KeyMap::Dense { min, table } => {
                let index = key.checked_sub(*min)?;
                match table.get(usize::try_from(index).ok()?) {
                    Some(&g) if g != u32::MAX => Some(g),
                    _ => None,
                }
            }
            KeyMap::Rows { .. } => None,
        }
    }
}

/// One batch of spine rows, evaluated.
pub struct SpineBatch {
    pub keys: BatchKeys,
    /// As i64 (timestamps in their unit, dates in days).
    pub times: ArrayRef,
    /// Each bound as i64, same unit as the times.
    pub bounds: Vec<ArrayRef>,
    /// Rows that may match (the spine-side condition), if any.
    pub eligible: Option<BooleanArray>,
}

/// The spine grouped by key and sorted by time within each group.
pub struct SpineIndex {
    pub keys: KeyMap,
    /// Group g's positions are `offsets[g]..offsets[g + 1]`.
    offsets: Vec<u32>,
    /// Time at each position.
    times: Vec<i64>,
    /// Spine row (global number) at each position.
    rows: Vec<u32>,
    /// Position of each spine row (u32::MAX when it cannot match).
    positions: Vec<u32>,
    /// Bounds of each spine row, row-major (`bounds_per_row` each).
    bounds: Vec<i64>,
    bounds_per_row: usize,
    pub direction: Direction,
}

impl SpineIndex {
    pub fn build(
        mut keys: KeyMap,
        batches: &[SpineBatch],
        direction: Direction,
    ) -> DFResult<SpineIndex> {
        let total: usize = batches.iter().map(|b| b.times.len()).sum();
        if total >= u32::MAX as usize {
            return datafusion::common::exec_err!(
                "an AS OF join's spine may have at most {} rows",
                u32::MAX - 1
            );
        }
        let bounds_per_row = batches.first().map(|b| b.bounds.len()).unwrap_or(0);
        let mut group_of_row: Vec<u32> = Vec::with_capacity(total);
        let mut time_of_row: Vec<i64> = Vec::with_capacity(total);
        let mut bounds = Vec::with_capacity(total * bounds_per_row);
        for batch in batches {
            let times = batch.times.as_primitive::<Int64Type>();
            let bound_arrays: Vec<_> = batch
                .bounds
                .iter()
                .map(|b| b.as_primitive::<Int64Type>())
                .collect();
            for i in 0..times.len() {
                let eligible = times.is_valid(i)
                    && batch
                        .eligible
                        .as_ref()
                        .is_none_or(|e| e.is_valid(i) && e.value(i))
                    && bound_arrays.iter().all(|b| b.is_valid(i));
                let group = if eligible {
                    keys.insert(&batch.keys, i).unwrap_or(u32::MAX)
                } else {
                    u32::MAX
                };
                group_of_row.push(group);
                time_of_row.push(times.value(i));
                for b in &bound_arrays {
                    bounds.push(b.value(i));
                }
            }
        }
        // Counting sort by group, then sort each group by (time, row).
        let groups = keys.len();
        let mut offsets = vec![0u32; groups + 1];
        for &g in &group_of_row {
            if g != u32::MAX {
                offsets[g as usize + 1] += 1;
            }
        }
        for g in 0..groups {
            offsets[g + 1] += offsets[g];
        }
        let placed = offsets[groups] as usize;
        let mut next = offsets.clone();
        let mut sorted = vec![(0i64, 0u32); placed];
        for (row, &g) in group_of_row.iter().enumerate() {
            if g != u32::MAX {
                sorted[next[g as usize] as usize] = (time_of_row[row], row as u32);
                next[g as usize] += 1;
            }
        }
        for g in 0..groups {
            sorted[offsets[g] as usize..offsets[g + 1] as usize].sort_unstable();
        }
        let times: Vec<i64> = sorted.iter().map(|&(t, _)| t).collect();
        let rows: Vec<u32> = sorted.iter().map(|&(_, r)| r).collect();
        drop(sorted);
        let keys = keys.densify();
        let mut positions = vec![u32::MAX; total];
        for (position, &row) in rows.iter().enumerate() {
            positions[row as usize] = position as u32;
        }
        Ok(SpineIndex {
            keys,
            offsets,
            times,
            rows,
            positions,
            bounds,
            bounds_per_row,
            direction,
        })
    }

    /// A worker's slots: every position's time, no candidates yet.
    pub fn new_slots(&self, share: &Share) -> Slots {
        let times = &self.times[share.positions()];
        let empty = match self.direction {
            Direction::Backward { .. } => i64::MIN,
            Direction::Forward { .. } => i64::MAX,
        };
        Slots {
            search: times
                .iter()
                .map(|&time| Slot {
                    time,
                    best_time: empty,
                })
                .collect(),
            rest: vec![(0, NO_ROW); times.len()],
        }
    }

    /// Splits the groups into `workers` contiguous shares of about as many
    /// spine rows each.
    pub fn shares(&self, workers: usize) -> Vec<Share> {
        let groups = self.offsets.len() - 1;
        let total = self.times.len();
        let mut shares = Vec::with_capacity(workers);
        let mut first_group = 0;
        for w in 1..=workers {
            let target = total * w / workers;
            let mut last_group = first_group;
            while last_group < groups && (self.offsets[last_group] as usize) < target {
                last_group += 1;
            }
            if w == workers {
                last_group = groups;
            }
            shares.push(Share {
                groups: first_group as u32..last_group as u32,
                first_position: self.offsets[first_group] as usize,
                end_position: self.offsets[last_group] as usize,
            });
            first_group = last_group;
        }
        shares
    }

    /// Finds each right row's group and hands the rows to the shares
    /// owning their groups: per share, the rows (ascending) and their
    /// groups. Rows with a NULL or unknown key or a NULL time go nowhere.
    pub fn route(
        &self,
        shares: &[Share],
        keys: &BatchKeys,
        times: &ArrayRef,
    ) -> Vec<Vec<(u32, u32)>> {
        let times = times.as_primitive::<Int64Type>();
        let mut routed: Vec<Vec<(u32, u32)>> = vec![Vec::new(); shares.len()];
        let mut push = |i: usize, group: u32| {
            if times.is_null(i) {
                return;
            }
            // Few shares: a linear search beats anything cleverer.
            if let Some(share) = shares.iter().position(|s| s.groups.contains(&group)) {
                routed[share].push((i as u32, group));
            }
        };
        match (&self.keys, keys) {
            (KeyMap::Rows { .. }, BatchKeys::Integer(_)) => {}
            (_, BatchKeys::Integer(array)) => {
                let array = array.as_primitive::<Int64Type>();
                for (i, &value) in array.values().iter().enumerate() {
                    if array.is_valid(i)
                        && let Some(group) = self.keys.group_of(value)
                    {
                        push(i, group);
                    }
                }
            }
            (KeyMap::Rows { groups: map, .. }, BatchKeys::Rows(keys, valid)) => {
                for i in 0..keys.num_rows() {
                    if valid.as_ref().is_some_and(|v| !v.value(i)) {
                        continue;
                    }
                    if let Some(&g) = map.get(keys.row(i).as_ref()) {
                        push(i, g);
                    }
                }
            }
            _ => {}
        }
        routed
    }

    /// Offers the routed right rows `(row, group)` of one batch (times as
    /// i64, tie values) to a share's slots. `base` is the [`location`] of
    /// the batch's row 0.
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &self,
        share: &Share,
        slots: &mut Slots,
        routed: &[(u32, u32)],
        times: &ArrayRef,
        ties: Option<&ArrayRef>,
        arrival: i64,
        base: u64,
    ) {
        let times = times.as_primitive::<Int64Type>();
        let ties = ties.map(|t| t.as_primitive::<Int64Type>());
        let backward = matches!(self.direction, Direction::Backward { .. });
        let strict = matches!(
            self.direction,
            Direction::Backward { strict: true } | Direction::Forward { strict: true }
        );
        // Each row lands in a random group of slots far bigger than the
        // cache: the group a few rows ahead is fetched while this one is
        // matched, so the misses overlap.
        let first = share.first_position;
        let Slots { search, rest } = slots;
        let tie_of = |i: usize| match ties {
            Some(t) if t.is_valid(i) => t.value(i),
            Some(_) => i64::MIN,
            None => arrival + i as i64,
        };
        const AHEAD: usize = 24;
        const PREFETCH_SLOTS: usize = 16;
        let time_values = times.values();
        for (j, &(i, group)) in routed.iter().enumerate() {
            if let Some(&(_, ahead)) = routed.get(j + AHEAD) {
                let start = self.offsets[ahead as usize] as usize - first;
                let end = self.offsets[ahead as usize + 1] as usize - first;
                // Every line the binary search may read (small groups are
                // the common case; large ones get their first lines).
                let lines = &search[start..end.min(start + PREFETCH_SLOTS)];
                for slot in lines.iter().step_by(4) {
                    prefetch(slot);
                }
                if let Some(last) = lines.last() {
                    prefetch(last);
                }
            }
            let i = i as usize;
            let time = time_values[i];
            let start = self.offsets[group as usize] as usize - first;
            let end = self.offsets[group as usize + 1] as usize - first;
            let slice = &mut search[start..end];
            let position = match (backward, strict) {
                // The first spine row at or after `time` (after, strict).
                (true, false) => slice.partition_point(|s| s.time < time),
                (true, true) => slice.partition_point(|s| s.time <= time),
                // The last spine row at or before `time` (before, strict).
                (false, false) => match slice.partition_point(|s| s.time <= time) {
                    0 => continue,
                    p => p - 1,
                },
                (false, true) => match slice.partition_point(|s| s.time < time) {
                    0 => continue,
                    p => p - 1,
                },
            };
            if position >= slice.len() {
                continue;
            }
            // An empty slot's time loses to every time but the extreme
            // one, which then finds no row in `rest`.
            let slot = &mut slice[position];
            let better = if time != slot.best_time {
                (time > slot.best_time) == backward
            } else {
                let (best_tie, best_row) = rest[start + position];
                best_row == NO_ROW || tie_of(i) > best_tie
            };
            if better {
                slot.best_time = time;
                rest[start + position] = (tie_of(i), base + i as u64);
            }
        }
    }

    /// Takes the slots of every share, in order, and resolves each spine
    /// row's match: the location of its right row, or [`NO_ROW`].
    pub fn resolve(&self, shares: Vec<Slots>) -> Vec<u64> {
        let backward = matches!(self.direction, Direction::Backward { .. });
        let mut best: Vec<Candidate> = shares
            .into_iter()
            .flat_map(|slots| {
                slots
                    .search
                    .into_iter()
                    .zip(slots.rest)
                    .map(|(slot, (tie, row))| Candidate {
                        time: slot.best_time,
                        tie,
                        row,
                    })
            })
            .collect();
        best.resize(self.times.len(), Candidate::NONE);
        // Carry the best candidate along each group.
        for g in 0..self.offsets.len().saturating_sub(1) {
            let group = &mut best[self.offsets[g] as usize..self.offsets[g + 1] as usize];
            let mut carried = Candidate::NONE;
            let mut step = |slot: &mut Candidate| {
                if carried.beats(slot, backward) {
                    *slot = carried;
                } else {
                    carried = *slot;
                }
            };
            if backward {
                group.iter_mut().for_each(&mut step);
            } else {
                group.iter_mut().rev().for_each(&mut step);
            }
        }
        let mut matches = vec![NO_ROW; self.positions.len()];
        for (position, candidate) in best.iter().enumerate() {
            if candidate.is_none() {
                continue;
            }
            let row = self.rows[position] as usize;
            let bounds = &self.bounds[row * self.bounds_per_row..(row + 1) * self.bounds_per_row];
            let within = bounds.iter().all(|&bound| {
                if backward {
                    candidate.time >= bound
                } else {
                    candidate.time <= bound
                }
            });
            if within {
                matches[row] = candidate.row;
            }
        }
        matches
    }
}

/// Asks the CPU to bring `value`'s cache line in (a hint, no effect on
/// results).
#[inline(always)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetching is a hint; the address is a valid reference.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// An Arrow array of times or bounds as i64 (timestamps keep their unit,
/// dates become days or milliseconds).
pub fn as_i64(array: &ArrayRef) -> DFResult<ArrayRef> {
    let array = match array.data_type() {
        DataType::Timestamp(..) | DataType::Date64 => {
            let data = array.to_data();
            let data = data.into_builder().data_type(DataType::Int64).build()?;
            datafusion::arrow::array::make_array(data)
        }
        _ => cast(array, &DataType::Int64)?,
    };
    Ok(Arc::new(array) as ArrayRef)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn spine(keys: &[Option<i64>], times: &[i64], direction: Direction) -> SpineIndex {
        let map = KeyMap::new(&[DataType::Int64]).unwrap();
        let key_array: ArrayRef = Arc::new(Int64Array::from(keys.to_vec()));
        let batch = SpineBatch {
            keys: map.encode(&[key_array]).unwrap(),
            times: Arc::new(Int64Array::from(times.to_vec())),
            bounds: vec![],
            eligible: None,
        };
        SpineIndex::build(map, &[batch], direction).unwrap()
    }

    fn offer(index: &SpineIndex, keys: &[Option<i64>], times: &[i64]) -> Vec<u64> {
        let key_array: ArrayRef = Arc::new(Int64Array::from(keys.to_vec()));
        let batch_keys = index.keys.encode(&[key_array]).unwrap();
        // Two workers, to cover the split.
        let times: ArrayRef = Arc::new(Int64Array::from(times.to_vec()));
        let shares = index.shares(2);
        let slots = shares
            .iter()
            .zip(index.route(&shares, &batch_keys, &times))
            .map(|(share, routed)| {
                let mut slots = index.new_slots(share);
                index.offer(share, &mut slots, &routed, &times, None, 0, 0);
                slots
            })
            .collect();
        index.resolve(slots)
    }

    #[test]
    fn backward_finds_latest_at_or_before() {
        let index = spine(
            &[Some(1), Some(1), Some(2), None],
            &[10, 20, 10, 10],
            Direction::Backward { strict: false },
        );
        let matches = offer(
            &index,
            &[Some(1), Some(1), Some(2), Some(1)],
            &[5, 15, 11, 10],
        );
        // Row 0 (t=10) → right row 3 (time 10, inclusive); row 1 (t=20) →
        // right row 1 (15); row 2 (key 2, t=10) → nothing (11 > 10); NULL
        // key → nothing.
        assert_eq!(matches, vec![3, 1, NO_ROW, NO_ROW]);
    }

    #[test]
    fn ties_go_to_the_later_row_and_strictness_holds() {
        let index = spine(&[Some(1)], &[10], Direction::Backward { strict: false });
        assert_eq!(offer(&index, &[Some(1), Some(1)], &[7, 7]), vec![1]);
        let strict = spine(&[Some(1)], &[10], Direction::Backward { strict: true });
        assert_eq!(offer(&strict, &[Some(1), Some(1)], &[10, 9]), vec![1]);
        let forward = spine(
            &[Some(1), Some(1)],
            &[10, 30],
            Direction::Forward { strict: false },
        );
        assert_eq!(
            offer(&forward, &[Some(1), Some(1), Some(1)], &[12, 10, 31]),
            vec![1, 2]
        );
    }
}

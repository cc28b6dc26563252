//! Rows as the online store takes and gives them: a stored row
//! (`[event time][encoded values]`), the rows a refresh writes (a new
//! generation, or upserts), and how a refresh changes a view's rows.

use std::sync::Arc;

use crate::error::{Error, Result};

/// A stored row: `[event time: i64][values…]` (see [`codec`]), alone or
/// within a cached block.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub(super) data: Arc<[u8]>,
    pub(super) start: u32,
    pub(super) end: u32,
}

impl StoredRow {
    /// A row that is all of `data` (at least 8 bytes: checked when read).
    pub(super) fn new(data: Arc<[u8]>) -> Self {
        let end = data.len() as u32;
        Self {
            data,
            start: 0,
            end,
        }
    }

    /// A row of `event_time` and encoded `values`, in one allocation.
    pub(super) fn from_parts(event_time: i64, values: &[u8]) -> Self {
        let data = event_time.to_le_bytes().into_iter();
        Self::new(Arc::from_iter(data.chain(values.iter().copied())))
    }

    /// A row of `event_time` and encoded `values` (a lookup assembling a
    /// windowed view's row).
    pub fn assemble(event_time: i64, values: &[u8]) -> Self {
        Self::from_parts(event_time, values)
    }

    /// The row at `range` of `data` (at least 8 bytes: checked when read).
    pub(super) fn within(data: Arc<[u8]>, range: std::ops::Range<usize>) -> Self {
        Self {
            data,
            start: range.start as u32,
            end: range.end as u32,
        }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.data[self.start as usize..self.end as usize]
    }

    pub fn event_time(&self) -> i64 {
        i64::from_le_bytes(self.bytes()[..8].try_into().expect("checked when read"))
    }

    /// The encoded values.
    pub fn values(&self) -> &[u8] {
        &self.bytes()[8..]
    }
}

/// A row to write: its encoded key and its stored form, built once (in
/// one allocation) and moved from the refresh into the store and cache.
pub struct RowUpdate {
    pub key: Vec<u8>,
    pub(super) stored: StoredRow,
}

impl RowUpdate {
    pub fn new(key: Vec<u8>, event_time: i64, values: &[u8]) -> Self {
        Self {
            key,
            stored: StoredRow::from_parts(event_time, values),
        }
    }

    pub fn event_time(&self) -> i64 {
        self.stored.event_time()
    }

    /// The encoded values.
    pub fn values(&self) -> &[u8] {
        self.stored.values()
    }
}

/// One row of a new generation, borrowed from whatever produces it.
pub struct RowRef<'a> {
    pub key: &'a [u8],
    pub event_time: i64,
    pub row: &'a [u8],
}

/// A new generation's rows in key order, lent one at a time: a full
/// refresh's million rows are written without allocating (or freeing)
/// one by one.
pub trait GenerationRows: Send {
    fn next_row(&mut self) -> Option<RowRef<'_>>;
}

/// Owned rows (in key order) as [`GenerationRows`].
pub struct OwnedRows<I> {
    pub(super) rows: I,
    pub(super) current: Option<RowUpdate>,
}

impl<I: Iterator<Item = RowUpdate> + Send> OwnedRows<I> {
    pub fn new(rows: impl IntoIterator<IntoIter = I>) -> Self {
        OwnedRows {
            rows: rows.into_iter(),
            current: None,
        }
    }
}

impl<I: Iterator<Item = RowUpdate> + Send> GenerationRows for OwnedRows<I> {
    fn next_row(&mut self) -> Option<RowRef<'_>> {
        self.current = self.rows.next();
        self.current.as_ref().map(|row| RowRef {
            key: &row.key,
            event_time: row.event_time(),
            row: row.values(),
        })
    }
}

/// A new generation's rows.
pub type RowUpdates = Box<dyn GenerationRows>;

/// What an upsert does with one row.
pub(super) struct Upsert {
    /// No row was stored for the key.
    pub(super) new_key: bool,
    /// The key and stored form of the row, unless the stored row is newer.
    pub(super) write: Option<(Vec<u8>, StoredRow)>,
}

/// Upserted rows in key order, one per key, produced while they are
/// decided: a refresh merges its partitions' winners into them on a thread
/// of its own (see [`OnlineStore::decide_upserts`]).
pub struct Upserts {
    pub(super) rows: Box<dyn Iterator<Item = RowUpdate> + Send>,
    /// At least as many as the rows.
    pub(super) most: usize,
}

impl Upserts {
    pub fn new(rows: impl Iterator<Item = RowUpdate> + Send + 'static, most: usize) -> Self {
        Self {
            rows: Box::new(rows),
            most,
        }
    }

    /// The rows, [`UPSERT_CHUNK`] at a time.
    pub(super) fn chunks(mut self) -> impl Iterator<Item = Vec<RowUpdate>> + Send {
        std::iter::from_fn(move || {
            let chunk: Vec<RowUpdate> = self.rows.by_ref().take(UPSERT_CHUNK).collect();
            (!chunk.is_empty()).then_some(chunk)
        })
    }
}

impl Iterator for Upserts {
    type Item = RowUpdate;

    fn next(&mut self) -> Option<RowUpdate> {
        self.rows.next()
    }
}

impl From<Vec<RowUpdate>> for Upserts {
    fn from(rows: Vec<RowUpdate>) -> Self {
        let most = rows.len();
        Self::new(rows.into_iter(), most)
    }
}

/// How many upserts are decided and handed to the writer at a time.
pub(super) const UPSERT_CHUNK: usize = 2048;

/// How a refresh changes a view's online rows.
pub enum OnlineChange {
    /// None (the view is not ONLINE, or nothing changed).
    None,
    /// Upsert into the current generation: a row replaces the stored one
    /// unless the stored one is newer (a tie goes to the refresh, which
    /// read rows written later).
    Upsert(Upserts),
    /// Replace every row: a new generation. The rows come in key order,
    /// produced as they are written (see [`write_generation`]).
    Replace(RowUpdates),
}

/// Replaces `out` with the stored form of a row: `[event time][row]`.
pub(super) fn store_value(event_time: i64, row: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&event_time.to_le_bytes());
    out.extend_from_slice(row);
}

pub(super) fn stored_row(value: &[u8]) -> Result<StoredRow> {
    stored_event_time(value)?;
    Ok(StoredRow::new(Arc::from(value)))
}

pub(super) fn stored_event_time(value: &[u8]) -> Result<i64> {
    value
        .get(..8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("eight bytes")))
        .ok_or_else(|| Error::OnlineStore("corrupt online record: no event time".into()))
}

//! Rows the stream engine applied that no refresh has stored yet.
//!
//! A streaming view's writes reach lookups here, before their writers are
//! acknowledged: per view, the newest streamed row per key (by event time,
//! then write order), in memory. Lookups take the newer of this row and the
//! stored one (a tie goes to the streamed row: it was written later than
//! anything a refresh stored). A refresh that covers a write's log sequence
//! number stores its rows durably; then they are dropped here
//! ([`OnlineStore::prune_streamed`]). After a crash, the rows come back
//! from the write-ahead log (the tail the stream engine replays) or from
//! the refresh that commits them: keeping the newest row is idempotent, so
//! a write applied twice counts once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use featuredb_catalog::QualifiedName;

use super::rows::StoredRow;
use super::state::Materialization;
use super::store::OnlineStore;

type Rows = HashMap<Vec<u8>, Streamed, ahash::RandomState>;

struct Streamed {
    row: StoredRow,
    /// Write order: `(log sequence number, row in the write)`.
    order: (u64, u32),
}

/// One streaming view's rows not yet stored, and how its stream is doing.
pub struct ViewStream {
    /// The definition the rows were computed for ([`Materialization::shape`]).
    shape: String,
    rows: RwLock<Rows>,
    status: Mutex<StreamStatus>,
    rows_applied: AtomicU64,
}

/// What `featuredb.streams` shows of a streaming view.
#[derive(Debug, Clone, Default)]
pub struct StreamStatus {
    /// The source table the view streams from.
    pub source: String,
    /// Newest event time applied (as the online store holds it: µs, days
    /// or the integer itself).
    pub newest_event_time: Option<i64>,
    /// When the last write was applied (µs since the epoch).
    pub last_applied_at: Option<i64>,
    /// Log durable → visible to lookups, for the last write (µs).
    pub last_apply_micros: Option<u64>,
    /// When a refresh last stored the stream's rows (µs since the epoch).
    pub last_stored_at: Option<i64>,
    /// Highest log sequence number stored by a refresh.
    pub stored_through: u64,
    /// The last error of applying or storing, if the last attempt failed.
    pub last_error: Option<String>,
}

/// A snapshot of a view's stream for system tables.
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub view: QualifiedName,
    pub status: StreamStatus,
    pub rows_applied: u64,
    /// Rows held in memory, not yet stored by a refresh.
    pub rows_pending: u64,
}

/// A row a write produced, ready to offer.
pub struct StreamedRow<'a> {
    pub key: &'a [u8],
    pub event_time: i64,
    pub values: &'a [u8],
    pub order: (u64, u32),
}

#[derive(Default)]
pub(super) struct StreamedRows {
    views: RwLock<HashMap<QualifiedName, Arc<ViewStream>>>,
    /// Whether any view streams: lookups skip the map while none does.
    any: AtomicBool,
}

pub(super) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl ViewStream {
    /// Offers rows of one write; the newest per key stays.
    pub fn offer<'a>(&self, rows: impl IntoIterator<Item = StreamedRow<'a>>) {
        let mut applied = 0u64;
        let mut newest: Option<i64> = None;
        {
            let mut kept = self.rows.write().unwrap_or_else(|p| p.into_inner());
            for row in rows {
                applied += 1;
                newest = Some(newest.map_or(row.event_time, |n| n.max(row.event_time)));
                match kept.get_mut(row.key) {
                    Some(current)
                        if (current.row.event_time(), current.order)
                            > (row.event_time, row.order) => {}
                    Some(current) => {
                        current.row = StoredRow::from_parts(row.event_time, row.values);
                        current.order = row.order;
                    }
                    None => {
                        kept.insert(
                            row.key.to_vec(),
                            Streamed {
                                row: StoredRow::from_parts(row.event_time, row.values),
                                order: row.order,
                            },
                        );
                    }
                }
            }
        }
        self.rows_applied.fetch_add(applied, Ordering::Relaxed);
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(newest) = newest {
            status.newest_event_time =
                Some(status.newest_event_time.map_or(newest, |n| n.max(newest)));
        }
    }

    /// Records how long the last write took from durable to visible.
    pub fn applied(&self, micros: u64) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.last_applied_at = Some(now_micros());
        status.last_apply_micros = Some(micros);
        status.last_error = None;
    }

    /// Records a failure to apply or store the stream's rows.
    pub fn failed(&self, error: String) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_error = Some(error);
    }

    fn get(&self, key: &[u8]) -> Option<StoredRow> {
        self.rows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|s| s.row.clone())
    }
}

impl OnlineStore {
    /// The stream of `view` computing rows of `shape`: the one there is,
    /// or a new one (rows streamed for another definition are dropped).
    pub fn stream(&self, view: &QualifiedName, shape: &str, source: &str) -> Arc<ViewStream> {
        let mut views = self
            .streamed
            .views
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(stream) = views.get(view)
            && stream.shape == shape
        {
            return stream.clone();
        }
        let stream = Arc::new(ViewStream {
            shape: shape.to_string(),
            rows: RwLock::default(),
            status: Mutex::new(StreamStatus {
                source: source.to_string(),
                ..Default::default()
            }),
            rows_applied: AtomicU64::new(0),
        });
        views.insert(view.clone(), stream.clone());
        self.streamed.any.store(true, Ordering::Release);
        stream
    }

    /// Stops keeping streamed rows of `view` (no longer streaming, or
    /// dropped).
    pub fn end_stream(&self, view: &QualifiedName) {
        let mut views = self
            .streamed
            .views
            .write()
            .unwrap_or_else(|p| p.into_inner());
        views.remove(view);
        self.streamed
            .any
            .store(!views.is_empty(), Ordering::Release);
    }

    /// Views that stream now.
    pub fn streaming_views(&self) -> Vec<QualifiedName> {
        self.streamed
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// A refresh stored `view`'s rows of every write up to log sequence
    /// number `through`: they leave memory. Call after the refresh
    /// published its rows, so that no lookup finds neither.
    pub fn prune_streamed(&self, view: &QualifiedName, through: u64) {
        let Some(stream) = self.view_stream(view) else {
            return;
        };
        stream
            .rows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.order.0 > through);
        let mut status = stream.status.lock().unwrap_or_else(|p| p.into_inner());
        status.stored_through = status.stored_through.max(through);
        status.last_stored_at = Some(now_micros());
    }

    fn view_stream(&self, view: &QualifiedName) -> Option<Arc<ViewStream>> {
        self.streamed
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(view)
            .cloned()
    }

    /// Every stream, for `featuredb.streams`.
    pub fn stream_reports(&self) -> Vec<StreamReport> {
        let views = self
            .streamed
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner());
        views
            .iter()
            .map(|(view, stream)| StreamReport {
                view: view.clone(),
                status: stream
                    .status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
                rows_applied: stream.rows_applied.load(Ordering::Relaxed),
                rows_pending: stream.rows.read().map(|r| r.len() as u64).unwrap_or(0),
            })
            .collect()
    }

    /// `stored`, or the streamed row of `key` if that is newer (or equal:
    /// it was written later); and whether `state`'s view streams at all.
    pub(super) fn with_streamed(
        &self,
        state: &Materialization,
        key: &[u8],
        stored: Option<StoredRow>,
    ) -> (Option<StoredRow>, bool) {
        if !self.streamed.any.load(Ordering::Acquire) {
            return (stored, false);
        }
        let Some(view) = &state.view else {
            return (stored, false);
        };
        let Some(stream) = self.view_stream(view) else {
            return (stored, false);
        };
        if stream.shape != state.shape {
            return (stored, true);
        }
        let row = match (stream.get(key), stored) {
            (Some(streamed), Some(stored)) if stored.event_time() > streamed.event_time() => {
                Some(stored)
            }
            (Some(streamed), _) => Some(streamed),
            (None, stored) => stored,
        };
        (row, true)
    }
}

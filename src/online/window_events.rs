//! The rows windowed features aggregate, per view and key, in memory.
//!
//! A windowed view's lookups compute each window at the time of the
//! request from the key's rows in `[now − W, now]`: exact at both edges,
//! which needs every row's event time inside the widest window (an exact
//! sliding-window count needs that much; tiles would bound the state at
//! the cost of exactness at the older edge). Rows older than the widest
//! window are dropped when their key is written or a refresh runs.
//!
//! Two kinds of rows, told apart by the write-ahead log sequence number
//! each carries, so that a row is never counted twice nor missed:
//! - **stored**: rows a refresh stored, up to the input snapshot whose
//!   logged writes go up to `stored_through` (`seq` 0);
//! - **streamed**: rows of logged writes with `seq > stored_through`,
//!   applied as they are acknowledged. A refresh that stores them adds
//!   them as stored rows and drops the streamed ones it covers, in one
//!   step under the view's lock.
//!
//! The state is rebuilt when the server starts, from the source rows up
//! to the last refresh's snapshot (then the log's tail is replayed), so
//! it needs no storage of its own.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use featuredb_catalog::QualifiedName;

use super::store::OnlineStore;

/// An argument of a windowed feature, as kept for aggregation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowValue {
    Null,
    Int(i64),
    Float(f64),
}

/// One row of a windowed view's base, as its windows see it.
#[derive(Debug, Clone)]
pub struct WindowEvent {
    /// Event time, in the unit the online store keeps (µs).
    pub ts: i64,
    /// The log sequence number of a streamed row; 0 for a stored one.
    pub seq: u64,
    /// The windows' arguments.
    pub values: Box<[WindowValue]>,
}

/// How often a view's rows are swept for rows out of every window, and
/// how many keys one write-locked step trims (a sweep of all 100k keys
/// under one lock held lookups up for tens of milliseconds).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
const SWEEP_STEP: usize = 1024;

#[derive(Default)]
struct ViewWindows {
    /// The definition the rows were computed for.
    shape: String,
    /// Logged writes up to here are among the stored rows.
    stored_through: u64,
    /// Each key's rows, by event time.
    keys: HashMap<Vec<u8>, Vec<WindowEvent>, ahash::RandomState>,
    /// When rows of keys nobody wrote were last dropped.
    swept: Option<std::time::Instant>,
    /// Keys holding streamed rows (a refresh that stores them looks at
    /// these keys only).
    streamed: std::collections::HashSet<Vec<u8>, ahash::RandomState>,
}

impl ViewWindows {
    fn add(&mut self, key: Vec<u8>, event: WindowEvent, keep_after: i64) {
        if event.ts < keep_after {
            return;
        }
        if event.seq != 0 && !self.streamed.contains(&key) {
            self.streamed.insert(key.clone());
        }
        let events = self.keys.entry(key).or_default();
        if events.last().is_none_or(|last| last.ts <= event.ts) {
            events.push(event);
        } else {
            let at = events.partition_point(|e| e.ts <= event.ts);
            events.insert(at, event);
        }
        let old = events.partition_point(|e| e.ts < keep_after);
        if old > 0 {
            events.drain(..old);
        }
    }

    /// Drops `key`'s rows before `keep_after`, and the key if none stay.
    fn trim(&mut self, key: &[u8], keep_after: i64) {
        if let Some(events) = self.keys.get_mut(key) {
            let old = events.partition_point(|e| e.ts < keep_after);
            events.drain(..old);
            if events.is_empty() {
                self.keys.remove(key);
            }
        }
    }
}

/// Drops rows out of every window from keys nobody wrote lately: finds
/// them under the read lock, trims them a step at a time under the write
/// lock, at most every [`SWEEP_EVERY`].
fn sweep(windows: &RwLock<ViewWindows>, keep_after: i64) {
    let stale: Vec<Vec<u8>> = {
        let read = windows.read().unwrap_or_else(|p| p.into_inner());
        if read.swept.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
            return;
        }
        read.keys
            .iter()
            .filter(|(_, events)| events.first().is_some_and(|e| e.ts < keep_after))
            .map(|(key, _)| key.clone())
            .collect()
    };
    windows.write().unwrap_or_else(|p| p.into_inner()).swept = Some(std::time::Instant::now());
    for step in stale.chunks(SWEEP_STEP) {
        let mut write = windows.write().unwrap_or_else(|p| p.into_inner());
        for key in step {
            write.trim(key, keep_after);
        }
    }
}

/// The rows of every windowed view.
#[derive(Default)]
pub(super) struct WindowRows {
    views: RwLock<HashMap<QualifiedName, Arc<RwLock<ViewWindows>>>>,
}

/// What `featuredb.streams` shows of a view's windows.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowUsage {
    pub keys: u64,
    pub rows: u64,
    /// Bytes the rows take in memory, keys included.
    pub bytes: u64,
}

impl OnlineStore {
    fn view_windows(&self, view: &QualifiedName) -> Option<Arc<RwLock<ViewWindows>>> {
        self.windows
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(view)
            .cloned()
    }

    /// Replaces `view`'s rows with `events` (a full refresh, or the rebuild
    /// at startup), stored through log sequence number `stored_through`.
    /// Streamed rows beyond it stay.
    pub fn reset_window_events(
        &self,
        view: &QualifiedName,
        shape: &str,
        stored_through: u64,
        events: Vec<(Vec<u8>, WindowEvent)>,
        keep_after: i64,
    ) {
        let mut next = ViewWindows {
            shape: shape.to_string(),
            stored_through,
            keys: HashMap::default(),
            swept: None,
            streamed: Default::default(),
        };
        for (key, event) in events {
            next.add(key, event, keep_after);
        }
        // Replaced in place, under the write lock: streamed rows that
        // arrived while `next` was built are carried over, not lost.
        let shared = self
            .windows
            .views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(view.clone())
            .or_default()
            .clone();
        let mut windows = shared.write().unwrap_or_else(|p| p.into_inner());
        if windows.shape == shape {
            let streamed = std::mem::take(&mut windows.streamed);
            for key in streamed {
                for event in windows.keys.get(&key).into_iter().flatten() {
                    if event.seq > stored_through {
                        next.add(key.clone(), event.clone(), keep_after);
                    }
                }
            }
        }
        *windows = next;
    }

    /// Adds the rows a refresh stored, which cover the logged writes up to
    /// `stored_through`: streamed rows it covers leave. `false` if the
    /// view has no rows of `shape` (they must be rebuilt).
    pub fn store_window_events(
        &self,
        view: &QualifiedName,
        shape: &str,
        stored_through: u64,
        events: Vec<(Vec<u8>, WindowEvent)>,
        keep_after: i64,
    ) -> bool {
        let Some(shared) = self.view_windows(view) else {
            return false;
        };
        {
            let mut windows = shared.write().unwrap_or_else(|p| p.into_inner());
            if windows.shape != shape {
                return false;
            }
            if stored_through > windows.stored_through {
                // Streamed rows this refresh stored leave (it adds them
                // again as stored rows).
                let streamed = std::mem::take(&mut windows.streamed);
                let mut still = std::collections::HashSet::with_hasher(Default::default());
                for key in streamed {
                    if let Some(events) = windows.keys.get_mut(&key) {
                        events.retain(|e| e.seq == 0 || e.seq > stored_through);
                        if events.iter().any(|e| e.seq != 0) {
                            still.insert(key.clone());
                        }
                        if events.is_empty() {
                            windows.keys.remove(&key);
                        }
                    }
                }
                windows.streamed = still;
                windows.stored_through = stored_through;
            }
            for (key, event) in events {
                windows.add(key, event, keep_after);
            }
        }
        sweep(&shared, keep_after);
        true
    }

    /// Adds rows of a logged write (sequence number in each row); rows a
    /// refresh already stored are skipped.
    pub fn stream_window_events(
        &self,
        view: &QualifiedName,
        shape: &str,
        events: Vec<(Vec<u8>, WindowEvent)>,
        keep_after: i64,
    ) {
        let Some(windows) = self.view_windows(view) else {
            return;
        };
        let mut windows = windows.write().unwrap_or_else(|p| p.into_inner());
        if windows.shape != shape {
            return;
        }
        let through = windows.stored_through;
        for (key, event) in events.into_iter().filter(|(_, e)| e.seq > through) {
            windows.add(key, event, keep_after);
        }
    }

    /// Runs `read` on the rows of `key` (by event time), if the view's
    /// rows of `shape` are in memory.
    pub fn with_window_events<R>(
        &self,
        view: &QualifiedName,
        shape: &str,
        key: &[u8],
        read: impl FnOnce(&[WindowEvent]) -> R,
    ) -> Option<R> {
        let windows = self.view_windows(view)?;
        let windows = windows.read().unwrap_or_else(|p| p.into_inner());
        if windows.shape != shape {
            return None;
        }
        Some(read(
            windows.keys.get(key).map(Vec::as_slice).unwrap_or(&[]),
        ))
    }

    /// Whether `view`'s rows of `shape` are in memory.
    pub fn has_window_events(&self, view: &QualifiedName, shape: &str) -> bool {
        self.view_windows(view)
            .is_some_and(|w| w.read().unwrap_or_else(|p| p.into_inner()).shape == shape)
    }

    /// Forgets `view`'s rows (dropped, or no longer windowed).
    pub fn drop_window_events(&self, view: &QualifiedName) {
        self.windows
            .views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(view);
    }

    /// How much memory `view`'s rows take.
    pub fn window_usage(&self, view: &QualifiedName) -> Option<WindowUsage> {
        let windows = self.view_windows(view)?;
        let windows = windows.read().unwrap_or_else(|p| p.into_inner());
        let mut usage = WindowUsage::default();
        for (key, events) in &windows.keys {
            usage.keys += 1;
            usage.rows += events.len() as u64;
            usage.bytes += (key.len()
                + std::mem::size_of::<Vec<WindowEvent>>()
                + events.capacity() * std::mem::size_of::<WindowEvent>()
                + events
                    .iter()
                    .map(|e| e.values.len() * std::mem::size_of::<WindowValue>())
                    .sum::<usize>()) as u64;
        }
        Some(usage)
    }
}

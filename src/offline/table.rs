//! A live Iceberg table: its definition, its committed state, its tail of
//! logged-but-not-yet-committed small writes, and the two write paths.
//!
//! Write paths:
//! - **Direct** (COPY, large INSERTs): data files are written, then
//!   committed as an Iceberg snapshot ([`TableHandle::append`]).
//! - **Logged** (small INSERTs): rows are appended to the table's
//!   write-ahead log, fsynced, and kept in memory as the *tail*
//!   ([`TableHandle::append_logged`]); a later commit flushes the tail into
//!   a data file.
//!
//! Invariants:
//! - `state.table` is always a state the catalog has durably committed; it
//!   only moves forward, after the catalog confirms the commit.
//! - Readers see `state.table`'s snapshot plus the tail, taken together
//!   under one lock, so every acknowledged statement is visible, whole.
//! - The tail holds a contiguous range of log sequence numbers, all greater
//!   than the table's committed watermark (snapshot property
//!   `featuredb.wal-seq`). Every commit first flushes the whole tail into
//!   the same snapshot, so data files are committed in the order rows were
//!   acknowledged.
//! - Commits are serialised per table, and concurrent writers are grouped:
//!   whoever holds the commit turn commits everything waiting in one
//!   snapshot; likewise one log fsync covers all waiting small writes.
//! - Commits and log appends run on their own tasks: a client that
//!   disconnects while waiting cannot abort work that carries other
//!   clients' rows.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use featuredb_catalog::{QualifiedName, TableSchemaDef};
use iceberg::spec::{DataFile, SnapshotRef, TableMetadata};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};
use tokio::sync::oneshot;

use super::observer::WriteObservers;
use super::schema::{storage_arrow_schema, table_schema_def};
use super::truncate::{CatalogPointer, commit_empty_snapshot};
use super::wal::{Wal, encode_batch};
use super::writer::{DataFileWriter, check_constraints};
use crate::error::{Error, Result};

/// Snapshot property: the highest log sequence number the table's data
/// files contain.
pub const WAL_SEQ_PROPERTY: &str = "featuredb.wal-seq";

pub struct TableHandle {
    pub name: QualifiedName,
    ident: TableIdent,
    def: TableSchemaDef,
    /// What the engine plans against (declared types, all nullable).
    arrow_schema: SchemaRef,
    /// What data files contain (Iceberg's Arrow mapping, with field ids).
    storage_schema: SchemaRef,
    state: RwLock<TableState>,
    catalog: Arc<dyn Catalog>,
    /// The catalog writes lock, and the commit TRUNCATE needs.
    pointer: Arc<CatalogPointer>,
    pending_commits: Mutex<Vec<PendingCommit>>,
    commit_turn: tokio::sync::Mutex<()>,
    pending_logged: Mutex<Vec<PendingLogged>>,
    log: tokio::sync::Mutex<LogState>,
    dropped: AtomicBool,
    /// Told about this table's acknowledged writes and commits.
    observers: Arc<WriteObservers>,
    /// Write order of committed files, for write-ordered scans.
    pub(super) manifest_order: super::write_order::ManifestOrderCache,
}

struct TableState {
    table: Arc<Table>,
    tail: Vec<TailBatch>,
    tail_rows: usize,
    tail_bytes: usize,
    /// When the oldest tail batch was acknowledged.
    tail_since: Option<Instant>,
    /// Log records up to here are in the committed data files.
    committed_seq: u64,
}

#[derive(Clone)]
struct TailBatch {
    seq: u64,
    batch: RecordBatch,
}

struct LogState {
    wal: Wal,
    next_seq: u64,
}

struct PendingCommit {
    files: Vec<DataFile>,
    /// Snapshot summary properties the commit must carry.
    properties: HashMap<String, String>,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

struct PendingLogged {
    batch: RecordBatch,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

/// What a reader sees: a committed snapshot and the tail on top of it.
pub struct ReadView {
    pub table: Arc<Table>,
    pub tail: Vec<RecordBatch>,
}

/// Size and age of the tail, for the flusher.
#[derive(Debug, Clone, Copy)]
pub struct TailStats {
    pub rows: usize,
    pub bytes: usize,
    pub age: Option<Duration>,
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle")
            .field("name", &self.name)
            .finish()
    }
}

/// The watermark recorded by the newest snapshot that has one.
fn committed_seq(metadata: &TableMetadata) -> u64 {
    watermark_from(metadata, metadata.current_snapshot().cloned())
}

/// The watermark `snapshot` or its nearest ancestor records (0: none).
fn watermark_from(metadata: &TableMetadata, mut snapshot: Option<SnapshotRef>) -> u64 {
    while let Some(current) = snapshot {
        if let Some(seq) = current
            .summary()
            .additional_properties
            .get(WAL_SEQ_PROPERTY)
            .and_then(|v| v.parse().ok())
        {
            return seq;
        }
        snapshot = current
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id).cloned());
    }
    0
}

impl TableHandle {
    /// Opens a loaded table and replays its write-ahead log (in
    /// `wal_root/<table uuid>`) into the tail.
    pub fn open(
        name: QualifiedName,
        table: Table,
        catalog: Arc<dyn Catalog>,
        pointer: Arc<CatalogPointer>,
        observers: Arc<WriteObservers>,
        wal_root: &Path,
    ) -> Result<Self> {
        let metadata = table.metadata();
        let iceberg_schema = metadata.current_schema();
        let def = table_schema_def(iceberg_schema, metadata.properties())?;
        // The engine sees every column as nullable: NOT NULL is enforced when
        // rows are written, where the error can name the column (DataFusion
        // would reject the batch with a message about its own columns).
        let arrow_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            def.to_arrow()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let storage_schema = storage_arrow_schema(iceberg_schema)?;
        let committed = committed_seq(metadata);
        let (wal, records) = Wal::open(&wal_root.join(metadata.uuid().to_string()))?;
        let mut state = TableState {
            table: Arc::new(table.clone()),
            tail: Vec::new(),
            tail_rows: 0,
            tail_bytes: 0,
            tail_since: None,
            committed_seq: committed,
        };
        let mut next_seq = committed + 1;
        for record in records.into_iter().filter(|r| r.seq > committed) {
            let batch = RecordBatch::try_new(arrow_schema.clone(), record.batch.columns().to_vec())
                .map_err(|e| {
                    Error::internal(format!(
                        "write-ahead log of {name} does not match its schema: {e}"
                    ))
                })?;
            next_seq = next_seq.max(record.seq + 1);
            state.push_tail(record.seq, batch);
        }
        if !state.tail.is_empty() {
            tracing::info!(table = %name, rows = state.tail_rows, "replayed logged writes");
        }
        Ok(Self {
            name,
            ident: table.identifier().clone(),
            def,
            arrow_schema,
            storage_schema,
            state: RwLock::new(state),
            catalog,
            pointer,
            pending_commits: Mutex::new(Vec::new()),
            commit_turn: tokio::sync::Mutex::new(()),
            pending_logged: Mutex::new(Vec::new()),
            log: tokio::sync::Mutex::new(LogState { wal, next_seq }),
            dropped: AtomicBool::new(false),
            observers,
            manifest_order: Default::default(),
        })
    }

    pub fn definition(&self) -> &TableSchemaDef {
        &self.def
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow_schema.clone()
    }

    pub fn arrow_schema_ref(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    pub fn storage_schema(&self) -> SchemaRef {
        self.storage_schema.clone()
    }

    fn check_live(&self) -> Result<()> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::UndefinedTable {
                name: self.name.name.clone(),
                position: None,
            });
        }
        Ok(())
    }

    fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, TableState>> {
        self.state
            .read()
            .map_err(|_| Error::internal("table state lock poisoned"))
    }

    fn write_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, TableState>> {
        self.state
            .write()
            .map_err(|_| Error::internal("table state lock poisoned"))
    }

    /// The latest committed Iceberg state (without the tail).
    pub fn current(&self) -> Result<Arc<Table>> {
        self.check_live()?;
        Ok(self.read_state()?.table.clone())
    }

    /// What a query reads: the committed snapshot and the tail, together.
    pub fn read_view(&self) -> Result<ReadView> {
        self.check_live()?;
        let state = self.read_state()?;
        Ok(ReadView {
            table: state.table.clone(),
            tail: state.tail.iter().map(|t| t.batch.clone()).collect(),
        })
    }

    pub fn tail_stats(&self) -> TailStats {
        match self.state.read() {
            Ok(state) => TailStats {
                rows: state.tail_rows,
                bytes: state.tail_bytes,
                age: state.tail_since.map(|since| since.elapsed()),
            },
            Err(_) => TailStats {
                rows: 0,
                bytes: 0,
                age: None,
            },
        }
    }

    pub(crate) async fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
        self.log.lock().await.wal.destroy();
    }

    /// Stops this handle without touching the table's files, once no
    /// commit or log append is running; later writes through it fail as if
    /// the table were dropped. Used when the table is reopened under
    /// another name (its log is keyed by the table's UUID, so the new
    /// handle replays the same log).
    pub(crate) async fn retire(&self) {
        let _turn = self.commit_turn.lock().await;
        let _log = self.log.lock().await;
        self.dropped.store(true, Ordering::Release);
    }

    /// Removes every row: logged writes and committed files, in one
    /// Iceberg snapshot with no data files (see [`super::truncate`]).
    /// Writes acknowledged before it are gone; writes after it stay.
    /// Returns how many rows were removed.
    pub async fn truncate(self: &Arc<Self>) -> Result<u64> {
        self.check_live()?;
        let _turn = self.commit_turn.lock().await;
        let mut log = self.log.lock().await;
        self.check_live()?;
        // Every logged write so far is covered, committed or not.
        let watermark = log.next_seq - 1;
        let (table, tail_rows) = {
            let state = self.read_state()?;
            (state.table.clone(), state.tail_rows as u64)
        };
        let committed_rows = table
            .metadata()
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-records"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let removed = committed_rows + tail_rows;
        let properties = HashMap::from(
            [
                (WAL_SEQ_PROPERTY, watermark.to_string()),
                ("deleted-records", committed_rows.to_string()),
                ("total-records", "0".to_string()),
                ("total-data-files", "0".to_string()),
                ("total-delete-files", "0".to_string()),
                ("total-files-size", "0".to_string()),
                ("total-position-deletes", "0".to_string()),
                ("total-equality-deletes", "0".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        let committed = commit_empty_snapshot(&table, &self.pointer, properties).await?;
        {
            let mut state = self.write_state()?;
            state.table = Arc::new(committed);
            state.committed_seq = watermark;
            state.trim_tail_through(watermark);
        }
        if let Err(e) = tokio::task::block_in_place(|| log.wal.release_through(watermark)) {
            tracing::warn!(table = %self.name, error = %e, "could not delete truncated log segments");
        }
        drop(log);
        self.observers.committed(&self.name);
        Ok(removed)
    }

    /// The logged writes not yet committed, with their sequence numbers
    /// (what a restart replayed from the log, and what came since).
    pub fn tail_records(&self) -> Result<Vec<(u64, RecordBatch)>> {
        Ok(self
            .read_state()?
            .tail
            .iter()
            .map(|t| (t.seq, t.batch.clone()))
            .collect())
    }

    /// The highest log sequence number in the data files of the snapshot
    /// with Iceberg sequence number `snapshot_seq` (or the newest before
    /// it): what a reader of that snapshot saw of the logged writes.
    pub fn wal_watermark_at(&self, snapshot_seq: i64) -> Result<u64> {
        let table = self.current()?;
        let metadata = table.metadata();
        let snapshot = metadata
            .snapshots()
            .filter(|s| s.sequence_number() <= snapshot_seq)
            .max_by_key(|s| s.sequence_number())
            .cloned();
        Ok(watermark_from(metadata, snapshot))
    }

    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Logs a small write and returns once it is durable (and visible).
    pub async fn append_logged(self: &Arc<Self>, batch: RecordBatch) -> Result<()> {
        self.check_live()?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        check_constraints(self, &batch)?;
        let batch = RecordBatch::try_new(self.arrow_schema.clone(), batch.columns().to_vec())?;
        let (done, result) = oneshot::channel();
        self.pending_logged
            .lock()
            .map_err(|_| Error::internal("log queue lock poisoned"))?
            .push(PendingLogged { batch, done });
        // Nobody is writing the log: write it here (ours and whatever else
        // waits), saving a task handoff on every lone small write. Nothing
        // in it awaits, so a caller that goes away cannot abandon other
        // writers' rows half-way. Otherwise the writer holding the log
        // may already have taken its batch: a task of our own takes the
        // next turn.
        match self.log.try_lock() {
            Ok(log) => self.log_waiting_locked(log),
            Err(_) => {
                let handle = Arc::clone(self);
                tokio::spawn(async move { handle.log_waiting().await });
            }
        }
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::internal(message)),
            Err(_) => Err(Error::internal(format!(
                "write to {} was abandoned",
                self.name
            ))),
        }
    }

    /// Takes the log turn and makes every waiting small write durable with
    /// one fsync, then adds them to the tail in sequence order.
    async fn log_waiting(&self) {
        let log = self.log.lock().await;
        self.log_waiting_locked(log);
    }

    /// [`Self::log_waiting`] with the log turn taken.
    fn log_waiting_locked(&self, mut log: tokio::sync::MutexGuard<'_, LogState>) {
        let waiting = match self.pending_logged.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if waiting.is_empty() {
            return;
        }
        // Retired or dropped while these waited: this handle's log is no
        // longer the table's.
        if let Err(e) = self.check_live() {
            for w in waiting {
                let _ = w.done.send(Err(e.to_string()));
            }
            return;
        }
        let first_seq = log.next_seq;
        let encoded: Result<Vec<(u64, Vec<u8>)>> = waiting
            .iter()
            .enumerate()
            .map(|(i, w)| Ok((first_seq + i as u64, encode_batch(&w.batch)?)))
            .collect();
        let outcome = match encoded {
            Ok(records) => {
                // fsync blocks; keep it off the async workers.
                let LogState { wal, .. } = &mut *log;
                tokio::task::block_in_place(|| wal.append(&records))
            }
            Err(e) => Err(e),
        };
        let outcome = match outcome {
            Ok(()) => {
                log.next_seq = first_seq + waiting.len() as u64;
                let pushed = match self.write_state() {
                    Ok(mut state) => {
                        for (i, w) in waiting.iter().enumerate() {
                            state.push_tail(first_seq + i as u64, w.batch.clone());
                        }
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                };
                // Still under the log turn: observers hear writes in
                // sequence order, and before their writers are
                // acknowledged.
                if pushed.is_ok() {
                    for (i, w) in waiting.iter().enumerate() {
                        self.observers
                            .logged(&self.name, first_seq + i as u64, &w.batch);
                    }
                }
                pushed
            }
            Err(e) => {
                tracing::error!(table = %self.name, error = %e, "write-ahead log append failed");
                Err(format!("write to {} failed: {e}", self.name))
            }
        };
        drop(log);
        for w in waiting {
            let _ = w.done.send(outcome.clone());
        }
    }

    /// Commits `files` as a new snapshot (with the tail flushed into it,
    /// and possibly other waiting appends). Returns once the catalog has
    /// durably recorded it.
    pub async fn append(self: &Arc<Self>, files: Vec<DataFile>) -> Result<()> {
        self.append_with_properties(files, HashMap::new()).await
    }

    /// [`append`](Self::append), with properties recorded in the
    /// snapshot's summary in the same atomic commit (a refresh records the
    /// input snapshots its rows came from).
    pub async fn append_with_properties(
        self: &Arc<Self>,
        files: Vec<DataFile>,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.check_live()?;
        let (done, result) = oneshot::channel();
        self.pending_commits
            .lock()
            .map_err(|_| Error::internal("commit queue lock poisoned"))?
            .push(PendingCommit {
                files,
                properties,
                done,
            });
        let handle = Arc::clone(self);
        tokio::spawn(async move { handle.commit_waiting().await });
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::internal(message)),
            Err(_) => Err(Error::internal(format!(
                "commit to {} was abandoned",
                self.name
            ))),
        }
    }

    /// Commits the tail into Iceberg (the flusher calls this).
    pub async fn flush(self: &Arc<Self>) -> Result<()> {
        if self.is_dropped() || self.tail_stats().rows == 0 {
            return Ok(());
        }
        self.append(Vec::new()).await
    }

    /// Takes the commit turn and commits the tail and every waiting append.
    async fn commit_waiting(self: Arc<Self>) {
        let _turn = self.commit_turn.lock().await;
        let waiting = match self.pending_commits.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        let outcome = self.commit_with_tail(&waiting).await.map_err(|e| {
            tracing::error!(table = %self.name, error = %e, "commit failed");
            format!("commit to {} failed: {e}", self.name)
        });
        if outcome.is_ok() && !waiting.is_empty() {
            self.observers.committed(&self.name);
        }
        for pending in waiting {
            let _ = pending.done.send(outcome.clone());
        }
    }

    async fn commit_with_tail(self: &Arc<Self>, waiting: &[PendingCommit]) -> Result<()> {
        let (tail, previous_seq) = {
            let state = self.read_state()?;
            (state.tail.clone(), state.committed_seq)
        };
        let direct: Vec<DataFile> = waiting
            .iter()
            .flat_map(|p| p.files.iter().cloned())
            .collect();
        let properties: HashMap<String, String> =
            waiting.iter().flat_map(|p| p.properties.clone()).collect();
        if tail.is_empty() && direct.is_empty() && properties.is_empty() {
            return Ok(());
        }
        self.check_live()?;
        // The tail becomes a data file of this same snapshot, ahead of the
        // direct files: rows acknowledged earlier are committed first.
        let mut tail_files = None;
        if !tail.is_empty() {
            let mut writer = DataFileWriter::new(self.clone()).await?;
            for t in &tail {
                writer.write(t.batch.clone()).await?;
            }
            tail_files = Some(writer.finish().await?);
        }
        let watermark = tail.last().map(|t| t.seq).unwrap_or(previous_seq);
        let mut files: Vec<DataFile> = tail_files
            .as_ref()
            .map(|w| w.files().to_vec())
            .unwrap_or_default();
        files.extend(direct);
        self.commit_files(files, watermark, properties).await?;
        if let Some(written) = tail_files {
            written.disarm();
        }
        {
            let mut state = self.write_state()?;
            state.committed_seq = watermark;
            state.trim_tail_through(watermark);
        }
        if !tail.is_empty() {
            let mut log = self.log.lock().await;
            if let Err(e) = tokio::task::block_in_place(|| log.wal.release_through(watermark)) {
                // The rows are committed; stale log segments are replayed
                // and skipped (their sequence numbers are covered).
                tracing::warn!(table = %self.name, error = %e, "could not delete flushed log segments");
            }
        }
        Ok(())
    }

    async fn commit_files(
        &self,
        files: Vec<DataFile>,
        watermark: u64,
        mut properties: HashMap<String, String>,
    ) -> Result<()> {
        let table = self.current()?;
        let transaction = Transaction::new(&table);
        properties.insert(WAL_SEQ_PROPERTY.to_string(), watermark.to_string());
        let transaction = transaction
            .fast_append()
            .add_data_files(files)
            .set_snapshot_properties(properties)
            .apply(transaction)?;
        let _writes = self.pointer.writes.lock().await;
        let committed = transaction.commit(self.catalog.as_ref()).await?;
        // iceberg-catalog-sql ignores the result of its SQL COMMIT; read the
        // pointer back so that we never acknowledge a commit that did not
        // reach the catalog.
        let reloaded = self.catalog.load_table(&self.ident).await?;
        if reloaded.metadata_location() != committed.metadata_location() {
            return Err(Error::internal(format!(
                "catalog did not record the commit to {} (expected {:?}, found {:?})",
                self.name,
                committed.metadata_location(),
                reloaded.metadata_location()
            )));
        }
        self.write_state()?.table = Arc::new(reloaded);
        Ok(())
    }
}

impl TableState {
    fn push_tail(&mut self, seq: u64, batch: RecordBatch) {
        self.tail_rows += batch.num_rows();
        self.tail_bytes += batch.get_array_memory_size();
        self.tail_since.get_or_insert_with(Instant::now);
        self.tail.push(TailBatch { seq, batch });
    }

    fn trim_tail_through(&mut self, seq: u64) {
        self.tail.retain(|t| t.seq > seq);
        self.tail_rows = self.tail.iter().map(|t| t.batch.num_rows()).sum();
        self.tail_bytes = self
            .tail
            .iter()
            .map(|t| t.batch.get_array_memory_size())
            .sum();
        self.tail_since = if self.tail.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
    }
}

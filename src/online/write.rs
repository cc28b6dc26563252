//! Applying a refresh: its online rows and its new state, in one durable
//! redb transaction (a new generation, or upserts into the delta, merged
//! into the base once it grows), then published to lookups; and removing a
//! dropped view.

use std::sync::Arc;

use featuredb_catalog::QualifiedName;
use redb::{Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use super::blocks::{self, BaseLayout, BlockBuilder, CachedBlock};
use super::delta;
use super::index::BlockIndex;
use super::rows::{
    OnlineChange, RowUpdate, RowUpdates, StoredRow, Upsert, Upserts, store_value, stored_event_time,
};
use super::state::{Materialization, RowsIndex};
use super::store::{Cached, MATERIALIZATIONS, OnlineStore, block_cache_key, storage};
use super::tables::{RowsTableMut, RowsTables, delete_rows_tables};
use crate::error::{Error, Result};

/// Upserts of at least this many rows read the stored rows on two threads.
pub(super) const PARALLEL_UPSERT_READS: usize = 16_384;

/// A delta smaller than this is never merged (merging rewrites the base).
pub(super) const MIN_DELTA_MERGE: u64 = 65_536;

impl OnlineStore {
    /// Applies a refresh: its online rows and its new state, atomically
    /// and durably.
    pub fn apply(
        self: &Arc<Self>,
        view: &QualifiedName,
        state: Materialization,
        change: OnlineChange,
    ) -> Result<Arc<Materialization>> {
        self.apply_after(view, state, change, || Ok(()), |_, _| Ok(()))
    }

    /// [`Self::apply`], committing only once `before_commit` has succeeded
    /// (a refresh's offline commit, which runs while the rows are
    /// prepared); if it fails, nothing is applied. `also_commit` writes
    /// what belongs with the state about to be committed into the same
    /// transaction: a refresh's job record (see the `jobs` module), so that
    /// its outcome and its record commit together, with one fsync instead
    /// of two.
    pub fn apply_after(
        self: &Arc<Self>,
        view: &QualifiedName,
        state: Materialization,
        change: OnlineChange,
        before_commit: impl FnOnce() -> Result<()>,
        also_commit: impl FnOnce(&Materialization, &redb::WriteTransaction) -> Result<()>,
    ) -> Result<Arc<Materialization>> {
        let mut state = state.derive(view);
        let previous = self.materialization(view);
        // The same generation keeps its index unless its base is rewritten.
        state.index = match &previous {
            Some(previous) if previous.rows_table == state.rows_table => previous.index.clone(),
            _ => Arc::new(RowsIndex::new(None)),
        };
        let mut rewrote_base = false;
        // A run written to the delta, recorded in its runs once committed.
        let mut new_run = None;
        let name_key = serde_json::to_string(view).map_err(storage("encoding a view name"))?;
        let writing = std::time::Instant::now();
        let write = self.begin_durable_write()?;
        let mut changed: Vec<(Vec<u8>, StoredRow)> = Vec::new();
        let base: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&state.rows_table);
        let delta: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&state.delta_table);
        // A new generation takes the layout its state names; the current
        // one keeps the layout it was written in.
        if !matches!(change, OnlineChange::Replace(_))
            && let Some(previous) = previous
                .as_ref()
                .filter(|p| p.rows_table == state.rows_table)
        {
            state.base_layout = previous.base_layout;
        }
        match change {
            OnlineChange::None => {}
            OnlineChange::Replace(rows) => {
                write.delete_table(base).map_err(storage("writing"))?;
                write.delete_table(delta).map_err(storage("writing"))?;
                let mut table = write.open_table(base).map_err(storage("writing"))?;
                // A new generation is warmed afterwards, not written
                // through: nothing to remember per row.
                let (keys, blocks) = write_generation(&mut table, rows, state.base_layout)?;
                state.online_keys = keys;
                state.index = Arc::new(RowsIndex::new(
                    (state.base_layout == BaseLayout::Blocks).then_some(blocks),
                ));
                rewrote_base = true;
            }
            OnlineChange::Upsert(rows) => {
                // Which rows win is decided from the committed state (see
                // `decide_upserts`); the winners, in key order, become the
                // delta's next run.
                let base_table = write.open_table(base).map_err(storage("writing"))?;
                let mut delta_table = write.open_table(delta).map_err(storage("writing"))?;
                let mut new_keys = 0u64;
                self.decide_upserts(&state, rows, |decision| {
                    new_keys += u64::from(decision.new_key);
                    changed.extend(decision.write);
                    Ok(())
                })?;
                state.online_keys =
                    previous.as_ref().map(|p| p.online_keys).unwrap_or(0) + new_keys;
                let runs = state.index.delta.clone();
                let run = runs.next_run();
                let run_blocks = delta::write_run(
                    &mut delta_table,
                    run,
                    changed
                        .iter()
                        .map(|(key, row)| (key.as_slice(), row.bytes())),
                )?;
                // Merge once the delta holds an eighth of the base's keys.
                let base_keys = base_table.len().map_err(storage("writing"))?;
                let delta_keys =
                    runs.keys() + runs.new_keys(changed.iter().map(|(key, _)| key.as_slice()));
                drop(base_table);
                // (A blocks base counts blocks: about BLOCK_ROWS keys each.)
                let base_keys = match state.base_layout {
                    BaseLayout::PerKey => base_keys,
                    BaseLayout::Blocks => base_keys * blocks::BLOCK_ROWS as u64,
                };
                if delta_keys > (base_keys / 8).max(MIN_DELTA_MERGE) {
                    let mut base_table = write.open_table(base).map_err(storage("writing"))?;
                    let newest = delta::newest_rows(&delta_table)?;
                    let blocks = match state.base_layout {
                        BaseLayout::PerKey => {
                            for (key, value) in &newest {
                                base_table
                                    .insert(key.as_slice(), value.as_slice())
                                    .map_err(storage("merging"))?;
                            }
                            None
                        }
                        BaseLayout::Blocks => Some(blocks::merge_delta(&mut base_table, newest)?),
                    };
                    drop(delta_table);
                    write.delete_table(delta).map_err(storage("merging"))?;
                    // A new base and an empty delta; states before this one
                    // keep theirs (lookups holding them stay consistent).
                    state.index = Arc::new(RowsIndex::new(blocks));
                    rewrote_base = true;
                } else if !changed.is_empty() {
                    new_run = Some((runs, run, run_blocks));
                }
            }
        }
        if let Some(previous) = &previous
            && previous.rows_table != state.rows_table
        {
            delete_rows_tables(&write, previous)?;
        }
        {
            let mut table = write
                .open_table(MATERIALIZATIONS)
                .map_err(storage("writing"))?;
            let text = serde_json::to_string(&state).map_err(storage("encoding"))?;
            table
                .insert(name_key.as_str(), text.as_str())
                .map_err(storage("writing"))?;
        }
        let written = writing.elapsed();
        let waiting = std::time::Instant::now();
        before_commit()?;
        let waited = waiting.elapsed();
        also_commit(&state, &write)?;
        let committing = std::time::Instant::now();
        let _filling = self.commit_state_change(write)?;
        let committed = committing.elapsed();
        // Before the rows are published (and can be moved out of `pending`
        // into the cache), so that no lookup holding a state of this
        // generation passes over them.
        if let Some((runs, run, run_blocks)) = new_run {
            runs.add(
                run,
                run_blocks,
                changed.iter().map(|(key, _)| key.as_slice()),
            );
        }
        // Lookups after a refresh find its rows in memory: pending until a
        // background thread has moved them into the cache. A new
        // generation (a full refresh) is warmed afterwards instead
        // (`warm`), so that the refresh does not wait for it.
        self.pending.publish(&self.cache, state.cache_id, changed);
        let state = Arc::new(state);
        self.states
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(view.clone(), state.clone());
        if rewrote_base && state.online {
            self.warm(view);
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            view = %view,
            write_ms = ms(written),
            wait_ms = ms(waited),
            commit_ms = ms(committed),
            "online apply phases"
        );
        Ok(state)
    }

    /// For each upserted row, in order, hands `apply` whether its key is
    /// new and the row itself unless the stored row is newer (a tie goes
    /// to the refresh, which read rows written later). The reads — delta
    /// first, then base — see the committed state, whatever the caller's
    /// write transaction has inserted since (redb readers never see
    /// uncommitted writes), and that write excludes other writers.
    ///
    /// Large changes run as a pipeline: a thread takes the rows a chunk at
    /// a time (merging a refresh's partitions as it goes) and deals the
    /// chunks to two deciding threads in turn, each with its own read
    /// transaction; `apply` (the writer, this thread) takes their
    /// decisions back in the same turn, so in key order. Merging and
    /// deciding overlap instead of following each other.
    pub(super) fn decide_upserts(
        &self,
        state: &Materialization,
        rows: Upserts,
        mut apply: impl FnMut(Upsert) -> Result<()>,
    ) -> Result<()> {
        // Decides each chunk of `chunks` into one chunk of decisions for
        // `out`, which returns false once the writer has failed.
        let decide = |chunks: &mut dyn Iterator<Item = Vec<RowUpdate>>,
                      out: &mut dyn FnMut(Vec<Upsert>) -> bool|
         -> Result<()> {
            let read = self.db.begin_read().map_err(storage("reading"))?;
            let tables = RowsTables::open(&read, state)?;
            let mut stored_times = StoredTimes::new(self, state, &tables);
            for chunk in chunks {
                let mut decisions = Vec::with_capacity(chunk.len());
                for row in chunk {
                    let stored_time = stored_times.of(&row.key)?;
                    decisions.push(Upsert {
                        new_key: stored_time.is_none(),
                        write: stored_time
                            .is_none_or(|t| t <= row.event_time())
                            .then_some((row.key, row.stored)),
                    });
                }
                if !out(decisions) {
                    break;
                }
            }
            Ok(())
        };
        if rows.most < PARALLEL_UPSERT_READS {
            let mut failed = None;
            decide(&mut rows.chunks(), &mut |decisions| {
                for decision in decisions {
                    if let Err(e) = apply(decision) {
                        failed = Some(e);
                        return false;
                    }
                }
                true
            })?;
            return failed.map_or(Ok(()), Err);
        }
        std::thread::scope(|scope| {
            let (to_deciders, deciders_rows): (Vec<_>, Vec<_>) = (0..2)
                .map(|_| std::sync::mpsc::channel::<Vec<RowUpdate>>())
                .unzip();
            let (deciders_out, decisions): (Vec<_>, Vec<_>) = (0..2)
                .map(|_| std::sync::mpsc::channel::<Vec<Upsert>>())
                .unzip();
            let dealer = scope.spawn(move || {
                for (turn, chunk) in [0, 1].into_iter().cycle().zip(rows.chunks()) {
                    if to_deciders[turn].send(chunk).is_err() {
                        break; // a decider has stopped
                    }
                }
            });
            let deciders: Vec<_> = deciders_rows
                .into_iter()
                .zip(deciders_out)
                .map(|(chunks, out)| {
                    scope.spawn(move || {
                        decide(&mut chunks.into_iter(), &mut |decisions| {
                            out.send(decisions).is_ok()
                        })
                    })
                })
                .collect();
            let mut written = Ok(());
            // Chunk n comes from decider n % 2: the first decider that has
            // none left means there are none left.
            for turn in [0, 1].into_iter().cycle() {
                let Ok(chunk) = decisions[turn].recv() else {
                    break;
                };
                if let Err(e) = chunk.into_iter().try_for_each(&mut apply) {
                    written = Err(e);
                    break;
                }
            }
            // Dropping the receivers stops the deciders (and with them the
            // dealer) after a failure.
            drop(decisions);
            let panicked = || Error::internal("a thread deciding online upserts panicked");
            for decider in deciders {
                decider.join().map_err(|_| panicked())??;
            }
            dealer.join().map_err(|_| panicked())?;
            written
        })
    }

    /// Forgets a view (DROP FEATURE VIEW): its state and online rows.
    pub fn remove(&self, view: &QualifiedName) -> Result<Option<Arc<Materialization>>> {
        self.end_stream(view);
        self.drop_window_events(view);
        let Some(previous) = self.materialization(view) else {
            return Ok(None);
        };
        let name_key = serde_json::to_string(view).map_err(storage("encoding a view name"))?;
        let write = self.begin_durable_write()?;
        delete_rows_tables(&write, &previous)?;
        {
            let mut table = write
                .open_table(MATERIALIZATIONS)
                .map_err(storage("writing"))?;
            table
                .remove(name_key.as_str())
                .map_err(storage("writing"))?;
        }
        let _filling = self.commit_state_change(write)?;
        self.states
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(view);
        Ok(Some(previous))
    }

    /// Commits `write`, which changes online rows, under the fill lock;
    /// the caller holds the returned guard until it has published the
    /// change (rows and state), so that no cache fill reads redb before
    /// the commit and writes its row into the cache after the publish.
    ///
    /// Only the commit and the publish hold it: lookups that miss the
    /// cache wait for those, not for a refresh preparing its rows. (Lock
    /// order: the redb write, then the fill lock; fills take the fill lock
    /// and only read, which never waits for a writer.)
    pub(super) fn commit_state_change(
        &self,
        write: redb::WriteTransaction,
    ) -> Result<std::sync::RwLockWriteGuard<'_, ()>> {
        let filling = self
            .fill_lock
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        write.commit().map_err(storage("committing"))?;
        Ok(filling)
    }

    /// A write transaction whose commit returns once it is on disk.
    pub(super) fn begin_durable_write(&self) -> Result<redb::WriteTransaction> {
        let mut write = self.db.begin_write().map_err(storage("writing"))?;
        write
            .set_durability(Durability::Immediate)
            .map_err(storage("writing"))?;
        Ok(write)
    }
}

/// The event times of the rows a state holds, for deciding upserts (see
/// [`OnlineStore::decide_upserts`]), which come in key order: consecutive
/// keys of one base block share one read of it, from the row cache when it
/// holds the block. Reading each key's block from redb (a range search,
/// then a scan of the block) was most of a 1% refresh's online apply.
/// Cached blocks are what redb holds: a base's blocks never change (a
/// merge writes a new base, whose blocks are cached under a new name).
/// The delta is read from redb, and only for keys its filter may hold.
pub(super) struct StoredTimes<'a> {
    pub(super) store: &'a OnlineStore,
    pub(super) state: &'a Materialization,
    pub(super) tables: &'a RowsTables,
    /// The delta's runs, read-locked once for all the keys.
    pub(super) runs: delta::HeldRuns<'a>,
    /// The base block read last, and its number.
    pub(super) block: Option<(usize, CachedBlock)>,
    pub(super) cache_key: Vec<u8>,
}

impl<'a> StoredTimes<'a> {
    pub(super) fn new(
        store: &'a OnlineStore,
        state: &'a Materialization,
        tables: &'a RowsTables,
    ) -> Self {
        Self {
            store,
            state,
            tables,
            runs: state.index.delta.hold(),
            block: None,
            cache_key: Vec::new(),
        }
    }

    /// The event time of the row stored for `key`, if any.
    pub(super) fn of(&mut self, key: &[u8]) -> Result<Option<i64>> {
        if self.runs.may_hold(key)
            && let Some(delta) = &self.tables.delta
            && let Some(time) = self.runs.find(delta, key, stored_event_time)?
        {
            return Ok(Some(time));
        }
        let index = &self.state.index;
        let Some(blocks) = &index.blocks else {
            // A per-key base (or none yet): one read per key.
            return self.tables.find_in_base(key, stored_event_time);
        };
        // Keys come in order: most fall in the block read last.
        let last_block_holds = |(read, _): &(usize, CachedBlock)| {
            blocks.first_key(*read) <= key
                && (*read + 1 == blocks.len() || key < blocks.first_key(*read + 1))
        };
        let number = match &self.block {
            Some(last) if last_block_holds(last) => last.0,
            _ => match blocks.block_of(key) {
                Some(number) => number,
                None => return Ok(None),
            },
        };
        let block = match &self.block {
            Some((read, block)) if *read == number => block,
            _ => {
                block_cache_key(index.block_cache_id, number, &mut self.cache_key);
                let block = match self.store.cache.get(self.cache_key.as_slice()) {
                    Some(Cached::Block(block)) => block,
                    _ => self.tables.base_block(blocks.first_key(number))?,
                };
                &self.block.insert((number, block)).1
            }
        };
        Ok(block.event_time(key))
    }
}

/// Writes a new generation's rows (in key order) into its empty `table`;
/// returns how many there are and (for blocks) the blocks' index.
/// Producing the entries — merging a refresh's partitions, building the
/// stored values and blocks — runs on a second thread, a chunk ahead, so
/// that this one only inserts into the B-tree.
pub(super) fn write_generation(
    table: &mut RowsTableMut<'_>,
    mut rows: RowUpdates,
    layout: BaseLayout,
) -> Result<(u64, BlockIndex)> {
    const CHUNK: usize = 4096;
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<(Vec<u8>, Vec<u8>)>>(4);
        let producer = scope.spawn(move || {
            let mut chunk: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(CHUNK);
            let mut count = 0u64;
            let mut builder = BlockBuilder::default();
            let mut index = BlockIndex::default();
            let mut value = Vec::new();
            while let Some(row) = rows.next_row() {
                count += 1;
                let entry = match layout {
                    BaseLayout::PerKey => {
                        let mut value = Vec::with_capacity(8 + row.row.len());
                        store_value(row.event_time, row.row, &mut value);
                        Some((row.key.to_vec(), value))
                    }
                    BaseLayout::Blocks => {
                        store_value(row.event_time, row.row, &mut value);
                        let block = builder.push(row.key, &value);
                        if let Some((first_key, _)) = &block {
                            index.push(first_key);
                        }
                        block
                    }
                };
                chunk.extend(entry);
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if sender.send(full).is_err() {
                        return (count, index); // the writer failed
                    }
                }
            }
            if let Some((first_key, block)) = builder.finish() {
                index.push(&first_key);
                chunk.push((first_key, block));
            }
            if !chunk.is_empty() {
                let _ = sender.send(chunk);
            }
            (count, index)
        });
        for chunk in receiver {
            for (key, value) in &chunk {
                table
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(storage("writing"))?;
            }
        }
        producer
            .join()
            .map_err(|_| Error::internal("a thread building online rows panicked"))
    })
}

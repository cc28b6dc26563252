//! The end of a pass: its online change and new state committed (after the
//! offline commit, with the job's final record), and where its time went.

use std::sync::Arc;
use std::time::{Duration, Instant};

use featuredb_catalog::QualifiedName;

use super::compute::OfflineCommit;
use super::newest::MergedWinners;
use crate::error::Result;
use crate::jobs::RunningJob;
use crate::online::{Materialization, OnlineChange, OnlineStore};

/// Where a refresh's time went, logged at debug level: a slow refresh is
/// diagnosed with `--log-level featuredb=debug`, not a profiler.
#[derive(Debug, Default)]
pub(super) struct Phases {
    /// Flushing the inputs' logged writes, fixing their snapshots, and
    /// recording the job.
    pub(super) prepare: Duration,
    /// Planning the view's query.
    pub(super) plan: Duration,
    /// Reading inputs, computing rows, writing the offline Parquet files
    /// and the newest row per key, in every partition.
    pub(super) partitions: Duration,
    /// Setting up the merge of the partitions' newest rows; the merge
    /// itself runs within the online apply, while the rows are decided
    /// (incremental) or written (full).
    pub(super) merge: Duration,
    /// Waiting for the offline commit (finishing the data files and the
    /// Iceberg commit), which runs while the online rows are prepared:
    /// only what it takes beyond them.
    pub(super) offline_commit: Duration,
    /// The online store's redb transaction, publishing its rows to lookups
    /// (for a full refresh, also merging the partitions' newest rows),
    /// including the wait for the offline commit.
    pub(super) online_apply: Duration,
}

impl Phases {
    /// The pass's last phase: applies its online change, committing it
    /// once `offline` has committed, with `job`'s final record; then logs
    /// the phases.
    pub(super) fn apply_online(
        mut self,
        store: &Arc<OnlineStore>,
        view: &QualifiedName,
        job: &mut RunningJob,
        state: Materialization,
        change: OnlineChange,
        mut offline: OfflineCommit,
    ) -> Result<Arc<Materialization>> {
        let applying = Instant::now();
        let mut waited = Duration::ZERO;
        let applied = tokio::task::block_in_place(|| {
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.apply_after(
                    view,
                    state,
                    change,
                    || {
                        let waiting = Instant::now();
                        let committed = offline.wait_blocking();
                        waited = waiting.elapsed();
                        committed
                    },
                    |state, write| {
                        job.record.online_keys = state.online_keys;
                        job.finish_in(write)
                    },
                )
            }));
            // Also when the apply failed, or panicked, before it waited:
            // the commit must not outlive the view's job (its turn).
            let committed = offline.wait_blocking();
            match applied {
                Ok(applied) => applied.and_then(|applied| committed.map(|()| applied)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })?;
        crate::failpoint::crash_point("refresh-after-online-commit");
        self.online_apply = applying.elapsed();
        self.offline_commit = waited;
        self.log(view, &job.record.kind);
        Ok(applied)
    }

    pub(super) fn log(&self, view: &QualifiedName, kind: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            view = %view,
            kind,
            prepare_ms = ms(self.prepare),
            plan_ms = ms(self.plan),
            partitions_ms = ms(self.partitions),
            merge_ms = ms(self.merge),
            offline_commit_ms = ms(self.offline_commit),
            online_apply_ms = ms(self.online_apply),
            "refresh phases"
        );
    }
}

/// The online change of an incremental pass.
pub(super) fn upsert(online: bool, newest: MergedWinners) -> OnlineChange {
    if online {
        OnlineChange::Upsert(newest.into_upserts())
    } else {
        OnlineChange::None
    }
}

/// Commits a refresh's online change and state (blocking: redb fsyncs).
pub(super) fn apply_online(
    store: &Arc<OnlineStore>,
    view: &QualifiedName,
    state: Materialization,
    change: OnlineChange,
) -> Result<Arc<Materialization>> {
    tokio::task::block_in_place(|| store.apply(view, state, change))
}

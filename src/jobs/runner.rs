//! Running a job: one at a time per target, recorded as it starts, while it
//! runs and when it ends.

use std::sync::Arc;
use std::time::Instant;

use featuredb_catalog::{QualifiedName, timestamp_now as now};

use super::locks::{TargetLock, TargetLocks};
use super::records::{Job, JobRecords};
use crate::error::{Error, Result};

pub struct JobRunner {
    records: Arc<JobRecords>,
    locks: TargetLocks,
}

/// A job that has started: its record (which the work fills in: kind, row
/// counts) and its target's turn, held until the job is finished.
pub struct RunningJob {
    pub record: Job,
    started: Instant,
    /// Whether its final record was committed with the work's result
    /// ([`RunningJob::finish_in`]). If that commit then failed, the failure
    /// is recorded over it.
    recorded_finished: bool,
    _turn: TargetLock,
}

impl JobRunner {
    pub fn new(records: Arc<JobRecords>) -> Self {
        Self {
            records,
            locks: TargetLocks::default(),
        }
    }

    pub fn records(&self) -> &Arc<JobRecords> {
        &self.records
    }

    /// Waits for `target`'s turn: no job on it runs until the lock is
    /// dropped (or handed to [`Self::start`]).
    pub async fn lock(&self, target: &QualifiedName) -> TargetLock {
        self.locks.lock(target).await
    }

    /// Starts a job on `target` (whose turn `turn` holds) at `version`,
    /// recording it as running, durably.
    pub fn start(
        &self,
        turn: TargetLock,
        target: &QualifiedName,
        version: u32,
    ) -> Result<RunningJob> {
        let job = RunningJob {
            record: Job {
                id: self.records.next_id(),
                view: target.to_string(),
                version,
                kind: "pending".into(),
                status: "running".into(),
                started_at: now(),
                finished_at: None,
                rows_in: 0,
                rows_out: 0,
                online_keys: 0,
                duration_ms: None,
                error: None,
            },
            started: Instant::now(),
            recorded_finished: false,
            _turn: turn,
        };
        self.records.record(&job.record)?;
        Ok(job)
    }

    /// Records what the job has learnt so far (its kind, its input),
    /// durably.
    pub fn update(&self, job: &RunningJob) -> Result<()> {
        self.records.record(&job.record)
    }

    /// Ends the job with `outcome` and records it; returns the final
    /// record. A job whose end was committed with its result
    /// ([`RunningJob::finish_in`]) has its duration amended to include the
    /// commit (not fsynced: a crash before the next durable commit keeps
    /// the first). Recording failures are logged: the work is done either
    /// way.
    pub fn finish(&self, mut job: RunningJob, outcome: std::result::Result<(), &Error>) -> Job {
        job.mark_finished(outcome);
        let recorded = if outcome.is_ok() && job.recorded_finished {
            self.records.amend(&job.record)
        } else {
            self.records.record(&job.record)
        };
        if let Err(e) = recorded {
            tracing::warn!(job = job.record.id, error = %e, "could not record a job");
        }
        job.record
    }
}

impl RunningJob {
    /// Marks the job finished, now, with `outcome`.
    fn mark_finished(&mut self, outcome: std::result::Result<(), &Error>) {
        let job = &mut self.record;
        job.finished_at = Some(now());
        job.duration_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        match outcome {
            Ok(()) => job.status = "succeeded".into(),
            Err(e) => {
                job.status = "failed".into();
                job.error = Some(e.to_string());
            }
        }
    }

    /// Marks the job succeeded and records that in `write`, the
    /// transaction that commits its result: the two become durable
    /// together.
    pub fn finish_in(&mut self, write: &redb::WriteTransaction) -> Result<()> {
        self.mark_finished(Ok(()));
        self.recorded_finished = true;
        JobRecords::record_in(write, &self.record)
    }
}

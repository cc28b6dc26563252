//! The history of jobs, as `featuredb.jobs` shows it: one record per run,
//! in a table of the online store's redb database. Sharing the database is
//! what lets a refresh commit its final record in the same transaction as
//! its state (one fsync, and never a state without its record).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const JOBS: TableDefinition<u64, &str> = TableDefinition::new("jobs");

/// One REFRESH of one view, as `featuredb.jobs` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub view: String,
    pub version: u32,
    /// `full`, `incremental` or `unchanged`.
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub rows_in: u64,
    pub rows_out: u64,
    pub online_keys: u64,
    pub duration_ms: Option<f64>,
    pub error: Option<String>,
}

pub struct JobRecords {
    db: Arc<Database>,
    next_id: AtomicU64,
}

fn storage<E: std::fmt::Display>(context: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::OnlineStore(format!("{context}: {e}"))
}

impl JobRecords {
    /// Opens the records in `db`. Jobs that were running when the server
    /// stopped did not complete (nothing of theirs was applied): they are
    /// recorded as failed.
    pub fn open(db: Arc<Database>) -> Result<Self> {
        let mut next_id = 1;
        let mut write = db.begin_write().map_err(storage("opening jobs"))?;
        write
            .set_durability(Durability::Immediate)
            .map_err(storage("opening jobs"))?;
        {
            let mut jobs = write.open_table(JOBS).map_err(storage("opening jobs"))?;
            let mut interrupted = Vec::new();
            for entry in jobs.iter().map_err(storage("reading jobs"))? {
                let (id, job) = entry.map_err(storage("reading jobs"))?;
                next_id = next_id.max(id.value() + 1);
                let job: Job =
                    serde_json::from_str(job.value()).map_err(storage("decoding a job"))?;
                if job.status == "running" {
                    interrupted.push(job);
                }
            }
            for mut job in interrupted {
                job.status = "failed".into();
                job.error = Some("interrupted: the server stopped during the refresh".into());
                let text = serde_json::to_string(&job).map_err(storage("encoding a job"))?;
                jobs.insert(job.id, text.as_str())
                    .map_err(storage("writing jobs"))?;
            }
        }
        write.commit().map_err(storage("opening jobs"))?;
        Ok(Self {
            db,
            next_id: AtomicU64::new(next_id),
        })
    }

    /// A new job id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a job's current state, durably: a job that was running
    /// when the server stopped is reported as interrupted after restart.
    pub fn record(&self, job: &Job) -> Result<()> {
        self.write(job, Durability::Immediate)
    }

    /// Records a job again without waiting for the disk: the update
    /// becomes durable with the next durable commit, and a crash before
    /// that keeps the job's last durable record.
    pub fn amend(&self, job: &Job) -> Result<()> {
        self.write(job, Durability::None)
    }

    fn write(&self, job: &Job, durability: Durability) -> Result<()> {
        let mut write = self.db.begin_write().map_err(storage("writing jobs"))?;
        write
            .set_durability(durability)
            .map_err(storage("writing jobs"))?;
        Self::record_in(&write, job)?;
        write.commit().map_err(storage("writing jobs"))
    }

    /// Inserts (or replaces) `job`'s record in `write`, a transaction of
    /// the same database that commits something else with it.
    pub fn record_in(write: &redb::WriteTransaction, job: &Job) -> Result<()> {
        let mut table = write.open_table(JOBS).map_err(storage("writing jobs"))?;
        let text = serde_json::to_string(job).map_err(storage("encoding a job"))?;
        table
            .insert(job.id, text.as_str())
            .map_err(storage("writing jobs"))?;
        Ok(())
    }

    /// Every recorded job, oldest first.
    pub fn all(&self) -> Result<Vec<Job>> {
        let read = self.db.begin_read().map_err(storage("reading jobs"))?;
        let table = match read.open_table(JOBS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage("reading jobs")(e)),
        };
        let mut jobs = Vec::new();
        for entry in table.iter().map_err(storage("reading jobs"))? {
            let (_, job) = entry.map_err(storage("reading jobs"))?;
            jobs.push(serde_json::from_str(job.value()).map_err(storage("decoding a job"))?);
        }
        Ok(jobs)
    }
}

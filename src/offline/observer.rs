//! Who hears about writes: the stream engine keeps streaming feature views
//! current from the rows of each acknowledged write. The offline store
//! only calls out through this trait; it knows nothing of what listens.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::RecordBatch;
use featuredb_catalog::QualifiedName;

/// Hears every table's writes.
pub trait WriteObserver: Send + Sync {
    /// Rows of `table` are durable in its write-ahead log under sequence
    /// number `seq`, in the table's engine schema. Called in sequence
    /// order, before the writer is acknowledged; it must not block.
    fn logged(&self, table: &QualifiedName, seq: u64, batch: &RecordBatch);

    /// A commit to `table` succeeded: a flush of its logged rows, a direct
    /// write, or a TRUNCATE.
    fn committed(&self, table: &QualifiedName);
}

/// The observer the store's tables call, if one is set.
#[derive(Default)]
pub struct WriteObservers {
    observer: RwLock<Option<Arc<dyn WriteObserver>>>,
}

impl WriteObservers {
    pub fn set(&self, observer: Arc<dyn WriteObserver>) {
        *self
            .observer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(observer);
    }

    fn current(&self) -> Option<Arc<dyn WriteObserver>> {
        self.observer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    // A panic in an observer must not reach the writer: its rows are
    // durable already, and the log turn carries other writers' rows.
    pub(super) fn logged(&self, table: &QualifiedName, seq: u64, batch: &RecordBatch) {
        if let Some(observer) = self.current() {
            let heard = catch_unwind(AssertUnwindSafe(|| observer.logged(table, seq, batch)));
            if heard.is_err() {
                tracing::error!(%table, seq, "a write observer panicked; the write stands");
            }
        }
    }

    pub(super) fn committed(&self, table: &QualifiedName) {
        if let Some(observer) = self.current()
            && catch_unwind(AssertUnwindSafe(|| observer.committed(table))).is_err()
        {
            tracing::error!(%table, "a write observer panicked on a commit");
        }
    }
}

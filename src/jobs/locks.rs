//! One run at a time per target: a refresh of a view waits for the one
//! running, and so does dropping the view (its state must not outlive the
//! drop).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use featuredb_catalog::QualifiedName;
use tokio::sync::OwnedMutexGuard;

/// Holds a target's turn until dropped.
pub struct TargetLock(#[allow(dead_code)] OwnedMutexGuard<()>);

#[derive(Default)]
pub struct TargetLocks {
    locks: Mutex<HashMap<QualifiedName, Arc<tokio::sync::Mutex<()>>>>,
}

impl TargetLocks {
    /// Waits for `target`'s turn.
    pub async fn lock(&self, target: &QualifiedName) -> TargetLock {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(target.clone()).or_default().clone()
        };
        TargetLock(lock.lock_owned().await)
    }
}

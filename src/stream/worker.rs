//! Storing what streaming views' sources committed: after each commit to
//! a source (the flusher's, every `flush_interval_ms` while rows arrive),
//! an incremental refresh of each view it feeds writes the committed rows
//! to the view's offline history and the online store, and drops them from
//! the stream's memory. A failed refresh is retried with backoff.

use std::sync::Weak;
use std::time::Duration;

use featuredb_catalog::QualifiedName;

use crate::error::Result;
use crate::features::SqlPlanner;
use crate::features::materialize::Caller;
use crate::notice::NoticeSink;

use super::engine::StreamEngine;

/// Longest wait before retrying a refresh that failed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(super) fn spawn(engine: Weak<StreamEngine>) {
    tokio::spawn(async move {
        let mut backoff = Duration::ZERO;
        loop {
            let Some(strong) = engine.upgrade() else {
                return;
            };
            let wake = async {
                strong.wake.notified().await;
            };
            // Hold the engine only while waiting or working, never across
            // its drop (the server shutting down).
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            let failed = store_unstored(&strong).await;
            backoff = if failed {
                (backoff * 2).clamp(Duration::from_millis(250), MAX_BACKOFF)
            } else {
                Duration::ZERO
            };
        }
    });
}

/// Refreshes every view marked unstored; returns whether one failed (it
/// is marked again).
async fn store_unstored(engine: &StreamEngine) -> bool {
    let views: Vec<_> =
        std::mem::take(&mut *engine.unstored.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect();
    if views.is_empty() {
        return false;
    }
    let mut planner = match engine.planner() {
        Ok(planner) => planner,
        Err(e) => {
            tracing::error!(error = %e, "the stream engine has no planner");
            return true;
        }
    };
    let mut failed = false;
    for view in views {
        let Some(feed) = engine.feed(&view) else {
            continue;
        };
        if let Err(e) = store_with(engine, &view, planner.as_mut()).await {
            tracing::warn!(view = %view, error = %e, "could not store a stream's rows; retrying");
            feed.stream.failed(e.to_string());
            engine
                .unstored
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(view);
            failed = true;
        }
    }
    failed
}

/// Stores what `view`'s source committed and no refresh stored yet.
pub(super) async fn store(engine: &StreamEngine, view: &QualifiedName) -> Result<()> {
    let mut planner = engine.planner()?;
    store_with(engine, view, planner.as_mut()).await
}

async fn store_with(
    engine: &StreamEngine,
    view: &QualifiedName,
    planner: &mut dyn SqlPlanner,
) -> Result<()> {
    let registry = engine.registry.snapshot();
    let mut notices = Vec::new();
    let mut caller = Caller {
        planner,
        notices: NoticeSink::new(&mut notices, None),
    };
    engine
        .materializer
        .refresh_stream(&registry, view, &mut caller)
        .await
}

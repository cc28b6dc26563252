//! Crash points for tests: `FEATUREDB_CRASH_AT=<name>` makes the server
//! abort (as a kill -9 would stop it) when it reaches the point `name`.
//! Crash tests use them to stop the server between two writes that must
//! be made atomic by recovery, a window too small to hit by timing.

use std::sync::OnceLock;

/// Aborts the process if `FEATUREDB_CRASH_AT` names this point.
pub fn crash_point(name: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("FEATUREDB_CRASH_AT").ok());
    if target.as_deref() == Some(name) {
        eprintln!("featuredb: crashing at {name} (FEATUREDB_CRASH_AT)");
        std::process::abort();
    }
}

//! SQL behaviour pinned in `tests/slt/*.slt`, run against the real server
//! through both the simple and the extended query protocol
//! (sqllogictest-rs's postgres engines). Each file runs on a fresh server.
//!
//! `SLT_FILTER=name cargo test --test sqllogictest` runs matching files.
//! Records can be limited to one protocol with `onlyif simple` /
//! `onlyif extended` (and `skipif`).

mod common;

use std::path::PathBuf;

use common::TestServer;
use sqllogictest::Runner;
use sqllogictest_engines::postgres::{PostgresExtended, PostgresSimple};

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let filter = std::env::var("SLT_FILTER").unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| p.to_string_lossy().contains(&filter))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn sqllogictest_files() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files matched");
    let mut failures = Vec::new();
    for file in &files {
        for protocol in ["simple", "extended"] {
            let server = TestServer::start();
            let config = server.config();
            let result = if protocol == "simple" {
                let mut runner = Runner::new(move || {
                    let config = config.clone();
                    async move { PostgresSimple::connect(config).await }
                });
                runner.add_label("featuredb");
                runner.add_label(protocol);
                runner.run_file_async(file).await
            } else {
                let mut runner = Runner::new(move || {
                    let config = config.clone();
                    async move { PostgresExtended::connect(config).await }
                });
                runner.add_label("featuredb");
                runner.add_label(protocol);
                runner.run_file_async(file).await
            };
            match result {
                Ok(()) => eprintln!("ok   {} ({protocol})", file.display()),
                Err(e) => {
                    eprintln!("FAIL {} ({protocol})", file.display());
                    failures.push(format!(
                        "{} ({protocol}):\n{}",
                        file.display(),
                        e.display(false)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

//! SQL behaviour pinned in `tests/slt/*.slt`, run against the real server
//! through both the simple and the extended query protocol
//! (sqllogictest-rs's postgres engines). Each file runs on a fresh server.
//!
//! `SLT_FILTER=name cargo test --test sqllogictest` runs matching files.
//! Records can be limited to one protocol with `onlyif simple` /
//! `onlyif extended` (and `skipif`).
//!
//! `SLT_PROTOCOL=simple|extended` runs one protocol only.
//! `expectations_are_postgres` runs the files listed in `POSTGRES_CHECKED`
//! against a throw-away PostgreSQL 15 it starts itself, on every run.
//!
//! `SLT_POSTGRES="host=… port=… user=… dbname=…"` runs the same files
//! against a real PostgreSQL instead (label `reference-postgres` instead of
//! `featuredb`), to check that the expectations are PostgreSQL's. Each
//! file then needs a clean database: the runner drops what it created
//! only if the file does.

mod common;

use std::path::PathBuf;

use common::{ReferencePostgres, TestServer};
use sqllogictest::{AsyncDB, DBOutput, Runner};
use sqllogictest_engines::postgres::{PostgresExtended, PostgresSimple};

/// An engine whose errors read like psql's verbose ones (`ERROR:  42P01:
/// message`, then `DETAIL:`/`HINT:` lines), so `statement error <regex>`
/// can pin the SQLSTATE and the message together; tokio-postgres's own
/// error text is only "db error".
struct WithMessages<D>(D);

#[derive(Debug)]
struct ServerError {
    text: String,
    sqlstate: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for ServerError {}

impl From<tokio_postgres::Error> for ServerError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => {
                let mut text =
                    format!("{}:  {}: {}", db.severity(), db.code().code(), db.message());
                if let Some(detail) = db.detail() {
                    text.push_str(&format!("\nDETAIL:  {detail}"));
                }
                if let Some(hint) = db.hint() {
                    text.push_str(&format!("\nHINT:  {hint}"));
                }
                Self {
                    text,
                    sqlstate: Some(db.code().code().to_string()),
                }
            }
            None => Self {
                text: format!("{error:?}"),
                sqlstate: None,
            },
        }
    }
}

#[async_trait::async_trait]
impl<D> AsyncDB for WithMessages<D>
where
    D: AsyncDB<Error = tokio_postgres::Error> + Send,
{
    type Error = ServerError;
    type ColumnType = D::ColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, ServerError> {
        Ok(self.0.run(sql).await?)
    }

    async fn shutdown(&mut self) {
        self.0.shutdown().await
    }

    fn engine_name(&self) -> &str {
        self.0.engine_name()
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await
    }

    fn error_sql_state(error: &ServerError) -> Option<String> {
        error.sqlstate.clone()
    }
}

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

/// Runs one file through `protocol` ("simple" or "extended"), with
/// `label` (the server kind) and the protocol as labels.
async fn run_file(
    config: tokio_postgres::Config,
    label: &str,
    protocol: &str,
    file: &std::path::Path,
) -> Result<(), sqllogictest::TestError> {
    if protocol == "simple" {
        run_with(config, PostgresSimple::connect, label, protocol, file).await
    } else {
        run_with(config, PostgresExtended::connect, label, protocol, file).await
    }
}

/// Runs `file` on connections made by `connect` (one of the postgres
/// engines' constructors), wrapped in [`WithMessages`].
async fn run_with<D, F, Fut>(
    config: tokio_postgres::Config,
    connect: F,
    label: &str,
    protocol: &str,
    file: &std::path::Path,
) -> Result<(), sqllogictest::TestError>
where
    D: AsyncDB<Error = tokio_postgres::Error> + Send,
    F: Fn(tokio_postgres::Config) -> Fut + Copy,
    Fut: std::future::Future<Output = Result<D, tokio_postgres::Error>>,
{
    let mut runner = Runner::new(move || {
        let connecting = connect(config.clone());
        async move {
            connecting
                .await
                .map(WithMessages)
                .map_err(ServerError::from)
        }
    });
    runner.add_label(label);
    runner.add_label(protocol);
    runner.run_file_async(file).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sqllogictest_files() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files matched");
    let mut failures = Vec::new();
    for file in &files {
        let only = std::env::var("SLT_PROTOCOL").unwrap_or_default();
        for protocol in ["simple", "extended"] {
            if !only.is_empty() && only != protocol {
                continue;
            }
            let external = std::env::var("SLT_POSTGRES").ok();
            let server = external.is_none().then(TestServer::start);
            let label = if external.is_some() {
                "reference-postgres"
            } else {
                "featuredb"
            };
            let config: tokio_postgres::Config = match (&server, &external) {
                (Some(server), _) => server.config(),
                (None, Some(connection)) => connection.parse().expect("SLT_POSTGRES"),
                (None, None) => unreachable!(),
            };
            let result = run_file(config, label, protocol, file).await;
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

/// Files whose expectations are PostgreSQL's (records that are not carry
/// `onlyif featuredb`): run against a real PostgreSQL 15 as well, each on a
/// fresh database, through the simple protocol.
const POSTGRES_CHECKED: &[&str] = &[
    "bi_tools.slt",
    "catalog.slt",
    "cursors.slt",
    "rename_truncate.slt",
    "temp_tables.slt",
    "transactions.slt",
    "types.slt",
    "views.slt",
];

#[tokio::test(flavor = "multi_thread")]
async fn expectations_are_postgres() {
    let reference = tokio::task::spawn_blocking(ReferencePostgres::start)
        .await
        .unwrap();
    let (admin, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=bench dbname=postgres",
            reference.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the reference PostgreSQL");
    tokio::spawn(connection);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut failures = Vec::new();
    for name in POSTGRES_CHECKED {
        for statement in [
            "DROP DATABASE IF EXISTS featuredb WITH (FORCE)",
            "CREATE DATABASE featuredb",
        ] {
            admin.batch_execute(statement).await.unwrap();
        }
        let config = reference.config("featuredb");
        if let Err(e) = run_file(config, "reference-postgres", "simple", &dir.join(name)).await {
            failures.push(format!("{name} against PostgreSQL:\n{}", e.display(false)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

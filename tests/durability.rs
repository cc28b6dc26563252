//! Acknowledged data survives restarts and kill -9; a crash never leaves a
//! table that breaks startup.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestServer;
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_tables_types_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    {
        let mut server = TestServer::start_in(&data_dir);
        let client = server.client().await;
        client
            .batch_execute(
                "CREATE SCHEMA sales; \
                 CREATE TABLE sales.orders (id BIGINT NOT NULL, qty SMALLINT, code VARCHAR(4), amount NUMERIC(8,2)); \
                 INSERT INTO sales.orders VALUES (1, 2, 'ab', 10.50), (2, NULL, NULL, NULL)",
            )
            .await
            .unwrap();
        let status = server.stop();
        assert!(
            status.success(),
            "clean shutdown: {status:?}\n{}",
            server.log_text()
        );
    }
    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    let rows = client
        .query(
            "SELECT id, qty, code, amount::text FROM sales.orders ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, i16>(1), 2, "SMALLINT survives as int2");
    assert_eq!(rows[0].get::<_, String>(3), "10.50");
    // Declared constraints survive too.
    let err = client
        .simple_query("INSERT INTO sales.orders VALUES (NULL, 1, 'x', 1)")
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "23502");
    let err = client
        .simple_query("INSERT INTO sales.orders VALUES (3, 1, 'toolong', 1)")
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "22001");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_cannot_open_the_same_data_directory() {
    let server = TestServer::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_featuredb"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("in use by another featuredb process")
    );
}

/// Writers insert numbered rows; every INSERT the server acknowledged is
/// recorded. The server is killed with SIGKILL at a random moment, several
/// times. After each restart, every acknowledged row must be there.
#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_never_loses_acknowledged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let acknowledged = Arc::new(Mutex::new(HashSet::<i64>::new()));
    {
        let server = TestServer::start_in(&data_dir);
        let client = server.client().await;
        client
            .batch_execute("CREATE TABLE events (id BIGINT NOT NULL, writer INTEGER, payload TEXT)")
            .await
            .unwrap();
    }
    let mut next_id = 0i64;
    for round in 0..3 {
        let mut server = TestServer::start_in(&data_dir);
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for writer in 0..4i32 {
            let client = server.client().await;
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            let base = next_id + writer as i64 * 1_000_000;
            writers.push(tokio::spawn(async move {
                let mut id = base;
                while !stop.load(Ordering::Relaxed) {
                    let sql = format!(
                        "INSERT INTO events VALUES ({id}, {writer}, 'p{id}'), ({}, {writer}, 'q')",
                        id + 1
                    );
                    match client.simple_query(&sql).await {
                        Ok(_) => {
                            let mut set = acknowledged.lock().await;
                            set.insert(id);
                            set.insert(id + 1);
                        }
                        Err(_) => break,
                    }
                    id += 2;
                }
            }));
        }
        // A COPY in flight when the process dies must vanish entirely.
        let copier = server.client().await;
        let copy = tokio::spawn(async move {
            use futures::SinkExt;
            let sink = copier.copy_in("COPY events FROM STDIN").await?;
            futures::pin_mut!(sink);
            for i in 0..1_000_000i64 {
                let line = format!("{}\t99\tcopy\n", -1 - i);
                sink.send(bytes::Bytes::from(line)).await?;
            }
            sink.finish().await
        });
        let pause = 300 + rand::random::<u64>() % 1200;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            let _ = writer.await;
        }
        let copy_result = copy.await.unwrap();
        next_id += 100_000_000;

        let server = TestServer::start_in(&data_dir);
        let client = server.client().await;
        let present: HashSet<i64> = client
            .query("SELECT id FROM events WHERE id >= 0", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let acknowledged = acknowledged.lock().await;
        let missing: Vec<_> = acknowledged.difference(&present).take(5).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged rows missing, e.g. {missing:?}",
            acknowledged.difference(&present).count()
        );
        let copied: i64 = client
            .query_one("SELECT count(*) FROM events WHERE writer = 99", &[])
            .await
            .unwrap()
            .get(0);
        match copy_result {
            Ok(n) => assert_eq!(
                copied % 1_000_000,
                0,
                "acknowledged COPY of {n} rows is whole"
            ),
            Err(_) => assert_eq!(
                copied % 1_000_000,
                0,
                "an interrupted COPY left {copied} rows"
            ),
        }
        assert!(
            !acknowledged.is_empty(),
            "round {round}: nothing was written"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_shuts_down_cleanly_and_idle_clients_are_told() {
    let mut server = TestServer::start();
    let client = server.client().await;
    client.simple_query("SELECT 1").await.unwrap();
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    assert!(client.simple_query("SELECT 1").await.is_err());
}

fn parquet_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                .count()
        })
        .unwrap_or(0)
}

/// Small INSERTs are acknowledged from the write-ahead log and committed to
/// Iceberg in one snapshot shortly after; a COPY commits the logged rows
/// first.
#[tokio::test(flavor = "multi_thread")]
async fn small_writes_are_logged_then_committed_in_batches() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE small (id BIGINT)")
        .await
        .unwrap();
    for id in 0..50i64 {
        client
            .execute("INSERT INTO small VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM small", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 50, "logged rows are visible at once");
    let data = server.data_dir.join("warehouse/public/small/data");
    // Within the flush interval the 50 INSERTs become one data file.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while parquet_files(&data) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(parquet_files(&data), 1);
    let count: i64 = client
        .query_one("SELECT count(*) FROM small", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 50, "rows are not read twice once committed");
    // The log is emptied once its rows are committed (just after the
    // commit that makes the data file visible).
    let wal_files = || -> usize {
        std::fs::read_dir(server.data_dir.join("wal"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|table| {
                std::fs::read_dir(table.path())
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal_files() != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(wal_files(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn logged_rows_survive_kill_and_are_committed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    {
        let mut server =
            TestServer::start_with(&data_dir, &[("FEATUREDB_FLUSH_INTERVAL_MS", "600000")]);
        let client = server.client().await;
        client
            .batch_execute("CREATE TABLE k (id BIGINT, note TEXT)")
            .await
            .unwrap();
        for id in 0..20i64 {
            client
                .execute("INSERT INTO k VALUES ($1, 'logged')", &[&id])
                .await
                .unwrap();
        }
        server.kill();
    }
    let mut server =
        TestServer::start_with(&data_dir, &[("FEATUREDB_FLUSH_INTERVAL_MS", "600000")]);
    let client = server.client().await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM k", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 20, "replayed from the log");
    // A direct commit (COPY) takes the logged rows with it.
    {
        use futures::SinkExt;
        let sink = client.copy_in("COPY k FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        let mut data = String::new();
        for id in 100..20_100 {
            data.push_str(&format!("{id}\tcopied\n"));
        }
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        sink.finish().await.unwrap();
    }
    assert!(server.stop().success());
    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE note = 'logged') FROM k",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 20_020);
    assert_eq!(row.get::<_, i64>(1), 20);
}

/// A renamed table keeps its logged (not yet committed) rows and its files;
/// a new table taking the old name gets files of its own; TRUNCATE removes
/// committed and logged rows and keeps later ones — across kill -9.
#[tokio::test(flavor = "multi_thread")]
async fn renames_and_truncates_survive_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let env = [("FEATUREDB_FLUSH_INTERVAL_MS", "600000")];
    {
        let mut server = TestServer::start_with(&data_dir, &env);
        let client = server.client().await;
        client
            .batch_execute(
                "CREATE TABLE a (id BIGINT);
                 INSERT INTO a VALUES (0), (1), (2);
                 ALTER TABLE a RENAME TO b;
                 INSERT INTO b VALUES (3);
                 CREATE TABLE a (id BIGINT);
                 INSERT INTO a VALUES (100);
                 CREATE TABLE c (id BIGINT);",
            )
            .await
            .unwrap();
        {
            use futures::SinkExt;
            let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
            futures::pin_mut!(sink);
            let data: String = (0..50_000).map(|i| format!("{i}\n")).collect();
            sink.send(bytes::Bytes::from(data)).await.unwrap();
            sink.finish().await.unwrap();
        }
        client
            .batch_execute(
                "INSERT INTO c VALUES (-1);
                 TRUNCATE c;
                 INSERT INTO c VALUES (7);",
            )
            .await
            .unwrap();
        server.kill();
    }
    let server = TestServer::start_with(&data_dir, &env);
    let client = server.client().await;
    let ids =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    let b = ids(client
        .query("SELECT id FROM b ORDER BY id", &[])
        .await
        .unwrap());
    assert_eq!(b, vec![0, 1, 2, 3], "logged rows followed the rename");
    let a = ids(client.query("SELECT id FROM a", &[]).await.unwrap());
    assert_eq!(a, vec![100]);
    let c = ids(client.query("SELECT id FROM c", &[]).await.unwrap());
    assert_eq!(
        c,
        vec![7],
        "TRUNCATE removed committed and logged rows only"
    );
    // Dropping the renamed table deletes its files, not the new a's.
    client.batch_execute("DROP TABLE b").await.unwrap();
    let a = ids(client.query("SELECT id FROM a", &[]).await.unwrap());
    assert_eq!(a, vec![100]);
    client
        .batch_execute("INSERT INTO a VALUES (101)")
        .await
        .unwrap();
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM a", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
}

/// A quoted table name is one directory inside the warehouse, whatever
/// it holds (`..`, `/`); dropping it deletes that directory only.
#[tokio::test(flavor = "multi_thread")]
async fn quoted_names_stay_inside_the_warehouse() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            r#"CREATE TABLE keep (a INT);
               INSERT INTO keep VALUES (1);
               CREATE TABLE "../keep" (a INT);
               INSERT INTO "../keep" VALUES (2);
               CREATE TABLE "/tmp/featuredb-escape" (a INT);
               INSERT INTO "/tmp/featuredb-escape" VALUES (3);"#,
        )
        .await
        .unwrap();
    let public = server.data_dir.join("warehouse/public");
    assert!(public.join("@2E@2E@2Fkeep").is_dir());
    assert!(public.join("@2Ftmp@2Ffeaturedb-escape").is_dir());
    assert!(!std::path::Path::new("/tmp/featuredb-escape").exists());
    client
        .batch_execute(r#"DROP TABLE "../keep"; DROP TABLE "/tmp/featuredb-escape""#)
        .await
        .unwrap();
    let kept: i32 = client
        .query_one("SELECT a FROM keep", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
    assert!(public.join("keep").is_dir());
}

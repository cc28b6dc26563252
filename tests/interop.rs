//! Other engines can read what featuredb writes: PyIceberg opens the
//! embedded SQL catalog and scans a table. The test installs PyIceberg in a
//! virtualenv under `target/` on first run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;

/// A virtualenv with PyIceberg, created once and reused.
fn pyiceberg_python() -> PathBuf {
    common::python_venv("interop-venv", "tests/interop/requirements.txt")
}

fn read_with_pyiceberg(
    python: &Path,
    data_dir: &Path,
    namespace: &str,
    table: &str,
) -> serde_json::Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/read_with_pyiceberg.py");
    let output = Command::new(python)
        .arg(script)
        .arg(data_dir)
        .arg(namespace)
        .arg(table)
        .output()
        .expect("run PyIceberg");
    assert!(
        output.status.success(),
        "PyIceberg failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from PyIceberg")
}

#[tokio::test(flavor = "multi_thread")]
async fn pyiceberg_reads_a_table_featuredb_wrote() {
    let python = tokio::task::spawn_blocking(pyiceberg_python).await.unwrap();
    let mut server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE SCHEMA features; \
             CREATE TABLE features.users (id BIGINT NOT NULL, name TEXT, score DOUBLE PRECISION, \
                 amount NUMERIC(10,2), active BOOLEAN, born DATE, seen TIMESTAMPTZ, tags TEXT[]); \
             INSERT INTO features.users VALUES \
                 (1, 'ann', 0.5, 10.25, true, '1990-05-01', '2024-01-01 12:00:00+00', ARRAY['a','b']), \
                 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL); \
             INSERT INTO features.users (id, name) VALUES (3, 'cyd')",
        )
        .await
        .unwrap();
    // Small writes reach Iceberg within the flush interval (1 s); a clean
    // shutdown commits them at once.
    assert!(server.stop().success());
    let data_dir = std::fs::canonicalize(&server.data_dir).unwrap();
    let result = read_with_pyiceberg(&python, &data_dir, "features", "users");
    assert_eq!(
        result["namespaces"],
        serde_json::json!(["features", "public"])
    );
    assert_eq!(
        result["schema"],
        serde_json::json!([
            "id:long",
            "name:string",
            "score:double",
            "amount:decimal(10, 2)",
            "active:boolean",
            "born:date",
            "seen:timestamptz",
            "tags:list<string>"
        ])
    );
    assert!(result["snapshots"].as_u64().unwrap() >= 1);
    let rows = result["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], "1");
    assert_eq!(rows[0]["name"], "ann");
    assert_eq!(rows[0]["amount"], "10.25");
    assert_eq!(rows[0]["born"], "1990-05-01");
    assert_eq!(rows[0]["seen"], "2024-01-01 12:00:00+00:00");
    assert_eq!(rows[0]["tags"], "['a', 'b']");
    assert_eq!(rows[1]["name"], serde_json::Value::Null);
    assert_eq!(rows[2]["name"], "cyd");

    // While the server runs, a COPY is committed to Iceberg before it is
    // acknowledged, so other engines see it at once.
    let server = TestServer::start_in(&server.data_dir);
    let client = server.client().await;
    let mut data = String::new();
    for id in 100..20_100 {
        data.push_str(&format!("{id}\tbulk\n"));
    }
    {
        use futures::SinkExt;
        let sink = client
            .copy_in("COPY features.users (id, name) FROM STDIN")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        assert_eq!(sink.finish().await.unwrap(), 20_000);
    }
    let result = read_with_pyiceberg(&python, &data_dir, "features", "users");
    assert_eq!(result["rows"].as_array().unwrap().len(), 20_003);

    // TRUNCATE is an Iceberg snapshot other engines read as empty; a
    // renamed table is found under its new name.
    client
        .batch_execute(
            "TRUNCATE features.users; \
             ALTER TABLE features.users RENAME TO members",
        )
        .await
        .unwrap();
    let result = read_with_pyiceberg(&python, &data_dir, "features", "members");
    assert_eq!(result["rows"].as_array().unwrap().len(), 0);
    let snapshots = result["snapshots"].as_u64().unwrap();
    assert!(snapshots >= 2, "the rows before TRUNCATE stay in history");
}

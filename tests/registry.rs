//! The feature registry survives restarts and kill -9: an acknowledged
//! DDL is there afterwards, with every version, and reads give the same
//! answers.

mod common;

use common::TestServer;

const SETUP: &str = "
    CREATE TABLE events (user_id BIGINT, ts TIMESTAMPTZ, score DOUBLE PRECISION);
    INSERT INTO events VALUES
      (1, '2024-05-01 10:00:00+00', 1.0),
      (1, '2024-05-03 10:00:00+00', 3.0),
      (2, '2024-05-02 10:00:00+00', 2.0);
    CREATE ENTITY app_user (user_id BIGINT) COMMENT 'a user of the app';
    CREATE FEATURE VIEW user_score ENTITY app_user TIMESTAMP ts TTL INTERVAL '30 days'
      WITH (owner = 'ml', tags = 'core')
      AS SELECT user_id, ts, score FROM events;
    CREATE OR REPLACE FEATURE VIEW user_score ENTITY app_user TIMESTAMP ts
      AS SELECT user_id, ts, score * 10 AS score FROM events;
    CREATE FEATURE SERVICE scoring AS user_score (score), user_score VERSION 1 (score AS raw);
    CREATE VIEW user_events AS SELECT user_id, count(*) AS n FROM events GROUP BY user_id;
";

/// What the registry and the reads say, as text, for comparing before and
/// after a restart.
async fn registry_answers(client: &tokio_postgres::Client) -> Vec<String> {
    let queries = [
        "SELECT name, array_to_string(key_columns, ',') || ' ' || coalesce(comment, '') FROM featuredb.entities",
        "SELECT name, version::text || ' ' || is_current::text || ' ' || created_at::text || ' ' || definition FROM featuredb.versions ORDER BY name, version",
        "SELECT name, coalesce(ttl, 'none') || ' ' || coalesce(owner, 'none') || ' ' || coalesce(tags, 'none') FROM featuredb.feature_views",
        "SELECT name, array_to_string(features, ',') FROM featuredb.feature_services",
        "SELECT user_id::text, score::text FROM user_score FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-05-04 00:00:00+00' ORDER BY user_id",
        "SELECT user_id::text, coalesce(score::text, '-') || ' ' || coalesce(raw::text, '-') FROM scoring FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-05-04 00:00:00+00' ORDER BY user_id",
        "SELECT user_id::text, n::text FROM user_events ORDER BY user_id",
    ];
    let mut answers = Vec::new();
    for (index, query) in queries.iter().enumerate() {
        let rows = client
            .query(*query, &[])
            .await
            .unwrap_or_else(|e| panic!("{query}: {e:?}"));
        for row in rows {
            answers.push(format!(
                "{index}: {} {}",
                row.get::<_, String>(0),
                row.get::<_, String>(1)
            ));
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_survives_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let before = {
        let mut server = TestServer::start_in(&data_dir);
        let client = server.client().await;
        client.batch_execute(SETUP).await.unwrap();
        let answers = registry_answers(&client).await;
        assert!(server.stop().success(), "{}", server.log_text());
        answers
    };
    assert_eq!(before.len(), 1 + 3 + 1 + 1 + 2 + 2 + 2, "{before:#?}");
    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    assert_eq!(registry_answers(&client).await, before);

    // The definitions are whole again: version 1 is still readable and
    // dependents are still enforced.
    let rows = client
        .query(
            "SELECT score FROM user_score VERSION 1 FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2024-05-04 00:00:00+00' WHERE user_id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, f64>(0), 3.0);
    let err = client
        .simple_query("DROP FEATURE VIEW user_score")
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "2BP01");
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_ddl_survives_kill_nine() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let before = {
        let mut server = TestServer::start_in(&data_dir);
        let client = server.client().await;
        client.batch_execute(SETUP).await.unwrap();
        // A DROP acknowledged just before the crash stays dropped.
        client
            .batch_execute(
                "CREATE FEATURE VIEW doomed KEY (user_id) TIMESTAMP ts AS SELECT user_id, ts FROM events; \
                 DROP FEATURE VIEW doomed",
            )
            .await
            .unwrap();
        let answers = registry_answers(&client).await;
        server.kill();
        answers
    };
    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    assert_eq!(registry_answers(&client).await, before);
    let rows = client
        .query(
            "SELECT count(*) FROM featuredb.feature_views WHERE name = 'doomed'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_ddl_changes_nothing() {
    let server = TestServer::start();
    let client = server.client().await;
    client.batch_execute(SETUP).await.unwrap();
    let before = registry_answers(&client).await;
    // Each fails validation after parsing; none may leave a trace.
    for statement in [
        "CREATE OR REPLACE FEATURE VIEW user_score ENTITY app_user TIMESTAMP ts AS SELECT user_id, score FROM events",
        "CREATE OR REPLACE FEATURE VIEW user_score ENTITY app_user TIMESTAMP ts AS SELECT user_id, ts, 'x' AS score FROM events",
        "ALTER FEATURE VIEW user_score SET (ttl = INTERVAL '-1 day')",
        "CREATE FEATURE SERVICE scoring AS user_score.score",
        "DROP ENTITY app_user",
    ] {
        client.simple_query(statement).await.expect_err(statement);
    }
    assert_eq!(registry_answers(&client).await, before);
}

/// Ties on event time go to the row written last, through every write
/// path (logged INSERTs, COPY straight to data files) and after the
/// logged rows are flushed into data files by a restart.
#[tokio::test(flavor = "multi_thread")]
async fn ties_go_to_the_row_written_last() {
    use futures::SinkExt;

    async fn latest(client: &tokio_postgres::Client) -> i64 {
        let rows = client
            .query("SELECT value FROM reading WHERE sensor = 1", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        rows[0].get(0)
    }
    async fn copy_values(client: &tokio_postgres::Client, values: impl Iterator<Item = i64>) {
        let mut data = String::new();
        for value in values {
            data.push_str(&format!("1\t2024-01-01 00:00:00\t{value}\n"));
        }
        let sink = client.copy_in("COPY readings FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(data)).await.unwrap();
        sink.finish().await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    {
        let mut server = TestServer::start_in(&data_dir);
        let client = server.client().await;
        client
            .batch_execute(
                "CREATE TABLE readings (sensor BIGINT, ts TIMESTAMP, value BIGINT); \
                 CREATE FEATURE VIEW reading KEY (sensor) TIMESTAMP ts \
                   AS SELECT sensor, ts, value FROM readings",
            )
            .await
            .unwrap();
        // A large COPY goes straight to data files, in order.
        copy_values(&client, (0..30_000).map(|i| (i * 7919) % 30_000)).await;
        assert_eq!(latest(&client).await, (29_999 * 7919) % 30_000);
        // A small write after it is logged, and newer.
        client
            .batch_execute("INSERT INTO readings VALUES (1, '2024-01-01 00:00:00', -1)")
            .await
            .unwrap();
        assert_eq!(latest(&client).await, -1);
        // A small COPY is logged too.
        copy_values(&client, [5, -7, 3].into_iter()).await;
        assert_eq!(latest(&client).await, 3);
        assert!(server.stop().success(), "{}", server.log_text());
    }
    // The clean stop flushed the logged rows into a data file.
    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    assert_eq!(latest(&client).await, 3);
    copy_values(&client, (0..20_000).rev()).await;
    assert_eq!(latest(&client).await, 0);
}

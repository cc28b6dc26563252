//! The online store and REFRESH FEATURE VIEW through the real server:
//! refresh → lookup, incremental refresh, idempotency, TTL, restart,
//! services, batch and composite-key lookups, both protocols, parity with
//! the offline store, and a crash test that kills the server mid-refresh.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestServer, sqlstate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;
use tokio_postgres::SimpleQueryMessage;

/// Rows of a query as text (NULL as "NULL"), via the simple protocol.
/// A server on a data directory that outlives it (in `_temp`), for tests
/// that start a server on it again.
fn server_with_data_dir() -> (tempfile::TempDir, PathBuf, TestServer) {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let server = TestServer::start_in(&data_dir);
    (temp, data_dir, server)
}

async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// (ts, amount, n) of user_features rows, for comparing.
fn feature_rows(rows: Vec<tokio_postgres::Row>) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{:?} {:?} {:?}",
                r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1),
                r.get::<_, Option<f64>>(2),
                r.get::<_, Option<i64>>(3)
            )
        })
        .collect()
}

async fn jobs(client: &Client, view: &str) -> Vec<Vec<String>> {
    text_rows(
        client,
        &format!(
            "SELECT kind, status, rows_in, rows_out, online_keys FROM featuredb.jobs \
             WHERE view_name = '{view}' ORDER BY job_id"
        ),
    )
    .await
}

async fn offline_table(client: &Client, view: &str) -> String {
    text_rows(
        client,
        &format!("SELECT offline_table FROM featuredb.materializations WHERE name = '{view}'"),
    )
    .await[0][0]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_lookup_incremental_idempotent_and_parity() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE events (user_id bigint, ts timestamptz, amount double precision, n bigint);
             CREATE FEATURE VIEW user_features KEY (user_id) TIMESTAMP ts ONLINE
               AS SELECT user_id, ts, amount, n FROM events;",
        )
        .await
        .unwrap();

    // Random rows: ties on event time within and across INSERTs, NULL keys.
    let mut rng = StdRng::seed_from_u64(7);
    let mut next_n = 0;
    let mut insert = |count: usize| {
        let values: Vec<String> = (0..count)
            .map(|_| {
                next_n += 1;
                let key = if rng.random_bool(0.05) {
                    "NULL".to_string()
                } else {
                    rng.random_range(1..40).to_string()
                };
                format!(
                    "({key}, TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL '{} minutes', {}, {next_n})",
                    rng.random_range(0..20),
                    rng.random_range(0..1000) as f64 / 4.0
                )
            })
            .collect();
        format!("INSERT INTO events VALUES {}", values.join(", "))
    };
    for _ in 0..3 {
        client.batch_execute(&insert(200)).await.unwrap();
    }
    client
        .batch_execute("REFRESH FEATURE VIEW user_features")
        .await
        .unwrap();
    let job = jobs(&client, "public.user_features").await;
    assert_eq!(job[0][..4], ["full", "succeeded", "600", "600"]);

    // Parity: every key, through the prepared fast path, the simple
    // protocol, and the offline store as of now.
    let check_parity = async |client: &Client| {
        let lookup = client
            .prepare("SELECT * FROM user_features WHERE user_id = $1")
            .await
            .unwrap();
        for key in 0..41i64 {
            let online = feature_rows(client.query(&lookup, &[&key]).await.unwrap());
            let offline = feature_rows(
                client
                    .query(
                        "SELECT * FROM user_features FOR SYSTEM_TIME AS OF now() WHERE user_id = $1",
                        &[&key],
                    )
                    .await
                    .unwrap(),
            );
            assert_eq!(online, offline, "key {key}");
            let simple = text_rows(
                client,
                &format!("SELECT n FROM user_features WHERE user_id = {key}"),
            )
            .await;
            let offline_simple = text_rows(
                client,
                &format!(
                    "SELECT n FROM user_features FOR SYSTEM_TIME AS OF now() WHERE user_id = {key}"
                ),
            )
            .await;
            assert_eq!(simple, offline_simple, "key {key} (simple protocol)");
        }
    };
    check_parity(&client).await;

    // Incremental: only the new commits are read; nothing is duplicated.
    client.batch_execute(&insert(50)).await.unwrap();
    client
        .batch_execute("REFRESH FEATURE VIEW user_features")
        .await
        .unwrap();
    let job = jobs(&client, "public.user_features").await;
    assert_eq!(job[1][..4], ["incremental", "succeeded", "50", "50"]);
    check_parity(&client).await;
    let table = offline_table(&client, "user_features").await;
    let history = format!("SELECT count(*), count(DISTINCT n), sum(n) FROM {table}");
    assert_eq!(
        text_rows(&client, &history).await,
        [["650", "650", "211575"]]
    );

    // Idempotent: nothing new, nothing changes.
    client
        .batch_execute("REFRESH FEATURE VIEW user_features")
        .await
        .unwrap();
    let job = jobs(&client, "public.user_features").await;
    assert_eq!(job[2][..4], ["unchanged", "succeeded", "0", "0"]);
    assert_eq!(
        text_rows(&client, &history).await,
        [["650", "650", "211575"]]
    );

    // FULL recomputes into a new generation with the same content.
    client
        .batch_execute("REFRESH FEATURE VIEW user_features FULL")
        .await
        .unwrap();
    let job = jobs(&client, "public.user_features").await;
    assert_eq!(job[3][..4], ["full", "succeeded", "650", "650"]);
    let new_table = offline_table(&client, "user_features").await;
    assert_ne!(new_table, table);
    let history = format!("SELECT count(*), count(DISTINCT n), sum(n) FROM {new_table}");
    assert_eq!(
        text_rows(&client, &history).await,
        [["650", "650", "211575"]]
    );
    check_parity(&client).await;

    // Until the next refresh, online lookups serve what was refreshed.
    client
        .batch_execute(
            "INSERT INTO events VALUES (1, TIMESTAMPTZ '2024-06-01 00:00:00+00', 1, 999999)",
        )
        .await
        .unwrap();
    let stale = text_rows(&client, "SELECT n FROM user_features WHERE user_id = 1").await;
    assert_ne!(stale, [["999999"]]);
    client
        .batch_execute("REFRESH FEATURE VIEW user_features")
        .await
        .unwrap();
    let fresh = text_rows(&client, "SELECT n FROM user_features WHERE user_id = 1").await;
    assert_eq!(fresh, [["999999"]]);

    // Queries that are not key lookups still run, on the offline store.
    let count = text_rows(&client, "SELECT count(*) FROM user_features").await;
    assert_eq!(count, [["39"]]);
    let filtered = text_rows(
        &client,
        "SELECT n FROM user_features WHERE user_id = 1 AND amount >= 0",
    )
    .await;
    assert_eq!(filtered, [["999999"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_composite_keys_expressions_services_ttl_and_errors() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE tx (customer_id bigint, region text, ts timestamptz, amount double precision);
             INSERT INTO tx VALUES
               (1, 'eu', now() - INTERVAL '10 minutes', 10.0),
               (1, 'us', now() - INTERVAL '3 hours', 20.0),
               (2, 'eu', now() - INTERVAL '5 minutes', 30.0),
               (3, 'eu', now() - INTERVAL '2 days', 40.0);
             CREATE FEATURE VIEW recent KEY (customer_id) TIMESTAMP ts TTL INTERVAL '1 hour' ONLINE
               AS SELECT customer_id, ts, amount FROM tx;
             CREATE FEATURE VIEW by_region KEY (customer_id, region) TIMESTAMP ts ONLINE
               AS SELECT customer_id, region, ts, amount FROM tx;
             CREATE FEATURE VIEW lifetime KEY (customer_id) TIMESTAMP ts ONLINE
               AS SELECT customer_id, ts, amount * 2 AS doubled FROM tx;
             CREATE FEATURE SERVICE scoring AS recent (amount), lifetime (doubled);
             REFRESH FEATURE VIEW recent, by_region, lifetime;",
        )
        .await
        .unwrap();

    // TTL: customer 1's newest row is 10 minutes old, customer 3's 2 days.
    let rows = text_rows(
        &client,
        "SELECT customer_id, amount FROM recent WHERE customer_id IN (3, 1, 2, 1, 99)",
    )
    .await;
    assert_eq!(rows, [["1", "10"], ["2", "30"]]);
    let offline = text_rows(
        &client,
        "SELECT customer_id, amount FROM recent FOR SYSTEM_TIME AS OF now() ORDER BY customer_id",
    )
    .await;
    assert_eq!(offline, rows);

    // = ANY($1) with an array parameter, prepared.
    let any = client
        .query(
            "SELECT customer_id FROM lifetime WHERE customer_id = ANY($1)",
            &[&vec![3i64, 2, 7]],
        )
        .await
        .unwrap();
    let keys: Vec<i64> = any.iter().map(|r| r.get(0)).collect();
    assert_eq!(keys, [3, 2]);

    // Composite keys, either side of the =, with an alias.
    let rows = client
        .query(
            "SELECT r.amount FROM by_region r WHERE $1 = r.region AND r.customer_id = $2",
            &[&"us", &1i64],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, f64>(0), 20.0);

    // On-demand features: expressions over the row and the parameters,
    // executed many times from one Parse.
    let statement = client
        .prepare("SELECT customer_id, $2 - doubled AS gap, doubled > $2 AS above FROM lifetime WHERE customer_id = $1")
        .await
        .unwrap();
    for (key, threshold, gap, above) in [(1i64, 15.0f64, -5.0f64, true), (2, 100.0, 40.0, false)] {
        let row = client
            .query_one(&statement, &[&key, &threshold])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), key);
        assert_eq!(row.get::<_, f64>(1), gap);
        assert_eq!(row.get::<_, bool>(2), above);
    }

    // A service: one row with every feature; a key only one view holds
    // still has a row (TTL hides customer 3 from `recent`).
    let rows = text_rows(
        &client,
        "SELECT * FROM scoring WHERE customer_id IN (1, 3, 4)",
    )
    .await;
    assert_eq!(rows, [["1", "10", "20"], ["3", "NULL", "80"]]);
    let row = client
        .query_one(
            "SELECT doubled FROM scoring WHERE customer_id = $1",
            &[&2i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 60.0);

    // Errors keep the session usable.
    let error = client
        .batch_execute("SELECT * FROM recent WHERE customer_id = 'abc'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "22P02");
    let error = client
        .batch_execute("REFRESH FEATURE VIEW nothing_here")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42P01");
    assert_eq!(
        text_rows(&client, "SELECT amount FROM recent WHERE customer_id = 2").await,
        [["30"]]
    );

    // Dropping a view forgets its materialization: a new view of the same
    // name and definition reads the offline store until refreshed.
    client
        .batch_execute(
            "DROP FEATURE SERVICE scoring; DROP FEATURE VIEW lifetime;
             INSERT INTO tx VALUES (2, 'eu', now(), 1.0);
             CREATE FEATURE VIEW lifetime KEY (customer_id) TIMESTAMP ts ONLINE
               AS SELECT customer_id, ts, amount * 2 AS doubled FROM tx;",
        )
        .await
        .unwrap();
    assert_eq!(
        text_rows(
            &client,
            "SELECT doubled FROM lifetime WHERE customer_id = 2"
        )
        .await,
        [["2"]]
    );
    let names = text_rows(
        &client,
        "SELECT name FROM featuredb.materializations ORDER BY name",
    )
    .await;
    assert_eq!(names, [["by_region"], ["recent"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_store_survives_restart_and_views_on_views_refresh_in_order() {
    let (_temp, data_dir, mut server) = server_with_data_dir();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE clicks (user_id int, day timestamp, clicks int);
             INSERT INTO clicks VALUES (1, '2024-01-01', 3), (1, '2024-01-02', 5), (2, '2024-01-01', 7);
             CREATE FEATURE VIEW daily KEY (user_id) TIMESTAMP day ONLINE
               AS SELECT user_id, day, clicks FROM clicks;
             CREATE FEATURE VIEW totals KEY (user_id) TIMESTAMP day ONLINE
               AS SELECT user_id, max(day) AS day, sum(clicks) AS total FROM daily GROUP BY user_id;
             REFRESH FEATURE VIEW totals;",
        )
        .await
        .unwrap();
    // Refreshing `totals` refreshed `daily` first.
    let order = text_rows(
        &client,
        "SELECT view_name, kind FROM featuredb.jobs ORDER BY job_id",
    )
    .await;
    assert_eq!(order, [["public.daily", "full"], ["public.totals", "full"]]);
    assert_eq!(
        text_rows(&client, "SELECT total FROM totals WHERE user_id = 1").await,
        [["8"]]
    );
    drop(client);
    server.kill();

    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    assert_eq!(
        text_rows(&client, "SELECT clicks, day FROM daily WHERE user_id = 1").await,
        [["5", "2024-01-02 00:00:00"]]
    );
    assert_eq!(
        text_rows(&client, "SELECT total FROM totals WHERE user_id = 2").await,
        [["7"]]
    );
    // A view over something other than one table is recomputed in full
    // when its inputs changed, and left alone when they did not.
    client
        .batch_execute(
            "INSERT INTO clicks VALUES (2, '2024-01-03', 1);
             REFRESH FEATURE VIEW totals; REFRESH FEATURE VIEW totals;",
        )
        .await
        .unwrap();
    let kinds = text_rows(
        &client,
        "SELECT view_name, kind FROM featuredb.jobs ORDER BY job_id",
    )
    .await;
    assert_eq!(
        kinds[2..],
        [
            ["public.daily", "incremental"],
            ["public.totals", "full"],
            ["public.daily", "unchanged"],
            ["public.totals", "unchanged"]
        ]
    );
    assert_eq!(
        text_rows(&client, "SELECT total, day FROM totals WHERE user_id = 2").await,
        [["8", "2024-01-03 00:00:00"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_warms_the_cache_with_the_newest_rows() {
    let (_temp, data_dir, mut server) = server_with_data_dir();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE spend (user_id int, ts timestamp, amount int);
             INSERT INTO spend VALUES (1, '2024-01-01', 10), (2, '2024-01-01', 20), (3, '2024-01-01', 30);
             CREATE FEATURE VIEW latest_spend KEY (user_id) TIMESTAMP ts ONLINE
               AS SELECT user_id, ts, amount FROM spend;
             REFRESH FEATURE VIEW latest_spend;
             INSERT INTO spend VALUES (2, '2024-01-02', 21);
             REFRESH FEATURE VIEW latest_spend;",
        )
        .await
        .unwrap();
    drop(client);
    server.kill();

    // After a restart the cache fills from the online store in the
    // background: the base's block of three keys and the incrementally
    // refreshed key's newer row.
    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = text_rows(
            &client,
            "SELECT entries, blocks FROM featuredb.online_cache",
        )
        .await;
        if entries == [["2", "1"]] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(entries, [["2", "1"]]);
    let usage = text_rows(
        &client,
        "SELECT capacity_bytes > used_bytes, used_bytes > 0 FROM featuredb.online_cache",
    )
    .await;
    assert_eq!(usage, [["t", "t"]]);
    assert_eq!(
        text_rows(
            &client,
            "SELECT user_id, amount FROM latest_spend WHERE user_id IN (1, 2, 3) ORDER BY user_id"
        )
        .await,
        [["1", "10"], ["2", "21"], ["3", "30"]]
    );
}

/// Several incremental refreshes each add a run to the delta; a key's
/// newest row wins across runs and over the base, an older row does not,
/// and after a restart with a cache too small to hold anything the runs
/// are read from disk with the same answers as the offline store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_refreshes_stack_up_and_read_back_from_disk() {
    let (_temp, data_dir, mut server) = server_with_data_dir();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE spend (user_id int, ts timestamp, amount int);
             INSERT INTO spend SELECT x AS user_id, TIMESTAMP '2024-01-01 00:00:00', x AS amount FROM generate_series(1, 500) AS t(x);
             CREATE FEATURE VIEW latest_spend KEY (user_id) TIMESTAMP ts ONLINE
               AS SELECT user_id, ts, amount FROM spend;
             REFRESH FEATURE VIEW latest_spend;
             INSERT INTO spend VALUES (2, '2024-01-02', 1002), (3, '2024-01-02', 1003), (501, '2024-01-02', 1501);
             REFRESH FEATURE VIEW latest_spend;
             INSERT INTO spend VALUES (3, '2024-01-03', 2003), (4, '2023-12-31', 2004), (502, '2024-01-03', 2502);
             REFRESH FEATURE VIEW latest_spend;
             INSERT INTO spend VALUES (2, '2024-01-01 12:00:00', 3002), (501, '2024-01-04', 3501);
             REFRESH FEATURE VIEW latest_spend;",
        )
        .await
        .unwrap();
    let lookups = "SELECT user_id, amount FROM latest_spend WHERE user_id = ANY($1)";
    let expected = [
        ["1", "1"],
        ["2", "1002"],
        ["3", "2003"],
        ["4", "4"],
        ["500", "500"],
        ["501", "3501"],
        ["502", "2502"],
    ];
    let keys: Vec<i32> = vec![1, 2, 3, 4, 500, 501, 502, 503];
    let read = |rows: Vec<tokio_postgres::Row>| -> Vec<[String; 2]> {
        rows.iter()
            .map(|row| {
                [
                    row.get::<_, i32>(0).to_string(),
                    row.get::<_, i32>(1).to_string(),
                ]
            })
            .collect()
    };
    assert_eq!(
        read(client.query(lookups, &[&keys]).await.unwrap()),
        expected
    );
    // Not a key lookup (ORDER BY): planned by DataFusion, whose $1 must
    // still be described as int4[], as PostgreSQL describes it.
    let ordered = format!("{lookups} ORDER BY user_id DESC");
    let statement = client.prepare(&ordered).await.unwrap();
    assert_eq!(
        statement.params(),
        [tokio_postgres::types::Type::INT4_ARRAY]
    );
    let mut descending = expected.to_vec();
    descending.reverse();
    assert_eq!(
        read(client.query(&statement, &[&keys]).await.unwrap()),
        descending
    );
    drop(client);
    server.kill();

    let server = TestServer::start_with(&data_dir, &[("FEATUREDB_ONLINE_CACHE_SIZE", "1")]);
    let client = server.client().await;
    assert_eq!(
        read(client.query(lookups, &[&keys]).await.unwrap()),
        expected
    );
    let offline = text_rows(
        &client,
        "SELECT user_id, amount FROM latest_spend FOR SYSTEM_TIME AS OF now() ORDER BY user_id",
    )
    .await;
    assert_eq!(offline.len(), 502);
    for row in offline {
        let key: i32 = row[0].parse().unwrap();
        let online = client
            .query(
                "SELECT user_id, amount FROM latest_spend WHERE user_id = $1",
                &[&key],
            )
            .await
            .unwrap();
        assert_eq!(
            read(online),
            [[row[0].clone(), row[1].clone()]],
            "key {key}"
        );
    }
}

/// Online rows and offline history of `view`, for comparing two servers.
async fn materialized_state(
    client: &Client,
    view: &str,
    keys: i64,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let all: Vec<i64> = (0..keys).collect();
    let online = client
        .query(
            &format!("SELECT user_id, ts, n FROM {view} WHERE user_id = ANY($1)"),
            &[&all],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r.get::<_, i64>(0).to_string(),
                format!("{:?}", r.get::<_, chrono::DateTime<chrono::Utc>>(1)),
                r.get::<_, i64>(2).to_string(),
            ]
        })
        .collect();
    let table = offline_table(client, view).await;
    let offline = text_rows(
        client,
        &format!("SELECT count(*), count(DISTINCT n), sum(n), min(n), max(n) FROM {table}"),
    )
    .await;
    (online, offline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_refresh_loses_nothing_and_duplicates_nothing() {
    const KEYS: i64 = 5_000;
    const ROUNDS: i64 = 6;
    const ROWS: i64 = 60_000;
    let setup = "CREATE TABLE events (user_id bigint, ts timestamptz, n bigint);
                 CREATE FEATURE VIEW crashy KEY (user_id) TIMESTAMP ts ONLINE
                   AS SELECT user_id, ts, n FROM events;";
    // Deterministic rows: ties on event time inside each round.
    let round = |r: i64| {
        format!(
            "INSERT INTO events SELECT value % {KEYS}, \
             to_timestamp(1704067200 + (value % 97) * 60 + {r} * 3600), \
             value FROM generate_series({}, {}) AS g(value)",
            r * ROWS,
            (r + 1) * ROWS - 1
        )
    };

    // The reference: the same writes, refreshed once per round, cleanly.
    let reference = TestServer::start();
    let clean = reference.client().await;
    clean.batch_execute(setup).await.unwrap();
    let mut durations = Vec::new();
    for r in 0..ROUNDS {
        clean.batch_execute(&round(r)).await.unwrap();
        let started = std::time::Instant::now();
        clean
            .batch_execute("REFRESH FEATURE VIEW crashy")
            .await
            .unwrap();
        durations.push(started.elapsed());
    }
    let expected = materialized_state(&clean, "crashy", KEYS).await;
    assert_eq!(expected.0.len() as i64, KEYS);

    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut rng = StdRng::seed_from_u64(42);
    let mut server = TestServer::start_in(&data_dir);
    server.client().await.batch_execute(setup).await.unwrap();
    let mut kills = 0;
    for r in 0..ROUNDS {
        let client = server.client().await;
        client.batch_execute(&round(r)).await.unwrap();
        // Start a refresh and kill the server somewhere inside it.
        let refresh =
            tokio::spawn(async move { client.batch_execute("REFRESH FEATURE VIEW crashy").await });
        let clean_duration = durations[r as usize].as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(
            rng.random_range(1..clean_duration.max(2)),
        ))
        .await;
        let finished = refresh.is_finished();
        server.kill();
        let _ = refresh.await;
        if !finished {
            kills += 1;
        }
        server = TestServer::start_in(&data_dir);
        assert!(!server.log_text().contains("panicked"));
    }
    let repairs = server
        .log_text()
        .matches("repairing the online store")
        .count();
    eprintln!(
        "kills inside a refresh: {kills} of {ROUNDS} (online repairs: {repairs}); clean refresh times {durations:?}"
    );
    assert!(kills >= 2, "only {kills} kills landed inside a refresh");
    let client = server.client().await;
    client
        .batch_execute("REFRESH FEATURE VIEW crashy")
        .await
        .unwrap();
    let recovered = materialized_state(&client, "crashy", KEYS).await;
    assert_eq!(recovered.1, expected.1, "offline history differs");
    assert_eq!(recovered.0, expected.0, "online rows differ");
    // Interrupted jobs are marked as such.
    let statuses = text_rows(
        &client,
        "SELECT DISTINCT status FROM featuredb.jobs ORDER BY status",
    )
    .await;
    assert!(
        statuses
            .iter()
            .all(|s| s[0] == "succeeded" || s[0] == "failed")
    );
}

/// Runs `REFRESH FEATURE VIEW v` on a server over `data_dir` that aborts
/// at the crash point `point`; the client sees its connection die.
async fn refresh_crashing_at(data_dir: &Path, point: &str) {
    let crashing = TestServer::start_with(data_dir, &[("FEATUREDB_CRASH_AT", point)]);
    let error = crashing
        .client()
        .await
        .batch_execute("REFRESH FEATURE VIEW v")
        .await
        .unwrap_err();
    assert!(error.is_closed() || error.code().is_none(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_and_its_job_record_commit_together() {
    let (_temp, data_dir, server) = server_with_data_dir();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE events (user_id bigint, ts timestamptz, n bigint);
             CREATE FEATURE VIEW v KEY (user_id) TIMESTAMP ts ONLINE
               AS SELECT user_id, ts, n FROM events;
             INSERT INTO events VALUES (1, '2024-01-01', 10), (2, '2024-01-02', 20);",
        )
        .await
        .unwrap();
    drop(client);
    drop(server);
    // The server dies right after the refresh's commit, before it answers.
    refresh_crashing_at(&data_dir, "refresh-after-online-commit").await;

    // The refresh was committed, and so was its record: succeeded, with
    // its counts, not "interrupted".
    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    assert_eq!(
        text_rows(&client, "SELECT n FROM v WHERE user_id = 2").await,
        [["20"]]
    );
    assert_eq!(
        text_rows(
            &client,
            "SELECT kind, status, rows_in, online_keys, error IS NULL, duration_ms > 0
             FROM featuredb.jobs ORDER BY job_id",
        )
        .await,
        [["full", "succeeded", "2", "2", "t", "t"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_offline_and_online_commits_is_repaired() {
    let setup = "CREATE TABLE events (user_id bigint, ts timestamptz, n bigint);
                 CREATE FEATURE VIEW v KEY (user_id) TIMESTAMP ts ONLINE
                   AS SELECT user_id, ts, n FROM events;
                 INSERT INTO events SELECT value % 100, to_timestamp(1704067200 + value), value
                   FROM generate_series(1, 1000) AS g(value);";
    let more = "INSERT INTO events SELECT value % 150, to_timestamp(1704067200 + value), value
                  FROM generate_series(1001, 2000) AS g(value)";
    let reference = TestServer::start();
    let clean = reference.client().await;
    clean.batch_execute(setup).await.unwrap();
    clean.batch_execute("REFRESH FEATURE VIEW v").await.unwrap();
    clean.batch_execute(more).await.unwrap();
    clean.batch_execute("REFRESH FEATURE VIEW v").await.unwrap();
    let expected = materialized_state(&clean, "v", 150).await;

    let (_temp, data_dir, server) = server_with_data_dir();
    let client = server.client().await;
    client.batch_execute(setup).await.unwrap();
    client
        .batch_execute("REFRESH FEATURE VIEW v")
        .await
        .unwrap();
    client.batch_execute(more).await.unwrap();
    drop(client);
    drop(server);
    // The incremental refresh dies after its Iceberg commit, before the
    // online store's.
    refresh_crashing_at(&data_dir, "refresh-after-offline-commit").await;

    let server = TestServer::start_in(&data_dir);
    let client = server.client().await;
    // Before the repair the online store still has the first refresh.
    assert_eq!(
        text_rows(&client, "SELECT n FROM v WHERE user_id = 120")
            .await
            .len(),
        0
    );
    client
        .batch_execute("REFRESH FEATURE VIEW v")
        .await
        .unwrap();
    assert!(server.log_text().contains("repairing the online store"));
    let recovered = materialized_state(&client, "v", 150).await;
    assert_eq!(recovered, expected);
    let kinds = text_rows(
        &client,
        "SELECT kind, status FROM featuredb.jobs ORDER BY job_id",
    )
    .await;
    assert_eq!(
        kinds,
        [
            ["full", "succeeded"],
            ["incremental", "failed"],
            ["unchanged", "succeeded"]
        ]
    );
}

/// Lookups are answered on protocol threads, everything else on the query
/// runtime, and a connection moves between them by message. A client that
/// pipelines lookups, queries, COPY and errors on one connection (sending
/// without waiting, so that moves happen with the next messages already
/// read) gets every answer in order — with protocol threads and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_and_queries_interleave_on_one_connection() {
    for threads in ["2", "0"] {
        let temp = tempfile::tempdir().unwrap();
        let server = TestServer::start_with(
            &temp.path().join("data"),
            &[("FEATUREDB_PROTOCOL_THREADS", threads)],
        );
        let client = server.client().await;
        client
            .batch_execute(
                "CREATE TABLE events (user_id bigint, ts timestamptz, amount double precision);
                 INSERT INTO events SELECT v, TIMESTAMPTZ '2024-01-01 00:00:00+00', v * 1.5
                   FROM generate_series(1, 200) AS t(v);
                 CREATE FEATURE VIEW user_features KEY (user_id) TIMESTAMP ts ONLINE
                   AS SELECT user_id, ts, amount FROM events;
                 REFRESH FEATURE VIEW user_features;",
            )
            .await
            .unwrap();
        let lookup = client
            .prepare("SELECT amount FROM user_features WHERE user_id = $1")
            .await
            .unwrap();
        let count = client
            .prepare("SELECT count(*) FROM events WHERE user_id <= $1")
            .await
            .unwrap();
        let mut expected = Vec::new();
        let mut requests = Vec::new();
        for i in 1..=60i64 {
            let (client, lookup, count) = (&client, &lookup, &count);
            requests.push(Box::pin(async move {
                match i % 4 {
                    0 => client
                        .query_one(count, &[&i])
                        .await
                        .map(|row| row.get::<_, i64>(0) as f64),
                    1 => client
                        .query_one(lookup, &[&i])
                        .await
                        .map(|row| row.get::<_, f64>(0)),
                    2 => client
                        .query_one(
                            "SELECT amount FROM user_features WHERE user_id = $1 + 0",
                            &[&i],
                        )
                        .await
                        .map(|row| row.get::<_, f64>(0)),
                    _ => client
                        .query_one("SELECT 1 / ($1::bigint - $1::bigint)", &[&i])
                        .await
                        .map(|_| 0.0),
                }
            })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>);
            expected.push(match i % 4 {
                0 => Some(i as f64),
                1 | 2 => Some(i as f64 * 1.5),
                _ => None,
            });
        }
        let answers = futures::future::join_all(requests).await;
        for (i, (answer, expected)) in answers.into_iter().zip(expected).enumerate() {
            match (answer, expected) {
                (Ok(value), Some(expected)) => assert_eq!(value, expected, "request {i}"),
                (Err(e), None) => assert_eq!(sqlstate(&e), "22012", "request {i}"),
                (answer, expected) => panic!("request {i}: {answer:?}, expected {expected:?}"),
            }
        }
        // COPY on the same connection, then a lookup again.
        let copied = client
            .copy_out("COPY (SELECT user_id FROM events WHERE user_id <= 3) TO STDOUT")
            .await
            .unwrap();
        use futures::TryStreamExt;
        let copied: Vec<bytes::Bytes> = copied.try_collect().await.unwrap();
        assert_eq!(copied.concat(), b"1\n2\n3\n");
        let value: f64 = client.query_one(&lookup, &[&7i64]).await.unwrap().get(0);
        assert_eq!(value, 10.5);
        // Many connections at once: they are spread over the threads.
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(server.client().await);
        }
        for (i, other) in clients.iter().enumerate() {
            let statement = other
                .prepare("SELECT amount FROM user_features WHERE user_id = $1")
                .await
                .unwrap();
            let key = i as i64 + 1;
            let value: f64 = other.query_one(&statement, &[&key]).await.unwrap().get(0);
            assert_eq!(value, key as f64 * 1.5);
        }
    }
}

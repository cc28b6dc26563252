//! STREAMING feature views through the real server: a write is visible to
//! lookups on another connection as soon as it is acknowledged (prepared
//! INSERTs, multi-row INSERTs, COPY), bulk writes arrive after their
//! commit, the online answer equals the offline one and a brute-force
//! reference on random data with late rows and ties, and killing the
//! server during a stream of writes loses and duplicates nothing.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestServer;
use futures::{SinkExt, pin_mut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

const SETUP: &str = "
    CREATE TABLE tx (card_id BIGINT, ts TIMESTAMPTZ, amount DOUBLE PRECISION, seq BIGINT);
    CREATE FEATURE VIEW last_tx KEY (card_id) TIMESTAMP ts ONLINE STREAMING AS
      SELECT card_id, ts, amount, seq FROM tx WHERE amount >= 0;
";

/// (ts µs, amount, seq) of a card's online row, through a prepared lookup.
async fn look_up(client: &Client, card: i64) -> Option<(i64, f64, i64)> {
    let statement = client
        .prepare_typed(
            "SELECT ts, amount, seq FROM last_tx WHERE card_id = $1",
            &[tokio_postgres::types::Type::INT8],
        )
        .await
        .unwrap();
    client
        .query_opt(&statement, &[&card])
        .await
        .unwrap()
        .map(|row| {
            let ts: chrono::DateTime<chrono::Utc> = row.get(0);
            (ts.timestamp_micros(), row.get(1), row.get(2))
        })
}

fn timestamp(micros: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(micros).unwrap()
}

const BASE: i64 = 1_767_225_600_000_000; // 2026-01-01 00:00 UTC, in µs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_visible_on_other_connections_when_acknowledged() {
    let server = TestServer::start();
    let writer = server.client().await;
    let reader = server.client().await;
    writer.batch_execute(SETUP).await.unwrap();
    let insert = writer
        .prepare("INSERT INTO tx VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    // Single-row prepared INSERTs: each one visible to the next lookup on
    // the other connection, no REFRESH, no wait.
    for i in 0..200i64 {
        let card = i % 17;
        writer
            .execute(
                &insert,
                &[&card, &timestamp(BASE + i * 1_000_000), &(i as f64), &i],
            )
            .await
            .unwrap();
        assert_eq!(
            look_up(&reader, card).await,
            Some((BASE + i * 1_000_000, i as f64, i)),
            "write {i}"
        );
    }
    // A multi-row INSERT, all of it.
    writer
        .batch_execute(
            "INSERT INTO tx VALUES (100, '2026-02-01 00:00+00', 1, 1000), \
             (101, '2026-02-01 00:00+00', 2, 1001), (100, '2026-02-02 00:00+00', 3, 1002)",
        )
        .await
        .unwrap();
    assert_eq!(look_up(&reader, 100).await.map(|r| r.2), Some(1002));
    assert_eq!(look_up(&reader, 101).await.map(|r| r.2), Some(1001));
    // COPY FROM STDIN of a small batch (logged).
    let sink = writer
        .copy_in("COPY tx FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from_static(
        b"200,2026-03-01 00:00+00,5,2000\n201,2026-03-01 00:00+00,-1,2001\n",
    ))
    .await
    .unwrap();
    sink.finish().await.unwrap();
    assert_eq!(look_up(&reader, 200).await.map(|r| r.2), Some(2000));
    assert_eq!(
        look_up(&reader, 201).await,
        None,
        "filtered out by the view"
    );

    // A bulk INSERT … SELECT (a direct Iceberg commit, not logged) arrives
    // through the refresh its commit triggers.
    writer
        .batch_execute(
            "INSERT INTO tx SELECT 10000 + value, TIMESTAMPTZ '2026-04-01 00:00+00', 1, value \
             FROM generate_series(1, 20000) AS g(value)",
        )
        .await
        .unwrap();
    let started = Instant::now();
    while look_up(&reader, 30000).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "bulk write not online"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "bulk write of 20,000 rows online {:?} after its acknowledgement",
        started.elapsed()
    );

    let streams = reader
        .query_one(
            "SELECT rows_applied, last_error FROM featuredb.streams WHERE name = 'last_tx'",
            &[],
        )
        .await
        .unwrap();
    assert!(streams.get::<_, i64>(0) >= 203);
    assert_eq!(streams.get::<_, Option<String>>(1), None);
}

/// Random rows: few keys, clustered event times (late rows and ties on
/// event time), some filtered out. Each row's `seq` is its write order.
fn random_rows(
    rng: &mut StdRng,
    count: usize,
    keys: i64,
    first_seq: i64,
) -> Vec<(i64, i64, f64, i64)> {
    (0..count)
        .map(|i| {
            let card = rng.random_range(0..keys);
            let ts = BASE + rng.random_range(0..40) * 60_000_000;
            let amount = if rng.random_bool(0.1) {
                -1.0
            } else {
                rng.random_range(0..1000) as f64
            };
            (card, ts, amount, first_seq + i as i64)
        })
        .collect()
}

/// The newest kept row per key: greatest event time, then written last.
fn reference(rows: &[(i64, i64, f64, i64)]) -> HashMap<i64, (i64, f64, i64)> {
    let mut newest: HashMap<i64, (i64, f64, i64)> = HashMap::new();
    for &(card, ts, amount, seq) in rows.iter().filter(|r| r.2 >= 0.0) {
        match newest.get(&card) {
            Some(&(kept_ts, _, _)) if kept_ts > ts => {}
            _ => {
                newest.insert(card, (ts, amount, seq));
            }
        }
    }
    newest
}

fn values_sql(rows: &[(i64, i64, f64, i64)]) -> String {
    rows.iter()
        .map(|(card, ts, amount, seq)| {
            format!(
                "({card}, TIMESTAMPTZ '{}', {amount}, {seq})",
                timestamp(*ts).format("%Y-%m-%d %H:%M:%S%.6f+00")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every key's online row, and the offline answer as of now, must equal
/// the reference.
async fn check_against(
    client: &Client,
    expected: &HashMap<i64, (i64, f64, i64)>,
    keys: i64,
    when: &str,
) {
    for card in 0..keys {
        assert_eq!(
            look_up(client, card).await,
            expected.get(&card).copied(),
            "{when}: online row of card {card}"
        );
    }
    let offline: HashMap<i64, (i64, f64, i64)> = client
        .query(
            "SELECT card_id, ts, amount, seq FROM last_tx FOR SYSTEM_TIME AS OF now()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let ts: chrono::DateTime<chrono::Utc> = row.get(1);
            (row.get(0), (ts.timestamp_micros(), row.get(2), row.get(3)))
        })
        .collect();
    assert_eq!(&offline, expected, "{when}: offline AS OF now()");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_online_equal_offline_and_reference() {
    const KEYS: i64 = 60;
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        &temp.path().join("data"),
        &[("FEATUREDB_FLUSH_INTERVAL_MS", "200")],
    );
    let client = server.client().await;
    client.batch_execute(SETUP).await.unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut written = Vec::new();
    for round in 0..30 {
        let size = rng.random_range(1..40);
        let rows = random_rows(&mut rng, size, KEYS, written.len() as i64);
        client
            .batch_execute(&format!("INSERT INTO tx VALUES {}", values_sql(&rows)))
            .await
            .unwrap();
        written.extend(rows);
        if round % 10 == 9 {
            check_against(
                &client,
                &reference(&written),
                KEYS,
                &format!("round {round}"),
            )
            .await;
        }
        // Let some flushes (and the refreshes storing them) happen mid-way.
        if round % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // Once every write is stored, memory holds nothing and the answers
    // stay the same.
    let started = Instant::now();
    loop {
        let pending: i64 = client
            .query_one("SELECT rows_in_memory FROM featuredb.streams", &[])
            .await
            .unwrap()
            .get(0);
        if pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "stream rows never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_against(&client, &reference(&written), KEYS, "after storing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_a_stream_of_writes_loses_and_duplicates_nothing() {
    const KEYS: i64 = 40;
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = TestServer::start_with(&data_dir, &[("FEATUREDB_FLUSH_INTERVAL_MS", "100")]);
    server.client().await.batch_execute(SETUP).await.unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let mut acknowledged: Vec<(i64, i64, f64, i64)> = Vec::new();
    for life in 0..4 {
        let client = server.client().await;
        let insert = client
            .prepare("INSERT INTO tx VALUES ($1, $2, $3, $4)")
            .await
            .unwrap();
        // A writer task streams single-row writes until the server dies;
        // it reports every acknowledged row and the one in flight.
        let rows = random_rows(
            &mut rng,
            5_000,
            KEYS,
            acknowledged.len() as i64 + life * 10_000,
        );
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let writer = tokio::spawn(async move {
            let mut done = Vec::new();
            for row in rows {
                let (card, ts, amount, seq) = row;
                match client
                    .execute(&insert, &[&card, &timestamp(ts), &amount, &seq])
                    .await
                {
                    Ok(_) => done.push(row),
                    Err(_) => return (done, Some(row)),
                }
            }
            let _ = done_tx.send(());
            (done, None)
        });
        let life_time = Duration::from_millis(rng.random_range(200..1200));
        tokio::select! {
            _ = tokio::time::sleep(life_time) => {}
            _ = done_rx => {}
        }
        server.kill();
        let (done, in_flight) = writer.await.unwrap();
        acknowledged.extend(done);
        server = TestServer::start_with(&data_dir, &[("FEATUREDB_FLUSH_INTERVAL_MS", "100")]);
        assert!(!server.log_text().contains("panicked"));
        // The write in flight may or may not have been made durable; the
        // table says which (its seq is unique).
        let client = server.client().await;
        if let Some(row) = in_flight {
            let landed: i64 = client
                .query_one("SELECT count(*) FROM tx WHERE seq = $1", &[&row.3])
                .await
                .unwrap()
                .get(0);
            if landed == 1 {
                acknowledged.push(row);
            }
        }
        let total: i64 = client
            .query_one("SELECT count(*) FROM tx", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            total as usize,
            acknowledged.len(),
            "life {life}: rows in the table"
        );
        eprintln!("life {life}: {total} rows acknowledged so far");
        check_against(
            &client,
            &reference(&acknowledged),
            KEYS,
            &format!("after kill {life}"),
        )
        .await;
    }
}

/// Prepared one-row INSERTs run without the planner: they must behave as
/// planned INSERTs do — omitted columns NULL, `now()` per execution, casts
/// in the session's time zone, constraints with their SQLSTATEs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_inserts_keep_insert_semantics() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT NOT NULL, at TIMESTAMP, code VARCHAR(3), n INTEGER, seen TIMESTAMPTZ)",
        )
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO t (id, code, seen) VALUES ($1, $2, now())")
        .await
        .unwrap();
    client.execute(&insert, &[&1i64, &"abc"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.execute(&insert, &[&2i64, &"de"]).await.unwrap();
    let error = client
        .execute(&insert, &[&3i64, &"long"])
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&error), "22001", "{error}");
    let insert_null = client
        .prepare_typed(
            "INSERT INTO t (id) VALUES ($1)",
            &[tokio_postgres::types::Type::INT8],
        )
        .await
        .unwrap();
    let error = client
        .execute(&insert_null, &[&None::<i64>])
        .await
        .unwrap_err();
    assert_eq!(common::sqlstate(&error), "23502", "{error}");
    // A timestamptz into a timestamp column: wall-clock time in the
    // session's zone, before and after the zone changes.
    let at = client
        .prepare("INSERT INTO t (id, at, n) VALUES ($1, CAST($2 AS TIMESTAMPTZ), $3 + 1)")
        .await
        .unwrap();
    client
        .batch_execute("SET TimeZone = 'Europe/Paris'")
        .await
        .unwrap();
    let noon = timestamp(BASE + 12 * 3_600_000_000);
    client.execute(&at, &[&4i64, &noon, &41i64]).await.unwrap();
    client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    client.execute(&at, &[&5i64, &noon, &1i64]).await.unwrap();
    type Row = (i64, Option<String>, Option<String>, Option<i32>, bool);
    let rows: Vec<Row> = client
        .query(
            "SELECT id, CAST(at AS TEXT), code, n, seen IS NOT NULL FROM t ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, None, Some("abc".into()), None, true),
            (2, None, Some("de".into()), None, true),
            (4, Some("2026-01-01 13:00:00".into()), None, Some(42), false),
            (5, Some("2026-01-01 12:00:00".into()), None, Some(2), false),
        ]
    );
    let distinct: i64 = client
        .query_one("SELECT count(DISTINCT seen) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 2, "now() is the time of each INSERT");
}

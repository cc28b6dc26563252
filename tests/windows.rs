//! Windowed features through the real server: online lookups (streamed
//! and refreshed), `FOR SYSTEM_TIME AS OF now()` and a brute-force
//! reference agree on random data with late rows, and killing the server
//! during a stream of writes neither loses nor double-counts a row.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::TestServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

const TABLE: &str = "CREATE TABLE tx (card_id BIGINT, ts TIMESTAMPTZ, amount BIGINT, price DOUBLE PRECISION, seq BIGINT)";

/// Windows of 10 minutes, 1 hour and 7 days over a stream of card rows.
const VIEW: &str = "
    CREATE FEATURE VIEW activity KEY (card_id) TIMESTAMP ts ONLINE STREAMING AS
      SELECT card_id, ts, seq,
             count(*) OVER w10m AS n_10m,
             sum(amount) OVER w1h AS amount_1h,
             max(price) OVER w7d AS max_7d,
             min(amount) OVER w1h AS min_1h,
             avg(price) OVER w1h AS avg_1h,
             stddev(price) OVER w7d AS sd_7d
      FROM tx WHERE amount >= 0
      WINDOW w10m AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '10 minutes' PRECEDING AND CURRENT ROW),
             w1h AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1 hour' PRECEDING AND CURRENT ROW),
             w7d AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW)
";

/// A row: (card, ts µs, amount, price, seq).
type Row = (i64, i64, i64, f64, i64);

/// Features of a key: (newest seq, n_10m, amount_1h, max_7d, min_1h, avg_1h, sd_7d).
type Features = (
    i64,
    i64,
    Option<i64>,
    Option<f64>,
    Option<i64>,
    Option<f64>,
    Option<f64>,
);

/// Rows at whole minutes plus 30 s before `base` (up to 8 days back, so
/// some fall out of every window): no window edge crosses a row during
/// the 30 s after `base`, whatever the moment a lookup runs.
fn random_rows(rng: &mut StdRng, base: i64, count: usize, keys: i64, first_seq: i64) -> Vec<Row> {
    (0..count)
        .map(|i| {
            let minutes = match rng.random_range(0..4) {
                0 => rng.random_range(0..10),
                1 => rng.random_range(0..60),
                2 => rng.random_range(0..60 * 24 * 7),
                _ => rng.random_range(0..60 * 24 * 8),
            };
            let ts = base - (minutes * 60 + 30) * 1_000_000;
            let amount = if rng.random_bool(0.1) {
                -1
            } else {
                rng.random_range(0..100)
            };
            let price = rng.random_range(0..10_000) as f64 / 100.0;
            (
                rng.random_range(0..keys),
                ts,
                amount,
                price,
                first_seq + i as i64,
            )
        })
        .collect()
}

/// The features at `t` by brute force.
fn reference(rows: &[Row], t: i64) -> HashMap<i64, Features> {
    let minute = 60_000_000;
    let mut by_key: HashMap<i64, Vec<&Row>> = HashMap::new();
    for row in rows.iter().filter(|r| r.2 >= 0 && r.1 <= t) {
        by_key.entry(row.0).or_default().push(row);
    }
    by_key
        .into_iter()
        .map(|(key, rows)| {
            let newest = rows
                .iter()
                .max_by_key(|r| (r.1, r.4))
                .expect("a key has rows");
            let within = |w: i64| {
                rows.iter()
                    .filter(move |r| r.1 >= t - w)
                    .collect::<Vec<_>>()
            };
            let hour = within(60 * minute);
            let week = within(7 * 24 * 60 * minute);
            let n_10m = within(10 * minute).len() as i64;
            let amount_1h = (!hour.is_empty()).then(|| hour.iter().map(|r| r.2).sum());
            let max_7d = week.iter().map(|r| r.3).reduce(f64::max);
            let min_1h = hour.iter().map(|r| r.2).min();
            let avg_1h = (!hour.is_empty())
                .then(|| hour.iter().map(|r| r.3).sum::<f64>() / hour.len() as f64);
            let sd_7d = (week.len() >= 2).then(|| {
                let mean = week.iter().map(|r| r.3).sum::<f64>() / week.len() as f64;
                let ss: f64 = week.iter().map(|r| (r.3 - mean).powi(2)).sum();
                (ss / (week.len() - 1) as f64).sqrt()
            });
            (
                key,
                (newest.4, n_10m, amount_1h, max_7d, min_1h, avg_1h, sd_7d),
            )
        })
        .collect()
}

fn features(row: &tokio_postgres::Row) -> (i64, Features) {
    (
        row.get(0),
        (
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
            row.get(6),
            row.get(7),
        ),
    )
}

const COLUMNS: &str = "card_id, seq, n_10m, amount_1h, max_7d, min_1h, avg_1h, sd_7d";

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (a, b) => a == b,
    }
}

fn same(a: &Features, b: &Features) -> bool {
    a.0 == b.0
        && a.1 == b.1
        && a.2 == b.2
        && close(a.3, b.3)
        && a.4 == b.4
        && close(a.5, b.5)
        && close(a.6, b.6)
}

/// Online lookups of every key and the offline answer as of now equal the
/// reference.
async fn check(client: &Client, rows: &[Row], keys: i64, when: &str) {
    let now = chrono::Utc::now().timestamp_micros();
    let expected = reference(rows, now);
    let lookup = client
        .prepare_typed(
            &format!("SELECT {COLUMNS} FROM activity WHERE card_id = $1"),
            &[tokio_postgres::types::Type::INT8],
        )
        .await
        .unwrap();
    for key in 0..keys {
        let found = client
            .query_opt(&lookup, &[&key])
            .await
            .unwrap()
            .map(|r| features(&r).1);
        match (found, expected.get(&key)) {
            (Some(found), Some(expected)) => {
                assert!(
                    same(&found, expected),
                    "{when}: online card {key}: {found:?} != {expected:?}"
                )
            }
            (found, expected) => assert_eq!(found.as_ref(), expected, "{when}: online card {key}"),
        }
    }
    let offline: HashMap<i64, Features> = client
        .query(
            &format!("SELECT {COLUMNS} FROM activity FOR SYSTEM_TIME AS OF now()"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(features)
        .collect();
    assert_eq!(offline.len(), expected.len(), "{when}: offline keys");
    for (key, found) in &offline {
        assert!(
            same(found, &expected[key]),
            "{when}: offline card {key}: {found:?} != {:?}",
            expected[key]
        );
    }
}

fn insert_sql(rows: &[Row]) -> String {
    let values: Vec<String> = rows
        .iter()
        .map(|(card, ts, amount, price, seq)| {
            let ts = chrono::DateTime::from_timestamp_micros(*ts).unwrap();
            format!(
                "({card}, TIMESTAMPTZ '{}', {amount}, {price}, {seq})",
                ts.format("%Y-%m-%d %H:%M:%S%.6f+00")
            )
        })
        .collect();
    format!("INSERT INTO tx VALUES {}", values.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_offline_and_reference_agree_on_random_rows() {
    const KEYS: i64 = 30;
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        &temp.path().join("data"),
        &[("FEATUREDB_FLUSH_INTERVAL_MS", "150")],
    );
    let client = server.client().await;
    let base = chrono::Utc::now().timestamp_micros();
    let mut rng = StdRng::seed_from_u64(3);
    // Some rows before the view exists (its CREATE materializes them).
    let mut rows = random_rows(&mut rng, base, 200, KEYS, 0);
    client.batch_execute(TABLE).await.unwrap();
    client.batch_execute(&insert_sql(&rows)).await.unwrap();
    client.batch_execute(VIEW).await.unwrap();
    check(&client, &rows, KEYS, "after create").await;
    // Streamed writes of random sizes, late rows among them; stored by
    // the refreshes their flushes trigger as they go.
    for round in 0..12 {
        let size = rng.random_range(1..30);
        let more = random_rows(&mut rng, base, size, KEYS, rows.len() as i64);
        client.batch_execute(&insert_sql(&more)).await.unwrap();
        rows.extend(more);
        if round % 4 == 3 {
            check(&client, &rows, KEYS, &format!("round {round}")).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A bulk write (a direct commit) reaches the windows through its refresh.
    let bulk = random_rows(&mut rng, base, 12_000, KEYS, rows.len() as i64);
    client.batch_execute(&insert_sql(&bulk)).await.unwrap();
    rows.extend(bulk);
    let started = Instant::now();
    loop {
        let pending: i64 = client
            .query_one("SELECT rows_in_memory FROM featuredb.streams", &[])
            .await
            .unwrap()
            .get(0);
        let stored: i64 = client
            .query_one(
                "SELECT count(*) FROM featuredb.jobs WHERE rows_in >= 12000",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if pending == 0 && stored > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rows never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(&client, &rows, KEYS, "after the bulk write").await;
    assert!(
        chrono::Utc::now().timestamp_micros() - base < 30_000_000,
        "the test ran past the 30 s its rows allow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_a_stream_of_writes_counts_every_row_once() {
    const KEYS: i64 = 20;
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let env = [("FEATUREDB_FLUSH_INTERVAL_MS", "100")];
    let mut server = TestServer::start_with(&data_dir, &env);
    let setup = server.client().await;
    setup.batch_execute(TABLE).await.unwrap();
    setup.batch_execute(VIEW).await.unwrap();
    let base = chrono::Utc::now().timestamp_micros();
    let mut rng = StdRng::seed_from_u64(5);
    let mut acknowledged: Vec<Row> = Vec::new();
    for life in 0..3 {
        let client = server.client().await;
        let insert = client
            .prepare("INSERT INTO tx VALUES ($1, $2, $3, $4, $5)")
            .await
            .unwrap();
        let rows = random_rows(&mut rng, base, 3_000, KEYS, life * 10_000);
        let writer = tokio::spawn(async move {
            let mut done = Vec::new();
            for row in rows {
                let (card, ts, amount, price, seq) = row;
                let ts = chrono::DateTime::from_timestamp_micros(ts).unwrap();
                match client
                    .execute(&insert, &[&card, &ts, &amount, &price, &seq])
                    .await
                {
                    Ok(_) => done.push(row),
                    Err(_) => return (done, Some(row)),
                }
            }
            (done, None)
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
        server.kill();
        let (done, in_flight) = writer.await.unwrap();
        acknowledged.extend(done);
        server = TestServer::start_with(&data_dir, &env);
        assert!(!server.log_text().contains("panicked"));
        let client = server.client().await;
        if let Some(row) = in_flight {
            let landed: i64 = client
                .query_one("SELECT count(*) FROM tx WHERE seq = $1", &[&row.4])
                .await
                .unwrap()
                .get(0);
            if landed == 1 {
                acknowledged.push(row);
            }
        }
        eprintln!(
            "life {life}: {} rows acknowledged so far",
            acknowledged.len()
        );
        check(&client, &acknowledged, KEYS, &format!("after kill {life}")).await;
    }
    assert!(
        chrono::Utc::now().timestamp_micros() - base < 30_000_000,
        "the test ran past the 30 s its rows allow"
    );
}

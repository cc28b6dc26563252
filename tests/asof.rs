//! AS OF joins against a brute-force reference on random data, through the
//! real server: ties (within one INSERT and across INSERTs), NULL keys and
//! times, duplicate spine rows, empty inputs, keys on one side only,
//! unsorted inputs, tolerance edges, mixed time zones, composite keys and
//! all four operators, LEFT and INNER. Also EXPLAIN and the memory limit.

mod common;

use common::{TestServer, sqlstate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seconds from the epoch of 2024-01-01 00:00:00.
const BASE: i64 = 1_704_067_200;

#[derive(Debug, Clone)]
struct Row {
    id: i64,
    k1: Option<i64>,
    k2: Option<&'static str>,
    /// Seconds since BASE, as UTC for the right side and as wall-clock
    /// time in the session zone for a TIMESTAMP spine.
    t: Option<i64>,
}

fn random_rows(rng: &mut StdRng, count: usize, first_id: i64) -> Vec<Row> {
    (0..count)
        .map(|i| Row {
            id: first_id + i as i64,
            k1: (!rng.random_bool(0.1)).then(|| rng.random_range(0..4)),
            k2: (!rng.random_bool(0.05)).then(|| ["a", "b"][rng.random_range(0..2)]),
            t: (!rng.random_bool(0.05)).then(|| rng.random_range(0..12) * 10),
        })
        .collect()
}

fn literal(value: Option<String>) -> String {
    value.unwrap_or_else(|| "NULL".to_string())
}

fn timestamp(seconds: i64, zone: &str) -> String {
    let time = chrono::DateTime::from_timestamp(BASE + seconds, 0).expect("in range");
    format!("'{}{zone}'", time.format("%Y-%m-%d %H:%M:%S"))
}

fn values(rows: &[Row], zone: &str) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "({}, {}, {}, {})",
                r.id,
                literal(r.k1.map(|k| k.to_string())),
                literal(r.k2.map(|k| format!("'{k}'"))),
                literal(r.t.map(|t| timestamp(t, zone)))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Copy)]
struct Case {
    operator: &'static str,
    left: bool,
    composite: bool,
    tolerance: Option<i64>,
}

/// The reference: for each spine row, the id of its match.
fn reference(
    spine: &[Row],
    right: &[Row],
    case: Case,
    spine_offset: i64,
) -> Vec<(i64, Option<i64>)> {
    let mut out = Vec::new();
    for s in spine {
        let mut best: Option<&Row> = None;
        if let (Some(k1), Some(t)) = (s.k1, s.t) {
            let key_ok =
                |r: &Row| r.k1 == Some(k1) && (!case.composite || (s.k2.is_some() && r.k2 == s.k2));
            // The spine's wall-clock time in the session zone, as UTC.
            let t = t - spine_offset;
            for r in right.iter().filter(|r| key_ok(r)) {
                let Some(rt) = r.t else { continue };
                let (ok, distance) = match case.operator {
                    ">=" => (t >= rt, t - rt),
                    ">" => (t > rt, t - rt),
                    "<=" => (t <= rt, rt - t),
                    _ => (t < rt, rt - t),
                };
                if !ok || case.tolerance.is_some_and(|tol| distance > tol) {
                    continue;
                }
                let backward = case.operator.starts_with('>');
                // Rows come in write order: on equal times the later wins.
                let better = match best {
                    None => true,
                    Some(b) => {
                        let bt = b.t.expect("matched rows have times");
                        if backward { rt >= bt } else { rt <= bt }
                    }
                };
                if better {
                    best = Some(r);
                }
            }
        }
        match (best, case.left) {
            (Some(r), _) => out.push((s.id, Some(r.id))),
            (None, true) => out.push((s.id, None)),
            (None, false) => {}
        }
    }
    out
}

#[tokio::test]
async fn asof_joins_match_a_brute_force_reference() {
    let server = TestServer::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(20241124);
    let operators = [">=", ">", "<=", "<"];
    let (mut matched, mut unmatched) = (0, 0);
    for iteration in 0..24 {
        // Half the runs: a TIMESTAMP spine against TIMESTAMPTZ features,
        // compared in a session zone 5h30 east of UTC.
        let mixed_zones = iteration % 2 == 1;
        let (zone_setting, spine_offset, right_type, right_zone) = if mixed_zones {
            ("Asia/Kolkata", 5 * 3600 + 1800, "TIMESTAMPTZ", "+00")
        } else {
            ("UTC", 0, "TIMESTAMP", "")
        };
        client
            .batch_execute(&format!("SET TIME ZONE '{zone_setting}'"))
            .await
            .unwrap();
        let spine_rows = if iteration % 7 == 3 {
            0
        } else {
            rng.random_range(1..40)
        };
        let spine = random_rows(&mut rng, spine_rows, 0);
        // Spine times shifted so that, in mixed zones, they overlap the
        // right side's UTC times after conversion.
        let spine: Vec<Row> = spine
            .into_iter()
            .map(|mut r| {
                r.t = r.t.map(|t| t + spine_offset);
                r
            })
            .collect();
        let s = format!("s{iteration}");
        let r = format!("r{iteration}");
        client
            .batch_execute(&format!(
                "CREATE TABLE {s} (id BIGINT, k1 BIGINT, k2 TEXT, ts TIMESTAMP);
                 CREATE TABLE {r} (id BIGINT, k1 BIGINT, k2 TEXT, ts {right_type});"
            ))
            .await
            .unwrap();
        if !spine.is_empty() {
            client
                .batch_execute(&format!("INSERT INTO {s} VALUES {}", values(&spine, "")))
                .await
                .unwrap();
        }
        // The right side in several INSERTs: ties across files too.
        let mut right = Vec::new();
        let inserts = if iteration % 7 == 5 {
            0
        } else {
            rng.random_range(1..4)
        };
        for _ in 0..inserts {
            let count = rng.random_range(1..30);
            let rows = random_rows(&mut rng, count, 1000 + right.len() as i64);
            client
                .batch_execute(&format!(
                    "INSERT INTO {r} VALUES {}",
                    values(&rows, right_zone)
                ))
                .await
                .unwrap();
            right.extend(rows);
        }
        for case_index in 0..4 {
            let case = Case {
                operator: operators[(iteration + case_index) % 4],
                left: case_index % 2 == 0,
                composite: rng.random_bool(0.4),
                tolerance: rng.random_bool(0.4).then(|| rng.random_range(0..4) * 10),
            };
            let keys = if case.composite {
                "s.k1 = f.k1 AND s.k2 = f.k2"
            } else {
                "s.k1 = f.k1"
            };
            let tolerance = case
                .tolerance
                .map(|t| format!(" TOLERANCE INTERVAL '{t} seconds'"))
                .unwrap_or_default();
            let sql = format!(
                "SELECT s.id, f.id FROM {s} s ASOF {} JOIN {r} f ON {keys} AND s.ts {} f.ts{tolerance}",
                if case.left { "LEFT" } else { "" },
                case.operator
            );
            let rows = client
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            let got: Vec<(i64, Option<i64>)> =
                rows.iter().map(|row| (row.get(0), row.get(1))).collect();
            let expected = reference(&spine, &right, case, spine_offset);
            assert_eq!(got, expected, "{sql}\nspine: {spine:?}\nright: {right:?}");
            matched += got.iter().filter(|(_, m)| m.is_some()).count();
            unmatched += got.iter().filter(|(_, m)| m.is_none()).count();
        }
    }
    // The data exercises both outcomes.
    assert!(
        matched > 200 && unmatched > 50,
        "{matched} matched, {unmatched} not"
    );
}

#[tokio::test]
async fn explain_shows_the_operator_and_pushes_spine_filters_down() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE s (k BIGINT, ts TIMESTAMP);
             CREATE TABLE f (k BIGINT, ts TIMESTAMP, v DOUBLE PRECISION);",
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "EXPLAIN SELECT s.k, f.v FROM s ASOF LEFT JOIN f ON s.k = f.k AND s.ts >= f.ts WHERE s.k = 7",
            &[],
        )
        .await
        .unwrap();
    let plan: String = rows
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("AsOfJoin: Left"), "{plan}");
    assert!(plan.contains("AsOfJoinExec"), "{plan}");
    // The key filter reaches both scans.
    assert!(
        plan.contains("TableScan: s projection=[k, ts], partial_filters=[s.k = Int64(7)]"),
        "{plan}"
    );
    assert!(
        plan.contains("featuredb_write_ordered().k = Int64(7)"),
        "{plan}"
    );
}

#[tokio::test]
async fn a_join_over_the_memory_limit_fails_cleanly() {
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        &temp.path().join("data"),
        &[("FEATUREDB_MEMORY_LIMIT", "2MB")],
    );
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE s (k BIGINT, ts TIMESTAMP);
             CREATE TABLE f (k BIGINT, ts TIMESTAMP, v DOUBLE PRECISION);
             INSERT INTO s SELECT value, TIMESTAMP '2024-01-01' FROM generate_series(1, 200000);
             INSERT INTO f SELECT value % 1000, TIMESTAMP '2023-01-01', value * 1.0 FROM generate_series(1, 200000);",
        )
        .await
        .unwrap();
    let error = client
        .query(
            "SELECT count(f.v) FROM s ASOF LEFT JOIN f ON s.k = f.k AND s.ts >= f.ts",
            &[],
        )
        .await
        .expect_err("over the limit");
    assert_eq!(sqlstate(&error), "53200", "{error:?}");
    // The session goes on.
    let row = client.query_one("SELECT 1::BIGINT", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn training_sets_export_to_parquet_and_stdout() {
    use datafusion::arrow::array::{Array, AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use futures::StreamExt;

    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE s (k BIGINT, ts TIMESTAMP);
             CREATE TABLE f (k BIGINT, ts TIMESTAMP, v DOUBLE PRECISION);
             INSERT INTO s VALUES (1, '2024-01-02'), (2, '2024-01-02'), (1, '2024-01-01');
             INSERT INTO f VALUES (1, '2024-01-01', 1.5), (1, '2024-01-02', 2.5);",
        )
        .await
        .unwrap();
    let query = "SELECT s.k, f.v AS feature FROM s ASOF LEFT JOIN f ON s.k = f.k AND s.ts >= f.ts";
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("training.parquet");
    let copied = client
        .execute(
            &format!("COPY ({query}) TO '{}' (FORMAT parquet)", path.display()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(copied, 3);
    let file = std::fs::File::open(&path).unwrap();
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let schema = batches[0].schema();
    assert_eq!(schema.field(0).name(), "k");
    assert_eq!(schema.field(1).name(), "feature");
    let mut rows = Vec::new();
    for batch in &batches {
        let k = batch.column(0).as_primitive::<Int64Type>();
        let v = batch.column(1).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            rows.push((k.value(i), v.is_valid(i).then(|| v.value(i))));
        }
    }
    // Spine order, NULL where nothing matches.
    assert_eq!(rows, vec![(1, Some(2.5)), (2, None), (1, Some(1.5))]);
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);

    // The same rows as CSV over the wire.
    let stream = client
        .copy_out(&format!("COPY ({query}) TO STDOUT (FORMAT csv, HEADER)"))
        .await
        .unwrap();
    let chunks: Vec<_> = stream.collect().await;
    let text: String = chunks
        .into_iter()
        .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(text, "k,feature\n1,2.5\n2,\n1,1.5\n");

    // A relative path is refused, and the session goes on.
    let error = client
        .execute(
            &format!("COPY ({query}) TO 'relative.parquet' (FORMAT parquet)"),
            &[],
        )
        .await
        .expect_err("relative path");
    assert_eq!(sqlstate(&error), "42602");
    client.query_one("SELECT 1::BIGINT", &[]).await.unwrap();
}

//! The wire protocol as drivers use it, against the real server: simple and
//! extended query, text and binary formats, portals, errors, cancel,
//! timeouts, transaction status.

mod common;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use common::{TestServer, sqlstate};
use rust_decimal::Decimal;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

fn tags(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn simple_protocol_runs_several_statements_in_one_message() {
    let server = TestServer::start();
    let client = server.client().await;
    let messages = client
        .simple_query(
            "CREATE TABLE t (id BIGINT, name TEXT); \
             INSERT INTO t VALUES (1, 'a'), (2, 'b'); \
             SELECT id, name FROM t ORDER BY id; \
             SELECT count(*) FROM t",
        )
        .await
        .unwrap();
    assert_eq!(tags(&messages), vec![0, 2, 2, 1]);
    assert_eq!(
        rows(&messages),
        vec![
            vec![Some("1".into()), Some("a".into())],
            vec![Some("2".into()), Some("b".into())],
            vec![Some("2".into())],
        ]
    );
    // An empty query string is answered, not an error.
    client.simple_query("").await.unwrap();
    client.simple_query(" ; ").await.unwrap();
    // A syntax error anywhere in the message runs nothing of it.
    let err = client
        .simple_query("INSERT INTO t VALUES (3, 'c'); SELEC 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42601");
    let count: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_in_binary_and_text() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE types (
                i8 BIGINT, i4 INTEGER, i2 SMALLINT, f8 DOUBLE PRECISION, f4 REAL,
                n NUMERIC(12,3), b BOOLEAN, t TEXT, v VARCHAR(10), bin BYTEA, d DATE,
                ts TIMESTAMP, tz TIMESTAMPTZ, ai BIGINT[], at TEXT[]
            )",
        )
        .await
        .unwrap();
    let ts = NaiveDate::from_ymd_opt(2024, 3, 1)
        .unwrap()
        .and_hms_micro_opt(12, 30, 45, 123_456)
        .unwrap();
    let tz: DateTime<Utc> = DateTime::from_naive_utc_and_offset(ts, Utc);
    let decimal: Decimal = "12345.678".parse().unwrap();
    let insert = client
        .prepare(
            "INSERT INTO types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .await
        .unwrap();
    assert_eq!(insert.params()[0], Type::INT8);
    assert_eq!(insert.params()[2], Type::INT2);
    assert_eq!(insert.params()[12], Type::TIMESTAMPTZ);
    client
        .execute(
            &insert,
            &[
                &-9_000_000_000i64,
                &-7i32,
                &3i16,
                &2.5f64,
                &1.25f32,
                &decimal,
                &true,
                &"héllo",
                &"short",
                &vec![0u8, 1, 255],
                &NaiveDate::from_ymd_opt(1999, 12, 31).unwrap(),
                &ts,
                &tz,
                &vec![Some(1i64), None, Some(3)],
                &vec![Some("a b".to_string()), None, Some("{x}".to_string())],
            ],
        )
        .await
        .unwrap();
    let nulls: Vec<Option<i64>> = vec![None; 1];
    client
        .execute("INSERT INTO types (i8) VALUES ($1)", &[&nulls[0]])
        .await
        .unwrap();

    // Binary results.
    let rows = client
        .query("SELECT * FROM types ORDER BY i8 NULLS LAST", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let row = &rows[0];
    assert_eq!(row.columns()[0].type_(), &Type::INT8);
    assert_eq!(row.columns()[2].type_(), &Type::INT2);
    assert_eq!(row.columns()[5].type_(), &Type::NUMERIC);
    assert_eq!(row.columns()[13].type_(), &Type::INT8_ARRAY);
    assert_eq!(row.get::<_, i64>(0), -9_000_000_000);
    assert_eq!(row.get::<_, i32>(1), -7);
    assert_eq!(row.get::<_, i16>(2), 3);
    assert_eq!(row.get::<_, f64>(3), 2.5);
    assert_eq!(row.get::<_, f32>(4), 1.25);
    assert_eq!(row.get::<_, Decimal>(5), decimal);
    assert!(row.get::<_, bool>(6));
    assert_eq!(row.get::<_, String>(7), "héllo");
    assert_eq!(row.get::<_, String>(8), "short");
    assert_eq!(row.get::<_, Vec<u8>>(9), vec![0u8, 1, 255]);
    assert_eq!(
        row.get::<_, NaiveDate>(10),
        NaiveDate::from_ymd_opt(1999, 12, 31).unwrap()
    );
    assert_eq!(row.get::<_, NaiveDateTime>(11), ts);
    assert_eq!(row.get::<_, DateTime<Utc>>(12), tz);
    assert_eq!(
        row.get::<_, Vec<Option<i64>>>(13),
        vec![Some(1), None, Some(3)]
    );
    assert_eq!(
        row.get::<_, Vec<Option<String>>>(14),
        vec![Some("a b".to_string()), None, Some("{x}".to_string())]
    );
    let null_row = &rows[1];
    assert_eq!(null_row.get::<_, Option<i32>>(1), None);
    assert_eq!(null_row.get::<_, Option<f64>>(3), None);
    assert_eq!(null_row.get::<_, Option<Decimal>>(5), None);
    assert_eq!(null_row.get::<_, Option<String>>(7), None);
    assert_eq!(null_row.get::<_, Option<DateTime<Utc>>>(12), None);
    assert_eq!(null_row.get::<_, Option<Vec<Option<i64>>>>(13), None);

    // Text results.
    let messages = client
        .simple_query("SELECT * FROM types WHERE i8 IS NOT NULL")
        .await
        .unwrap();
    assert_eq!(
        rows_of(&messages)[0],
        vec![
            "-9000000000",
            "-7",
            "3",
            "2.5",
            "1.25",
            "12345.678",
            "t",
            "héllo",
            "short",
            "\\x0001ff",
            "1999-12-31",
            "2024-03-01 12:30:45.123456",
            "2024-03-01 12:30:45.123456+00",
            "{1,NULL,3}",
            "{\"a b\",NULL,\"{x}\"}",
        ]
    );

    // Text-format parameters (types inferred from the column).
    let got: i64 = client
        .query_one(
            "SELECT count(*) FROM types WHERE d = $1::date",
            &[&NaiveDate::from_ymd_opt(1999, 12, 31).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, 1);
}

fn rows_of(messages: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    rows(messages)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_describe_parameters_and_results() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE p (id BIGINT, score DOUBLE PRECISION, name TEXT)")
        .await
        .unwrap();
    let statement = client
        .prepare("SELECT id, score * 2 AS doubled, name FROM p WHERE id = $1 AND name = $2")
        .await
        .unwrap();
    assert_eq!(statement.params(), &[Type::INT8, Type::TEXT]);
    let columns: Vec<(&str, &Type)> = statement
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("id", &Type::INT8),
            ("doubled", &Type::FLOAT8),
            ("name", &Type::TEXT)
        ]
    );
    let insert = client
        .prepare("INSERT INTO p VALUES ($1, $2, $3)")
        .await
        .unwrap();
    assert!(insert.columns().is_empty(), "INSERT describes as NoData");
    for i in 0..10i64 {
        let n = client
            .execute(&insert, &[&i, &(i as f64 / 2.0), &format!("n{i}")])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    for i in 0..10i64 {
        let rows = client
            .query(&statement, &[&i, &format!("n{i}")])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, f64>(1), i as f64);
    }
    // Parameter type explicitly declared by the client.
    let typed = client
        .prepare_typed("SELECT $1 + 1::int4", &[Type::INT4])
        .await
        .unwrap();
    let value: i32 = client.query_one(&typed, &[&41i32]).await.unwrap().get(0);
    assert_eq!(value, 42);
    // Unnamed output columns are named as PostgreSQL names them.
    let named = client.prepare("SELECT 1, count(*) FROM p").await.unwrap();
    let names: Vec<&str> = named.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["?column?", "count"]);
    // Repeated output names are allowed and described as written.
    let repeated = client
        .prepare("SELECT id, p.id, 1, 1, name AS id, * FROM p")
        .await
        .unwrap();
    let names: Vec<&str> = repeated.columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "id", "id", "?column?", "?column?", "id", "id", "score", "name"
        ]
    );
}

/// Parameters declared with a type other than their column's (psycopg
/// sends small ints as int2, floats as float8 for numeric columns) are
/// converted like PostgreSQL assigns them, also when only some VALUES items
/// are bare placeholders (DataFusion's own inference mis-numbers those).
#[tokio::test(flavor = "multi_thread")]
async fn insert_parameters_convert_to_their_columns() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE conv (k BIGINT, x DOUBLE PRECISION, flag BOOLEAN, n NUMERIC(10,2))",
        )
        .await
        .unwrap();
    let small = client
        .prepare_typed(
            "INSERT INTO conv (k, x) VALUES ($1, $2)",
            &[Type::INT2, Type::FLOAT8],
        )
        .await
        .unwrap();
    client.execute(&small, &[&1i16, &0.5f64]).await.unwrap();
    let mixed = client
        .prepare_typed(
            "INSERT INTO conv (k, x, flag, n) VALUES ($1::bigint, $2, $3, $4)",
            &[Type::INT8, Type::FLOAT8, Type::BOOL, Type::FLOAT8],
        )
        .await
        .unwrap();
    assert_eq!(
        mixed.params(),
        &[Type::INT8, Type::FLOAT8, Type::BOOL, Type::FLOAT8],
        "declared types are described back"
    );
    client
        .execute(&mixed, &[&2i64, &0.25f64, &false, &2.5f64])
        .await
        .unwrap();
    let rows = client
        .query("SELECT k, x, flag, n::text FROM conv ORDER BY k", &[])
        .await
        .unwrap();
    let got: Vec<(i64, f64, Option<bool>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 0.5, None, None),
            (2, 0.25, Some(false), Some("2.50".to_string()))
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn row_limited_execute_suspends_the_portal() {
    let server = TestServer::start();
    let mut client = server.client().await;
    client
        .batch_execute("CREATE TABLE big AS SELECT * FROM generate_series(1, 1000) AS g(x)")
        .await
        .unwrap();
    let transaction = client.transaction().await.unwrap();
    let statement = transaction
        .prepare("SELECT x FROM big ORDER BY x")
        .await
        .unwrap();
    let portal = transaction.bind(&statement, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let chunk = transaction.query_portal(&portal, 300).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 300);
        seen.extend(chunk.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, (1..=1000).collect::<Vec<i64>>());
    transaction.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_sqlstates_and_leave_the_session_usable() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE e (id BIGINT NOT NULL, v VARCHAR(2))")
        .await
        .unwrap();
    let cases = [
        ("SELEC 1", "42601"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT no_such_column FROM e", "42703"),
        ("SELECT 'abc'::integer", "22P02"),
        ("SELECT 1/0", "22012"),
        ("INSERT INTO e VALUES (NULL, 'a')", "23502"),
        ("INSERT INTO e VALUES (1, 'abc')", "22001"),
        ("CREATE TABLE e (x INT)", "42P07"),
        ("CREATE TABLE nope.e (x INT)", "3F000"),
        ("DROP TABLE no_such_table", "42P01"),
        ("UPDATE e SET v = 'x'", "0A000"),
        ("SET no_such_parameter = 1", "42704"),
        ("SET extra_float_digits = 'many'", "22023"),
        ("SELECT unknown_function(1)", "42883"),
    ];
    for (sql, code) in cases {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
        let err = client.query(sql, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "extended {sql}: {err:?}");
        let one: i32 = client
            .query_one("SELECT 1::int4", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(one, 1);
    }
    // The position of an unknown table is reported.
    let err = client
        .simple_query("SELECT * FROM missing")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.message(), "relation \"missing\" does not exist");
    assert!(matches!(
        db.position(),
        Some(tokio_postgres::error::ErrorPosition::Original(15))
    ));
    // Bad parameter values are rejected at Bind.
    let err = client
        .query("SELECT $1::bigint", &[&"not a number"])
        .await
        .unwrap_err();
    assert!(!sqlstate(&err).is_empty());
    assert_eq!(client.query("SELECT 1", &[]).await.unwrap().len(), 1);
}

/// A parameter sent as the given binary bytes, whatever its type.
#[derive(Debug)]
struct RawBinary(Vec<u8>);

impl tokio_postgres::types::ToSql for RawBinary {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Binary date and time parameters out of range — PostgreSQL's `infinity`
/// and `-infinity`, garbage — get 22008, never a wrapped value or a panic,
/// and the session goes on.
#[tokio::test(flavor = "multi_thread")]
async fn binary_datetime_parameters_out_of_range_are_refused() {
    let server = TestServer::start();
    let client = server.client().await;
    let cases: [(&str, Vec<u8>); 7] = [
        ("SELECT $1::timestamp", i64::MAX.to_be_bytes().to_vec()),
        ("SELECT $1::timestamp", i64::MIN.to_be_bytes().to_vec()),
        ("SELECT $1::timestamptz", i64::MAX.to_be_bytes().to_vec()),
        (
            "SELECT $1::timestamp",
            (i64::MAX - 1).to_be_bytes().to_vec(),
        ),
        ("SELECT $1::date", i32::MAX.to_be_bytes().to_vec()),
        ("SELECT $1::date", i32::MIN.to_be_bytes().to_vec()),
        ("SELECT $1::interval", {
            let mut interval = i64::MAX.to_be_bytes().to_vec();
            interval.extend_from_slice(&[0; 8]);
            interval
        }),
    ];
    for (sql, bytes) in cases {
        let statement = client.prepare(sql).await.unwrap();
        let err = client
            .query(&statement, &[&RawBinary(bytes.clone())])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), "22008", "{sql} {bytes:?}: {err:?}");
        let one: i32 = client
            .query_one("SELECT 1::int4", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(one, 1);
    }
    let err = client
        .query(
            "SELECT $1::timestamp",
            &[&RawBinary(i64::MAX.to_be_bytes().to_vec())],
        )
        .await
        .unwrap_err();
    let message = err.as_db_error().unwrap().message().to_string();
    assert!(message.contains("infinite"), "{message}");
    // A value within range still reads as it should.
    let epoch: NaiveDateTime = client
        .query_one(
            "SELECT $1::timestamp",
            &[&RawBinary(0i64.to_be_bytes().to_vec())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(epoch.to_string(), "2000-01-01 00:00:00");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_transaction_block_rejects_statements_until_rollback() {
    let server = TestServer::start();
    let client = server.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert!(client.simple_query("SELECT * FROM missing").await.is_err());
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    // COMMIT of a failed block reports ROLLBACK and ends it.
    client.batch_execute("BEGIN").await.unwrap();
    assert!(client.simple_query("SELECT 1/0").await.is_err());
    client.batch_execute("COMMIT").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_request_stops_a_running_query() {
    let server = TestServer::start();
    let client = server.client().await;
    assert_eq!(cancel_a_long_query(client).await, "57014");
}

/// Starts a query that would run for hours on `client`, sends a cancel
/// request (over a new connection, the way `client` connected) and
/// returns the SQLSTATE the query ended with.
async fn cancel_a_long_query(client: tokio_postgres::Client) -> String {
    let token = client.cancel_token();
    let running = tokio::spawn(async move {
        client
            .simple_query("SELECT count(*) FROM generate_series(1, 20000000000)")
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("cancel took effect")
        .unwrap();
    sqlstate(&result.unwrap_err())
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_timeout_cancels_and_session_continues() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("SET statement_timeout = '200ms'")
        .await
        .unwrap();
    let err = client
        .simple_query("SELECT count(*) FROM generate_series(1, 20000000000)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "57014");
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "canceling statement due to statement timeout"
    );
    client
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn session_parameters_set_show_reset() {
    let server = TestServer::start();
    let client = server.client().await;
    let show = |messages: Vec<SimpleQueryMessage>| rows_of(&messages)[0][0].clone();
    assert_eq!(
        show(client.simple_query("SHOW TimeZone").await.unwrap()),
        "UTC"
    );
    assert_eq!(
        show(client.simple_query("SHOW server_version").await.unwrap())
            .split(' ')
            .next()
            .unwrap(),
        "15.10"
    );
    assert_eq!(
        show(
            client
                .simple_query("SHOW standard_conforming_strings")
                .await
                .unwrap()
        ),
        "on"
    );
    client
        .batch_execute("SET TIME ZONE 'America/New_York'")
        .await
        .unwrap();
    assert_eq!(
        show(client.simple_query("SHOW timezone").await.unwrap()),
        "America/New_York"
    );
    let text = show(
        client
            .simple_query("SELECT '2024-07-01 12:00:00+00'::timestamptz")
            .await
            .unwrap(),
    );
    assert_eq!(text, "2024-07-01 08:00:00-04");
    client
        .batch_execute("SET application_name = 'tests'")
        .await
        .unwrap();
    assert_eq!(
        show(client.simple_query("SHOW application_name").await.unwrap()),
        "tests"
    );
    client.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(
        show(client.simple_query("SHOW timezone").await.unwrap()),
        "UTC"
    );
    let settings = client.simple_query("SHOW ALL").await.unwrap();
    assert!(rows_of(&settings).len() > 10);
    let current: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, "150010");
    let row = client
        .query_one(
            "SELECT current_database(), current_schema(), current_user, version()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "featuredb");
    assert_eq!(row.get::<_, String>(1), "public");
    assert_eq!(row.get::<_, String>(2), "test");
    assert!(row.get::<_, String>(3).starts_with("PostgreSQL 15.10"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_database_is_refused() {
    let server = TestServer::start();
    let config = format!("host=127.0.0.1 port={} user=test dbname=other", server.port);
    let err = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    assert_eq!(sqlstate(&err), "3D000");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_messages_get_an_error_not_a_crash() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start();
    async fn started(port: u16) -> tokio::net::TcpStream {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut startup = Vec::new();
        startup.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in [("user", "raw"), ("database", "featuredb")] {
            startup.extend_from_slice(k.as_bytes());
            startup.push(0);
            startup.extend_from_slice(v.as_bytes());
            startup.push(0);
        }
        startup.push(0);
        let mut packet = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&startup);
        stream.write_all(&packet).await.unwrap();
        // Read until ReadyForQuery.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
        stream
    }
    async fn response(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return out,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
    }
    // A Query message claiming 2 GB.
    let mut stream = started(server.port).await;
    stream
        .write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff, b'S'])
        .await
        .unwrap();
    let reply = response(&mut stream).await;
    assert_eq!(reply.first(), Some(&b'E'));
    assert!(String::from_utf8_lossy(&reply).contains("54000"));
    // An unknown message type.
    let mut stream = started(server.port).await;
    stream.write_all(&[b'@', 0, 0, 0, 4]).await.unwrap();
    let reply = response(&mut stream).await;
    assert_eq!(reply.first(), Some(&b'E'));
    assert!(String::from_utf8_lossy(&reply).contains("08P01"));
    // A negative length.
    let mut stream = started(server.port).await;
    stream
        .write_all(&[b'Q', 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let reply = response(&mut stream).await;
    assert_eq!(reply.first(), Some(&b'E'));
    // The server is still serving.
    let client = server.client().await;
    client.simple_query("SELECT 1").await.unwrap();
}

/// DEALLOCATE ALL and DISCARD ALL also deallocate statements prepared with
/// the protocol's Parse (one namespace in PostgreSQL; poolers rely on it).
#[tokio::test(flavor = "multi_thread")]
async fn deallocate_all_drops_protocol_statements() {
    let server = TestServer::start();
    let client = server.client().await;
    for reset in ["DEALLOCATE ALL", "DISCARD ALL"] {
        let statement = client.prepare("SELECT $1::bigint + 1").await.unwrap();
        let row = client.query_one(&statement, &[&41i64]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 42);
        client.batch_execute(reset).await.unwrap();
        let error = client.query_one(&statement, &[&41i64]).await.unwrap_err();
        assert_eq!(common::sqlstate(&error), "26000", "{reset}: {error}");
        // The session stays usable.
        let fresh = client.prepare("SELECT 1::bigint").await.unwrap();
        assert_eq!(
            client
                .query_one(&fresh, &[])
                .await
                .unwrap()
                .get::<_, i64>(0),
            1
        );
    }
}

/// A tokio-postgres configuration for the server's Unix-domain socket.
fn unix_socket_config(server: &TestServer, dir: &std::path::Path) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(dir)
        .port(server.port)
        .user("test")
        .dbname("featuredb");
    config
}

async fn connect_unix(server: &TestServer, dir: &std::path::Path) -> tokio_postgres::Client {
    let (client, connection) = unix_socket_config(server, dir)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect over the Unix-domain socket");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_in_the_data_directory_speaks_the_same_protocol() {
    let mut server = TestServer::start();
    let socket = server.data_dir.join(format!(".s.PGSQL.{}", server.port));
    assert!(socket.exists(), "no socket at {}", socket.display());

    let client = connect_unix(&server, &server.data_dir).await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT, v TEXT); INSERT INTO t VALUES (1, 'one'), (2, 'two')",
        )
        .await
        .unwrap();
    // Extended protocol with a parameter, then the simple protocol.
    let row = client
        .query_one("SELECT v FROM t WHERE id = $1", &[&2i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "two");
    let messages = client.simple_query("SELECT count(*) FROM t").await.unwrap();
    assert_eq!(rows(&messages), vec![vec![Some("2".to_string())]]);
    // Errors keep the session, as over TCP.
    let error = client
        .simple_query("SELECT * FROM missing")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42P01");
    // What a TCP client wrote, a socket client reads, and back.
    let tcp = server.client().await;
    client
        .execute("INSERT INTO t VALUES (3, 'three')", &[])
        .await
        .unwrap();
    let count: i64 = tcp
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);

    // A cancel request comes over a new socket connection.
    assert_eq!(cancel_a_long_query(client).await, "57014");

    // A clean stop removes the socket file.
    assert!(server.stop().success());
    assert!(!socket.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_left_by_a_killed_server_is_replaced() {
    let mut server = TestServer::start();
    let data_dir = server.data_dir.clone();
    let socket = data_dir.join(format!(".s.PGSQL.{}", server.port));
    let port = server.port;
    server.kill();
    assert!(socket.exists(), "kill -9 leaves the socket file behind");

    // The next server on that data directory and port takes the file over.
    let restarted = TestServer::start_on_port(&data_dir, port, &[]);
    let client = connect_unix(&restarted, &data_dir).await;
    let row = client.query_one("SELECT 40 + 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);

    // While it runs, another server cannot take its socket: one on another
    // data directory and loopback address but the same port and socket
    // directory refuses to start, and the socket stays.
    let other = tempfile::tempdir().unwrap();
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_featuredb"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.2:{port}"))
        .arg("--data-dir")
        .arg(other.path())
        .arg("--unix-socket-dir")
        .arg(&data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server started on a socket in use");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("in use by another server"), "{stderr}");
    assert!(socket.exists());
    let row = client.query_one("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_directory_is_configurable_and_can_be_off() {
    let sockets = tempfile::tempdir().unwrap();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = TestServer::start_with(
        &one.path().join("data"),
        &[(
            "FEATUREDB_UNIX_SOCKET_DIR",
            sockets.path().to_str().unwrap(),
        )],
    );
    let client = connect_unix(&server, sockets.path()).await;
    let row = client.query_one("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert!(
        !server
            .data_dir
            .join(format!(".s.PGSQL.{}", server.port))
            .exists()
    );

    let off = TestServer::start_with(
        &two.path().join("data"),
        &[("FEATUREDB_UNIX_SOCKET_DIR", "")],
    );
    assert!(!off.data_dir.join(format!(".s.PGSQL.{}", off.port)).exists());
    // The log's fields are coloured: drop the escape sequences.
    let mut log = String::new();
    let mut escaped = false;
    for c in off.log_text().chars() {
        match c {
            '\u{1b}' => escaped = true,
            'm' if escaped => escaped = false,
            c if !escaped => log.push(c),
            _ => {}
        }
    }
    assert!(log.contains("unix_socket=none"), "{log}");
}

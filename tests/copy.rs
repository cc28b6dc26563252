//! COPY in and out through a real client.

mod common;

use bytes::Bytes;
use common::{TestServer, sqlstate};
use futures::{SinkExt, StreamExt, pin_mut};

async fn copy_in(
    client: &tokio_postgres::Client,
    sql: &str,
    data: &[&[u8]],
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(sql).await?;
    pin_mut!(sink);
    for chunk in data {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.unwrap();
    pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_text_and_csv_in_with_options() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE c (id BIGINT NOT NULL, name TEXT, score DOUBLE PRECISION, ts TIMESTAMPTZ)")
        .await
        .unwrap();
    // Text format, data split across messages mid-line.
    let rows = copy_in(
        &client,
        "COPY c FROM STDIN",
        &[
            b"1\talice\t1.5\t2024-01-01 00:00:00+00\n2\t\\N\t",
            b"\\N\t\\N\n3\tta\\tb\t2\t2024-01-01 12:00:00+02\n",
        ],
    )
    .await
    .unwrap();
    assert_eq!(rows, 3);
    // CSV with a header, quoted fields and a custom NULL.
    let rows = copy_in(
        &client,
        "COPY c (id, name) FROM STDIN WITH (FORMAT csv, HEADER, NULL 'NA')",
        &[b"id,name\n4,\"x, y\"\n5,NA\n6,\"\"\n"],
    )
    .await
    .unwrap();
    assert_eq!(rows, 3);
    // Custom delimiter, legacy syntax.
    let rows = copy_in(
        &client,
        "COPY c (id, name) FROM STDIN DELIMITER '|' CSV",
        &[b"7|seven\n"],
    )
    .await
    .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(count(&client, "c").await, 7);
    let text = copy_out(
        &client,
        "COPY (SELECT id, name FROM c ORDER BY id) TO STDOUT",
    )
    .await;
    assert_eq!(
        text,
        "1\talice\n2\t\\N\n3\tta\\tb\n4\tx, y\n5\t\\N\n6\t\n7\tseven\n"
    );
    let csv = copy_out(
        &client,
        "COPY (SELECT id, name FROM c ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    assert_eq!(
        csv,
        "id,name\n1,alice\n2,\n3,ta\tb\n4,\"x, y\"\n5,\n6,\"\"\n7,seven\n"
    );
    let ts: String = client
        .query_one("SELECT ts::text FROM c WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ts, "2024-01-01 10:00:00+00");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_line_names_the_line_and_commits_nothing() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE b (id BIGINT NOT NULL, v INTEGER)")
        .await
        .unwrap();
    let err = copy_in(
        &client,
        "COPY b FROM STDIN",
        &[b"1\t10\n2\t20\n3\tabc\n4\t40\n"],
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err), "22P02");
    let db = err.as_db_error().unwrap();
    assert_eq!(
        db.message(),
        "invalid input syntax for type integer: \"abc\""
    );
    assert_eq!(db.where_(), Some("COPY b, line 3, column v: \"abc\""));
    assert_eq!(count(&client, "b").await, 0);

    let err = copy_in(&client, "COPY b FROM STDIN", &[b"1\t10\n2\t20\t30\n"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22P04");
    assert!(
        err.as_db_error()
            .unwrap()
            .where_()
            .unwrap()
            .contains("line 2")
    );
    let err = copy_in(&client, "COPY b FROM STDIN", &[b"1\n"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22P04");
    let err = copy_in(&client, "COPY b FROM STDIN", &[b"\\N\t1\n"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23502");
    let err = copy_in(&client, "COPY b FROM STDIN", &[b"1\t99999999999\n"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22003");
    let err = copy_in(
        &client,
        "COPY b FROM STDIN (FORMAT csv)",
        &[b"1,\"unterminated\n"],
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err), "22P04");
    assert_eq!(count(&client, "b").await, 0);
    // No data files are left behind by the failed COPYs.
    let data_dir = server.data_dir.join("warehouse/public/b/data");
    let leftovers = std::fs::read_dir(&data_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "abandoned files in {}", data_dir.display());
    // The session still works, and a good COPY lands.
    assert_eq!(
        copy_in(&client, "COPY b FROM STDIN", &[b"1\t10\n"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&client, "b").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_out_formats_and_errors() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE o (id BIGINT, t TEXT, a BIGINT[]); \
             INSERT INTO o VALUES (1, 'a\\b', ARRAY[1,2]), (2, NULL, NULL), (3, 'line\nbreak', ARRAY[]::bigint[])",
        )
        .await
        .unwrap();
    let text = copy_out(&client, "COPY o TO STDOUT").await;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["1\ta\\\\b\t{1,2}", "2\t\\N\t\\N", "3\tline\\nbreak\t{}"]
    );
    let csv = copy_out(
        &client,
        "COPY (SELECT * FROM o ORDER BY id) TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
    )
    .await;
    assert_eq!(
        csv,
        "\"1\",\"a\\b\",\"{1,2}\"\n\"2\",,\n\"3\",\"line\nbreak\",\"{}\"\n"
    );
    let binary = {
        let stream = client
            .copy_out("COPY (SELECT id FROM o ORDER BY id) TO STDOUT (FORMAT binary)")
            .await
            .unwrap();
        pin_mut!(stream);
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    };
    assert!(binary.starts_with(b"PGCOPY\n\xff\r\n\0"));
    assert!(binary.ends_with(&[0xff, 0xff]));
    // 19-byte header, 3 tuples of (2 + 4 + 8) bytes, 2-byte trailer.
    assert_eq!(binary.len(), 19 + 3 * 14 + 2);
    let err = client
        .copy_out("COPY missing TO STDOUT")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err), "42P01");
    let err = client
        .copy_out("COPY o (nope) TO STDOUT")
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&err), "42703");
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_copy_round_trips() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE src (id BIGINT, name TEXT, score DOUBLE PRECISION, d DATE); \
             INSERT INTO src VALUES (1, 'x', 0.5, '2024-01-02'), (2, NULL, NULL, NULL); \
             CREATE TABLE dst (id BIGINT, name TEXT, score DOUBLE PRECISION, d DATE)",
        )
        .await
        .unwrap();
    let stream = client
        .copy_out("COPY (SELECT * FROM src ORDER BY id) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    pin_mut!(stream);
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    let rows = copy_in(&client, "COPY dst FROM STDIN (FORMAT binary)", &[&data])
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let a = copy_out(&client, "COPY (SELECT * FROM src ORDER BY id) TO STDOUT").await;
    let b = copy_out(&client, "COPY (SELECT * FROM dst ORDER BY id) TO STDOUT").await;
    assert_eq!(a, b);
}

/// A binary COPY row with an infinite date is refused with 22008 (there is
/// no infinite date to store) and nothing of the COPY is committed.
#[tokio::test(flavor = "multi_thread")]
async fn binary_copy_refuses_infinite_dates() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE days (id BIGINT, d DATE)")
        .await
        .unwrap();
    let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
    data.extend_from_slice(&0i32.to_be_bytes()); // flags
    data.extend_from_slice(&0i32.to_be_bytes()); // header extension
    for (id, days) in [(1i64, 0i32), (2, i32::MAX)] {
        data.extend_from_slice(&2i16.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&id.to_be_bytes());
        data.extend_from_slice(&4i32.to_be_bytes());
        data.extend_from_slice(&days.to_be_bytes());
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    let err = copy_in(&client, "COPY days FROM STDIN (FORMAT binary)", &[&data])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22008", "{err:?}");
    let count: i64 = client
        .query_one("SELECT count(*) FROM days", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_copy_streams_in_many_files_worth_of_batches() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE big (id BIGINT, v DOUBLE PRECISION, s TEXT)")
        .await
        .unwrap();
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    for i in 0..200_000u64 {
        chunk.extend_from_slice(format!("{i}\t{}\tname-{}\n", i as f64 * 0.25, i % 97).as_bytes());
        if chunk.len() > 60_000 {
            chunks.push(std::mem::take(&mut chunk));
        }
    }
    chunks.push(chunk);
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let rows = copy_in(&client, "COPY big FROM STDIN", &refs)
        .await
        .unwrap();
    assert_eq!(rows, 200_000);
    let row = client
        .query_one("SELECT count(*), sum(id), count(DISTINCT s) FROM big", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 200_000);
    assert_eq!(row.get::<_, i64>(1), 199_999 * 200_000 / 2);
    assert_eq!(row.get::<_, i64>(2), 97);
}

//! Many clients at once: concurrent writers all land, readers only ever see
//! whole statements.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::TestServer;
use futures::SinkExt;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_inserts_and_copies_into_one_table_all_land() {
    let server = TestServer::start();
    let setup = server.client().await;
    setup
        .batch_execute("CREATE TABLE c (writer INTEGER, seq INTEGER)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for writer in 0..8i32 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            for seq in 0..25i32 {
                client
                    .execute("INSERT INTO c VALUES ($1, $2)", &[&writer, &seq])
                    .await
                    .unwrap();
            }
            let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
            futures::pin_mut!(sink);
            let mut data = String::new();
            for seq in 1000..1100 {
                data.push_str(&format!("{writer}\t{seq}\n"));
            }
            sink.send(bytes::Bytes::from(data)).await.unwrap();
            sink.finish().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let row = setup
        .query_one(
            "SELECT count(*), count(DISTINCT writer * 10000 + seq) FROM c",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 8 * 125);
    assert_eq!(row.get::<_, i64>(1), 8 * 125);
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_see_only_committed_statements() {
    let server = TestServer::start();
    let setup = server.client().await;
    setup
        .batch_execute("CREATE TABLE r (batch INTEGER, i INTEGER)")
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = server.client().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut batch = 0;
            while !stop.load(Ordering::Relaxed) && batch < 40 {
                client
                    .batch_execute(&format!(
                        "INSERT INTO r SELECT {batch}, CAST(value AS INTEGER) FROM generate_series(1, 100)"
                    ))
                    .await
                    .unwrap();
                batch += 1;
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let client = server.client().await;
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut observations = 0;
            while !stop.load(Ordering::Relaxed) {
                let count: i64 = client
                    .query_one("SELECT count(*) FROM r", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(count % 100, 0, "a reader saw part of a statement: {count}");
                observations += 1;
            }
            observations
        }));
    }
    writer.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    let count: i64 = setup
        .query_one("SELECT count(*) FROM r", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4000);
}

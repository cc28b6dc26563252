//! The services every entry point shares work without a PostgreSQL
//! session: a refresh runs through the materializer and the job runner
//! with a background planner (as a scheduler or a stream pipeline will
//! run one), and the lookup service plans and answers a lookup from the
//! registry and the online store (as the HTTP API will).

use std::sync::Arc;

use datafusion::common::ScalarValue;
use featuredb::engine::{Engine, EngineOptions, Outcome};
use featuredb::features::materialize::Caller;
use featuredb::notice::NoticeSink;
use featuredb::pgtypes::{Datum, SessionTimeZone};
use featuredb_catalog::QualifiedName;

async fn run(engine: &Arc<Engine>, sql: &str) {
    let mut session = engine.new_session("test").unwrap();
    let prepared = session.prepare(sql, &[]).await.unwrap();
    match session.execute(&prepared, Vec::new()).await.unwrap() {
        Outcome::Command(_) => {}
        _ => panic!("{sql}: not a command"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_and_lookups_need_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineOptions::default())
        .await
        .unwrap();
    run(
        &engine,
        "CREATE TABLE events (user_id BIGINT, ts TIMESTAMPTZ, amount DOUBLE PRECISION)",
    )
    .await;
    run(
        &engine,
        "INSERT INTO events VALUES (1, '2024-01-01 00:00+00', 1.5), (2, '2024-01-01 00:00+00', 3.0), \
         (1, '2024-01-02 00:00+00', 4.5)",
    )
    .await;
    run(
        &engine,
        "CREATE FEATURE VIEW spend KEY (user_id) TIMESTAMP ts ONLINE \
         AS SELECT user_id, ts, amount FROM events",
    )
    .await;

    // A refresh as work no session started: default settings, notices
    // collected by the caller, a job recorded.
    let mut planner = engine.background_planner().unwrap();
    let mut notices = Vec::new();
    let view = QualifiedName::new("public", "spend");
    {
        let mut caller = Caller {
            planner: &mut planner,
            notices: NoticeSink::new(&mut notices, None),
        };
        engine
            .materializer
            .refresh(&engine.registry.snapshot(), &[view], false, &mut caller)
            .await
            .unwrap();
    }
    assert!(
        notices.iter().any(|n| n
            .message
            .starts_with("refreshed feature view public.spend (full)")),
        "{notices:?}"
    );
    let jobs = engine.jobs.records().all().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (
            jobs[0].status.as_str(),
            jobs[0].kind.as_str(),
            jobs[0].online_keys
        ),
        ("succeeded", "full", 2)
    );

    // A lookup planned and answered by the lookup service alone.
    let sql = "SELECT amount FROM spend WHERE user_id = $1";
    let featuredb_sql::Statement::Query(statement) = featuredb_sql::parse_statement(sql).unwrap()
    else {
        panic!("not a query");
    };
    let names = planner.names();
    let plan = engine
        .lookups
        .plan(sql, &statement, &[], &names, &mut planner)
        .await
        .unwrap()
        .expect("a lookup");
    let plan = Arc::new(plan);
    let utc = SessionTimeZone::Named(chrono_tz::UTC);
    let rows = engine
        .lookups
        .look_up(&plan, &[ScalarValue::Int64(Some(1))], &utc)
        .unwrap()
        .expect("a current plan");
    let mut reader = rows.reader();
    let row = reader.next_row().unwrap().expect("a row for user 1");
    assert_eq!(row, &[Some(Datum::Float8(4.5))]);
    assert!(reader.next_row().unwrap().is_none());
    let none = engine
        .lookups
        .look_up(&plan, &[ScalarValue::Int64(Some(3))], &utc)
        .unwrap()
        .expect("a current plan");
    assert!(none.is_empty());
}

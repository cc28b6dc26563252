//! The online store's write path against what it stores: upserts decided
//! in order, merges of the delta, stores written by older versions.

use std::collections::BTreeMap;
use std::sync::Arc;

use featuredb_catalog::QualifiedName;
use redb::{ReadableDatabase, TableDefinition};

use super::blocks::BaseLayout;
use super::rows::{UPSERT_CHUNK, store_value};
use super::write::{MIN_DELTA_MERGE, PARALLEL_UPSERT_READS};
use super::*;

fn update(key: u32, event_time: i64, value: u8) -> RowUpdate {
    RowUpdate::new(key.to_be_bytes().to_vec(), event_time, &[value])
}

fn read(store: &OnlineStore, view: &QualifiedName, key: u32) -> Option<(i64, u8)> {
    let state = store.materialization(view).unwrap();
    store
        .get(&state, &key.to_be_bytes(), &mut Vec::new())
        .unwrap()
        .map(|row| (row.event_time(), row.values()[0]))
}

/// Large upserts are decided by a pipeline (a dealing thread, two
/// deciding threads, the writer): every row must still be judged
/// against what is stored, and written in key order.
#[test]
fn large_upserts_are_decided_in_order_against_the_stored_rows() {
    let (_dir, _path, view, store) = fresh_store();
    store
        .apply(
            &view,
            state(),
            OnlineChange::Replace(Box::new(OwnedRows::new(
                (0..40_000).map(|k| update(k, 10, 1)),
            ))),
        )
        .unwrap();
    // 50k rows, an odd number of chunks: even keys older than what is
    // stored (kept out where a row exists), odd keys newer.
    let upserts: Vec<RowUpdate> = (20_000..70_000)
        .map(|k| update(k, if k % 2 == 0 { 5 } else { 20 }, 2))
        .collect();
    assert!(upserts.len() >= PARALLEL_UPSERT_READS);
    assert_eq!(upserts.len().div_ceil(UPSERT_CHUNK) % 2, 1);
    let applied = store
        .apply(&view, state(), OnlineChange::Upsert(upserts.into()))
        .unwrap();
    assert_eq!(applied.online_keys, 70_000);
    for (key, expected) in [
        (0, (10, 1)),
        (19_999, (10, 1)),
        (20_000, (10, 1)),
        (20_001, (20, 2)),
        (39_998, (10, 1)),
        (39_999, (20, 2)),
        (40_000, (5, 2)),
        (69_999, (20, 2)),
    ] {
        assert_eq!(read(&store, &view, key), Some(expected), "key {key}");
    }
    assert_eq!(read(&store, &view, 70_000), None);
}

#[test]
fn upserts_go_to_the_delta_which_merges_into_the_base() {
    upserts_merge_into_a_base_of(BaseLayout::Blocks);
}

/// Stores written before bases were blocked keep their per-key base
/// until their next full refresh; upserts and merges must still work.
#[test]
fn per_key_bases_of_older_stores_still_take_upserts() {
    upserts_merge_into_a_base_of(BaseLayout::PerKey);
}

/// A store in a new directory (its path), and the view tests use.
fn fresh_store() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    QualifiedName,
    Arc<OnlineStore>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("online.redb");
    let store = Arc::new(OnlineStore::open(&path, 1 << 20).unwrap());
    (dir, path, QualifiedName::new("public", "v"), store)
}

fn state() -> Materialization {
    Materialization::new("shape".into(), 1, 1, "t".into(), BTreeMap::new(), true)
}

/// A store written when the delta held one entry per key: opening it
/// moves those rows into a run, which lookups and the next upsert see.
#[test]
fn per_key_deltas_of_older_stores_are_read_after_opening() {
    let (_dir, path, view, store) = fresh_store();
    let applied = store
        .apply(
            &view,
            state(),
            OnlineChange::Replace(Box::new(OwnedRows::new((0..100).map(|k| update(k, 10, 1))))),
        )
        .unwrap();
    let per_key_name = applied.per_key_delta_table();
    let per_key: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&per_key_name);
    let write = store.db.begin_write().unwrap();
    {
        let mut table = write.open_table(per_key).unwrap();
        let mut value = Vec::new();
        store_value(20, &[9], &mut value);
        table
            .insert(1u32.to_be_bytes().as_slice(), value.as_slice())
            .unwrap();
    }
    write.commit().unwrap();
    drop(applied);
    close(store);

    let store = Arc::new(OnlineStore::open(&path, 1 << 20).unwrap());
    assert_eq!(read(&store, &view, 1), Some((20, 9)));
    assert_eq!(read(&store, &view, 2), Some((10, 1)));
    store
        .apply(
            &view,
            state(),
            OnlineChange::Upsert(vec![update(1, 15, 3), update(2, 30, 4)].into()),
        )
        .unwrap();
    assert_eq!(read(&store, &view, 1), Some((20, 9)));
    assert_eq!(read(&store, &view, 2), Some((30, 4)));
    let read_txn = store.db.begin_read().unwrap();
    assert!(matches!(
        read_txn.open_table(per_key),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
}

#[test]
fn states_written_before_blocks_decode_as_per_key() {
    let mut text = serde_json::to_value(Materialization::new(
        "shape".into(),
        1,
        1,
        "t".into(),
        BTreeMap::new(),
        true,
    ))
    .unwrap();
    text.as_object_mut().unwrap().remove("base_layout");
    let state: Materialization = serde_json::from_value(text).unwrap();
    assert_eq!(state.base_layout, BaseLayout::PerKey);
}

/// Drops `store` once no background thread (a cache warm) holds it, so
/// that the database can be opened again.
fn close(store: Arc<OnlineStore>) {
    let started = std::time::Instant::now();
    while Arc::strong_count(&store) > 1 {
        assert!(started.elapsed().as_secs() < 30, "the store is still held");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn upserts_merge_into_a_base_of(layout: BaseLayout) {
    let (_dir, path, view, store) = fresh_store();
    let mut first = state();
    first.base_layout = layout;
    store
        .apply(
            &view,
            first,
            OnlineChange::Replace(Box::new(OwnedRows::new((0..100).map(|k| update(k, 10, 1))))),
        )
        .unwrap();
    // Newer rows win, older ones do not, ties go to the refresh.
    let applied = store
        .apply(
            &view,
            state(),
            OnlineChange::Upsert(
                vec![
                    update(1, 20, 2),
                    update(2, 5, 2),
                    update(3, 10, 3),
                    update(500, 1, 4),
                ]
                .into(),
            ),
        )
        .unwrap();
    assert_eq!(applied.online_keys, 101);
    assert_eq!(read(&store, &view, 1), Some((20, 2)));
    assert_eq!(read(&store, &view, 2), Some((10, 1)));
    assert_eq!(read(&store, &view, 3), Some((10, 3)));
    assert_eq!(read(&store, &view, 500), Some((1, 4)));
    assert_eq!(read(&store, &view, 9999), None);
    close(store);

    // After a restart (cold cache) the delta still wins over the base;
    // a large upsert merges the delta into the base.
    let store = Arc::new(OnlineStore::open(&path, 1 << 20).unwrap());
    assert_eq!(read(&store, &view, 1), Some((20, 2)));
    let many: Vec<RowUpdate> = (1000..1000 + MIN_DELTA_MERGE as u32 + 10)
        .map(|k| update(k, 7, 5))
        .collect();
    let before = store.materialization(&view).unwrap();
    let applied = store
        .apply(&view, state(), OnlineChange::Upsert(many.into()))
        .unwrap();
    // A lookup that took its state before the merge still reads what
    // the store holds now.
    for (key, expected) in [
        (1u32, Some((20, 2))),
        (1005, Some((7, 5))),
        (50, Some((10, 1))),
        (99_999, None),
    ] {
        let row = store
            .get(&before, &key.to_be_bytes(), &mut Vec::new())
            .unwrap()
            .map(|row| (row.event_time(), row.values()[0]));
        assert_eq!(row, expected, "key {key}");
    }
    assert_eq!(applied.online_keys, 101 + MIN_DELTA_MERGE + 10);
    let read_txn = store.db.begin_read().unwrap();
    let delta: TableDefinition<&[u8], &[u8]> = TableDefinition::new(&applied.delta_table);
    assert!(matches!(
        read_txn.open_table(delta),
        Err(redb::TableError::TableDoesNotExist(_))
    ));
    drop(read_txn);
    close(store);
    let store = Arc::new(OnlineStore::open(&path, 1 << 20).unwrap());
    assert_eq!(read(&store, &view, 1), Some((20, 2)));
    assert_eq!(read(&store, &view, 1005), Some((7, 5)));
    assert_eq!(read(&store, &view, 50), Some((10, 1)));
    assert_eq!(store.materialization(&view).unwrap().base_layout, layout);
}

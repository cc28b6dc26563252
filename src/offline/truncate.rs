//! TRUNCATE as an Iceberg commit.
//!
//! iceberg-rust 0.10.1 can only fast-append, so the snapshot that removes
//! every data file is made here: an empty manifest list, a `delete`
//! snapshot on `main`, new table metadata, and the catalog pointer moved
//! with the same compare-and-swap iceberg-catalog-sql uses for its own
//! commits (`UPDATE … WHERE metadata_location = <expected>`). Either the
//! pointer moves or nothing changed: files written before a failed swap
//! are unreferenced. Earlier snapshots stay, so other engines reading an
//! older snapshot (and time travel) still see the rows until snapshots
//! are expired.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use iceberg::spec::{
    MAIN_BRANCH, ManifestListWriter, Operation, Snapshot, SnapshotReference, SnapshotRetention,
    Summary,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::store::CATALOG_NAME;
use crate::error::{Error, Result};

/// A second connection to the embedded SQL catalog, for the one commit
/// iceberg-catalog-sql cannot make for us.
///
/// iceberg-catalog-sql does not notice a failed SQLite COMMIT, so no two
/// writers may ever contend for the database: every catalog write —
/// iceberg-catalog-sql's through the store and table commits, and this
/// one — holds `writes`.
pub struct CatalogPointer {
    pool: SqlitePool,
    pub(super) writes: Arc<tokio::sync::Mutex<()>>,
}

impl CatalogPointer {
    pub async fn open(uri: &str, writes: Arc<tokio::sync::Mutex<()>>) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(uri)
            .map_err(|e| Error::internal(format!("catalog address {uri}: {e}")))?
            // The catalog's own connection may hold the write lock briefly.
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| Error::internal(format!("opening the catalog: {e}")))?;
        Ok(Self { pool, writes })
    }

    /// Moves the table's metadata pointer from `expected` to `new`; fails
    /// if someone else moved it first.
    async fn swap(&self, ident: &TableIdent, expected: &str, new: &str) -> Result<()> {
        let _writes = self.writes.lock().await;
        let result = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?",
        )
        .bind(new)
        .bind(expected)
        .bind(CATALOG_NAME)
        .bind(ident.namespace().join("."))
        .bind(ident.name())
        .bind(expected)
        .execute(&self.pool)
        .await
        .map_err(|e| Error::internal(format!("committing to the catalog: {e}")))?;
        if result.rows_affected() != 1 {
            return Err(Error::internal(format!(
                "the catalog entry of {ident} changed during TRUNCATE"
            )));
        }
        Ok(())
    }
}

fn unique_snapshot_id(table: &Table) -> i64 {
    loop {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((high ^ low) & (i64::MAX as u64)) as i64;
        if id != 0 && table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// Commits a snapshot of `table` with no data files, carrying
/// `properties` in its summary. Returns the table as committed (built
/// from the metadata written, so that nothing after the swap can fail).
pub(super) async fn commit_empty_snapshot(
    table: &Table,
    pointer: &CatalogPointer,
    properties: HashMap<String, String>,
) -> Result<Table> {
    let metadata = table.metadata();
    let current_location = table
        .metadata_location()
        .ok_or_else(|| Error::internal("table has no metadata location"))?
        .to_string();
    let snapshot_id = unique_snapshot_id(table);
    let parent = metadata.current_snapshot_id();
    let sequence_number = metadata.next_sequence_number();
    let manifest_list = format!(
        "{}/metadata/snap-{snapshot_id}-1-{}.avro",
        metadata.location(),
        uuid::Uuid::new_v4()
    );
    let writer = table.file_io().new_output(&manifest_list)?.writer().await?;
    let mut list = ManifestListWriter::v2(writer, snapshot_id, parent, sequence_number);
    list.add_manifests(std::iter::empty())?;
    list.close().await?;

    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent)
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .with_manifest_list(manifest_list)
        .with_summary(Summary {
            operation: Operation::Delete,
            additional_properties: properties,
        })
        .with_schema_id(metadata.current_schema_id())
        .build();
    let built = metadata
        .clone()
        .into_builder(Some(current_location.clone()))
        .add_snapshot(snapshot)?
        .set_ref(
            MAIN_BRANCH,
            SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        )?
        .build()?;
    let new_location = MetadataLocation::from_str(&current_location)?.with_next_version();
    built
        .metadata
        .write_to(table.file_io(), &new_location)
        .await?;
    let new_location = new_location.to_string();
    let committed = Table::builder()
        .metadata(built.metadata)
        .metadata_location(new_location.clone())
        .identifier(table.identifier().clone())
        .file_io(table.file_io().clone())
        // The catalog's tables run on the server's runtime too.
        .runtime(iceberg::Runtime::try_current()?)
        .build()?;
    pointer
        .swap(table.identifier(), &current_location, &new_location)
        .await?;
    Ok(committed)
}

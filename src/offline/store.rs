//! The offline store: Iceberg tables in a SQL catalog.
//!
//! Schemas are Iceberg namespaces; tables are Iceberg tables whose metadata
//! and data live under the warehouse directory. featuredb is the only writer
//! of its embedded catalog, so the store keeps every table's committed state
//! in memory and serves reads without catalog round trips; all changes go
//! through this store, which updates catalog and memory together.
//!
//! DDL is serialised by one lock: statements like CREATE TABLE check then
//! act, and two of them racing must not both pass the check.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use featuredb_catalog::{DEFAULT_SCHEMA, QualifiedName, TableSchemaDef, is_system_schema};
use iceberg::spec::FormatVersion;
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};

use super::observer::WriteObservers;
use super::schema::{SCHEMA_PROPERTY, iceberg_schema};
use super::storage::{DurableFsStorageFactory, create_dir_durable, local_path};
use super::table::TableHandle;
use super::truncate::CatalogPointer;
use crate::error::{Error, Result};

/// The Iceberg catalog name other engines must use to open our catalog.
pub const CATALOG_NAME: &str = "featuredb";

/// When logged small writes are committed to Iceberg.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// Commit when the tail is older than this…
    pub max_age: std::time::Duration,
    /// …or holds this many rows…
    pub max_rows: usize,
    /// …or this many bytes.
    pub max_bytes: usize,
    /// How often tails are checked.
    pub check_interval: std::time::Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self {
            max_age: std::time::Duration::from_secs(1),
            max_rows: 100_000,
            max_bytes: 64 * 1024 * 1024,
            check_interval: std::time::Duration::from_millis(100),
        }
    }
}

pub struct OfflineStore {
    catalog: Arc<dyn Catalog>,
    warehouse: PathBuf,
    /// Write-ahead logs of small writes, one directory per table.
    wal_root: PathBuf,
    state: RwLock<StoreState>,
    ddl: tokio::sync::Mutex<()>,
    /// For the commits iceberg-catalog-sql cannot make (TRUNCATE).
    pointer: Arc<CatalogPointer>,
    /// Held around every write to the catalog (see [`CatalogPointer`]).
    catalog_writes: Arc<tokio::sync::Mutex<()>>,
    /// Told about every table's writes (the stream engine).
    observers: Arc<WriteObservers>,
}

#[derive(Default)]
struct StoreState {
    /// schema → (table name → handle). Every namespace has an entry.
    schemas: BTreeMap<String, BTreeMap<String, Arc<TableHandle>>>,
    /// Tables that exist in the catalog but could not be loaded.
    broken: HashMap<QualifiedName, String>,
}

impl OfflineStore {
    /// Opens (creating if needed) the embedded catalog under `data_dir`:
    /// `catalog.db` (SQLite) and `warehouse/`.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        let warehouse = data_dir.join("warehouse");
        create_dir_durable(&warehouse)
            .map_err(|e| Error::io(format!("creating {}", warehouse.display()), e))?;
        let catalog_path = data_dir.join("catalog.db");
        let uri = format!("sqlite://{}?mode=rwc", catalog_path.display());
        let warehouse_uri = format!("file://{}", warehouse.display());
        let catalog = SqlCatalogBuilder::default()
            .uri(uri.clone())
            .warehouse_location(warehouse_uri)
            .sql_bind_style(SqlBindStyle::QMark)
            // One connection: every catalog change is serialised in-process,
            // so SQLite never returns BUSY to us (iceberg-catalog-sql would
            // not notice a failed COMMIT).
            .prop("pool.max-connections", "1")
            .with_storage_factory(Arc::new(DurableFsStorageFactory))
            .load(CATALOG_NAME, HashMap::new())
            .await?;
        let catalog_writes = Arc::new(tokio::sync::Mutex::new(()));
        let pointer = Arc::new(CatalogPointer::open(&uri, catalog_writes.clone()).await?);
        let store = Self {
            pointer,
            catalog_writes,
            catalog: Arc::new(catalog),
            warehouse,
            wal_root: data_dir.join("wal"),
            state: RwLock::new(StoreState::default()),
            ddl: tokio::sync::Mutex::new(()),
            observers: Arc::default(),
        };
        store.load_all().await?;
        if !store.schema_exists(DEFAULT_SCHEMA) {
            store.create_schema(DEFAULT_SCHEMA, true).await?;
        }
        Ok(store)
    }

    /// Where every table reports its writes (see [`WriteObservers`]).
    pub fn observers(&self) -> &WriteObservers {
        &self.observers
    }

    pub fn warehouse(&self) -> &Path {
        &self.warehouse
    }

    /// Loads every namespace and table. A table whose metadata cannot be
    /// read is reported and skipped, never fatal: one bad table must not
    /// keep the server from starting.
    async fn load_all(&self) -> Result<()> {
        let namespaces = self.catalog.list_namespaces(None).await?;
        let mut schemas = BTreeMap::new();
        let mut broken = HashMap::new();
        for namespace in namespaces {
            let schema = namespace.join(".");
            let mut tables = BTreeMap::new();
            for ident in self.catalog.list_tables(&namespace).await? {
                let name = QualifiedName::new(&schema, ident.name());
                match self.load_table(&ident, name.clone()).await {
                    Ok(handle) => {
                        tables.insert(ident.name().to_string(), Arc::new(handle));
                    }
                    Err(e) => {
                        tracing::error!(table = %name, error = %e, "cannot load table; it is unavailable until repaired");
                        broken.insert(name, e.to_string());
                    }
                }
            }
            schemas.insert(schema, tables);
        }
        if broken.is_empty() {
            self.remove_orphaned_logs(&schemas);
        }
        let mut state = self.write_state()?;
        state.schemas = schemas;
        state.broken = broken;
        Ok(())
    }

    /// Deletes write-ahead logs of tables that no longer exist (dropped
    /// while the server stopped between the catalog update and the log
    /// deletion). Only called when every table loaded, so that no live
    /// table's log can be mistaken for an orphan.
    fn remove_orphaned_logs(&self, schemas: &BTreeMap<String, BTreeMap<String, Arc<TableHandle>>>) {
        let live: std::collections::HashSet<String> = schemas
            .values()
            .flat_map(|tables| tables.values())
            .filter_map(|t| t.current().ok())
            .map(|t| t.metadata().uuid().to_string())
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.wal_root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !live.contains(&name) {
                tracing::info!(log = %entry.path().display(), "removing the write-ahead log of a dropped table");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    async fn load_table(&self, ident: &TableIdent, name: QualifiedName) -> Result<TableHandle> {
        let table = self.catalog.load_table(ident).await?;
        TableHandle::open(
            name,
            table,
            self.catalog.clone(),
            self.pointer.clone(),
            self.observers.clone(),
            &self.wal_root,
        )
    }

    /// Every table, for the flusher.
    fn all_tables(&self) -> Vec<Arc<TableHandle>> {
        self.read_state()
            .map(|s| {
                s.schemas
                    .values()
                    .flat_map(|t| t.values().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts the background task that commits tables' logged writes to
    /// Iceberg when their tail is large or old enough.
    pub fn start_flusher(self: &Arc<Self>, policy: FlushPolicy) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(policy.check_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                for table in store.all_tables() {
                    let stats = table.tail_stats();
                    let due = stats.rows >= policy.max_rows
                        || stats.bytes >= policy.max_bytes
                        || stats.age.is_some_and(|age| age >= policy.max_age);
                    if due && stats.rows > 0 {
                        tokio::spawn(async move {
                            if let Err(e) = table.flush().await {
                                tracing::warn!(table = %table.name, error = %e, "flushing logged writes failed; will retry");
                            }
                        });
                    }
                }
            }
        });
    }

    /// Commits every table's logged writes (at shutdown).
    pub async fn flush_all(&self) {
        for table in self.all_tables() {
            if let Err(e) = table.flush().await {
                tracing::warn!(table = %table.name, error = %e, "flushing logged writes at shutdown failed; they stay in the log");
            }
        }
    }

    fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, StoreState>> {
        self.state
            .read()
            .map_err(|_| Error::internal("offline store state lock poisoned"))
    }

    fn write_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, StoreState>> {
        self.state
            .write()
            .map_err(|_| Error::internal("offline store state lock poisoned"))
    }

    pub fn schema_exists(&self, schema: &str) -> bool {
        self.read_state()
            .map(|s| s.schemas.contains_key(schema))
            .unwrap_or(false)
    }

    pub fn schema_names(&self) -> Vec<String> {
        self.read_state()
            .map(|s| s.schemas.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn table_names(&self, schema: &str) -> Vec<String> {
        self.read_state()
            .ok()
            .and_then(|s| s.schemas.get(schema).map(|t| t.keys().cloned().collect()))
            .unwrap_or_default()
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<Arc<TableHandle>> {
        self.read_state()
            .ok()?
            .schemas
            .get(schema)?
            .get(name)
            .cloned()
    }

    /// Why a table that exists in the catalog cannot be used, if it cannot.
    pub fn broken_table(&self, schema: &str, name: &str) -> Option<String> {
        self.read_state()
            .ok()?
            .broken
            .get(&QualifiedName::new(schema, name))
            .cloned()
    }

    pub async fn create_schema(&self, schema: &str, if_not_exists: bool) -> Result<bool> {
        if is_system_schema(schema) {
            return Err(Error::DuplicateSchema(schema.to_string()));
        }
        self.create_namespace(schema, if_not_exists).await
    }

    /// Creates a schema featuredb itself keeps tables in, if missing.
    pub async fn ensure_internal_schema(&self, schema: &str) -> Result<()> {
        if self.schema_exists(schema) {
            return Ok(());
        }
        self.create_namespace(schema, true).await.map(|_| ())
    }

    async fn create_namespace(&self, schema: &str, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if self.schema_exists(schema) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::DuplicateSchema(schema.to_string()))
            };
        }
        let namespace = NamespaceIdent::new(schema.to_string());
        {
            let _writes = self.catalog_writes.lock().await;
            self.catalog
                .create_namespace(&namespace, HashMap::new())
                .await?;
        }
        self.write_state()?
            .schemas
            .insert(schema.to_string(), BTreeMap::new());
        Ok(true)
    }

    /// Drops schemas. Without `cascade`, a schema that holds tables is an
    /// error naming them; with it, its tables are dropped first.
    pub async fn drop_schema(&self, schema: &str, if_exists: bool, cascade: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        let tables = {
            let state = self.read_state()?;
            match state.schemas.get(schema) {
                None => {
                    return if if_exists {
                        Ok(false)
                    } else {
                        Err(Error::UndefinedSchema(schema.to_string()))
                    };
                }
                Some(tables) => tables.keys().cloned().collect::<Vec<_>>(),
            }
        };
        if !tables.is_empty() && !cascade {
            let detail = tables
                .iter()
                .map(|t| format!("table {schema}.{t} depends on schema {schema}"))
                .collect::<Vec<_>>()
                .join("\n");
            return Err(Error::DependentObjects {
                schema: schema.to_string(),
                detail,
            });
        }
        for table in &tables {
            self.drop_table_locked(schema, table).await?;
        }
        // Tables that failed to load still exist in the catalog.
        let namespace = NamespaceIdent::new(schema.to_string());
        let _writes = self.catalog_writes.lock().await;
        for ident in self.catalog.list_tables(&namespace).await? {
            self.catalog.drop_table(&ident).await?;
        }
        self.catalog.drop_namespace(&namespace).await?;
        let mut state = self.write_state()?;
        state.schemas.remove(schema);
        state.broken.retain(|name, _| name.schema != schema);
        Ok(true)
    }

    /// Creates a table. Returns `None` if it existed and `if_not_exists`.
    pub async fn create_table(
        &self,
        name: &QualifiedName,
        def: &TableSchemaDef,
        if_not_exists: bool,
    ) -> Result<Option<Arc<TableHandle>>> {
        let _ddl = self.ddl.lock().await;
        if !self.schema_exists(&name.schema) {
            return Err(Error::UndefinedSchema(name.schema.clone()));
        }
        if self.table(&name.schema, &name.name).is_some()
            || self.broken_table(&name.schema, &name.name).is_some()
        {
            return if if_not_exists {
                Ok(None)
            } else {
                Err(Error::DuplicateTable(name.name.clone()))
            };
        }
        let schema = iceberg_schema(def)?;
        let properties = [
            (
                SCHEMA_PROPERTY.to_string(),
                serde_json::to_string(def)
                    .map_err(|e| Error::internal(format!("encoding table definition: {e}")))?,
            ),
            (
                "write.parquet.compression-codec".to_string(),
                "snappy".to_string(),
            ),
        ];
        let creation = TableCreation::builder()
            .name(name.name.clone())
            .location(self.free_location(name))
            .schema(schema)
            .properties(properties)
            .format_version(FormatVersion::V2)
            .build();
        let namespace = NamespaceIdent::new(name.schema.clone());
        let table = {
            let _writes = self.catalog_writes.lock().await;
            self.catalog.create_table(&namespace, creation).await?
        };
        let handle = Arc::new(TableHandle::open(
            name.clone(),
            table,
            self.catalog.clone(),
            self.pointer.clone(),
            self.observers.clone(),
            &self.wal_root,
        )?);
        self.write_state()?
            .schemas
            .entry(name.schema.clone())
            .or_default()
            .insert(name.name.clone(), handle.clone());
        Ok(Some(handle))
    }

    /// Where a new table's files go: `warehouse/<schema>/<name>`, unless
    /// that directory is taken (a table renamed away from this name keeps
    /// its files where they were, and dropping it deletes that directory),
    /// then the first free `<name>-<n>`.
    /// Names become one path segment each (see [`path_segment`]).
    fn free_location(&self, name: &QualifiedName) -> String {
        let base = self.warehouse.join(path_segment(&name.schema));
        let table = path_segment(&name.name);
        let mut candidate = base.join(&table);
        let mut n = 2;
        while candidate.exists() {
            candidate = base.join(format!("{table}-{n}"));
            n += 1;
        }
        format!("file://{}", candidate.display())
    }

    /// Whether `path` is a table directory inside the warehouse (at least
    /// `schema/table` below it, after resolving `..` and links), so that
    /// deleting it cannot touch anything else.
    fn is_table_directory(&self, path: &Path) -> bool {
        let (Ok(path), Ok(warehouse)) = (path.canonicalize(), self.warehouse.canonicalize()) else {
            return false;
        };
        path.strip_prefix(&warehouse)
            .is_ok_and(|inside| inside.components().count() >= 2)
    }

    /// Renames a table within its schema. The table keeps its files and
    /// its write-ahead log (both keyed by identity, not name); its handle
    /// is reopened under the new name once no write through the old one is
    /// running. Writes that reach the old handle later fail as if the table
    /// had been dropped.
    pub async fn rename_table(
        &self,
        from: &QualifiedName,
        new_name: &str,
    ) -> Result<Arc<TableHandle>> {
        let _ddl = self.ddl.lock().await;
        let to = QualifiedName::new(&from.schema, new_name);
        let Some(handle) = self.table(&from.schema, &from.name) else {
            if let Some(reason) = self.broken_table(&from.schema, &from.name) {
                return Err(Error::internal(format!(
                    "table {from} cannot be renamed: {reason}"
                )));
            }
            return Err(Error::UndefinedTable {
                name: from.to_string(),
                position: None,
            });
        };
        if self.table(&to.schema, &to.name).is_some()
            || self.broken_table(&to.schema, &to.name).is_some()
        {
            return Err(Error::DuplicateTable(to.name.clone()));
        }
        let namespace = NamespaceIdent::new(from.schema.clone());
        let from_ident = TableIdent::new(namespace.clone(), from.name.clone());
        let to_ident = TableIdent::new(namespace, to.name.clone());
        handle.retire().await;
        let renamed = {
            let _writes = self.catalog_writes.lock().await;
            self.catalog.rename_table(&from_ident, &to_ident).await
        };
        // Where the catalog has the table now, and the handle reopened there.
        let (name, ident, outcome) = match renamed {
            Ok(()) => (to.clone(), &to_ident, Ok(())),
            Err(e) => (from.clone(), &from_ident, Err(Error::from(e))),
        };
        let reopened = self.load_table(ident, name.clone()).await;
        let mut state = self.write_state()?;
        state
            .schemas
            .entry(from.schema.clone())
            .or_default()
            .remove(&from.name);
        match reopened {
            Ok(table) => {
                let table = Arc::new(table);
                state
                    .schemas
                    .entry(name.schema.clone())
                    .or_default()
                    .insert(name.name.clone(), table.clone());
                outcome.map(|()| table)
            }
            // Listed as unreadable (as at startup) rather than left behind a
            // retired handle; the first error is the one that matters.
            Err(e) => {
                state.broken.insert(name, e.to_string());
                Err(outcome.err().unwrap_or(e))
            }
        }
    }

    /// Removes every row of a table (`TRUNCATE`). Returns the number of
    /// rows removed.
    pub async fn truncate_table(&self, table: &Arc<TableHandle>) -> Result<u64> {
        table.truncate().await
    }

    pub async fn drop_table(&self, name: &QualifiedName, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if !self.schema_exists(&name.schema) {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::UndefinedSchema(name.schema.clone()))
            };
        }
        let exists = self.table(&name.schema, &name.name).is_some()
            || self.broken_table(&name.schema, &name.name).is_some();
        if !exists {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::UndefinedTable {
                    name: name.name.clone(),
                    position: None,
                })
            };
        }
        self.drop_table_locked(&name.schema, &name.name).await?;
        Ok(true)
    }

    /// Removes the table from the catalog, then its files. A crash between
    /// the two leaves only unreferenced files behind.
    async fn drop_table_locked(&self, schema: &str, table: &str) -> Result<()> {
        let ident = TableIdent::new(NamespaceIdent::new(schema.to_string()), table.to_string());
        let handle = self.table(schema, table);
        let location = match &handle {
            Some(handle) => Some(handle.current()?.metadata().location().to_string()),
            None => None,
        };
        {
            let _writes = self.catalog_writes.lock().await;
            self.catalog.drop_table(&ident).await?;
        }
        {
            let mut state = self.write_state()?;
            if let Some(tables) = state.schemas.get_mut(schema) {
                tables.remove(table);
            }
            state.broken.remove(&QualifiedName::new(schema, table));
        }
        if let Some(handle) = handle {
            handle.mark_dropped().await;
        }
        if let Some(location) = location {
            let path = local_path(&location);
            if self.is_table_directory(&path)
                && let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not delete files of dropped table");
            }
        }
        Ok(())
    }
}

/// A relation or schema name as one directory name: ASCII letters, digits,
/// `_` and `-` as they are, every other byte as `@XX` (hex). Quoted names
/// may hold `/`, `..` or anything else; a file name never does.
fn path_segment(name: &str) -> String {
    let mut segment = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            segment.push(byte as char);
        } else {
            segment.push_str(&format!("@{byte:02X}"));
        }
    }
    if segment.is_empty() {
        segment.push('@');
    }
    segment
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn names_are_single_path_segments() {
        assert_eq!(path_segment("events_2024-01"), "events_2024-01");
        assert_eq!(path_segment("../x"), "@2E@2E@2Fx");
        assert_eq!(path_segment("/tmp/x"), "@2Ftmp@2Fx");
        assert_eq!(path_segment("a@b"), "a@40b");
        assert_eq!(path_segment("Ünï"), "@C3@9Cn@C3@AF");
        assert_eq!(path_segment(""), "@");
    }
}

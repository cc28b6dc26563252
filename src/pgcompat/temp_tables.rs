//! Temporary tables (`CREATE TEMPORARY TABLE`): session-local tables held
//! in memory, as PostgreSQL's live in a per-session schema.
//!
//! They exist for staging inside a session — dbt's incremental models
//! build the new rows in one, then `INSERT … SELECT` them into the target —
//! and go away with the session (or `DISCARD ALL|TEMP`). Unqualified names
//! find a temporary table before anything on `search_path`, as in
//! PostgreSQL; `pg_temp.name` names one explicitly. The catalog lists them
//! in the session's own schema `pg_temp_<backend pid>` with
//! `relpersistence = 't'`, to that session only.
//!
//! Rows live in memory (DataFusion `MemTable`), outside the query memory
//! limit; they are never written to disk. Views and feature views cannot
//! read them (a definition must outlive the session).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DFResult};
use featuredb_catalog::TableSchemaDef;

use crate::error::{Error, Result};

/// The schema name queries use for the session's temporary tables.
pub const TEMP_SCHEMA: &str = "pg_temp";

/// The name the catalog lists a session's temporary schema under.
pub fn temp_schema_name(backend_pid: i32) -> String {
    format!("pg_temp_{backend_pid}")
}

pub struct TempTable {
    pub definition: TableSchemaDef,
    pub provider: Arc<MemTable>,
}

/// One session's temporary tables.
pub struct TempTables {
    /// The schema the catalog shows them in (`pg_temp_<pid>`).
    pub schema_name: String,
    tables: RwLock<BTreeMap<String, Arc<TempTable>>>,
}

impl std::fmt::Debug for TempTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TempTables({})", self.schema_name)
    }
}

impl TempTables {
    pub fn new(backend_pid: i32) -> Self {
        Self {
            schema_name: temp_schema_name(backend_pid),
            tables: RwLock::new(BTreeMap::new()),
        }
    }

    /// Whether `schema` names this session's temporary schema.
    pub fn is_temp_schema(&self, schema: &str) -> bool {
        schema == TEMP_SCHEMA || schema == self.schema_name
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<TempTable>>> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<TempTable>>> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<TempTable>> {
        self.read().get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every table, by name.
    pub fn tables(&self) -> Vec<(String, Arc<TempTable>)> {
        self.read()
            .iter()
            .map(|(name, table)| (name.clone(), table.clone()))
            .collect()
    }

    /// Creates a table holding `batches`. False if the name is taken.
    pub fn create(
        &self,
        name: &str,
        definition: TableSchemaDef,
        batches: Vec<RecordBatch>,
    ) -> Result<bool> {
        let schema = Arc::new(definition.to_arrow());
        let batches = batches
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let provider = Arc::new(MemTable::try_new(schema, vec![batches])?);
        let mut tables = self.write();
        if tables.contains_key(name) {
            return Ok(false);
        }
        tables.insert(
            name.to_string(),
            Arc::new(TempTable {
                definition,
                provider,
            }),
        );
        Ok(true)
    }

    pub fn drop_table(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    pub fn drop_all(&self) {
        self.write().clear();
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut tables = self.write();
        if tables.contains_key(to) {
            return Err(Error::DuplicateTable(to.to_string()));
        }
        let table = tables.remove(from).ok_or_else(|| Error::UndefinedTable {
            name: from.to_string(),
            position: None,
        })?;
        tables.insert(to.to_string(), table);
        Ok(())
    }

    /// Empties a table (TRUNCATE).
    pub fn truncate(&self, name: &str) -> Result<()> {
        let mut tables = self.write();
        let table = tables.get(name).ok_or_else(|| Error::UndefinedTable {
            name: name.to_string(),
            position: None,
        })?;
        let schema = table.provider.schema();
        let emptied = Arc::new(TempTable {
            definition: table.definition.clone(),
            provider: Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        });
        tables.insert(name.to_string(), emptied);
        Ok(())
    }
}

/// The session's temporary tables as a DataFusion schema (`pg_temp`).
#[derive(Debug)]
pub struct TempSchema(pub Arc<TempTables>);

#[async_trait]
impl SchemaProvider for TempSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.0.read().keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .0
            .get(name)
            .map(|t| t.provider.clone() as Arc<dyn TableProvider>))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::NotImplemented(format!(
            "cannot register table {name}: use CREATE TEMPORARY TABLE"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

//! A live Iceberg table: its definition, its current committed state, and the
//! commit path every append goes through.
//!
//! Invariants:
//! - `current` is always a state that the catalog has durably committed; it
//!   only moves forward, and only after the catalog confirms the commit.
//! - Appends to one table are committed one at a time, but concurrent
//!   appenders are grouped: whoever holds the commit turn commits every
//!   append that is waiting, in one Iceberg snapshot ("group commit"). So N
//!   concurrent INSERTs cost far fewer than N catalog round trips and never
//!   conflict with each other.
//! - A commit runs on its own task: a client that disconnects or cancels
//!   while waiting cannot abort a commit that also carries other clients'
//!   rows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use featuredb_catalog::{QualifiedName, TableSchemaDef};
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};
use tokio::sync::oneshot;

use super::schema::{storage_arrow_schema, table_schema_def};
use crate::error::{Error, Result};

pub struct TableHandle {
    pub name: QualifiedName,
    ident: TableIdent,
    def: TableSchemaDef,
    /// What the engine plans against (declared types).
    arrow_schema: SchemaRef,
    /// What data files contain (Iceberg's Arrow mapping, with field ids).
    storage_schema: SchemaRef,
    current: RwLock<Arc<Table>>,
    catalog: Arc<dyn Catalog>,
    pending: Mutex<Vec<PendingAppend>>,
    commit_turn: tokio::sync::Mutex<()>,
    dropped: AtomicBool,
}

struct PendingAppend {
    files: Vec<DataFile>,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl TableHandle {
    pub fn new(name: QualifiedName, table: Table, catalog: Arc<dyn Catalog>) -> Result<Self> {
        let metadata = table.metadata();
        let iceberg_schema = metadata.current_schema();
        let def = table_schema_def(iceberg_schema, metadata.properties())?;
        // The engine sees every column as nullable: NOT NULL is enforced when
        // rows are written, where the error can name the column (DataFusion
        // would reject the batch with a message about its own columns).
        let arrow_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            def.to_arrow()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let storage_schema = storage_arrow_schema(iceberg_schema)?;
        Ok(Self {
            name,
            ident: table.identifier().clone(),
            def,
            arrow_schema,
            storage_schema,
            current: RwLock::new(Arc::new(table)),
            catalog,
            pending: Mutex::new(Vec::new()),
            commit_turn: tokio::sync::Mutex::new(()),
            dropped: AtomicBool::new(false),
        })
    }

    pub fn definition(&self) -> &TableSchemaDef {
        &self.def
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow_schema.clone()
    }

    pub fn arrow_schema_ref(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    pub fn storage_schema(&self) -> SchemaRef {
        self.storage_schema.clone()
    }

    /// The latest committed state.
    pub fn current(&self) -> Result<Arc<Table>> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::UndefinedTable {
                name: self.name.name.clone(),
                position: None,
            });
        }
        Ok(self
            .current
            .read()
            .map_err(|_| Error::internal("table state lock poisoned"))?
            .clone())
    }

    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Commits `files` as a new snapshot (possibly together with other
    /// waiting appends). Returns once the catalog has durably recorded it.
    pub async fn append(self: &Arc<Self>, files: Vec<DataFile>) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let (done, result) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| Error::internal("commit queue lock poisoned"))?
            .push(PendingAppend { files, done });
        let handle = Arc::clone(self);
        tokio::spawn(async move { handle.commit_waiting().await });
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::internal(message)),
            Err(_) => Err(Error::internal(format!(
                "commit to {} was abandoned",
                self.name
            ))),
        }
    }

    /// Takes the commit turn and commits everything waiting.
    async fn commit_waiting(&self) {
        let _turn = self.commit_turn.lock().await;
        let batch = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if batch.is_empty() {
            return;
        }
        let files: Vec<DataFile> = batch.iter().flat_map(|p| p.files.iter().cloned()).collect();
        let outcome = self.commit_files(files).await.map_err(|e| {
            tracing::error!(table = %self.name, error = %e, "append commit failed");
            format!("commit to {} failed: {e}", self.name)
        });
        for pending in batch {
            let _ = pending.done.send(outcome.clone());
        }
    }

    async fn commit_files(&self, files: Vec<DataFile>) -> Result<()> {
        if self.is_dropped() {
            return Err(Error::UndefinedTable {
                name: self.name.name.clone(),
                position: None,
            });
        }
        let table = self.current()?;
        let transaction = Transaction::new(&table);
        let transaction = transaction
            .fast_append()
            .add_data_files(files)
            .apply(transaction)?;
        let committed = transaction.commit(self.catalog.as_ref()).await?;
        // iceberg-catalog-sql ignores the result of its SQL COMMIT; read the
        // pointer back so that we never acknowledge a commit that did not
        // reach the catalog.
        let reloaded = self.catalog.load_table(&self.ident).await?;
        if reloaded.metadata_location() != committed.metadata_location() {
            return Err(Error::internal(format!(
                "catalog did not record the commit to {} (expected {:?}, found {:?})",
                self.name,
                committed.metadata_location(),
                reloaded.metadata_location()
            )));
        }
        *self
            .current
            .write()
            .map_err(|_| Error::internal("table state lock poisoned"))? = Arc::new(reloaded);
        Ok(())
    }
}

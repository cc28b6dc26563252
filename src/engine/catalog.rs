//! DataFusion's catalog view of featuredb: one catalog (`featuredb`), whose
//! schemas are the offline store's Iceberg namespaces. Looked up live on
//! every query, so DDL from any session is visible to all at once (unlike
//! iceberg-datafusion's catalog, which snapshots table lists when built).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DFResult};
use featuredb_catalog::DEFAULT_DATABASE;

use crate::offline::{IcebergTableProvider, OfflineStore};

#[derive(Debug)]
pub struct FeatureDbCatalogList {
    catalog: Arc<FeatureDbCatalog>,
}

impl FeatureDbCatalogList {
    pub fn new(store: Arc<OfflineStore>) -> Self {
        Self {
            catalog: Arc::new(FeatureDbCatalog { store }),
        }
    }
}

impl CatalogProviderList for FeatureDbCatalogList {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // featuredb has exactly one database; nothing else can be attached.
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![DEFAULT_DATABASE.to_string()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == DEFAULT_DATABASE).then(|| self.catalog.clone() as Arc<dyn CatalogProvider>)
    }
}

pub struct FeatureDbCatalog {
    store: Arc<OfflineStore>,
}

impl std::fmt::Debug for FeatureDbCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeatureDbCatalog")
    }
}

impl CatalogProvider for FeatureDbCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.store.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.store.schema_exists(name).then(|| {
            Arc::new(IcebergSchema {
                store: self.store.clone(),
                name: name.to_string(),
            }) as Arc<dyn SchemaProvider>
        })
    }

    fn register_schema(
        &self,
        name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> DFResult<Option<Arc<dyn SchemaProvider>>> {
        Err(DataFusionError::NotImplemented(format!(
            "cannot register schema {name}: use CREATE SCHEMA"
        )))
    }
}

pub struct IcebergSchema {
    store: Arc<OfflineStore>,
    name: String,
}

impl std::fmt::Debug for IcebergSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IcebergSchema({})", self.name)
    }
}

#[async_trait]
impl SchemaProvider for IcebergSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.store.table_names(&self.name)
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if let Some(reason) = self.store.broken_table(&self.name, name) {
            return Err(DataFusionError::Execution(format!(
                "table {}.{name} cannot be read: {reason}",
                self.name
            )));
        }
        Ok(self
            .store
            .table(&self.name, name)
            .map(|handle| Arc::new(IcebergTableProvider::new(handle)) as Arc<dyn TableProvider>))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::NotImplemented(format!(
            "cannot register table {name}: use CREATE TABLE"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.store.table(&self.name, name).is_some()
    }
}

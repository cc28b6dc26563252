//! DataFusion's catalog view of featuredb: one catalog (`featuredb`), whose
//! schemas are the offline store's Iceberg namespaces. Looked up live on
//! every query, so DDL from any session is visible to all at once (unlike
//! iceberg-datafusion's catalog, which snapshots table lists when built).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use featuredb_catalog::{ColumnType, DEFAULT_DATABASE, QualifiedName, REGISTRY_SCHEMA, Registry};

use crate::offline::{IcebergTableProvider, OfflineStore};
use crate::pgcompat::pg_catalog::{self, INFORMATION_SCHEMA, PG_CATALOG_SCHEMA, Relations};
use crate::pgcompat::temp_tables::{TempSchema, TempTables};

#[derive(Debug)]
pub struct FeatureDbCatalogList {
    catalog: Arc<FeatureDbCatalog>,
}

impl FeatureDbCatalogList {
    pub fn new(
        store: Arc<OfflineStore>,
        registry: Arc<Registry>,
        system_tables: Arc<dyn SchemaProvider>,
        relations: Relations,
        temp: Arc<TempTables>,
    ) -> DFResult<Self> {
        let relations = || relations.clone();
        // pg_catalog describes the user's relations; it reads them through
        // a catalog list of its own (without pg_catalog), so that the two
        // do not own each other.
        let described = Arc::new(Self {
            catalog: Arc::new(FeatureDbCatalog {
                store: store.clone(),
                registry: registry.clone(),
                system_tables: system_tables.clone(),
                pg_catalog: None,
                information_schema: pg_catalog::information_schema(relations()),
                temp: temp.clone(),
            }),
        });
        Ok(Self {
            catalog: Arc::new(FeatureDbCatalog {
                store: store.clone(),
                registry: registry.clone(),
                system_tables,
                pg_catalog: Some(pg_catalog::schema(described, relations())?),
                information_schema: pg_catalog::information_schema(relations()),
                temp,
            }),
        })
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
    registry: Arc<Registry>,
    /// The registry's system tables (`featuredb.*`).
    system_tables: Arc<dyn SchemaProvider>,
    pg_catalog: Option<Arc<dyn SchemaProvider>>,
    information_schema: Arc<dyn SchemaProvider>,
    /// The session's temporary tables.
    temp: Arc<TempTables>,
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
        let mut names = self.store.schema_names();
        names.push(REGISTRY_SCHEMA.to_string());
        if self.pg_catalog.is_some() {
            names.push(PG_CATALOG_SCHEMA.to_string());
        }
        names.push(INFORMATION_SCHEMA.to_string());
        if !self.temp.is_empty() {
            names.push(self.temp.schema_name.clone());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if self.temp.is_temp_schema(name) {
            return Some(Arc::new(TempSchema(self.temp.clone())));
        }
        if name == PG_CATALOG_SCHEMA {
            return self.pg_catalog.clone();
        }
        if name == INFORMATION_SCHEMA {
            return Some(self.information_schema.clone());
        }
        if name == REGISTRY_SCHEMA {
            return Some(self.system_tables.clone());
        }
        self.store.schema_exists(name).then(|| {
            Arc::new(IcebergSchema {
                store: self.store.clone(),
                registry: self.registry.clone(),
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

/// A schema: its Iceberg tables, and the feature views and services
/// defined in it (listed as views, so that `information_schema` and BI tools
/// see them; queries reach them through the name resolver, which replaces
/// them by the subqueries computing them).
pub struct IcebergSchema {
    store: Arc<OfflineStore>,
    registry: Arc<Registry>,
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
        let registry = self.registry.snapshot();
        let mut names = self.store.table_names(&self.name);
        names.extend(registry.relation_names_in(&self.name).map(str::to_string));
        names
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let registry = self.registry.snapshot();
        let qualified = QualifiedName::new(&self.name, name);
        if let Some(view) = registry.views.get(&qualified) {
            let fields = view
                .current()
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.column_type.clone()));
            return Ok(Some(Arc::new(RegistryRelation::new(qualified, fields))));
        }
        if let Some(view) = registry.sql_views.get(&qualified) {
            let fields = view
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.column_type.clone()));
            return Ok(Some(Arc::new(RegistryRelation::new(qualified, fields))));
        }
        if let Some(service) = registry.services.get(&qualified) {
            let current = service.current();
            let fields = current
                .keys
                .iter()
                .map(|k| (k.name.clone(), Some(k.data_type.clone())))
                .chain(
                    current
                        .features
                        .iter()
                        .map(|f| (f.output_name.clone(), f.column_type.clone())),
                );
            return Ok(Some(Arc::new(RegistryRelation::new(qualified, fields))));
        }
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
        let registry = self.registry.snapshot();
        let qualified = QualifiedName::new(&self.name, name);
        self.store.table(&self.name, name).is_some()
            || registry.views.contains_key(&qualified)
            || registry.services.contains_key(&qualified)
            || registry.sql_views.contains_key(&qualified)
    }
}

/// A feature view or service as DataFusion's catalog sees it: a view with
/// columns. It is never scanned; the name resolver replaces references to
/// it before planning.
#[derive(Debug)]
pub struct RegistryRelation {
    name: QualifiedName,
    schema: SchemaRef,
}

impl RegistryRelation {
    fn new(
        name: QualifiedName,
        columns: impl Iterator<Item = (String, Option<ColumnType>)>,
    ) -> Self {
        let fields: Vec<Field> = columns
            .map(|(column, column_type)| {
                let data_type = column_type
                    .map(|t| t.to_arrow())
                    .unwrap_or(datafusion::arrow::datatypes::DataType::Utf8);
                Field::new(column, data_type, true)
            })
            .collect();
        Self {
            name,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait]
impl TableProvider for RegistryRelation {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal(format!(
            "{} reached the planner without being resolved",
            self.name
        )))
    }
}

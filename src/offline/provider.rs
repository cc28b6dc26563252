//! DataFusion's view of an Iceberg table.
//!
//! Scans ask Iceberg which data files make up the current snapshot (pruning
//! files with manifest statistics for pushed-down filters) and read them with
//! DataFusion's own Parquet scan, which prunes row groups and pages, reads in
//! parallel and casts file types to the declared column types. Inserts go
//! through [`IcebergSink`], which writes data files and commits them as one
//! snapshot.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{Statistics, project_schema};
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;

use super::storage::local_path;
use super::table::TableHandle;
use super::writer::DataFileWriter;
use crate::error::Error;

#[derive(Debug)]
pub struct IcebergTableProvider {
    table: Arc<TableHandle>,
}

impl IcebergTableProvider {
    pub fn new(table: Arc<TableHandle>) -> Self {
        Self { table }
    }

    pub fn table(&self) -> &Arc<TableHandle> {
        &self.table
    }
}

#[async_trait]
impl TableProvider for IcebergTableProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.table.arrow_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        // The snapshot is fixed here: a query reads one committed state even
        // if appends land while it runs.
        let table = self.table.current().map_err(Error::into_datafusion)?;
        let schema = self.schema();
        let Some(snapshot) = table.metadata().current_snapshot() else {
            let projected = project_schema(&schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(projected)));
        };

        let mut scan = table
            .scan()
            .snapshot_id(snapshot.snapshot_id())
            .select_all();
        if let Some(predicate) = convert_filters_to_predicate(filters) {
            scan = scan.with_filter(predicate);
        }
        let tasks: Vec<_> = scan
            .build()
            .map_err(to_df)?
            .plan_files()
            .await
            .map_err(to_df)?
            .try_collect()
            .await
            .map_err(to_df)?;

        let mut files = Vec::with_capacity(tasks.len());
        for task in tasks {
            if !task.deletes.is_empty() {
                return Err(Error::FeatureNotSupported(format!(
                    "table {} has delete files (written by another engine), which featuredb cannot apply yet",
                    self.table.name
                ))
                .into_datafusion());
            }
            let path = local_path(&task.data_file_path);
            let path = path.to_string_lossy();
            files.push(PartitionedFile::new(
                path.trim_start_matches('/').to_string(),
                task.file_size_in_bytes,
            ));
        }
        if files.is_empty() {
            let projected = project_schema(&schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(projected)));
        }

        let target_partitions = state.config().target_partitions().max(1);
        let groups = split_into_groups(files, target_partitions);
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = Arc::new(ParquetSource::new(schema.clone()));
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_statistics(Statistics::new_unknown(&schema))
            .build();
        format.create_physical_plan(state, config).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Filters prune files (Iceberg manifests) and row groups (Parquet
        // statistics) but are re-applied on the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} is not supported: featuredb tables are append-only"
            )));
        }
        let sink = Arc::new(IcebergSink {
            table: self.table.clone(),
        });
        Ok(Arc::new(DataSinkExec::new(input, sink, None)))
    }
}

/// Spreads files over at most `partitions` groups, balancing bytes.
fn split_into_groups(mut files: Vec<PartitionedFile>, partitions: usize) -> Vec<FileGroup> {
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let group_count = partitions.min(files.len()).max(1);
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); group_count];
    for file in files {
        let smallest = groups
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one group");
        smallest.0 += file.object_meta.size;
        smallest.1.push(file);
    }
    groups
        .into_iter()
        .map(|(_, files)| FileGroup::new(files))
        .collect()
}

fn to_df(err: iceberg::Error) -> DataFusionError {
    Error::Iceberg(err).into_datafusion()
}

/// Writes an INSERT's rows into data files and commits them.
#[derive(Debug)]
pub struct IcebergSink {
    table: Arc<TableHandle>,
}

impl DisplayAs for IcebergSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "IcebergSink: table={}", self.table.name)
    }
}

#[async_trait]
impl DataSink for IcebergSink {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> &SchemaRef {
        self.table.arrow_schema_ref()
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let mut writer = DataFileWriter::new(self.table.clone())
            .await
            .map_err(Error::into_datafusion)?;
        while let Some(batch) = data.try_next().await? {
            writer.write(batch).await.map_err(Error::into_datafusion)?;
        }
        let written = writer.finish().await.map_err(Error::into_datafusion)?;
        written.commit().await.map_err(Error::into_datafusion)
    }
}

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
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{Statistics, project_schema};
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;

use super::storage::local_path;
use super::table::{ReadView, TableHandle};
use super::writer::DataFileWriter;
use crate::error::Error;

/// Inserts up to this many rows (and bytes) go through the write-ahead log.
const SMALL_WRITE_ROWS: usize = 10_000;
const SMALL_WRITE_BYTES: usize = 16 * 1024 * 1024;

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
        // The snapshot and the tail are fixed here: a query reads one
        // committed state even if writes land while it runs.
        let view = self.table.read_view().map_err(Error::into_datafusion)?;
        let schema = self.schema();
        let files = self
            .files_scan(state, &view, projection, filters, limit)
            .await?;
        let tail = (!view.tail.is_empty())
            .then(|| {
                MemorySourceConfig::try_new_exec(
                    std::slice::from_ref(&view.tail),
                    schema.clone(),
                    projection.cloned(),
                )
                .map(|exec| exec as Arc<dyn ExecutionPlan>)
            })
            .transpose()?;
        let plan = match (files, tail) {
            (Some(files), Some(tail)) => {
                let union = UnionExec::try_new(vec![files, tail])?;
                // The file scan applied the limit; the union must too.
                match limit {
                    Some(limit) => Arc::new(GlobalLimitExec::new(union, 0, Some(limit))),
                    None => union,
                }
            }
            (Some(files), None) => files,
            (None, Some(tail)) => tail,
            (None, None) => Arc::new(EmptyExec::new(project_schema(&schema, projection)?)),
        };
        Ok(plan)
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

impl IcebergTableProvider {
    /// Scans the data files of the view's snapshot (`None` if it has none).
    async fn files_scan(
        &self,
        state: &dyn Session,
        view: &ReadView,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
        let files = plan_data_files(&self.table, view, filters).await?;
        if files.is_empty() {
            return Ok(None);
        }
        let target_partitions = state.config().target_partitions().max(1);
        let groups = split_into_groups(files, target_partitions);
        let schema = self.schema();
        let source = ParquetSource::new(schema.clone());
        Ok(Some(
            parquet_scan(state, &schema, source, groups, projection, limit).await?,
        ))
    }
}

/// The data files of the view's snapshot that may hold rows matching
/// `filters` (Iceberg prunes with manifest statistics), in no particular
/// order.
pub(super) async fn plan_data_files(
    handle: &TableHandle,
    view: &ReadView,
    filters: &[Expr],
) -> DFResult<Vec<PartitionedFile>> {
    let table = &view.table;
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
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
                handle.name
            ))
            .into_datafusion());
        }
        files.push(PartitionedFile::new(
            object_store_path(&task.data_file_path),
            task.file_size_in_bytes,
        ));
    }
    Ok(files)
}

/// The local object store's path of an Iceberg file location.
pub(super) fn object_store_path(location: &str) -> String {
    let path = local_path(location);
    path.to_string_lossy().trim_start_matches('/').to_string()
}

/// DataFusion's Parquet scan of `groups`, one partition per group.
pub(super) async fn parquet_scan(
    state: &dyn Session,
    schema: &SchemaRef,
    source: ParquetSource,
    groups: Vec<FileGroup>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_groups(groups)
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .with_statistics(Statistics::new_unknown(schema))
        .build();
    format.create_physical_plan(state, config).await
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

    /// Small inserts go to the table's write-ahead log (fast, and no
    /// Iceberg commit each); larger ones are written as data files and
    /// committed directly.
    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let mut buffered: Vec<RecordBatch> = Vec::new();
        let mut buffered_rows = 0usize;
        let mut buffered_bytes = 0usize;
        let mut writer: Option<DataFileWriter> = None;
        while let Some(batch) = data.try_next().await? {
            if writer.is_none()
                && buffered_rows + batch.num_rows() <= SMALL_WRITE_ROWS
                && buffered_bytes + batch.get_array_memory_size() <= SMALL_WRITE_BYTES
            {
                buffered_rows += batch.num_rows();
                buffered_bytes += batch.get_array_memory_size();
                buffered.push(batch);
                continue;
            }
            let writer = match writer.as_mut() {
                Some(writer) => writer,
                None => {
                    let mut new = DataFileWriter::new(self.table.clone())
                        .await
                        .map_err(Error::into_datafusion)?;
                    for pending in buffered.drain(..) {
                        new.write(pending).await.map_err(Error::into_datafusion)?;
                    }
                    writer.insert(new)
                }
            };
            writer.write(batch).await.map_err(Error::into_datafusion)?;
        }
        match writer {
            Some(writer) => {
                let written = writer.finish().await.map_err(Error::into_datafusion)?;
                written.commit().await.map_err(Error::into_datafusion)
            }
            None => {
                let batch = concat_batches(&self.table.arrow_schema(), &buffered)?;
                let rows = batch.num_rows() as u64;
                self.table
                    .append_logged(batch)
                    .await
                    .map_err(Error::into_datafusion)?;
                Ok(rows)
            }
        }
    }
}

//! Reading a table in the order its rows were written.
//!
//! "Ties on event time resolve to the row written last" needs to know which
//! of two rows was written later. Iceberg records it: each commit has a
//! data sequence number, and a fast append lists its files in the order
//! they were added; inside a file, rows keep their order; the write-ahead
//! log's tail is newer than every committed file. featuredb commits a
//! table's tail ahead of the direct writes of the same snapshot (see
//! `table.rs`), so this is the order in which writes were acknowledged.
//!
//! [`WriteOrderedTable`] is a table with one more column,
//! `featuredb_write_order` (BIGINT), that increases with write order. Its
//! scan sorts the data files by (sequence number, position in manifest),
//! splits them into contiguous groups, one per partition, and numbers rows
//! as they stream: row r of group g gets g·2⁴⁰ + r. The tail comes last.
//! Numbers compare within one scan only; filters pushed into the Parquet
//! scan skip rows but never reorder them.
//!
//! The scan is a leaf ([`WriteOrderExec`]) so that the physical optimizer
//! cannot split or regroup its files, which would break the numbering;
//! the filters it is given are applied to the Parquet scan directly
//! (row-group and page pruning), as the optimizer would have.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionImpl};
use datafusion::common::{DFSchema, ScalarValue, exec_err, plan_err, project_schema};
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, ParquetSource};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::StreamExt;
use iceberg::spec::ManifestContentType;
use iceberg::table::Table;

use super::provider::{object_store_path, parquet_scan, plan_data_files};
use super::store::OfflineStore;
use super::table::TableHandle;
use crate::error::Error;

/// The column [`WriteOrderedTable`] adds.
pub const WRITE_ORDER_COLUMN: &str = "featuredb_write_order";

/// The table function naming a write-ordered table in SQL:
/// `featuredb_write_ordered('schema', 'table' [, 'order column'])`.
pub const WRITE_ORDERED_FUNCTION: &str = "featuredb_write_ordered";

/// Rows one partition may number before the next partition's range.
const GROUP_SHIFT: u32 = 40;

/// Where each committed file sits in write order, per manifest. Manifests
/// never change once written, so each is read once per table.
#[derive(Default)]
pub struct ManifestOrderCache {
    manifests: std::sync::Mutex<HashMap<String, Arc<ManifestFiles>>>,
}

/// A manifest's live files in write order, with their sequence numbers.
type ManifestFiles = Vec<(i64, String)>;

impl ManifestOrderCache {
    fn get(&self, path: &str) -> Option<Arc<ManifestFiles>> {
        self.manifests.lock().ok()?.get(path).cloned()
    }

    fn put(&self, path: String, files: Arc<ManifestFiles>) {
        if let Ok(mut manifests) = self.manifests.lock() {
            manifests.insert(path, files);
        }
    }
}

/// Each live data file's rank in write order and the sequence number of
/// the commit that added it (object-store path → (rank, sequence)).
async fn file_ranks(
    handle: &TableHandle,
    table: &Table,
) -> DFResult<HashMap<String, (usize, i64)>> {
    let mut ranks = HashMap::new();
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(ranks);
    };
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(to_df)?;
    let mut manifests: Vec<_> = list
        .entries()
        .iter()
        .filter(|m| m.content == ManifestContentType::Data)
        .collect();
    // Fast appends write one manifest per commit; its sequence number is
    // the commit's.
    manifests.sort_by_key(|m| m.sequence_number);
    for manifest_file in manifests {
        let files = match handle.manifest_order.get(&manifest_file.manifest_path) {
            Some(files) => files,
            None => {
                let manifest = manifest_file
                    .load_manifest(table.file_io())
                    .await
                    .map_err(to_df)?;
                let mut entries: Vec<(i64, usize, String)> = manifest
                    .entries()
                    .iter()
                    .enumerate()
                    .filter(|(_, entry)| entry.is_alive())
                    .map(|(index, entry)| {
                        (
                            entry
                                .sequence_number()
                                .unwrap_or(manifest_file.sequence_number),
                            index,
                            object_store_path(entry.file_path()),
                        )
                    })
                    .collect();
                entries.sort();
                let files = Arc::new(
                    entries
                        .into_iter()
                        .map(|(sequence, _, path)| (sequence, path))
                        .collect(),
                );
                handle
                    .manifest_order
                    .put(manifest_file.manifest_path.clone(), Arc::clone(&files));
                files
            }
        };
        for (sequence, path) in files.iter() {
            let rank = ranks.len();
            ranks.entry(path.clone()).or_insert((rank, *sequence));
        }
    }
    Ok(ranks)
}

/// Commits whose rows a scan reads: those with a sequence number in
/// `(after, through]`. Incremental refreshes read the rows appended
/// between two snapshots this way (the uncommitted tail is never in a
/// range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceRange {
    pub after: i64,
    pub through: i64,
}

/// A table plus [`WRITE_ORDER_COLUMN`].
#[derive(Debug)]
pub struct WriteOrderedTable {
    table: Arc<TableHandle>,
    schema: SchemaRef,
    range: Option<SequenceRange>,
}

impl WriteOrderedTable {
    /// The table with its write order as column `order_column`.
    pub fn new(table: Arc<TableHandle>, order_column: &str) -> Self {
        let base = table.arrow_schema();
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(order_column, DataType::Int64, false));
        Self {
            table,
            schema: Arc::new(Schema::new(fields)),
            range: None,
        }
    }

    /// Only the rows of commits in `range`.
    pub fn with_range(mut self, range: SequenceRange) -> Self {
        self.range = Some(range);
        self
    }

    fn order_column(&self) -> &str {
        self.schema.field(self.order_index()).name()
    }

    fn order_index(&self) -> usize {
        self.schema.fields().len() - 1
    }

    fn mentions_write_order(&self, expr: &Expr) -> bool {
        expr.column_refs()
            .iter()
            .any(|column| column.name == self.order_column())
    }
}

#[async_trait]
impl TableProvider for WriteOrderedTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if self.mentions_write_order(filter) {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let view = self.table.read_view().map_err(Error::into_datafusion)?;
        let base_schema = self.table.arrow_schema();
        let output_schema = project_schema(&self.schema, projection)?;
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        // The inner scans read the table's own columns; the order column
        // is inserted where the projection asks for it.
        let order_position = projection.iter().position(|&i| i == self.order_index());
        let base_projection: Vec<usize> = projection
            .iter()
            .copied()
            .filter(|&i| i != self.order_index())
            .collect();

        // Files in write order, split into contiguous groups.
        let mut files = plan_data_files(&self.table, &view, filters).await?;
        let ranks = file_ranks(&self.table, &view.table).await?;
        for file in &files {
            if !ranks.contains_key(file.object_meta.location.as_ref()) {
                return exec_err!(
                    "data file {} of table {} is not in its manifests",
                    file.object_meta.location,
                    self.table.name
                );
            }
        }
        if let Some(range) = self.range {
            files.retain(|f| {
                let (_, sequence) = ranks[f.object_meta.location.as_ref()];
                sequence > range.after && sequence <= range.through
            });
        }
        files.sort_by_key(|f| ranks[f.object_meta.location.as_ref()].0);
        let groups = contiguous_groups(files, state.config().target_partitions().max(1));
        let mut sources: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !groups.is_empty() {
            let mut source = ParquetSource::new(base_schema.clone());
            let usable: Vec<Expr> = filters
                .iter()
                .filter(|f| !self.mentions_write_order(f))
                .cloned()
                .collect();
            if let Some(predicate) = conjunction(usable) {
                let df_schema = DFSchema::try_from(base_schema.as_ref().clone())?;
                source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
            }
            sources.push(
                parquet_scan(
                    state,
                    &base_schema,
                    source,
                    groups,
                    Some(&base_projection),
                    limit,
                )
                .await?,
            );
        }
        if !view.tail.is_empty() && self.range.is_none() {
            sources.push(MemorySourceConfig::try_new_exec(
                std::slice::from_ref(&view.tail),
                base_schema.clone(),
                Some(base_projection.clone()),
            )?);
        }
        Ok(Arc::new(WriteOrderExec::new(
            sources,
            output_schema,
            order_position,
        )))
    }
}

/// Splits files (already in write order) into at most `partitions`
/// contiguous runs of about the same number of bytes. A large file is
/// split into byte ranges, in order: the Parquet reader gives each row
/// group to the range holding its middle, so every row is read once and
/// the runs stay in write order.
fn contiguous_groups(files: Vec<PartitionedFile>, partitions: usize) -> Vec<FileGroup> {
    let total: u64 = files.iter().map(|f| f.object_meta.size).sum();
    if total == 0 {
        return if files.is_empty() {
            Vec::new()
        } else {
            vec![FileGroup::new(files)]
        };
    }
    let target = total.div_ceil(partitions.max(1) as u64).max(1);
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut room = target;
    for file in files {
        let size = file.object_meta.size;
        let mut start = 0u64;
        while start < size {
            let end = (start + room).min(size);
            let piece = if start == 0 && end == size {
                file.clone()
            } else {
                file.clone().with_range(start as i64, end as i64)
            };
            current.push(piece);
            room -= end - start;
            start = end;
            if room == 0 {
                groups.push(FileGroup::new(std::mem::take(&mut current)));
                room = target;
            }
        }
        if size == 0 {
            current.push(file);
        }
    }
    if !current.is_empty() {
        groups.push(FileGroup::new(current));
    }
    groups
}

/// Numbers the rows of its sources' partitions in order: partition p
/// (counted across sources) gets p·2⁴⁰ onwards.
#[derive(Debug)]
pub struct WriteOrderExec {
    sources: Vec<Arc<dyn ExecutionPlan>>,
    schema: SchemaRef,
    /// Where the order column goes in the output (None: not projected).
    order_position: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl WriteOrderExec {
    fn new(
        sources: Vec<Arc<dyn ExecutionPlan>>,
        schema: SchemaRef,
        order_position: Option<usize>,
    ) -> Self {
        let partitions: usize = sources
            .iter()
            .map(|s| s.output_partitioning().partition_count())
            .sum();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            sources,
            schema,
            order_position,
            properties: Arc::new(properties),
        }
    }

    /// The source and its partition serving output partition `partition`.
    fn source_of(&self, partition: usize) -> Option<(&Arc<dyn ExecutionPlan>, usize)> {
        let mut first = 0;
        for source in &self.sources {
            let count = source.output_partitioning().partition_count();
            if partition < first + count {
                return Some((source, partition - first));
            }
            first += count;
        }
        None
    }
}

impl DisplayAs for WriteOrderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WriteOrderExec: sources={}", self.sources.len())
    }
}

impl ExecutionPlan for WriteOrderExec {
    fn name(&self) -> &str {
        "WriteOrderExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // A leaf on purpose: see the module comment.
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            plan_err!("WriteOrderExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let Some((source, source_partition)) = self.source_of(partition) else {
            // No sources at all: one empty partition.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::empty(),
            )));
        };
        let input = source.execute(source_partition, context)?;
        let schema = self.schema.clone();
        let order_position = self.order_position;
        let mut next = (partition as i64) << GROUP_SHIFT;
        let stream = input.map(move |batch| {
            let batch = batch?;
            let rows = batch.num_rows() as i64;
            let mut columns = batch.columns().to_vec();
            if let Some(position) = order_position {
                let order: ArrayRef = Arc::new(Int64Array::from_iter_values(next..next + rows));
                columns.insert(position, order);
            }
            next += rows;
            // With the row count given, projections of no columns
            // (count(*)) work too.
            Ok(RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &datafusion::arrow::array::RecordBatchOptions::new()
                    .with_row_count(Some(rows as usize)),
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// `featuredb_write_ordered('schema', 'table' [, 'order column' [, after, through]])`:
/// with `after` and `through`, only the rows of commits with a sequence
/// number in `(after, through]` (see [`SequenceRange`]).
pub struct WriteOrderedFunction {
    store: Arc<OfflineStore>,
}

impl fmt::Debug for WriteOrderedFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(WRITE_ORDERED_FUNCTION)
    }
}

impl WriteOrderedFunction {
    pub fn new(store: Arc<OfflineStore>) -> Self {
        Self { store }
    }
}

impl TableFunctionImpl for WriteOrderedFunction {
    fn call(&self, args: &[Expr]) -> DFResult<Arc<dyn TableProvider>> {
        let text = |expr: &Expr| match expr {
            Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
            _ => None,
        };
        let usage = || {
            plan_err!(
                "{WRITE_ORDERED_FUNCTION} takes a schema name, a table name and optionally the order column's name and a sequence number range"
            )
        };
        let number = |expr: &Expr| match expr {
            Expr::Literal(ScalarValue::Int64(Some(n)), _) => Some(*n),
            _ => None,
        };
        let (Some(schema), Some(table)) = (args.first().and_then(text), args.get(1).and_then(text))
        else {
            return usage();
        };
        let order_column = match args.get(2) {
            None => WRITE_ORDER_COLUMN.to_string(),
            Some(arg) => match text(arg) {
                Some(name) => name,
                None => return usage(),
            },
        };
        let range = match (args.get(3), args.get(4)) {
            (None, None) => None,
            (Some(after), Some(through)) => match (number(after), number(through)) {
                (Some(after), Some(through)) => Some(SequenceRange { after, through }),
                _ => return usage(),
            },
            _ => return usage(),
        };
        if args.len() > 5 {
            return usage();
        }
        let handle = self.store.table(&schema, &table).ok_or_else(|| {
            Error::UndefinedTable {
                name: format!("{schema}.{table}"),
                position: None,
            }
            .into_datafusion()
        })?;
        let table = WriteOrderedTable::new(handle, &order_column);
        Ok(Arc::new(match range {
            Some(range) => table.with_range(range),
            None => table,
        }))
    }
}

fn to_df(err: iceberg::Error) -> DataFusionError {
    Error::Iceberg(err).into_datafusion()
}

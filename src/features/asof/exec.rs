//! [`AsOfJoinExec`]: executes an AS OF join (see `matcher.rs` for how).
//!
//! All partitions of the spine (left) are read at once and indexed; then
//! every partition of the right side is read by its own task, which hands
//! each row to the worker owning its key's group (as many workers as the
//! session has target partitions, each owning a share of the groups, so
//! uneven right partitions still spread the matching evenly). The output is one partition:
//! the spine's partitions in order, each in its order (a file split into
//! byte ranges comes back in file order), with the matched right columns
//! gathered.
//!
//! Memory: the spine, the right rows kept for output and the candidate
//! arrays are reserved in DataFusion's memory pool; past its limit the
//! query fails with "out of memory" (53200) rather than the server.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, new_null_array,
};
use datafusion::arrow::compute::{filter_record_batch, interleave};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::{DataFusionError, Result as DFResult, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::logical::{AsOfJoinKind, Direction};
use super::matcher::{
    KeyMap, MAX_BATCHES_PER_READER, MAX_READERS, NO_ROW, Share, Slots, SpineBatch, SpineIndex,
    as_i64, location, reader_batch_row,
};

/// The expressions of an AS OF join, compiled against its inputs.
#[derive(Debug, Clone)]
pub struct AsOfExprs {
    pub left_keys: Vec<PhysicalExprRef>,
    pub right_keys: Vec<PhysicalExprRef>,
    pub left_time: PhysicalExprRef,
    pub right_time: PhysicalExprRef,
    pub bounds: Vec<PhysicalExprRef>,
    pub tie: Option<PhysicalExprRef>,
    pub left_filter: Option<PhysicalExprRef>,
}

pub struct AsOfJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    kind: AsOfJoinKind,
    direction: Direction,
    exprs: AsOfExprs,
    /// Left then right columns.
    join_schema: SchemaRef,
    /// The columns of `join_schema` that are output (all when `None`):
    /// a projection above is taken in, so unused right columns are never
    /// gathered.
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// What EXPLAIN ANALYZE shows of a run.
#[derive(Clone)]
struct JoinMetrics {
    /// Reading and indexing the spine.
    spine_time: Time,
    /// Reading the right side and matching (wall clock).
    match_time: Time,
    /// Workers' time matching (summed over workers).
    probe_time: Time,
    /// Gathering the output.
    output_time: Time,
    spine_rows: Count,
    right_rows: Count,
    output_rows: Count,
}

impl JoinMetrics {
    fn new(metrics: &ExecutionPlanMetricsSet) -> Self {
        let time = |name: &'static str| MetricBuilder::new(metrics).subset_time(name, 0);
        let count = |name: &'static str| MetricBuilder::new(metrics).counter(name, 0);
        Self {
            spine_time: time("spine_time"),
            match_time: time("match_time"),
            probe_time: time("probe_time"),
            output_time: time("output_time"),
            spine_rows: count("spine_rows"),
            right_rows: count("right_rows"),
            output_rows: MetricBuilder::new(metrics).output_rows(0),
        }
    }
}

impl fmt::Debug for AsOfJoinExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsOfJoinExec")
            .field("kind", &self.kind)
            .field("direction", &self.direction)
            .finish()
    }
}

impl AsOfJoinExec {
    pub fn new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        kind: AsOfJoinKind,
        direction: Direction,
        exprs: AsOfExprs,
        join_schema: SchemaRef,
    ) -> Self {
        Self::with_projection(left, right, kind, direction, exprs, join_schema, None)
    }

    fn with_projection(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        kind: AsOfJoinKind,
        direction: Direction,
        exprs: AsOfExprs,
        join_schema: SchemaRef,
        projection: Option<Vec<usize>>,
    ) -> Self {
        let schema = match &projection {
            Some(columns) => Arc::new(Schema::new_with_metadata(
                columns
                    .iter()
                    .map(|&c| join_schema.field(c).clone())
                    .collect::<Vec<_>>(),
                join_schema.metadata().clone(),
            )),
            None => join_schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            left,
            right,
            kind,
            direction,
            exprs,
            join_schema,
            projection,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The output columns as indices into left then right columns.
    fn output_columns(&self) -> Vec<usize> {
        match &self.projection {
            Some(columns) => columns.clone(),
            None => (0..self.join_schema.fields().len()).collect(),
        }
    }
}

impl DisplayAs for AsOfJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self
            .exprs
            .left_keys
            .iter()
            .zip(&self.exprs.right_keys)
            .map(|(l, r)| format!("({l}, {r})"))
            .collect();
        write!(
            f,
            "AsOfJoinExec: kind={:?}, on=[{}], time={} {} {}",
            self.kind,
            keys.join(", "),
            self.exprs.left_time,
            self.direction,
            self.exprs.right_time
        )?;
        if !self.exprs.bounds.is_empty() {
            let bounds: Vec<String> = self.exprs.bounds.iter().map(|b| b.to_string()).collect();
            write!(f, ", bounds=[{}]", bounds.join(", "))?;
        }
        if let Some(tie) = &self.exprs.tie {
            write!(f, ", ties={tie}")?;
        }
        if let Some(columns) = &self.projection {
            let names: Vec<&str> = columns
                .iter()
                .map(|&c| self.join_schema.field(c).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for AsOfJoinExec {
    fn name(&self) -> &str {
        "AsOfJoinExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true, false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // Splitting the spine would lose its order; the right side is
        // spread over workers here, whatever its partitioning.
        vec![false, false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("AsOfJoinExec has two children".into()))?;
        Ok(Arc::new(AsOfJoinExec::with_projection(
            left,
            right,
            self.kind,
            self.direction,
            self.exprs.clone(),
            self.join_schema.clone(),
            self.projection.clone(),
        )))
    }

    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
        // Plain columns under their own names only.
        let current = self.output_columns();
        let mut columns = Vec::with_capacity(projection.expr().len());
        for item in projection.expr() {
            let Some(column) = item.expr.as_any().downcast_ref::<Column>() else {
                return Ok(None);
            };
            if column.name() != item.alias || column.index() >= current.len() {
                return Ok(None);
            }
            columns.push(current[column.index()]);
        }
        Ok(Some(Arc::new(AsOfJoinExec::with_projection(
            self.left.clone(),
            self.right.clone(),
            self.kind,
            self.direction,
            self.exprs.clone(),
            self.join_schema.clone(),
            Some(columns),
        ))))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("AsOfJoinExec has no partition {partition}");
        }
        // Right rows are kept only with the columns the output needs.
        let left_columns = self.left.schema().fields().len();
        let mut right_columns: Vec<usize> = self
            .output_columns()
            .into_iter()
            .filter_map(|c| c.checked_sub(left_columns))
            .collect();
        right_columns.sort_unstable();
        right_columns.dedup();
        let columns = self
            .output_columns()
            .into_iter()
            .map(|c| match c.checked_sub(left_columns) {
                None => OutputColumn::Left(c),
                Some(r) => OutputColumn::Right(right_columns.binary_search(&r).unwrap_or(0)),
            })
            .collect();
        let job = Job {
            left: self.left.clone(),
            right: self.right.clone(),
            direction: self.direction,
            exprs: self.exprs.clone(),
            right_columns: Arc::new(right_columns),
            context,
            metrics: JoinMetrics::new(&self.metrics),
        };
        let output = Output {
            kind: self.kind,
            schema: self.schema.clone(),
            columns,
            metrics: job.metrics.clone(),
        };
        let stream = futures::stream::once(async move {
            let matched = Arc::new(job.run().await?);
            Ok::<_, DataFusionError>(output_batches(matched, output))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// Everything the output needs once matching is done.
struct Matched {
    /// Spine batches in order, with the global number of each one's
    /// first row.
    spine: Vec<(usize, RecordBatch)>,
    /// Right rows kept for output: every reader's batches in turn, then
    /// one all-NULL row for spine rows without a match (the list
    /// `interleave` gathers from).
    right: Vec<RecordBatch>,
    /// Index in `right` of each reader's first batch.
    bases: Vec<usize>,
    /// Per spine row: location of its match.
    matches: Vec<u64>,
    _reservation: MemoryReservation,
}

struct Job {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    direction: Direction,
    exprs: AsOfExprs,
    /// The right columns kept for the output.
    right_columns: Arc<Vec<usize>>,
    context: Arc<TaskContext>,
    metrics: JoinMetrics,
}

impl Job {
    async fn run(self) -> DFResult<Matched> {
        let spine_timer = self.metrics.spine_time.timer();
        let pool = self.context.runtime_env().memory_pool.clone();
        let reservation = MemoryConsumer::new("AsOfJoinExec").register(&pool);

        // 1. The spine, all partitions at once.
        let left_partitions = self.left.output_partitioning().partition_count();
        let mut readers = Vec::with_capacity(left_partitions);
        for p in 0..left_partitions {
            let stream = self.left.execute(p, self.context.clone())?;
            readers.push(SpawnedTask::spawn(async move {
                stream.try_collect::<Vec<RecordBatch>>().await
            }));
        }
        let mut spine = Vec::new();
        let mut evaluated = Vec::new();
        let key_types = self
            .exprs
            .left_keys
            .iter()
            .map(|k| k.data_type(&self.left.schema()))
            .collect::<DFResult<Vec<_>>>()?;
        let keys = KeyMap::new(&key_types)?;
        let mut next_row = 0usize;
        for reader in readers {
            let batches = reader
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
            for batch in batches {
                reservation.try_grow(batch.get_array_memory_size())?;
                evaluated.push(self.evaluate_spine(&keys, &batch)?);
                let rows = batch.num_rows();
                spine.push((next_row, batch));
                next_row += rows;
            }
        }
        reservation.try_grow(next_row * (24 + 8 * self.exprs.bounds.len()))?;
        let index = Arc::new(SpineIndex::build(keys, &evaluated, self.direction)?);
        drop(evaluated);
        self.metrics.spine_rows.add(next_row);
        spine_timer.done();
        let match_timer = self.metrics.match_time.timer();

        // 2. The right side: a reader per partition evaluates each batch
        // and hands its rows to the workers owning their keys' groups.
        let workers = self
            .context
            .session_config()
            .target_partitions()
            .clamp(1, 64);
        let shares = Arc::new(index.shares(workers));
        let mut senders = Vec::with_capacity(workers);
        let mut tasks = Vec::with_capacity(workers);
        for share in shares.iter() {
            let share = share.clone();
            let (sender, receiver) = tokio::sync::mpsc::channel::<Arrival>(4);
            senders.push(sender);
            let index = index.clone();
            reservation.try_grow(share.positions().len() * Slots::BYTES_PER_POSITION)?;
            let probe_time = self.metrics.probe_time.clone();
            tasks.push(SpawnedTask::spawn(async move {
                probe(receiver, &index, &share, probe_time).await
            }));
        }
        let right_partitions = self.right.output_partitioning().partition_count();
        if right_partitions > MAX_READERS {
            return internal_err!("AsOfJoinExec: more than {MAX_READERS} right partitions");
        }
        let mut readers = Vec::with_capacity(right_partitions);
        for p in 0..right_partitions {
            let mut stream = self.right.execute(p, self.context.clone())?;
            let senders = senders.clone();
            let reservation = reservation.new_empty();
            let right_rows = self.metrics.right_rows.clone();
            let index = index.clone();
            let shares = shares.clone();
            let exprs = self.exprs.clone();
            let right_columns = self.right_columns.clone();
            readers.push(SpawnedTask::spawn(async move {
                // Arrival order, for ties without a write order: partitions
                // in order, rows in order within each.
                let mut arrival = (p as i64) << 40;
                let mut kept = Vec::new();
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let rows = batch.num_rows();
                    if rows == 0 {
                        continue;
                    }
                    if kept.len() >= MAX_BATCHES_PER_READER {
                        return internal_err!("AsOfJoinExec: too many right batches");
                    }
                    right_rows.add(rows);
                    let keys = exprs
                        .right_keys
                        .iter()
                        .map(|k| k.evaluate(&batch)?.into_array(rows))
                        .collect::<DFResult<Vec<_>>>()?;
                    let keys = index.keys.encode(&keys)?;
                    let times = as_i64(&exprs.right_time.evaluate(&batch)?.into_array(rows)?)?;
                    let ties = match &exprs.tie {
                        Some(tie) => Some(as_i64(&tie.evaluate(&batch)?.into_array(rows)?)?),
                        None => None,
                    };
                    let routed = index.route(&shares, &keys, &times);
                    let base = location(p, kept.len(), 0);
                    for (sender, routed) in senders.iter().zip(routed) {
                        if routed.is_empty() {
                            continue;
                        }
                        let arrival = Arrival {
                            routed,
                            times: times.clone(),
                            ties: ties.clone(),
                            arrival,
                            base,
                        };
                        if sender.send(arrival).await.is_err() {
                            // The worker failed; its error is reported.
                            return Ok((kept, reservation));
                        }
                    }
                    let batch = batch.project(&right_columns)?;
                    reservation.try_grow(batch.get_array_memory_size())?;
                    kept.push(batch);
                    arrival += rows as i64;
                }
                Ok::<_, DataFusionError>((kept, reservation))
            }));
        }
        drop(senders);
        let mut right = Vec::new();
        let mut bases = Vec::with_capacity(right_partitions);
        for reader in readers {
            let (kept, reader_reservation) = reader
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
            bases.push(right.len());
            right.extend(kept);
            reservation.grow(reader_reservation.size());
        }
        let mut slots = Vec::with_capacity(workers);
        for task in tasks {
            slots.push(
                task.join_unwind()
                    .await
                    .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??,
            );
        }
        let matches = index.resolve(slots);
        match_timer.done();

        // One all-NULL row for spine rows without a match.
        let right_schema = self.right.schema().project(&self.right_columns)?;
        let nullable: Vec<Field> = right_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let null_columns: Vec<ArrayRef> = right_schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        right.push(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(nullable)),
            null_columns,
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?);
        Ok(Matched {
            spine,
            right,
            bases,
            matches,
            _reservation: reservation,
        })
    }

    fn evaluate_spine(&self, keys: &KeyMap, batch: &RecordBatch) -> DFResult<SpineBatch> {
        let rows = batch.num_rows();
        let key_arrays = self
            .exprs
            .left_keys
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(rows))
            .collect::<DFResult<Vec<_>>>()?;
        let times = as_i64(&self.exprs.left_time.evaluate(batch)?.into_array(rows)?)?;
        let bounds = self
            .exprs
            .bounds
            .iter()
            .map(|b| as_i64(&b.evaluate(batch)?.into_array(rows)?))
            .collect::<DFResult<Vec<_>>>()?;
        let eligible = match &self.exprs.left_filter {
            Some(filter) => {
                let array = filter.evaluate(batch)?.into_array(rows)?;
                Some(
                    array
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| {
                            DataFusionError::Internal("AS OF spine filter is not boolean".into())
                        })?
                        .clone(),
                )
            }
            None => None,
        };
        Ok(SpineBatch {
            keys: keys.encode(&key_arrays)?,
            times,
            bounds,
            eligible,
        })
    }
}

/// The rows of a right batch one worker matches, with what it needs of
/// the batch: times, ties, the arrival number and location of its row 0.
struct Arrival {
    routed: Vec<(u32, u32)>,
    times: ArrayRef,
    ties: Option<ArrayRef>,
    arrival: i64,
    base: u64,
}

/// One worker: offers the rows it is handed to the slots of its share.
async fn probe(
    mut receiver: tokio::sync::mpsc::Receiver<Arrival>,
    index: &SpineIndex,
    share: &Share,
    probe_time: Time,
) -> DFResult<Slots> {
    let mut slots = index.new_slots(share);
    while let Some(arrival) = receiver.recv().await {
        let _timer = probe_time.timer();
        index.offer(
            share,
            &mut slots,
            &arrival.routed,
            &arrival.times,
            arrival.ties.as_ref(),
            arrival.arrival,
            arrival.base,
        );
    }
    Ok(slots)
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
enum OutputColumn {
    /// A spine column.
    Left(usize),
    /// A column of the kept right rows.
    Right(usize),
}

/// How output batches are made.
struct Output {
    kind: AsOfJoinKind,
    schema: SchemaRef,
    columns: Vec<OutputColumn>,
    metrics: JoinMetrics,
}

/// The output: a batch per spine batch.
fn output_batches(
    matched: Arc<Matched>,
    output: Output,
) -> futures::stream::BoxStream<'static, DFResult<RecordBatch>> {
    let count = matched.spine.len();
    futures::stream::iter(0..count)
        .map(move |i| {
            let _timer = output.metrics.output_time.timer();
            let batch = join_batch(&matched, i, &output)?;
            output.metrics.output_rows.add(batch.num_rows());
            Ok(batch)
        })
        .boxed()
}

fn join_batch(matched: &Matched, i: usize, output: &Output) -> DFResult<RecordBatch> {
    let (first_row, batch) = &matched.spine[i];
    let rows = batch.num_rows();
    let matches = &matched.matches[*first_row..*first_row + rows];
    let null_batch = matched.right.len() - 1;
    let index_of = |m: u64| {
        if m == NO_ROW {
            (null_batch, 0)
        } else {
            let (reader, batch, row) = reader_batch_row(m);
            (matched.bases[reader] + batch, row)
        }
    };
    let (left, indices): (RecordBatch, Vec<(usize, usize)>) = match output.kind {
        AsOfJoinKind::Left => (
            batch.clone(),
            matches.iter().map(|&m| index_of(m)).collect(),
        ),
        AsOfJoinKind::Inner => {
            let keep = BooleanArray::from_iter(matches.iter().map(|&m| Some(m != NO_ROW)));
            (
                filter_record_batch(batch, &keep)?,
                matches
                    .iter()
                    .filter(|&&m| m != NO_ROW)
                    .map(|&m| index_of(m))
                    .collect(),
            )
        }
    };
    let mut columns = Vec::with_capacity(output.columns.len());
    for column in &output.columns {
        match *column {
            OutputColumn::Left(c) => columns.push(left.column(c).clone()),
            OutputColumn::Right(c) => {
                let arrays: Vec<&dyn Array> =
                    matched.right.iter().map(|b| b.column(c).as_ref()).collect();
                columns.push(interleave(&arrays, &indices)?);
            }
        }
    }
    Ok(RecordBatch::try_new_with_options(
        output.schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(left.num_rows())),
    )?)
}

//! [`AsOfJoinExec`]: executes an AS OF join (see `matcher.rs` for how).
//!
//! All partitions of the spine (left) are read and indexed once, shared by
//! the output partitions; then every partition of the right side is
//! streamed past the index by its own task. Output partition i is spine
//! partition i, in its order, with the matched right columns gathered.
//! The spine is not repartitioned (that would lose its order); the right
//! side is, when its ties are broken by a write-order column rather than by
//! the order rows arrive in.
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
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::logical::{AsOfJoinKind, Direction};
use super::matcher::{
    Candidate, KeyMap, NO_ROW, SpineBatch, SpineIndex, as_i64, batch_and_row, location,
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
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// Computed by the first output partition polled, shared by all.
    matched: Arc<OnceCell<Result<Arc<Matched>, Arc<DataFusionError>>>>,
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
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(left.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            left,
            right,
            kind,
            direction,
            exprs,
            schema,
            properties: Arc::new(properties),
            matched: Arc::new(OnceCell::new()),
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

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true, false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // Splitting the spine would lose its order; the right side may be
        // spread over tasks when ties do not depend on arrival order.
        vec![false, self.exprs.tie.is_some()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("AsOfJoinExec has two children".into()))?;
        Ok(Arc::new(AsOfJoinExec::new(
            left,
            right,
            self.kind,
            self.direction,
            self.exprs.clone(),
            self.schema.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let partitions = self.left.output_partitioning().partition_count();
        if partition >= partitions {
            return internal_err!("AsOfJoinExec has no partition {partition}");
        }
        let matched = self.matched.clone();
        let job = Job {
            left: self.left.clone(),
            right: self.right.clone(),
            direction: self.direction,
            exprs: self.exprs.clone(),
            context,
        };
        let kind = self.kind;
        let schema = self.schema.clone();
        let stream = futures::stream::once(async move {
            let result = matched
                .get_or_init(|| async move { job.run().await.map(Arc::new).map_err(Arc::new) })
                .await;
            match result {
                Ok(matched) => Ok(output_batches(matched.clone(), partition, kind, schema)),
                Err(e) => Err(DataFusionError::Shared(e.clone())),
            }
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
    /// Spine batches of each partition, and the global number of the
    /// first row of each.
    spine: Vec<Vec<(usize, RecordBatch)>>,
    /// Right rows kept for output, per task, then one all-NULL row.
    right: Vec<RecordBatch>,
    /// Per spine row: location of its match (task in the batch's high bits).
    matches: Vec<u64>,
    _reservation: MemoryReservation,
}

struct Job {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    direction: Direction,
    exprs: AsOfExprs,
    context: Arc<TaskContext>,
}

/// Bits of a location's batch number that name the task.
const TASK_SHIFT: usize = 20;

impl Job {
    async fn run(self) -> DFResult<Matched> {
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
        let mut spine = Vec::with_capacity(left_partitions);
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
            let mut numbered = Vec::with_capacity(batches.len());
            for batch in batches {
                reservation.try_grow(batch.get_array_memory_size())?;
                evaluated.push(self.evaluate_spine(&keys, &batch)?);
                numbered.push((next_row, batch));
                next_row += numbered.last().map(|(_, b)| b.num_rows()).unwrap_or(0);
            }
            spine.push(numbered);
        }
        reservation.try_grow(next_row * (24 + 8 * self.exprs.bounds.len()))?;
        let index = Arc::new(SpineIndex::build(keys, &evaluated, self.direction)?);
        drop(evaluated);

        // 2. The right side, a task per partition.
        let right_partitions = self.right.output_partitioning().partition_count();
        if right_partitions >= 1 << (32 - TASK_SHIFT) {
            return internal_err!("AsOfJoinExec: too many right partitions");
        }
        let mut tasks = Vec::with_capacity(right_partitions);
        for p in 0..right_partitions {
            let stream = self.right.execute(p, self.context.clone())?;
            let index = index.clone();
            let exprs = self.exprs.clone();
            let task_reservation = reservation.new_empty();
            task_reservation.try_grow(index.new_candidates().len() * size_of::<Candidate>())?;
            tasks.push(SpawnedTask::spawn(async move {
                probe(stream, &index, &exprs, p, task_reservation).await
            }));
        }
        let mut candidates = Vec::with_capacity(right_partitions);
        let mut right = Vec::new();
        let mut task_base = Vec::with_capacity(right_partitions);
        for task in tasks {
            let (task_candidates, batches, task_reservation) = task
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
            candidates.push(task_candidates);
            task_base.push(right.len());
            right.extend(batches);
            reservation.grow(task_reservation.size());
        }
        let mut matches = index.resolve(candidates);
        // Locations name (task, batch in task); make them global.
        for m in matches.iter_mut().filter(|m| **m != NO_ROW) {
            let (batch, row) = batch_and_row(*m);
            let task = batch >> TASK_SHIFT;
            let global = task_base[task] + (batch & ((1 << TASK_SHIFT) - 1));
            *m = location(global, row);
        }
        // One all-NULL row for spine rows without a match.
        let right_schema = self.right.schema();
        let nullable: Vec<Field> = right_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let nulls: Vec<ArrayRef> = right_schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        right.push(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(nullable)),
            nulls,
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?);
        Ok(Matched {
            spine,
            right,
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

/// Streams one right partition past the index.
async fn probe(
    mut stream: SendableRecordBatchStream,
    index: &SpineIndex,
    exprs: &AsOfExprs,
    task: usize,
    reservation: MemoryReservation,
) -> DFResult<(Vec<Candidate>, Vec<RecordBatch>, MemoryReservation)> {
    let mut candidates = index.new_candidates();
    let mut kept = Vec::new();
    // Arrival order, for ties when there is no write order: partitions in
    // order, rows in order within each.
    let mut arrival = (task as i64) << 40;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let rows = batch.num_rows();
        if rows == 0 {
            continue;
        }
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
        let batch_number = (task << TASK_SHIFT) | kept.len();
        index.offer(
            &mut candidates,
            &keys,
            &times,
            ties.as_ref(),
            arrival,
            location(batch_number, 0),
        );
        arrival += rows as i64;
        reservation.try_grow(batch.get_array_memory_size())?;
        kept.push(batch);
    }
    Ok((candidates, kept, reservation))
}

/// The output of partition `partition`, a batch per spine batch.
fn output_batches(
    matched: Arc<Matched>,
    partition: usize,
    kind: AsOfJoinKind,
    schema: SchemaRef,
) -> futures::stream::BoxStream<'static, DFResult<RecordBatch>> {
    let count = matched.spine[partition].len();
    futures::stream::iter(0..count)
        .map(move |i| join_batch(&matched, partition, i, kind, &schema))
        .boxed()
}

fn join_batch(
    matched: &Matched,
    partition: usize,
    i: usize,
    kind: AsOfJoinKind,
    schema: &SchemaRef,
) -> DFResult<RecordBatch> {
    let (first_row, batch) = &matched.spine[partition][i];
    let rows = batch.num_rows();
    let matches = &matched.matches[*first_row..*first_row + rows];
    let null_batch = matched.right.len() - 1;
    let (left, indices): (RecordBatch, Vec<(usize, usize)>) = match kind {
        AsOfJoinKind::Left => (
            batch.clone(),
            matches
                .iter()
                .map(|&m| {
                    if m == NO_ROW {
                        (null_batch, 0)
                    } else {
                        batch_and_row(m)
                    }
                })
                .collect(),
        ),
        AsOfJoinKind::Inner => {
            let keep = BooleanArray::from_iter(matches.iter().map(|&m| Some(m != NO_ROW)));
            (
                filter_record_batch(batch, &keep)?,
                matches
                    .iter()
                    .filter(|&&m| m != NO_ROW)
                    .map(|&m| batch_and_row(m))
                    .collect(),
            )
        }
    };
    let mut columns = left.columns().to_vec();
    let right_columns = matched.right[0].num_columns();
    for c in 0..right_columns {
        let arrays: Vec<&dyn Array> = matched.right.iter().map(|b| b.column(c).as_ref()).collect();
        columns.push(interleave(&arrays, &indices)?);
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(left.num_rows())),
    )?)
}

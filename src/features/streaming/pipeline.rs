//! What a row-level streaming view computes from one written batch: the
//! view's query, planned once against its source table, reduced to the
//! filters and projections it applies row by row, and run on each batch as
//! it is written — no planner, no execution plan per write.
//!
//! Only a query that is such a chain over one table can be kept this way:
//! anything that needs other rows (joins, aggregates, DISTINCT, LIMIT,
//! sorting, window functions) or the time of evaluation (`now()`, random
//! values) is refused with the reason, at CREATE or ALTER.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{filter_record_batch, prep_null_mask_filter};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::sql::sqlparser::ast;
use featuredb_catalog::{FeatureViewVersion, ObjectKind, QualifiedName, RegistryState};

use crate::error::{Error, Result};
use crate::features::materialize::RowShape;
use crate::features::planner::SqlPlanner;
use crate::features::resolve::ResolveMode;
use crate::features::temporal::parse_query;

/// One step of the chain, applied to the batch the step below produced.
enum Step {
    /// Keep the rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute the columns of the next batch.
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
}

/// A row-level view's computation over batches of its source table.
pub struct RowPipeline {
    /// The table the view reads.
    pub source: QualifiedName,
    steps: Vec<Step>,
    /// The view's columns in their declared types, keys and event time.
    pub shape: RowShape,
}

/// Why the stream engine cannot keep `view` (SQLSTATE 0A000).
fn cannot(view: &QualifiedName, reason: impl std::fmt::Display) -> Error {
    Error::FeatureNotSupported(format!(
        "feature view {view} cannot be STREAMING: {reason}; the stream engine keeps \
         projections, filters and scalar expressions over one table (refresh the view in \
         batch instead)"
    ))
}

impl RowPipeline {
    /// Plans `view` (named `name`) against `registry` and reduces it to a
    /// chain of steps, or says why it cannot be kept by the stream engine.
    pub async fn compile(
        name: &QualifiedName,
        view: &FeatureViewVersion,
        registry: &RegistryState,
        planner: &mut dyn SqlPlanner,
    ) -> Result<Self> {
        let source = source_table(name, view, registry)?;
        // A windowed view streams its row-level base; its windows are
        // computed from the rows when read.
        let view = &*view.materialized_form();
        let query = parse_query(&view.query)?;
        let statement = ast::Statement::Query(query);
        let (plan, _) = planner
            .plan(
                registry,
                ResolveMode::Definition,
                &view.query,
                &statement,
                &[],
            )
            .await?;
        if let Some(function) = time_dependent_function(&plan) {
            return Err(cannot(
                name,
                format!(
                    "{function}() gives a different value each time it is evaluated, and a \
                     streamed row is computed once, when it is written"
                ),
            ));
        }
        let state = planner.state();
        let optimized = state.optimize(&plan).map_err(Error::from_datafusion)?;
        let mut chain = Vec::new();
        let mut node = &optimized;
        let scan = loop {
            match node {
                LogicalPlan::Projection(p) => {
                    chain.push(node);
                    node = p.input.as_ref();
                }
                LogicalPlan::Filter(f) => {
                    chain.push(node);
                    node = f.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
                LogicalPlan::TableScan(scan) => break scan,
                other => {
                    return Err(cannot(name, describe(other)));
                }
            }
        };
        // Stored rows are refreshed incrementally, through the query
        // reading the table in write order.
        if view.write_ordered_query.is_none() {
            return Err(cannot(
                name,
                "its query is not a plain SELECT over one table",
            ));
        }
        if scan.fetch.is_some() {
            return Err(cannot(name, "it has a LIMIT"));
        }
        if scan.table_name.table() != source.name
            || scan.table_name.schema().is_some_and(|s| s != source.schema)
        {
            return Err(cannot(name, "it does not read its one table directly"));
        }
        let source_schema = scan.source.schema();
        let qualified =
            DFSchema::try_from_qualified_schema(scan.table_name.clone(), &source_schema)
                .map_err(Error::from_datafusion)?;
        let mut steps = Vec::new();
        // Filters pushed into the scan apply to the whole row (re-applying
        // one the optimizer also kept above is harmless).
        for filter in &scan.filters {
            steps.push(Step::Filter(physical(&state, filter, &qualified)?));
        }
        // The steps above the scan read the columns it projects, in order.
        if let Some(projection) = &scan.projection {
            let exprs = projection
                .iter()
                .map(|&i| {
                    Arc::new(Column::new(source_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
                })
                .collect();
            steps.push(Step::Project {
                exprs,
                schema: nullable(&scan.projected_schema),
            });
        }
        for node in chain.into_iter().rev() {
            match node {
                LogicalPlan::Filter(f) => {
                    steps.push(Step::Filter(physical(
                        &state,
                        &f.predicate,
                        f.input.schema(),
                    )?));
                }
                LogicalPlan::Projection(p) => {
                    let exprs = p
                        .expr
                        .iter()
                        .map(|e| physical(&state, e, p.input.schema()))
                        .collect::<Result<Vec<_>>>()?;
                    steps.push(Step::Project {
                        exprs,
                        schema: nullable(&p.schema),
                    });
                }
                _ => unreachable!("only filters and projections are chained"),
            }
        }
        Ok(Self {
            source,
            steps,
            shape: RowShape::of(view)?,
        })
    }

    /// The view's rows of `batch` (rows of the source table, in its engine
    /// schema), in the view's declared types.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut batch = batch.clone();
        for step in &self.steps {
            batch = match step {
                Step::Filter(predicate) => {
                    let keep = predicate
                        .evaluate(&batch)
                        .and_then(|v| v.into_array(batch.num_rows()))
                        .map_err(Error::from_datafusion)?;
                    let keep: &BooleanArray = keep.as_boolean_opt().ok_or_else(|| {
                        Error::internal("a streaming view's filter is not boolean")
                    })?;
                    let keep = if keep.null_count() > 0 {
                        prep_null_mask_filter(keep)
                    } else {
                        keep.clone()
                    };
                    filter_record_batch(&batch, &keep)?
                }
                Step::Project { exprs, schema } => {
                    let rows = batch.num_rows();
                    let columns = exprs
                        .iter()
                        .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(rows)))
                        .collect::<datafusion::common::Result<Vec<_>>>()
                        .map_err(Error::from_datafusion)?;
                    RecordBatch::try_new_with_options(
                        schema.clone(),
                        columns,
                        &RecordBatchOptions::new().with_row_count(Some(rows)),
                    )?
                }
            };
        }
        // The declared types, as a refresh casts them.
        self.shape.cast(&batch)
    }
}

fn physical(state: &SessionState, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    state
        .create_physical_expr(expr.clone(), schema)
        .map_err(Error::from_datafusion)
}

fn nullable(schema: &DFSchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// The one table `view` reads, or why it reads something else.
fn source_table(
    name: &QualifiedName,
    view: &FeatureViewVersion,
    registry: &RegistryState,
) -> Result<QualifiedName> {
    let mut tables = Vec::new();
    for dependency in view.dependencies.iter().filter(|d| d.kind.is_relation()) {
        if registry.views.contains_key(&dependency.name) {
            return Err(cannot(
                name,
                format!("it reads feature view {}", dependency.name),
            ));
        }
        if registry.sql_views.contains_key(&dependency.name) || dependency.kind == ObjectKind::View
        {
            return Err(cannot(name, format!("it reads view {}", dependency.name)));
        }
        if dependency.kind == ObjectKind::FeatureService {
            return Err(cannot(
                name,
                format!("it reads feature service {}", dependency.name),
            ));
        }
        if !tables.contains(&dependency.name) {
            tables.push(dependency.name.clone());
        }
    }
    match tables.as_slice() {
        [table] => Ok(table.clone()),
        [] => Err(cannot(name, "it reads no table")),
        _ => Err(cannot(name, "it reads several tables")),
    }
}

/// What makes a plan node more than a row-by-row step, in words.
fn describe(node: &LogicalPlan) -> String {
    match node {
        LogicalPlan::Join(_) => "it joins".into(),
        LogicalPlan::Aggregate(_) => {
            "it aggregates (GROUP BY or an aggregate function; windowed aggregates are written \
             as window functions with a RANGE frame)"
                .into()
        }
        LogicalPlan::Window(_) => "it uses window functions".into(),
        LogicalPlan::Distinct(_) => "it has DISTINCT".into(),
        LogicalPlan::Limit(_) => "it has a LIMIT".into(),
        LogicalPlan::Sort(_) => "it sorts".into(),
        LogicalPlan::Union(_) => "it has UNION".into(),
        other => format!("its plan has a {} step", other.display()),
    }
}

/// The first function in `plan` whose value depends on when it runs.
fn time_dependent_function(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    found = Some(f.func.name().to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

//! Physical planning of [`AsOfJoin`] nodes, and the query planner that
//! knows about them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchema, Result as DFResult};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::exec::{AsOfExprs, AsOfJoinExec};
use super::logical::AsOfJoin;

/// DataFusion's planner, plus featuredb's logical extension nodes.
#[derive(Debug, Default)]
pub struct FeatureDbQueryPlanner;

#[async_trait]
impl QueryPlanner for FeatureDbQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(AsOfJoinPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

struct AsOfJoinPlanner;

#[async_trait]
impl ExtensionPlanner for AsOfJoinPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session_state: &SessionState,
    ) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(join) = node.as_any().downcast_ref::<AsOfJoin>() else {
            return Ok(None);
        };
        let [left_plan, right_plan] = logical_inputs else {
            return Ok(None);
        };
        let left_schema = left_plan.schema();
        let right_schema = right_plan.schema();
        let compile = |expr: &Expr, schema: &DFSchema| -> DFResult<PhysicalExprRef> {
            planner.create_physical_expr(expr, schema, session_state)
        };
        let exprs = AsOfExprs {
            left_keys: join
                .keys
                .iter()
                .map(|(l, _)| compile(l, left_schema))
                .collect::<DFResult<_>>()?,
            right_keys: join
                .keys
                .iter()
                .map(|(_, r)| compile(r, right_schema))
                .collect::<DFResult<_>>()?,
            left_time: compile(&join.left_time, left_schema)?,
            right_time: compile(&join.right_time, right_schema)?,
            bounds: join
                .bounds
                .iter()
                .map(|b| compile(b, left_schema))
                .collect::<DFResult<_>>()?,
            tie: join
                .tie
                .as_ref()
                .map(|t| compile(t, right_schema))
                .transpose()?,
            left_filter: join
                .left_filter
                .as_ref()
                .map(|f| compile(f, left_schema))
                .transpose()?,
        };
        Ok(Some(Arc::new(AsOfJoinExec::new(
            physical_inputs[0].clone(),
            physical_inputs[1].clone(),
            join.kind,
            join.direction,
            exprs,
            Arc::new(join.schema.as_arrow().clone()),
        ))))
    }
}

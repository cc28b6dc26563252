//! Rewriting every expression of a logical plan, bottom-up, with the
//! schema its node reads: the shape shared by featuredb's analyzer rules.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// Applies `rewrite` to every expression of `plan` (subqueries included).
/// Rewritten expressions keep their names, so that the plan's output
/// columns do not change.
pub fn rewrite_expressions(
    plan: LogicalPlan,
    rewrite: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        let schema: DFSchema = if plan.inputs().is_empty() {
            plan.schema().as_ref().clone()
        } else {
            merge_schema(&plan.inputs())
        };
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|expr| {
            let name = names.save(&expr);
            expr.transform_up(|expr| rewrite(expr, &schema))
                .map(|transformed| transformed.update_data(|expr| name.restore(expr)))
        })
    })
    .map(|transformed| transformed.data)
}

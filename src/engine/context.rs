//! The DataFusion context featuredb's queries run in: its catalog (tables,
//! the registry's system tables, PostgreSQL's catalog, temporary tables),
//! PostgreSQL's functions and semantics, and the AS OF join.

use std::sync::Arc;

use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{SessionConfig, SessionContext};
use featuredb_catalog::{DEFAULT_DATABASE, DEFAULT_SCHEMA};

use super::shared::Engine;
use crate::error::Result;
use crate::features::asof;
use crate::offline::write_order::{WRITE_ORDERED_FUNCTION, WriteOrderedFunction};
use crate::pgcompat::pg_catalog::{self, Relations};
use crate::pgcompat::temp_tables::TempTables;
use crate::pgcompat::{checked_arithmetic, functions, timestamps, unknown_literals};

/// A context for a session of `user` (backend `backend_pid`) that sees
/// `relations` and its temporary tables `temp`; its `set_config()` calls
/// are collected in `deferred_settings`.
pub(crate) fn session_context(
    engine: &Engine,
    user: &str,
    backend_pid: i32,
    relations: &Relations,
    temp: &Arc<TempTables>,
    deferred_settings: &functions::DeferredSettings,
) -> Result<SessionContext> {
    let options = engine.options();
    let mut config = SessionConfig::new()
        // featuredb's own information_schema (PostgreSQL's type names)
        // is a schema of its catalog; DataFusion's would shadow it.
        .with_information_schema(false)
        .with_default_catalog_and_schema(DEFAULT_DATABASE, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_target_partitions(options.target_partitions)
        .with_batch_size(options.batch_size);
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(engine.runtime())
        .with_default_features()
        .with_catalog_list(engine.session_catalogs(relations.clone(), temp)?)
        .with_query_planner(Arc::new(asof::planner::FeatureDbQueryPlanner))
        .build();
    state.register_expr_planner(Arc::new(unknown_literals::BooleanLiterals))?;
    let ctx = SessionContext::new_with_state(state);
    pg_catalog::register_functions(&ctx, relations);
    functions::register_static(&ctx, user, backend_pid);
    ctx.register_udf(functions::set_config(deferred_settings.clone()));
    ctx.add_analyzer_rule(Arc::new(timestamps::SessionTimeZoneCasts));
    ctx.add_analyzer_rule(Arc::new(checked_arithmetic::CheckedIntegerArithmetic));
    // After type coercion and the time zone casts: AS OF joins are
    // built from comparisons whose operands already have one type.
    ctx.add_analyzer_rule(Arc::new(asof::logical::AsOfJoins));
    ctx.add_optimizer_rule(Arc::new(asof::logical::PushFiltersBelowAsOf));
    ctx.register_udf(ScalarUDF::from(asof::logical::AsOfMarker::default()));
    ctx.register_udf(ScalarUDF::from(timestamps::AtTimeZone::new()));
    ctx.register_udtf(
        WRITE_ORDERED_FUNCTION,
        Arc::new(WriteOrderedFunction::new(engine.offline.clone())),
    );
    Ok(ctx)
}

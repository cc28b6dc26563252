//! Planning a statement: PostgreSQL's catalog queries rewritten, names
//! resolved (feature views replaced by what computes them), PostgreSQL's
//! semantics applied, parameters typed, then DataFusion's logical plan.
//!
//! A [`Planner`] is the DataFusion context of one session (its settings,
//! functions and temporary tables) or of work no session started (default
//! settings); it is also the feature store's [`SqlPlanner`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, Ident};
use featuredb_catalog::{DEFAULT_SCHEMA, Registry, RegistryState};

use super::parameters::{
    parameter_any_types, parameter_cast_types, sql_type, type_values_placeholders,
};
use crate::error::{Error, Result};
use crate::features::{NameScope, ResolveMode, SqlPlanner};
use crate::offline::OfflineStore;
use crate::pgcompat::functions;
use crate::pgcompat::pg_catalog::{self, Relations};
use crate::pgcompat::pg_semantics;
use crate::pgcompat::settings::SessionSettings;
use crate::pgcompat::temp_tables::TempTables;
use crate::pgtypes::OutputContext;

pub struct Planner {
    offline: Arc<OfflineStore>,
    registry: Arc<Registry>,
    pub(crate) ctx: SessionContext,
    temp: Arc<TempTables>,
    /// The `search_path` setting (schemas that may not exist yet).
    search_path: Vec<String>,
}

impl Planner {
    pub(crate) fn new(
        offline: Arc<OfflineStore>,
        registry: Arc<Registry>,
        ctx: SessionContext,
        temp: Arc<TempTables>,
    ) -> Self {
        Self {
            offline,
            registry,
            ctx,
            temp,
            search_path: vec![DEFAULT_SCHEMA.to_string()],
        }
    }

    /// Configures planning and the functions that report settings for
    /// `settings`: the search path names resolve through, the schema
    /// DataFusion creates in, the time zone, `current_setting()` and the
    /// catalog functions that depend on the path.
    pub(crate) fn apply_settings(
        &mut self,
        settings: &SessionSettings,
        relations: &Relations,
        output: OutputContext,
    ) {
        self.search_path = settings.search_path();
        let search_path = self.effective_search_path();
        let default_schema = search_path
            .first()
            .cloned()
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
        let time_zone = settings.time_zone().datafusion_name();
        {
            let state = self.ctx.state_ref();
            let mut state = state.write();
            let options = state.config_mut().options_mut();
            options.catalog.default_schema = default_schema;
            options.execution.time_zone = Some(time_zone);
            refresh_configured_functions(&mut state);
        }
        let values: HashMap<String, String> = settings
            .all()
            .into_iter()
            .map(|(name, value, _)| (name.to_lowercase(), value))
            .collect();
        functions::register_settings(&self.ctx, search_path.first().cloned(), values, output);
        pg_catalog::register_search_path_functions(&self.ctx, relations, &settings.search_path());
    }

    /// Sets one of DataFusion's own options (`SET datafusion.…`).
    pub(crate) fn set_datafusion_option(&mut self, name: &str, value: &str) -> Result<()> {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .options_mut()
            .set(name, value)
            .map_err(|e| Error::InvalidParameterValue(e.strip_backtrace()))?;
        refresh_configured_functions(&mut state);
        Ok(())
    }

    /// Existing schemas of the search path, in order.
    pub fn effective_search_path(&self) -> Vec<String> {
        self.search_path
            .iter()
            .filter(|schema| self.offline.schema_exists(schema))
            .cloned()
            .collect()
    }

    /// The schema DataFusion resolves unqualified names in.
    pub fn default_schema(&self) -> String {
        self.ctx
            .state_ref()
            .read()
            .config_options()
            .catalog
            .default_schema
            .clone()
    }

    /// How names resolve now: the existing schemas of the search path and
    /// the temporary tables.
    pub fn names(&self) -> NameScope {
        NameScope {
            offline: self.offline.clone(),
            search_path_setting: self.search_path.clone(),
            default_schema: self.default_schema(),
            temp: self.temp.clone(),
        }
    }

    /// Resolves names and asks DataFusion for a logical plan. Returns the
    /// plan and the type of every parameter `$1..$n`.
    pub async fn plan_query(
        &mut self,
        sql: &str,
        statement: &ast::Statement,
        declared: &[Option<DataType>],
    ) -> Result<(LogicalPlan, Vec<DataType>)> {
        let registry = self.registry.snapshot();
        self.plan_in(&registry, ResolveMode::Query, sql, statement, declared)
            .await
    }

    /// Plans against a given registry state (a registry change validates
    /// against the state it would produce).
    pub async fn plan_in(
        &mut self,
        registry: &RegistryState,
        mode: ResolveMode,
        sql: &str,
        statement: &ast::Statement,
        declared: &[Option<DataType>],
    ) -> Result<(LogicalPlan, Vec<DataType>)> {
        let mut statement = statement.clone();
        pg_catalog::rewrite(&mut statement);
        self.names()
            .resolver(registry, sql, mode)
            .resolve(&mut statement)?;
        pg_semantics::rewrite(&mut statement);
        type_values_placeholders(&mut statement, declared);

        // Declared parameter types (a prefix: DataFusion takes them in order).
        let declared_sql: Vec<ast::DataType> = declared
            .iter()
            .map_while(|t| t.as_ref().and_then(sql_type))
            .collect();
        let wrapped = !declared_sql.is_empty();
        if wrapped {
            statement = ast::Statement::Prepare {
                name: Ident::new("featuredb_parameters"),
                data_types: declared_sql,
                statement: Box::new(statement),
            };
        }
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(DFStatement::Statement(Box::new(statement)))
            .await
            .map_err(Error::from_datafusion)?;

        let (plan, mut types) = match plan {
            LogicalPlan::Statement(PlanStatement::Prepare(prepare)) if wrapped => {
                let inner = Arc::unwrap_or_clone(prepare.input);
                let declared_types: Vec<DataType> = prepare
                    .fields
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect();
                (inner, declared_types)
            }
            // SQL-level PREPARE: its $n belong to the statement it
            // prepares (bound by EXECUTE), not to this one.
            plan @ LogicalPlan::Statement(PlanStatement::Prepare(_)) => {
                return Ok((plan, Vec::new()));
            }
            plan => (plan, Vec::new()),
        };
        let inferred = plan.get_parameter_types().map_err(Error::from_datafusion)?;
        let cast_types = parameter_cast_types(&plan)?;
        let any_types = parameter_any_types(&plan)?;
        let count = inferred
            .keys()
            .filter_map(|id| id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()))
            .max()
            .unwrap_or(0)
            .max(types.len())
            .max(declared.len());
        for index in types.len()..count {
            let id = format!("${}", index + 1);
            let data_type = inferred
                .get(&id)
                .cloned()
                .flatten()
                .or_else(|| declared.get(index).cloned().flatten())
                .or_else(|| cast_types.get(&id).cloned())
                .or_else(|| any_types.get(&id).cloned())
                .unwrap_or(DataType::Utf8);
            types.push(data_type);
        }
        // A type the client declared is the one its values arrive in (and
        // what ParameterDescription reports, as PostgreSQL does), even where
        // the planner inferred another; values are cast to the planner's
        // type when the statement runs.
        for (slot, declared) in types.iter_mut().zip(declared) {
            if let Some(declared) = declared {
                *slot = declared.clone();
            }
        }
        Ok((plan, types))
    }
}

#[async_trait]
impl SqlPlanner for Planner {
    async fn plan(
        &mut self,
        registry: &RegistryState,
        mode: ResolveMode,
        sql: &str,
        statement: &ast::Statement,
        declared: &[Option<DataType>],
    ) -> Result<(LogicalPlan, Vec<DataType>)> {
        self.plan_in(registry, mode, sql, statement, declared).await
    }

    fn state(&self) -> SessionState {
        self.ctx.state()
    }
}

/// Functions like `now()` bake configuration (the time zone) into their
/// type; rebuild them after the configuration changes.
fn refresh_configured_functions(state: &mut datafusion::execution::SessionState) {
    let options = state.config().options().clone();
    let updated: Vec<_> = state
        .scalar_functions()
        .values()
        .filter_map(|udf| udf.inner().with_updated_config(&options).map(Arc::new))
        .collect();
    for udf in updated {
        let _ = state.register_udf(udf);
    }
}

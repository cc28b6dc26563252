//! Plain SQL views (`CREATE [OR REPLACE] VIEW name AS query`, `DROP VIEW`):
//! stored queries, kept in the registry (so they survive restarts), and
//! expanded where they are read, as PostgreSQL's views are. Inside a view,
//! a feature view read without FOR SYSTEM_TIME is its current state, as in
//! any query. Views appear in `pg_class` (kind `v`), `pg_views` and
//! `information_schema` with their columns; tables, feature views and
//! views they read cannot be dropped without CASCADE.

use datafusion::sql::sqlparser::ast;
use featuredb_catalog::{ColumnRole, ObjectKind, QualifiedName, SqlView, ViewColumn};
use featuredb_sql::statement::{CreateView, DropObjects};

use super::context::{DdlOutcome, RegistryDdl, now, type_name};
use super::dependencies::{
    check_no_cycle, dependents_closure, describe_dependents, remove_registry_objects,
};
use crate::error::{Error, Result};
use crate::features::resolve::ResolveMode;
use crate::notice::Notice;

impl RegistryDdl<'_> {
    pub async fn create_sql_view(&mut self, sql: &str, create: &CreateView) -> Result<DdlOutcome> {
        let name = self.names.registry_name(&create.name)?;
        let registry = self.registry;
        let mut txn = registry.begin().await;
        self.names
            .check_relation_free(&txn.state, &name, ObjectKind::View)?;
        if txn.state.sql_views.contains_key(&name) && !create.or_replace {
            if create.if_not_exists {
                self.notice(Notice::informational(
                    "42P07",
                    format!("relation \"{}\" already exists, skipping", name.name),
                ));
                return Ok(DdlOutcome::Command("CREATE VIEW"));
            }
            return Err(Error::DuplicateTable(name.name.clone()));
        }
        let (query, dependencies) =
            self.names
                .qualify_definition(&txn.state, sql, &create.query)?;
        check_no_cycle(&txn.state, &name, &dependencies)?;
        let stored_query = query.to_string();
        // Planned as it will be read: feature views as of now.
        let columns = self
            .query_columns(&txn.state, ResolveMode::Query, &stored_query)
            .await?;
        let columns: Vec<ViewColumn> = columns
            .into_iter()
            .map(|(column, data_type)| {
                let (data_type, column_type) = type_name(&data_type);
                ViewColumn {
                    name: column,
                    data_type,
                    column_type,
                    role: ColumnRole::Feature,
                }
            })
            .collect();
        // As in PostgreSQL, a replaced view others read keeps its columns.
        if let Some(old) = txn.state.sql_views.get(&name)
            && !txn.state.dependents(ObjectKind::View, &name).is_empty()
        {
            let shape = |columns: &[ViewColumn]| -> Vec<(String, String)> {
                columns
                    .iter()
                    .map(|c| (c.name.clone(), c.data_type.clone()))
                    .collect()
            };
            if shape(&old.columns) != shape(&columns) {
                // PostgreSQL's invalid_table_definition (42P16).
                return Err(Error::InvalidTableDefinition(format!(
                    "cannot change the columns of view {name}: other objects depend on it"
                )));
            }
        }
        let canonical = format!("CREATE VIEW {name} AS {stored_query}");
        txn.put_sql_view(SqlView {
            name,
            query: stored_query,
            columns,
            dependencies: dependencies.into_iter().collect(),
            created_at: now(),
            sql: canonical,
        })?;
        txn.commit().await?;
        Ok(DdlOutcome::Command("CREATE VIEW"))
    }

    pub async fn drop_sql_views(&mut self, drop: &DropObjects) -> Result<DdlOutcome> {
        let registry = self.registry;
        let mut txn = registry.begin().await;
        let mut targets: Vec<(ObjectKind, QualifiedName)> = Vec::new();
        for name in &drop.names {
            if let Some(temp) = self.names.temp_table_named(name) {
                return Err(Error::WrongObjectType(format!(
                    "\"{temp}\" is not a view (it is a temporary table; use DROP TABLE)"
                )));
            }
            self.names
                .refuse_other_kind(&txn.state, name, ObjectKind::View)?;
            match self.names.find(&txn.state, ObjectKind::View, name) {
                Some(found) if targets.contains(&(ObjectKind::View, found.clone())) => {}
                Some(found) => targets.push((ObjectKind::View, found)),
                None if drop.if_exists => self.notice(Notice::informational(
                    "00000",
                    format!("view \"{}\" does not exist, skipping", name.name),
                )),
                None => {
                    return Err(Error::UndefinedTable {
                        name: name.to_string(),
                        position: None,
                    });
                }
            }
        }
        let closure = dependents_closure(&txn.state, &targets);
        if let Some((_, view)) = targets.first()
            && closure.len() > targets.len()
            && !drop.cascade
        {
            return Err(Error::DependentObjectsExist {
                object: format!("view {view}"),
                detail: describe_dependents(&txn.state, &closure, &targets),
            });
        }
        remove_registry_objects(&mut txn, &closure, &targets, self.notices);
        txn.commit().await?;
        Ok(DdlOutcome::Dropped {
            tag: "DROP VIEW",
            objects: closure,
        })
    }
}

/// A view's stored query as a statement, for expansion where it is read.
pub fn view_query(view: &SqlView) -> Result<Box<ast::Query>> {
    match featuredb_sql::parse_statement(&view.query)? {
        featuredb_sql::Statement::Query(statement) => match *statement {
            ast::Statement::Query(query) => Ok(query),
            _ => Err(Error::internal(format!(
                "view {} is not a query",
                view.name
            ))),
        },
        _ => Err(Error::internal(format!(
            "view {} is not a query",
            view.name
        ))),
    }
}

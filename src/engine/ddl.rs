//! Schema and table DDL: CREATE/DROP SCHEMA, CREATE/DROP TABLE (temporary
//! tables included), TRUNCATE; a drop takes with it, or refuses for, the
//! registry objects that depend on what it drops.

use datafusion::sql::sqlparser::ast;
use featuredb_catalog::names::quote_ident;
use featuredb_catalog::{
    ColumnDef, ColumnType, ObjectKind, QualifiedName, TableSchemaDef, is_system_schema,
};
use featuredb_sql::Statement;
use featuredb_sql::alter::TruncateTables;
use featuredb_sql::statement::{CreateSchema, CreateTable, DropObjects};
use futures::StreamExt;

use super::outcome::{CommandTag, Outcome};
use super::session::Session;
use crate::error::{Error, Result};
use crate::features::ddl::{dependents_closure, describe_dependents, remove_registry_objects};
use crate::notice::Notice;

impl Session {
    pub(crate) async fn create_schema(&mut self, create: &CreateSchema) -> Result<Outcome> {
        let created = self
            .engine
            .offline
            .create_schema(&create.name, create.if_not_exists)
            .await?;
        if !created {
            self.notice(Notice::informational(
                "42P06",
                format!("schema \"{}\" already exists, skipping", create.name),
            ));
        }
        // A schema named in search_path may have just come into existence.
        self.apply_settings();
        Ok(Outcome::Command(CommandTag::new("CREATE SCHEMA")))
    }

    pub(crate) async fn drop_schemas(&mut self, drop: &DropObjects) -> Result<Outcome> {
        // The registry transaction serialises this with feature DDL, so no
        // feature view can appear on a table between the check and the drop.
        let registry = self.engine.registry.clone();
        let mut txn = registry.begin().await;
        // Check everything first so that a failing name drops nothing.
        let mut doomed = Vec::new();
        for name in &drop.names {
            if is_system_schema(&name.name) {
                return Err(Error::FeatureNotSupported(format!(
                    "cannot drop schema {} because it is required by the server",
                    name.name
                )));
            }
            if !drop.if_exists && !self.engine.offline.schema_exists(&name.name) {
                return Err(Error::UndefinedSchema(name.name.clone()));
            }
            let mut contents: Vec<(ObjectKind, QualifiedName)> = self
                .engine
                .offline
                .table_names(&name.name)
                .into_iter()
                .map(|t| (ObjectKind::Table, QualifiedName::new(&name.name, t)))
                .collect();
            contents.extend(txn.state.objects_in_schema(&name.name));
            if !drop.cascade && !contents.is_empty() {
                return Err(Error::DependentObjects {
                    schema: name.name.clone(),
                    detail: contents
                        .iter()
                        .map(|(kind, object)| {
                            format!("{} {object} depends on schema {}", kind.noun(), name.name)
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                });
            }
            // Registry objects in the schema, on its tables, and what
            // depends on them anywhere.
            for object in dependents_closure(&txn.state, &contents) {
                if object.0 != ObjectKind::Table && !doomed.contains(&object) {
                    doomed.push(object);
                }
            }
        }
        remove_registry_objects(&mut txn, &doomed, &[], &mut self.notices);
        let _registry_lock = txn.commit_holding_lock().await?;
        self.engine.materializer.forget(&doomed).await;
        self.engine.stream.reload().await?;
        for name in &drop.names {
            let dropped = self
                .engine
                .offline
                .drop_schema(&name.name, drop.if_exists, drop.cascade)
                .await?;
            if !dropped {
                self.notice(Notice::informational(
                    "00000",
                    format!("schema \"{}\" does not exist, skipping", name.name),
                ));
            }
        }
        self.apply_settings();
        Ok(Outcome::Command(CommandTag::new("DROP SCHEMA")))
    }

    /// Creates a table, unless a table, feature view or feature service of
    /// that name exists. Holding the registry's DDL lock while creating keeps
    /// a concurrent CREATE FEATURE VIEW from taking the same name. Returns
    /// false when the table already existed and `if_not_exists` was given.
    async fn create_offline_table(
        &self,
        name: &QualifiedName,
        definition: &TableSchemaDef,
        if_not_exists: bool,
    ) -> Result<bool> {
        let registry = self.engine.registry.clone();
        let txn = registry.begin().await;
        let is_registry_relation = txn.state.views.contains_key(name)
            || txn.state.services.contains_key(name)
            || txn.state.sql_views.contains_key(name);
        if is_registry_relation {
            if if_not_exists {
                return Ok(false);
            }
            return Err(Error::DuplicateTable(name.name.clone()));
        }
        let created = self
            .engine
            .offline
            .create_table(name, definition, if_not_exists)
            .await?;
        drop(txn);
        Ok(created.is_some())
    }

    pub(crate) async fn create_table(
        &mut self,
        sql: &str,
        create: &CreateTable,
    ) -> Result<Outcome> {
        // `CREATE TABLE pg_temp.x` makes a temporary table, as in PostgreSQL.
        let in_temp_schema = create
            .name
            .schema
            .as_deref()
            .is_some_and(|schema| self.temp.is_temp_schema(schema));
        if create.temporary || in_temp_schema {
            return self.create_temp_table(sql, create).await;
        }
        let name = self.names().creation_name(&create.name)?;
        let Some(query) = &create.query else {
            let definition = TableSchemaDef {
                columns: create.columns.clone(),
            };
            let created = self
                .create_offline_table(&name, &definition, create.if_not_exists)
                .await?;
            if !created {
                self.notice(Notice::informational(
                    "42P07",
                    format!("relation \"{}\" already exists, skipping", name.name),
                ));
            }
            return Ok(Outcome::Command(CommandTag::new("CREATE TABLE")));
        };

        // CREATE TABLE … AS: the query's output defines the columns.
        let registry = self.engine.registry.snapshot();
        let name_taken = self
            .engine
            .offline
            .table(&name.schema, &name.name)
            .is_some()
            || registry.views.contains_key(&name)
            || registry.services.contains_key(&name)
            || registry.sql_views.contains_key(&name);
        if create.if_not_exists && name_taken {
            self.notice(Notice::informational(
                "42P07",
                format!("relation \"{}\" already exists, skipping", name.name),
            ));
            return Ok(Outcome::Command(CommandTag::with_rows("SELECT", 0)));
        }
        if let Some(name) = crate::pgcompat::column_names::repeated_column_name(query) {
            return Err(Error::DuplicateColumn(name));
        }
        let select = ast::Statement::Query(query.clone());
        let (plan, params) = self.planner.plan_query(sql, &select, &[]).await?;
        if !params.is_empty() {
            return Err(Error::FeatureNotSupported(
                "CREATE TABLE AS does not take parameters".to_string(),
            ));
        }
        let columns = query_columns(create, plan.schema().as_arrow())?;
        let definition = TableSchemaDef { columns };
        self.create_offline_table(&name, &definition, false).await?;
        let insert_sql = format!(
            "INSERT INTO {}.{} {}",
            quote_ident(&name.schema),
            quote_ident(&name.name),
            query
        );
        let result = async {
            let statement = featuredb_sql::parse_statement(&insert_sql)?;
            let Statement::Query(insert) = statement else {
                return Err(Error::internal(
                    "CREATE TABLE AS produced a non-query insert",
                ));
            };
            let (plan, _) = self.planner.plan_query(&insert_sql, &insert, &[]).await?;
            match self.run_plan(plan, Vec::new()).await? {
                Outcome::Command(tag) => Ok(tag.rows.unwrap_or(0)),
                _ => Err(Error::internal("CREATE TABLE AS insert returned rows")),
            }
        }
        .await;
        match result {
            Ok(rows) => Ok(Outcome::Command(CommandTag::with_rows("SELECT", rows))),
            Err(e) => {
                // Do not leave a half-made table behind.
                if let Err(drop_error) = self.engine.offline.drop_table(&name, true).await {
                    tracing::warn!(table = %name, error = %drop_error, "could not remove table after failed CREATE TABLE AS");
                }
                Err(e)
            }
        }
    }

    /// `CREATE TEMPORARY TABLE`, with columns or `AS query`: see
    /// [`super::temp_tables`].
    async fn create_temp_table(&mut self, sql: &str, create: &CreateTable) -> Result<Outcome> {
        if let Some(schema) = &create.name.schema
            && !self.temp.is_temp_schema(schema)
        {
            return Err(Error::InvalidTableDefinition(
                "cannot create temporary relation in non-temporary schema".to_string(),
            ));
        }
        let name = create.name.name.clone();
        let tag = if create.query.is_some() {
            "SELECT"
        } else {
            "CREATE TABLE"
        };
        if self.temp.contains(&name) {
            if create.if_not_exists {
                self.notice(Notice::informational(
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                ));
                return Ok(Outcome::Command(CommandTag::with_rows(tag, 0)));
            }
            return Err(Error::DuplicateTable(name));
        }
        if let Some(column) = create.columns.iter().find(|c| !c.nullable) {
            return Err(Error::FeatureNotSupported(format!(
                "NOT NULL is not supported on temporary tables (column \"{}\")",
                column.name
            )));
        }
        let Some(query) = &create.query else {
            let definition = TableSchemaDef {
                columns: create.columns.clone(),
            };
            self.temp.create(&name, definition, Vec::new())?;
            return Ok(Outcome::Command(CommandTag::new("CREATE TABLE")));
        };
        if let Some(name) = crate::pgcompat::column_names::repeated_column_name(query) {
            return Err(Error::DuplicateColumn(name));
        }
        let select = ast::Statement::Query(query.clone());
        let (plan, params) = self.planner.plan_query(sql, &select, &[]).await?;
        if !params.is_empty() {
            return Err(Error::FeatureNotSupported(
                "CREATE TABLE AS does not take parameters".to_string(),
            ));
        }
        let definition = TableSchemaDef {
            columns: query_columns(create, plan.schema().as_arrow())?,
        };
        let target = definition.to_arrow();
        let Outcome::Rows { mut stream, .. } = self.run_plan(plan, Vec::new()).await? else {
            return Err(Error::internal("CREATE TABLE AS query returned no rows"));
        };
        let mut batches = Vec::new();
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            let columns = batch
                .columns()
                .iter()
                .zip(target.fields())
                .map(|(column, field)| {
                    datafusion::arrow::compute::cast(column, field.data_type()).map_err(Error::from)
                })
                .collect::<Result<Vec<_>>>()?;
            batches.push(datafusion::arrow::array::RecordBatch::try_new(
                std::sync::Arc::new(target.clone()),
                columns,
            )?);
        }
        if !self.temp.create(&name, definition, batches)? {
            return Err(Error::DuplicateTable(name));
        }
        Ok(Outcome::Command(CommandTag::with_rows("SELECT", rows)))
    }

    pub(crate) async fn drop_tables(&mut self, drop: &DropObjects) -> Result<Outcome> {
        // Held from the dependents check to the drop: see drop_schemas.
        let registry = self.engine.registry.clone();
        let mut txn = registry.begin().await;
        let mut targets = Vec::new();
        let mut temporary = Vec::new();
        for name in &drop.names {
            if let Some(temp) = self.names().temp_table_named(name) {
                temporary.push(temp);
                continue;
            }
            self.names()
                .refuse_other_kind(&txn.state, name, ObjectKind::Table)?;
            match self.names().lookup_table(name) {
                Ok(table) => targets.push((ObjectKind::Table, table.name.clone())),
                Err(Error::UndefinedTable { .. }) if drop.if_exists => {
                    self.notice(Notice::informational(
                        "00000",
                        format!("table \"{}\" does not exist, skipping", name.name),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        // Feature views reading the tables go with them only on CASCADE.
        let closure = dependents_closure(&txn.state, &targets);
        let dependents: Vec<(ObjectKind, QualifiedName)> = closure
            .iter()
            .filter(|(kind, _)| *kind != ObjectKind::Table)
            .cloned()
            .collect();
        if let Some((_, table)) = targets.first()
            && !dependents.is_empty()
            && !drop.cascade
        {
            return Err(Error::DependentObjectsExist {
                object: format!("table {table}"),
                detail: describe_dependents(&txn.state, &closure, &targets),
            });
        }
        for name in &temporary {
            self.temp.drop_table(name);
        }
        remove_registry_objects(&mut txn, &dependents, &targets, &mut self.notices);
        let _registry_lock = txn.commit_holding_lock().await?;
        self.engine.materializer.forget(&dependents).await;
        self.engine.stream.reload().await?;
        for (_, table) in targets {
            self.engine
                .offline
                .drop_table(&table, drop.if_exists)
                .await?;
        }
        Ok(Outcome::Command(CommandTag::new("DROP TABLE")))
    }

    /// `TRUNCATE`: every named table is checked before any is emptied.
    /// Each table is emptied by one Iceberg commit; a failure part-way
    /// leaves the tables before it empty (statements are not undone, see
    /// Transactions in the SQL reference).
    pub(crate) async fn truncate_tables(&mut self, truncate: &TruncateTables) -> Result<Outcome> {
        let state = self.engine.registry.snapshot();
        let mut tables = Vec::new();
        let mut temporary = Vec::new();
        for name in &truncate.names {
            if let Some(temp) = self.names().temp_table_named(name) {
                temporary.push(temp);
                continue;
            }
            match self.names().find_relation(&state, name) {
                Some((ObjectKind::Table, _)) => {}
                Some((_, found)) => {
                    return Err(Error::WrongObjectType(format!(
                        "\"{}\" is not a table",
                        found.name
                    )));
                }
                None => {}
            }
            let table = self.names().lookup_table(name)?;
            if is_system_schema(&table.name.schema)
                || table.name.schema == crate::online::MATERIALIZED_SCHEMA
            {
                return Err(Error::FeatureNotSupported(format!(
                    "cannot truncate {}: featuredb maintains it",
                    table.name
                )));
            }
            tables.push(table);
        }
        for name in &temporary {
            self.temp.truncate(name)?;
        }
        for table in &tables {
            self.engine.offline.truncate_table(table).await?;
        }
        Ok(Outcome::Command(CommandTag::new("TRUNCATE TABLE")))
    }
}

/// The columns `CREATE TABLE … AS` makes: the query's output, named by the
/// column list where one is given.
fn query_columns(
    create: &CreateTable,
    schema: &datafusion::arrow::datatypes::Schema,
) -> Result<Vec<ColumnDef>> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let column_name = create
            .columns
            .get(index)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| field.name().clone());
        let data_type = match create.columns.get(index) {
            Some(declared) => declared.data_type.clone(),
            None => ColumnType::from_arrow(field.data_type()).ok_or_else(|| {
                Error::FeatureNotSupported(format!(
                    "column \"{column_name}\" has type {} which a table cannot store",
                    field.data_type()
                ))
            })?,
        };
        if columns.iter().any(|c: &ColumnDef| c.name == column_name) {
            return Err(Error::DuplicateColumn(column_name));
        }
        columns.push(ColumnDef {
            name: column_name,
            data_type,
            nullable: true,
        });
    }
    Ok(columns)
}

//! Executing the registry's statements: entities, feature views, feature
//! services. Every change is validated against the state it would produce
//! (planning the view's query, re-planning what depends on it) and then
//! committed in one registry transaction, so a failing statement leaves
//! the registry unchanged.

use std::collections::{BTreeSet, HashSet};

use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast;
use featuredb_catalog::names::quote_ident;
use featuredb_catalog::{
    ColumnRole, ColumnType, Dependency, Entity, FeatureService, FeatureServiceVersion, FeatureView,
    FeatureViewVersion, KeyColumn, ObjectKind, QualifiedName, RegistryState, RegistryTransaction,
    ServiceFeature, ViewColumn, is_system_schema,
};
use featuredb_sql::feature::{
    AlterFeatureView, CreateEntity, CreateFeatureService, CreateFeatureView, DropRegistryObjects,
    FeatureKey, FeatureStatement, FeatureViewChange, RegistryKind, ServiceFeatures, ShowRegistry,
};
use featuredb_sql::names::ObjectRef;

use super::outcome::{CommandTag, Notice, Outcome};
use super::resolve::{NameResolver, ResolveMode};
use super::session::Session;
use super::temporal::write_ordered_query;
use crate::error::{Error, Result};

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn kind_of(kind: RegistryKind) -> ObjectKind {
    match kind {
        RegistryKind::Entity => ObjectKind::Entity,
        RegistryKind::FeatureView => ObjectKind::FeatureView,
        RegistryKind::FeatureService => ObjectKind::FeatureService,
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidDefinition {
        message: message.into(),
        detail: None,
    }
}

/// PostgreSQL's name for an Arrow type (what the registry shows).
pub(crate) fn type_name(data_type: &DataType) -> (String, Option<ColumnType>) {
    match ColumnType::from_arrow(data_type) {
        Some(column_type) => (column_type.to_string(), Some(column_type)),
        None => (data_type.to_string(), None),
    }
}

/// Whether two key types join: same type, or both integers, or both text.
fn keys_compatible(a: &ColumnType, b: &ColumnType) -> bool {
    use ColumnType::*;
    let family = |t: &ColumnType| match t {
        SmallInt | Integer | BigInt => 1,
        Text | Varchar { .. } => 2,
        _ => 0,
    };
    a == b || (family(a) != 0 && family(a) == family(b))
}

/// Whether a query output column got a real name rather than PostgreSQL's
/// placeholder for an unaliased expression.
fn is_named_column(name: &str) -> bool {
    !name.is_empty() && name != "?column?"
}

impl Session {
    pub(crate) async fn feature_statement(
        &mut self,
        sql: &str,
        statement: &FeatureStatement,
    ) -> Result<Outcome> {
        match statement {
            FeatureStatement::CreateEntity(create) => self.create_entity(create).await,
            FeatureStatement::CreateFeatureView(create) => {
                self.create_feature_view(sql, create).await
            }
            FeatureStatement::CreateFeatureService(create) => {
                self.create_feature_service(create).await
            }
            FeatureStatement::AlterFeatureView(alter) => self.alter_feature_view(alter).await,
            FeatureStatement::Drop(drop) => self.drop_registry_objects(drop).await,
            FeatureStatement::Show(show) => self.show_registry(show).await,
            FeatureStatement::Refresh(refresh) => self.refresh_feature_views(refresh).await,
        }
    }

    /// Where a new object named `name` goes.
    pub(crate) fn registry_name(&self, name: &ObjectRef) -> Result<QualifiedName> {
        let schema = match &name.schema {
            Some(schema) => {
                if is_system_schema(schema) {
                    return Err(Error::FeatureNotSupported(format!(
                        "cannot create objects in system schema {schema}"
                    )));
                }
                if !self.engine.offline.schema_exists(schema) {
                    return Err(Error::UndefinedSchema(schema.clone()));
                }
                schema.clone()
            }
            None => self.creation_schema()?,
        };
        Ok(QualifiedName::new(schema, &name.name))
    }

    /// Finds an existing registry object, through `search_path` if
    /// unqualified.
    pub(crate) fn find(
        &self,
        state: &RegistryState,
        kind: ObjectKind,
        name: &ObjectRef,
    ) -> Option<QualifiedName> {
        let exists = |q: &QualifiedName| match kind {
            ObjectKind::Entity => state.entities.contains_key(q),
            ObjectKind::FeatureView => state.views.contains_key(q),
            ObjectKind::FeatureService => state.services.contains_key(q),
            ObjectKind::View => state.sql_views.contains_key(q),
            ObjectKind::Table => false,
        };
        let candidates: Vec<QualifiedName> = match &name.schema {
            Some(schema) => vec![QualifiedName::new(schema, &name.name)],
            None => self
                .effective_search_path()
                .into_iter()
                .map(|schema| QualifiedName::new(schema, &name.name))
                .collect(),
        };
        candidates.into_iter().find(exists)
    }

    pub(crate) fn undefined(kind: ObjectKind, name: &ObjectRef) -> Error {
        match kind {
            ObjectKind::FeatureView
            | ObjectKind::FeatureService
            | ObjectKind::Table
            | ObjectKind::View => Error::UndefinedRelation {
                kind: kind.noun(),
                name: name.to_string(),
            },
            ObjectKind::Entity => Error::UndefinedObject {
                message: format!("entity \"{name}\" does not exist"),
            },
        }
    }

    /// Fails if `name` is taken in the relation namespace by something other
    /// than an object of `kind` (which OR REPLACE may replace).
    pub(crate) fn check_relation_free(
        &self,
        state: &RegistryState,
        name: &QualifiedName,
        kind: ObjectKind,
    ) -> Result<()> {
        let taken = self
            .engine
            .offline
            .table(&name.schema, &name.name)
            .is_some()
            || (kind != ObjectKind::FeatureView && state.views.contains_key(name))
            || (kind != ObjectKind::FeatureService && state.services.contains_key(name))
            || (kind != ObjectKind::View && state.sql_views.contains_key(name));
        if taken {
            return Err(Error::DuplicateTable(name.name.clone()));
        }
        Ok(())
    }

    async fn create_entity(&mut self, create: &CreateEntity) -> Result<Outcome> {
        let name = self.registry_name(&create.name)?;
        let registry = self.engine.registry.clone();
        let mut txn = registry.begin().await;
        if txn.state.entities.contains_key(&name) {
            if create.if_not_exists {
                self.notice(Notice::informational(
                    "42710",
                    format!("entity \"{}\" already exists, skipping", name.name),
                ));
                return Ok(Outcome::Command(CommandTag::new("CREATE ENTITY")));
            }
            return Err(Error::DuplicateObject {
                message: format!("entity \"{}\" already exists", name.name),
            });
        }
        let canonical = CreateEntity {
            name: ObjectRef {
                schema: Some(name.schema.clone()),
                name: name.name.clone(),
            },
            if_not_exists: false,
            keys: create.keys.clone(),
            comment: create.comment.clone(),
        };
        txn.put_entity(Entity {
            name,
            keys: create
                .keys
                .iter()
                .map(|(name, data_type)| KeyColumn {
                    name: name.clone(),
                    data_type: data_type.clone(),
                })
                .collect(),
            comment: create.comment.clone(),
            created_at: now(),
            sql: canonical.to_string(),
        })?;
        txn.commit().await?;
        Ok(Outcome::Command(CommandTag::new("CREATE ENTITY")))
    }

    /// A definition's query with every name qualified (so that it means the
    /// same under any search_path), and the relations it reads.
    pub(crate) fn qualify_definition(
        &self,
        state: &RegistryState,
        sql: &str,
        query: &ast::Query,
    ) -> Result<(Box<ast::Query>, BTreeSet<Dependency>)> {
        let mut query = Box::new(query.clone());
        let search_path = self.effective_search_path();
        let default_schema = self.default_schema();
        let resolver = NameResolver::new(
            &self.engine.offline,
            state,
            &search_path,
            &default_schema,
            sql,
            ResolveMode::Definition,
        )
        .with_temp(&self.temp)
        .qualify_only();
        resolver.resolve_query(&mut query)?;
        Ok((query, resolver.dependencies()))
    }

    /// Plans a feature view's stored query against `state`, returning its
    /// output columns (name, Arrow type).
    async fn definition_schema(
        &mut self,
        state: &RegistryState,
        query: &str,
    ) -> Result<Vec<(String, DataType)>> {
        self.query_columns(state, ResolveMode::Definition, query)
            .await
    }

    /// Plans a stored query (a feature view's or a view's) against
    /// `state`, returning its output columns (name, Arrow type).
    pub(crate) async fn query_columns(
        &mut self,
        state: &RegistryState,
        mode: ResolveMode,
        query: &str,
    ) -> Result<Vec<(String, DataType)>> {
        let featuredb_sql::Statement::Query(statement) = featuredb_sql::parse_statement(query)?
        else {
            return Err(invalid("a feature view is defined by a query"));
        };
        // DataFusion refuses duplicate output names with a generic planning
        // error; PostgreSQL's view rule (42701) is the clearer answer.
        if let ast::Statement::Query(q) = statement.as_ref() {
            let mut seen = HashSet::new();
            for name in super::column_names::explicit_column_names(q)
                .into_iter()
                .flatten()
            {
                if is_named_column(&name) && !seen.insert(name.clone()) {
                    return Err(Error::DuplicateColumn(name));
                }
            }
        }
        let (plan, params) = self
            .plan_query_in(state, mode, query, &statement, &[])
            .await?;
        if !params.is_empty() {
            return Err(invalid("a stored query cannot take parameters"));
        }
        let mut names: Vec<Option<String>> = Vec::new();
        if let ast::Statement::Query(q) = statement.as_ref() {
            names = super::column_names::postgres_column_names(q, plan.schema().fields().len());
        }
        Ok(plan
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    names
                        .get(i)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| f.name().clone()),
                    f.data_type().clone(),
                )
            })
            .collect())
    }

    /// Checks the query's output against the key and timestamp and builds
    /// the column list.
    fn view_columns(
        columns: &[(String, DataType)],
        keys: &[String],
        key_types: Option<&[KeyColumn]>,
        entity: Option<&QualifiedName>,
        timestamp: &str,
    ) -> Result<Vec<ViewColumn>> {
        let mut seen = HashSet::new();
        for (name, _) in columns {
            if !is_named_column(name) {
                return Err(invalid(format!(
                    "feature view column \"{name}\" needs a name: give the expression an alias with AS"
                )));
            }
            if !seen.insert(name.clone()) {
                return Err(Error::DuplicateColumn(name.clone()));
            }
        }
        for (index, key) in keys.iter().enumerate() {
            let Some((_, data_type)) = columns.iter().find(|(n, _)| n == key) else {
                return Err(invalid(format!(
                    "key column \"{key}\" is not in the output of the feature view's query"
                )));
            };
            if let Some(expected) = key_types.and_then(|k| k.get(index)) {
                let actual = ColumnType::from_arrow(data_type);
                if !actual
                    .as_ref()
                    .is_some_and(|a| keys_compatible(a, &expected.data_type))
                {
                    return Err(Error::InvalidDefinition {
                        message: format!(
                            "key column \"{key}\" has type {}, but entity {} declares {}",
                            type_name(data_type).0,
                            entity.map(|e| e.to_string()).unwrap_or_default(),
                            expected.data_type
                        ),
                        detail: None,
                    });
                }
            }
        }
        let Some((_, ts_type)) = columns.iter().find(|(n, _)| n == timestamp) else {
            return Err(invalid(format!(
                "timestamp column \"{timestamp}\" is not in the output of the feature view's query"
            )));
        };
        if !matches!(ts_type, DataType::Timestamp(_, _)) {
            return Err(invalid(format!(
                "timestamp column \"{timestamp}\" has type {}; it must be timestamp or timestamp with time zone",
                type_name(ts_type).0
            )));
        }
        if keys.iter().any(|k| k == timestamp) {
            return Err(invalid(format!(
                "\"{timestamp}\" cannot be both a key and the timestamp"
            )));
        }
        Ok(columns
            .iter()
            .map(|(name, data_type)| {
                let (data_type, column_type) = type_name(data_type);
                let role = if keys.contains(name) {
                    ColumnRole::Key
                } else if name == timestamp {
                    ColumnRole::Timestamp
                } else {
                    ColumnRole::Feature
                };
                ViewColumn {
                    name: name.clone(),
                    data_type,
                    column_type,
                    role,
                }
            })
            .collect())
    }

    /// Validates a TTL interval: it must parse and be positive.
    fn check_ttl(ttl: &ast::Expr) -> Result<String> {
        let ast::Expr::Interval(interval) = ttl else {
            return Err(invalid(format!("TTL must be an interval, not {ttl}")));
        };
        let text = match interval.value.as_ref() {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        };
        let unit = interval
            .leading_field
            .as_ref()
            .map(|f| format!(" {f}"))
            .unwrap_or_default();
        let (months, days, micros) = crate::pgtypes::datetime::parse_interval(&format!(
            "{text}{unit}"
        ))
        .ok_or_else(|| Error::InvalidDatetimeFormat {
            message: format!("invalid input syntax for type interval: \"{text}\""),
        })?;
        if months < 0 || days < 0 || micros < 0 || (months == 0 && days == 0 && micros == 0) {
            return Err(Error::InvalidParameterValue(format!(
                "TTL must be positive, got {ttl}"
            )));
        }
        Ok(ttl.to_string())
    }

    async fn create_feature_view(
        &mut self,
        sql: &str,
        create: &CreateFeatureView,
    ) -> Result<Outcome> {
        let name = self.registry_name(&create.name)?;
        let registry = self.engine.registry.clone();
        let mut txn = registry.begin().await;
        self.check_relation_free(&txn.state, &name, ObjectKind::FeatureView)?;
        let existing = txn.state.views.get(&name).cloned();
        if existing.is_some() && !create.or_replace {
            if create.if_not_exists {
                self.notice(Notice::informational(
                    "42P07",
                    format!("relation \"{}\" already exists, skipping", name.name),
                ));
                return Ok(Outcome::Command(CommandTag::new("CREATE FEATURE VIEW")));
            }
            return Err(Error::DuplicateTable(name.name.clone()));
        }
        let (entity, keys, key_types) = match &create.key {
            FeatureKey::Entity(entity_ref) => {
                let entity_name = self
                    .find(&txn.state, ObjectKind::Entity, entity_ref)
                    .ok_or_else(|| Self::undefined(ObjectKind::Entity, entity_ref))?;
                let entity = &txn.state.entities[&entity_name];
                (
                    Some(entity_name.clone()),
                    entity
                        .keys
                        .iter()
                        .map(|k| k.name.clone())
                        .collect::<Vec<_>>(),
                    Some(entity.keys.clone()),
                )
            }
            FeatureKey::Columns(columns) => {
                let mut seen = HashSet::new();
                if let Some(dup) = columns.iter().find(|c| !seen.insert(*c)) {
                    return Err(Error::DuplicateColumn(dup.clone()));
                }
                (None, columns.clone(), None)
            }
        };
        let ttl = create.ttl.as_ref().map(Self::check_ttl).transpose()?;

        let (query, dependencies) = self.qualify_definition(&txn.state, sql, &create.query)?;
        let stored_query = query.to_string();
        if create.or_replace {
            check_no_cycle(&txn.state, &name, &dependencies)?;
        }
        let columns = self.definition_schema(&txn.state, &stored_query).await?;
        // Only a variant that plans to the same columns is kept.
        let write_ordered_query = match write_ordered_query(&query, &self.engine.offline) {
            Some(variant) => match self.definition_schema(&txn.state, &variant).await {
                Ok(variant_columns)
                    if variant_columns.len() == columns.len() + 1
                        && columns.iter().all(|c| variant_columns.contains(c)) =>
                {
                    Some(variant)
                }
                _ => None,
            },
            None => None,
        };
        let columns = Self::view_columns(
            &columns,
            &keys,
            key_types.as_deref(),
            entity.as_ref(),
            &create.timestamp,
        )?;

        let version = existing
            .as_ref()
            .map(|v| v.current().version + 1)
            .unwrap_or(1);
        let mut definition = FeatureViewVersion {
            version,
            entity,
            keys,
            timestamp: create.timestamp.clone(),
            ttl,
            online: create.online,
            owner: create.descriptors.owner.clone(),
            tags: create.descriptors.tags.clone(),
            description: create.descriptors.description.clone(),
            query: stored_query,
            columns,
            dependencies: dependencies.into_iter().collect(),
            created_at: now(),
            sql: String::new(),
            write_ordered_query,
        };
        definition.sql = view_sql(&name, &definition);
        // Replacing a view by what it already is makes no new version (dbt
        // and migration scripts re-run the same CREATE OR REPLACE).
        if let Some(current) = existing.as_ref().map(FeatureView::current) {
            let unchanged = FeatureViewVersion {
                version: current.version,
                created_at: current.created_at.clone(),
                sql: current.sql.clone(),
                ..definition.clone()
            };
            if &unchanged == current {
                return Ok(Outcome::Command(CommandTag::new("CREATE FEATURE VIEW")));
            }
        }
        let mut view = existing.clone().unwrap_or(FeatureView {
            name: name.clone(),
            versions: Vec::new(),
        });
        view.versions.push(definition);
        txn.put_view(view)?;
        if existing.is_some() {
            self.check_dependents(&txn.state, &name).await?;
        }
        txn.commit().await?;
        Ok(Outcome::Command(CommandTag::new("CREATE FEATURE VIEW")))
    }

    /// After `changed` got a new definition (in `state`), every view and
    /// service built on it must still work and keep its columns.
    async fn check_dependents(
        &mut self,
        state: &RegistryState,
        changed: &QualifiedName,
    ) -> Result<()> {
        let mut pending = vec![changed.clone()];
        let mut checked = HashSet::new();
        while let Some(name) = pending.pop() {
            for (kind, dependent) in state.dependents(ObjectKind::FeatureView, &name) {
                if !checked.insert((kind, dependent.clone())) {
                    continue;
                }
                match kind {
                    ObjectKind::FeatureView => {
                        let view = state.views[&dependent].current();
                        // Pinned references do not follow the new version.
                        if view
                            .dependencies
                            .iter()
                            .any(|d| d.name == name && d.version.is_some())
                            && !view
                                .dependencies
                                .iter()
                                .any(|d| d.name == name && d.version.is_none())
                        {
                            continue;
                        }
                        let columns = self.definition_schema(state, &view.query).await.map_err(|e| Error::InvalidDefinition {
                            message: format!(
                                "cannot change feature view {changed}: feature view {dependent} depends on it and would fail"
                            ),
                            detail: Some(e.to_string()),
                        })?;
                        let before: Vec<(String, String)> = view
                            .columns
                            .iter()
                            .map(|c| (c.name.clone(), c.data_type.clone()))
                            .collect();
                        let after: Vec<(String, String)> = columns
                            .iter()
                            .map(|(n, t)| (n.clone(), type_name(t).0))
                            .collect();
                        if before != after {
                            return Err(Error::InvalidDefinition {
                                message: format!(
                                    "cannot change feature view {changed}: the columns of dependent feature view {dependent} would change"
                                ),
                                detail: Some(describe_column_changes(&before, &after)),
                            });
                        }
                        pending.push(dependent);
                    }
                    ObjectKind::FeatureService => {
                        let service = state.services[&dependent].current();
                        for feature in service
                            .features
                            .iter()
                            .filter(|f| f.view == name && f.view_version.is_none())
                        {
                            let view = state.views[&name].current();
                            let column = view
                                .features()
                                .find(|c| c.name == feature.feature)
                                .ok_or_else(|| Error::InvalidDefinition {
                                    message: format!(
                                        "cannot change feature view {changed}: feature service {dependent} serves its feature \"{}\"",
                                        feature.feature
                                    ),
                                    detail: None,
                                })?;
                            if column.data_type != feature.data_type {
                                return Err(Error::InvalidDefinition {
                                    message: format!(
                                        "cannot change feature view {changed}: feature \"{}\" served by {dependent} would change type from {} to {}",
                                        feature.feature, feature.data_type, column.data_type
                                    ),
                                    detail: None,
                                });
                            }
                        }
                    }
                    // Expanded where read: it must still plan.
                    ObjectKind::View => {
                        let view = &state.sql_views[&dependent];
                        let columns = self
                            .query_columns(state, ResolveMode::Query, &view.query)
                            .await
                            .map_err(|e| Error::InvalidDefinition {
                                message: format!(
                                    "cannot change feature view {changed}: view {dependent} depends on it and would fail"
                                ),
                                detail: Some(e.to_string()),
                            })?;
                        // A view's columns are fixed once others may rely
                        // on them (as PostgreSQL's are): the view, and
                        // through it its readers, must see the same ones.
                        let now: Vec<(String, String)> = columns
                            .iter()
                            .map(|(name, data_type)| (name.clone(), type_name(data_type).0))
                            .collect();
                        let stored: Vec<(String, String)> = view
                            .columns
                            .iter()
                            .map(|c| (c.name.clone(), c.data_type.clone()))
                            .collect();
                        if now != stored {
                            return Err(Error::InvalidDefinition {
                                message: format!(
                                    "cannot change feature view {changed}: the columns of view {dependent}, which reads it, would change"
                                ),
                                detail: None,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn create_feature_service(&mut self, create: &CreateFeatureService) -> Result<Outcome> {
        let name = self.registry_name(&create.name)?;
        let registry = self.engine.registry.clone();
        let mut txn = registry.begin().await;
        self.check_relation_free(&txn.state, &name, ObjectKind::FeatureService)?;
        let existing = txn.state.services.get(&name).cloned();
        if existing.is_some() && !create.or_replace {
            if create.if_not_exists {
                self.notice(Notice::informational(
                    "42P07",
                    format!("relation \"{}\" already exists, skipping", name.name),
                ));
                return Ok(Outcome::Command(CommandTag::new("CREATE FEATURE SERVICE")));
            }
            return Err(Error::DuplicateTable(name.name.clone()));
        }
        let mut keys: Option<(QualifiedName, Vec<KeyColumn>)> = None;
        let mut features: Vec<ServiceFeature> = Vec::new();
        let mut dependencies = BTreeSet::new();
        for item in &create.items {
            let view_name = self
                .find(&txn.state, ObjectKind::FeatureView, &item.view)
                .ok_or_else(|| Self::undefined(ObjectKind::FeatureView, &item.view))?;
            let view = &txn.state.views[&view_name];
            let version = match item.version {
                Some(v) => view.version(v).ok_or_else(|| Error::UndefinedObject {
                    message: format!(
                        "feature view {view_name} has no version {v} (versions 1 to {})",
                        view.current().version
                    ),
                })?,
                None => view.current(),
            };
            let view_keys: Vec<KeyColumn> = version
                .keys
                .iter()
                .map(|k| {
                    let column = version.columns.iter().find(|c| &c.name == k);
                    KeyColumn {
                        name: k.clone(),
                        data_type: column
                            .and_then(|c| c.column_type.clone())
                            .unwrap_or(ColumnType::Text),
                    }
                })
                .collect();
            match &keys {
                None => keys = Some((view_name.clone(), view_keys)),
                Some((first, first_keys)) => {
                    let same = first_keys.len() == view_keys.len()
                        && first_keys.iter().zip(&view_keys).all(|(a, b)| {
                            a.name == b.name && keys_compatible(&a.data_type, &b.data_type)
                        });
                    if !same {
                        return Err(Error::InvalidDefinition {
                            message: format!(
                                "feature views {first} and {view_name} do not share a key: a service joins views on one entity"
                            ),
                            detail: None,
                        });
                    }
                }
            }
            let selected: Vec<(String, Option<String>)> = match &item.features {
                ServiceFeatures::All => {
                    version.features().map(|c| (c.name.clone(), None)).collect()
                }
                ServiceFeatures::Listed(listed) => listed.clone(),
            };
            for (feature, alias) in selected {
                let column = version
                    .features()
                    .find(|c| c.name == feature)
                    .ok_or_else(|| Error::UndefinedColumn {
                        table: view_name.name.clone(),
                        column: feature.clone(),
                    })?;
                let output_name = alias.unwrap_or_else(|| feature.clone());
                features.push(ServiceFeature {
                    view: view_name.clone(),
                    view_version: item.version,
                    feature,
                    output_name,
                    data_type: column.data_type.clone(),
                    column_type: column.column_type.clone(),
                });
            }
            dependencies.insert(Dependency {
                kind: ObjectKind::FeatureView,
                name: view_name.clone(),
                version: item.version,
            });
        }
        let Some((_, keys)) = keys else {
            return Err(invalid("a feature service needs at least one feature"));
        };
        let mut seen: HashSet<String> = keys.iter().map(|k| k.name.clone()).collect();
        for feature in &features {
            if !seen.insert(feature.output_name.clone()) {
                return Err(Error::DuplicateColumn(feature.output_name.clone()));
            }
        }
        let version = existing
            .as_ref()
            .map(|s| s.current().version + 1)
            .unwrap_or(1);
        let mut canonical = create.clone();
        canonical.name = ObjectRef {
            schema: Some(name.schema.clone()),
            name: name.name.clone(),
        };
        canonical.or_replace = version > 1;
        canonical.if_not_exists = false;
        let definition = FeatureServiceVersion {
            version,
            keys,
            features,
            owner: create.descriptors.owner.clone(),
            tags: create.descriptors.tags.clone(),
            description: create.descriptors.description.clone(),
            dependencies: dependencies.into_iter().collect(),
            created_at: now(),
            sql: canonical.to_string(),
        };
        let mut service = existing.unwrap_or(FeatureService {
            name,
            versions: Vec::new(),
        });
        service.versions.push(definition);
        txn.put_service(service)?;
        txn.commit().await?;
        Ok(Outcome::Command(CommandTag::new("CREATE FEATURE SERVICE")))
    }

    async fn alter_feature_view(&mut self, alter: &AlterFeatureView) -> Result<Outcome> {
        let registry = self.engine.registry.clone();
        let mut txn = registry.begin().await;
        let name = self
            .find(&txn.state, ObjectKind::FeatureView, &alter.name)
            .ok_or_else(|| Self::undefined(ObjectKind::FeatureView, &alter.name))?;
        let mut view = txn.state.views[&name].clone();
        let mut next = view.current().clone();
        for change in &alter.changes {
            match change {
                FeatureViewChange::Ttl(ttl) => {
                    next.ttl = ttl.as_deref().map(Self::check_ttl).transpose()?
                }
                FeatureViewChange::Online(online) => next.online = *online,
                FeatureViewChange::Owner(owner) => next.owner = owner.clone(),
                FeatureViewChange::Tags(tags) => next.tags = tags.clone(),
                FeatureViewChange::Description(description) => {
                    next.description = description.clone()
                }
            }
        }
        next.version += 1;
        next.created_at = now();
        next.sql = view_sql(&name, &next);
        view.versions.push(next);
        txn.put_view(view)?;
        txn.commit().await?;
        Ok(Outcome::Command(CommandTag::new("ALTER FEATURE VIEW")))
    }

    async fn drop_registry_objects(&mut self, drop: &DropRegistryObjects) -> Result<Outcome> {
        let kind = kind_of(drop.kind);
        let registry = self.engine.registry.clone();
        let mut txn = registry.begin().await;
        let mut targets = Vec::new();
        for name in &drop.names {
            match self.find(&txn.state, kind, name) {
                Some(found) => targets.push((kind, found)),
                None if drop.if_exists => self.notice(Notice::informational(
                    "00000",
                    format!("{} \"{}\" does not exist, skipping", kind.noun(), name.name),
                )),
                None => return Err(Self::undefined(kind, name)),
            }
        }
        let doomed = dependents_closure(&txn.state, &targets);
        if !drop.cascade {
            let extra: Vec<&(ObjectKind, QualifiedName)> =
                doomed.iter().filter(|d| !targets.contains(d)).collect();
            if let Some(first_target) = targets.first()
                && !extra.is_empty()
            {
                return Err(Error::DependentObjectsExist {
                    object: format!("{} {}", first_target.0.noun(), first_target.1),
                    detail: describe_dependents(&txn.state, &doomed, &targets),
                });
            }
        }
        self.remove_registry_objects(&mut txn, &doomed, &targets);
        txn.commit().await?;
        self.forget_materializations(&doomed).await;
        Ok(Outcome::Command(CommandTag::new(drop_tag(drop.kind))))
    }

    /// Removes `objects` in `txn`, with a "drop cascades to" notice for
    /// each one the user did not name (`named`).
    pub(crate) fn remove_registry_objects(
        &mut self,
        txn: &mut RegistryTransaction<'_>,
        objects: &[(ObjectKind, QualifiedName)],
        named: &[(ObjectKind, QualifiedName)],
    ) {
        for (kind, name) in objects {
            if !named.contains(&(*kind, name.clone())) {
                self.notice(Notice::informational(
                    "00000",
                    format!("drop cascades to {} {name}", kind.noun()),
                ));
            }
            txn.remove(*kind, name);
        }
    }

    async fn show_registry(&mut self, show: &ShowRegistry) -> Result<Outcome> {
        let sql = match show {
            ShowRegistry::List(RegistryKind::Entity) => {
                "SELECT schema_name, name, array_to_string(key_columns, ', ') AS keys, comment \
                 FROM featuredb.entities ORDER BY schema_name, name"
                    .to_string()
            }
            ShowRegistry::List(RegistryKind::FeatureView) => {
                "SELECT schema_name, name, version, entity, array_to_string(key_columns, ', ') AS keys, \
                 timestamp_column, ttl, online, owner, description \
                 FROM featuredb.feature_views ORDER BY schema_name, name"
                    .to_string()
            }
            ShowRegistry::List(RegistryKind::FeatureService) => {
                "SELECT schema_name, name, version, array_to_string(key_columns, ', ') AS keys, \
                 array_to_string(features, ', ') AS features, owner, description \
                 FROM featuredb.feature_services ORDER BY schema_name, name"
                    .to_string()
            }
            ShowRegistry::Create { kind, name, version } => {
                let state = self.engine.registry.snapshot();
                let object_kind = kind_of(*kind);
                let found = self
                    .find(&state, object_kind, name)
                    .ok_or_else(|| Self::undefined(object_kind, name))?;
                let definition = match object_kind {
                    ObjectKind::Entity => state.entities[&found].sql.clone(),
                    ObjectKind::View => state.sql_views[&found].sql.clone(),
                    ObjectKind::FeatureView => {
                        let view = &state.views[&found];
                        match version {
                            Some(v) => view.version(*v).map(|d| d.sql.clone()),
                            None => Some(view.current().sql.clone()),
                        }
                        .ok_or_else(|| Error::UndefinedObject {
                            message: format!("feature view {found} has no version {}", version.unwrap_or(0)),
                        })?
                    }
                    ObjectKind::FeatureService => {
                        let service = &state.services[&found];
                        match version {
                            Some(v) => service.version(*v).map(|d| d.sql.clone()),
                            None => Some(service.current().sql.clone()),
                        }
                        .ok_or_else(|| Error::UndefinedObject {
                            message: format!("feature service {found} has no version {}", version.unwrap_or(0)),
                        })?
                    }
                    ObjectKind::Table => unreachable!("not a registry kind"),
                };
                format!("SELECT '{}' AS definition", definition.replace('\'', "''"))
            }
        };
        let featuredb_sql::Statement::Query(statement) = featuredb_sql::parse_statement(&sql)?
        else {
            return Err(Error::internal("SHOW produced a non-query"));
        };
        let (plan, _) = self.plan_query(&sql, &statement, &[]).await?;
        match self.run_plan(plan, Vec::new()).await? {
            Outcome::Rows { schema, stream, .. } => Ok(Outcome::Rows {
                schema,
                stream,
                tag: "SHOW",
            }),
            other => Ok(other),
        }
    }
}

fn drop_tag(kind: RegistryKind) -> &'static str {
    match kind {
        RegistryKind::Entity => "DROP ENTITY",
        RegistryKind::FeatureView => "DROP FEATURE VIEW",
        RegistryKind::FeatureService => "DROP FEATURE SERVICE",
    }
}

/// What differs between two column lists, one line per column.
fn describe_column_changes(before: &[(String, String)], after: &[(String, String)]) -> String {
    let mut lines = Vec::new();
    for (name, old_type) in before {
        match after.iter().find(|(n, _)| n == name) {
            None => lines.push(format!("column {name} would disappear")),
            Some((_, new_type)) if new_type != old_type => lines.push(format!(
                "column {name} would change type from {old_type} to {new_type}"
            )),
            Some(_) => {}
        }
    }
    for (name, _) in after {
        if !before.iter().any(|(n, _)| n == name) {
            lines.push(format!("column {name} would appear"));
        }
    }
    if lines.is_empty() {
        lines.push("the column order would change".to_string());
    }
    lines.join("\n")
}

/// One line per object in `doomed` that is not a target, naming what it
/// directly depends on ("feature view a depends on table t"), as
/// PostgreSQL's DETAIL for 2BP01 does.
pub(crate) fn describe_dependents(
    state: &RegistryState,
    doomed: &[(ObjectKind, QualifiedName)],
    targets: &[(ObjectKind, QualifiedName)],
) -> String {
    doomed
        .iter()
        .filter(|object| !targets.contains(object))
        .map(|(kind, name)| {
            let on = doomed
                .iter()
                .find(|(parent_kind, parent)| {
                    state
                        .dependents(*parent_kind, parent)
                        .iter()
                        .any(|(k, n)| k == kind && n == name)
                })
                .map(|(parent_kind, parent)| format!(" depends on {} {parent}", parent_kind.noun()))
                .unwrap_or_default();
            format!("{} {name}{on}", kind.noun())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `targets` and everything that depends on them, transitively.
pub(crate) fn dependents_closure(
    state: &RegistryState,
    targets: &[(ObjectKind, QualifiedName)],
) -> Vec<(ObjectKind, QualifiedName)> {
    let mut result: Vec<(ObjectKind, QualifiedName)> = Vec::new();
    let mut pending: Vec<(ObjectKind, QualifiedName)> = targets.to_vec();
    while let Some(item) = pending.pop() {
        if result.contains(&item) {
            continue;
        }
        for dependent in state.dependents(item.0, &item.1) {
            pending.push(dependent);
        }
        result.push(item);
    }
    result
}

/// A feature view or view may not read itself, directly or through other
/// feature views and views.
pub(crate) fn check_no_cycle(
    state: &RegistryState,
    name: &QualifiedName,
    dependencies: &BTreeSet<Dependency>,
) -> Result<()> {
    let reads_views =
        |d: &&Dependency| matches!(d.kind, ObjectKind::FeatureView | ObjectKind::View);
    let mut pending: Vec<QualifiedName> = dependencies
        .iter()
        .filter(reads_views)
        .map(|d| d.name.clone())
        .collect();
    let mut seen = HashSet::new();
    while let Some(current) = pending.pop() {
        if &current == name {
            return Err(invalid(format!(
                "{name} would depend on itself (a dependency cycle)"
            )));
        }
        if !seen.insert(current.clone()) {
            continue;
        }
        if let Some(view) = state.views.get(&current) {
            for version in &view.versions {
                pending.extend(
                    version
                        .dependencies
                        .iter()
                        .filter(reads_views)
                        .map(|d| d.name.clone()),
                );
            }
        }
        if let Some(view) = state.sql_views.get(&current) {
            pending.extend(
                view.dependencies
                    .iter()
                    .filter(reads_views)
                    .map(|d| d.name.clone()),
            );
        }
    }
    Ok(())
}

/// The canonical statement equivalent to a feature view version.
fn view_sql(name: &QualifiedName, view: &FeatureViewVersion) -> String {
    let mut sql = format!(
        "CREATE{} FEATURE VIEW {}",
        if view.version > 1 { " OR REPLACE" } else { "" },
        name
    );
    match &view.entity {
        Some(entity) => sql.push_str(&format!(" ENTITY {entity}")),
        None => sql.push_str(&format!(
            " KEY ({})",
            view.keys
                .iter()
                .map(|k| quote_ident(k))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    sql.push_str(&format!(" TIMESTAMP {}", quote_ident(&view.timestamp)));
    if let Some(ttl) = &view.ttl {
        sql.push_str(&format!(" TTL {ttl}"));
    }
    sql.push_str(if view.online { " ONLINE" } else { " OFFLINE" });
    let options: Vec<String> = [
        ("owner", &view.owner),
        ("tags", &view.tags),
        ("description", &view.description),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.as_ref()
            .map(|v| format!("{k} = '{}'", v.replace('\'', "''")))
    })
    .collect();
    if !options.is_empty() {
        sql.push_str(&format!(" WITH ({})", options.join(", ")));
    }
    sql.push_str(&format!(" AS {}", view.query));
    sql
}

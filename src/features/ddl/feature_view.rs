//! `CREATE [OR REPLACE] FEATURE VIEW` and `ALTER FEATURE VIEW`: a new
//! version, validated by planning its query against the state it would
//! produce, with every view and service built on it re-checked.

use std::collections::HashSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast;
use featuredb_catalog::names::quote_ident;
use featuredb_catalog::{
    ColumnRole, ColumnType, FeatureView, FeatureViewVersion, KeyColumn, ObjectKind, QualifiedName,
    RegistryState, ViewColumn, WindowedBase,
};
use featuredb_sql::feature::{AlterFeatureView, CreateFeatureView, FeatureKey, FeatureViewChange};

use super::context::{DdlOutcome, RegistryDdl, invalid, is_named_column, now, type_name};
use super::dependencies::{check_no_cycle, describe_column_changes};
use crate::error::{Error, Result};
use crate::features::materialize::online_storable;
use crate::features::names::undefined;
use crate::features::resolve::ResolveMode;
use crate::features::streaming::RowPipeline;
use crate::features::temporal::parse_query;
use crate::features::temporal::write_ordered_query;
use crate::features::windows::{
    WindowArguments, as_of_sql, check_event_time, windowed_query, windowed_view,
};
use crate::notice::Notice;

/// Whether two key types join: same type, or both integers, or both text.
pub(super) fn keys_compatible(a: &ColumnType, b: &ColumnType) -> bool {
    use ColumnType::*;
    let family = |t: &ColumnType| match t {
        SmallInt | Integer | BigInt => 1,
        Text | Varchar { .. } => 2,
        _ => 0,
    };
    a == b || (family(a) != 0 && family(a) == family(b))
}

impl RegistryDdl<'_> {
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

    pub(super) async fn create_feature_view(
        &mut self,
        sql: &str,
        create: &CreateFeatureView,
    ) -> Result<DdlOutcome> {
        let name = self.names.registry_name(&create.name)?;
        let registry = self.registry;
        let mut txn = registry.begin().await;
        self.names
            .check_relation_free(&txn.state, &name, ObjectKind::FeatureView)?;
        let existing = txn.state.views.get(&name).cloned();
        if existing.is_some() && !create.or_replace {
            if create.if_not_exists {
                self.notice(Notice::informational(
                    "42P07",
                    format!("relation \"{}\" already exists, skipping", name.name),
                ));
                return Ok(DdlOutcome::Command("CREATE FEATURE VIEW"));
            }
            return Err(Error::DuplicateTable(name.name.clone()));
        }
        let (entity, keys, key_types) = match &create.key {
            FeatureKey::Entity(entity_ref) => {
                let entity_name = self
                    .names
                    .find(&txn.state, ObjectKind::Entity, entity_ref)
                    .ok_or_else(|| undefined(ObjectKind::Entity, entity_ref))?;
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

        let (query, dependencies) =
            self.names
                .qualify_definition(&txn.state, sql, &create.query)?;
        let stored_query = query.to_string();
        if create.or_replace {
            check_no_cycle(&txn.state, &name, &dependencies)?;
        }
        let columns = self.definition_schema(&txn.state, &stored_query).await?;
        let write_ordered_query = self
            .write_ordered_variant(&txn.state, &query, &columns)
            .await;
        let columns = Self::view_columns(
            &columns,
            &keys,
            key_types.as_deref(),
            entity.as_ref(),
            &create.timestamp,
        )?;
        // A windowed view materializes its row-level base.
        let windowed_base = match windowed_query(&query, &keys, &create.timestamp)? {
            None => None,
            Some(windowed) => {
                let base = parse_query(&windowed.base_query)?;
                let base_columns = self
                    .definition_schema(&txn.state, &windowed.base_query)
                    .await?;
                let write_ordered_query = self
                    .write_ordered_variant(&txn.state, &base, &base_columns)
                    .await;
                let columns = Self::view_columns(
                    &base_columns,
                    &keys,
                    key_types.as_deref(),
                    entity.as_ref(),
                    &create.timestamp,
                )?;
                Some(WindowedBase {
                    query: windowed.base_query,
                    columns,
                    write_ordered_query,
                })
            }
        };

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
            streaming: create.streaming,
            owner: create.descriptors.owner.clone(),
            tags: create.descriptors.tags.clone(),
            description: create.descriptors.description.clone(),
            query: stored_query,
            columns,
            dependencies: dependencies.into_iter().collect(),
            created_at: now(),
            sql: String::new(),
            write_ordered_query,
            windowed_base,
        };
        definition.sql = view_sql(&name, &definition);
        self.check_windows(&txn.state, &definition).await?;
        if definition.streaming {
            self.check_streamable(&txn.state, &name, &definition)
                .await?;
        }
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
                return Ok(DdlOutcome::Command("CREATE FEATURE VIEW"));
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
        Ok(DdlOutcome::Command("CREATE FEATURE VIEW"))
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

    /// `query` (with output `columns`) reading its one table in write
    /// order, if it has that shape; only a variant that plans to the same
    /// columns (and the write order) is kept.
    async fn write_ordered_variant(
        &mut self,
        state: &RegistryState,
        query: &ast::Query,
        columns: &[(String, DataType)],
    ) -> Option<String> {
        let variant = write_ordered_query(query, &self.names.offline)?;
        match self.definition_schema(state, &variant).await {
            Ok(variant_columns)
                if variant_columns.len() == columns.len() + 1
                    && columns.iter().all(|c| variant_columns.contains(c)) =>
            {
                Some(variant)
            }
            _ => None,
        }
    }

    /// A view with windowed features: they must be over its key and
    /// event time, and its reads as of a time must plan to its columns.
    async fn check_windows(
        &mut self,
        state: &RegistryState,
        view: &FeatureViewVersion,
    ) -> Result<()> {
        let Some(windowed) = windowed_view(view)? else {
            return Ok(());
        };
        check_event_time(view)?;
        // What lookups will keep of each row must exist for its type.
        WindowArguments::of(view, &windowed)?;
        let ts_type = view
            .columns
            .iter()
            .find(|c| c.name == view.timestamp)
            .map(|c| c.data_type.clone())
            .unwrap_or_default();
        let sql = as_of_sql(view, &windowed, &format!("CAST(now() AS {ts_type})"));
        let columns = self.definition_schema(state, &sql).await?;
        let read: Vec<String> = columns.iter().map(|(_, t)| type_name(t).0).collect();
        let declared: Vec<String> = view.columns.iter().map(|c| c.data_type.clone()).collect();
        if read != declared {
            return Err(Error::InvalidDefinition {
                message: "the view's windowed features do not read back with their types".into(),
                detail: Some(format!("declared {declared:?}, read as of a time {read:?}")),
            });
        }
        Ok(())
    }

    /// Refuses a STREAMING definition the stream engine cannot keep, or
    /// whose rows the online store cannot hold.
    async fn check_streamable(
        &mut self,
        state: &RegistryState,
        name: &QualifiedName,
        view: &FeatureViewVersion,
    ) -> Result<()> {
        online_storable(view)?;
        RowPipeline::compile(name, view, state, &mut *self.planner).await?;
        Ok(())
    }

    pub(super) async fn alter_feature_view(
        &mut self,
        alter: &AlterFeatureView,
    ) -> Result<DdlOutcome> {
        let registry = self.registry;
        let mut txn = registry.begin().await;
        let name = self
            .names
            .find(&txn.state, ObjectKind::FeatureView, &alter.name)
            .ok_or_else(|| undefined(ObjectKind::FeatureView, &alter.name))?;
        let mut view = txn.state.views[&name].clone();
        let mut next = view.current().clone();
        for change in &alter.changes {
            match change {
                FeatureViewChange::Ttl(ttl) => {
                    next.ttl = ttl.as_deref().map(Self::check_ttl).transpose()?
                }
                FeatureViewChange::Online(online) => next.online = *online,
                FeatureViewChange::Streaming(streaming) => next.streaming = *streaming,
                FeatureViewChange::Owner(owner) => next.owner = owner.clone(),
                FeatureViewChange::Tags(tags) => next.tags = tags.clone(),
                FeatureViewChange::Description(description) => {
                    next.description = description.clone()
                }
            }
        }
        if next.streaming && !next.online {
            return Err(Error::InvalidParameterValue(format!(
                "feature view {name} is STREAMING, which keeps it online: set streaming = false \
                 to take it offline"
            )));
        }
        if next.streaming && !view.current().streaming {
            self.check_streamable(&txn.state, &name, &next).await?;
        }
        next.version += 1;
        next.created_at = now();
        next.sql = view_sql(&name, &next);
        view.versions.push(next);
        txn.put_view(view)?;
        txn.commit().await?;
        Ok(DdlOutcome::Command("ALTER FEATURE VIEW"))
    }
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
    if view.streaming {
        sql.push_str(" STREAMING");
    }
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

//! `CREATE [OR REPLACE] FEATURE SERVICE`: features of feature views (pinned
//! to a version or following the current one) served under one key.

use std::collections::{BTreeSet, HashSet};

use featuredb_catalog::{
    ColumnType, Dependency, FeatureService, FeatureServiceVersion, KeyColumn, ObjectKind,
    QualifiedName, ServiceFeature,
};
use featuredb_sql::feature::{CreateFeatureService, ServiceFeatures};
use featuredb_sql::names::ObjectRef;

use super::context::{DdlOutcome, RegistryDdl, invalid, now};
use super::feature_view::keys_compatible;
use crate::error::{Error, Result};
use crate::features::names::undefined;
use crate::notice::Notice;

impl RegistryDdl<'_> {
    pub(super) async fn create_feature_service(
        &mut self,
        create: &CreateFeatureService,
    ) -> Result<DdlOutcome> {
        let name = self.names.registry_name(&create.name)?;
        let registry = self.registry;
        let mut txn = registry.begin().await;
        self.names
            .check_relation_free(&txn.state, &name, ObjectKind::FeatureService)?;
        let existing = txn.state.services.get(&name).cloned();
        if existing.is_some() && !create.or_replace {
            if create.if_not_exists {
                self.notice(Notice::informational(
                    "42P07",
                    format!("relation \"{}\" already exists, skipping", name.name),
                ));
                return Ok(DdlOutcome::Command("CREATE FEATURE SERVICE"));
            }
            return Err(Error::DuplicateTable(name.name.clone()));
        }
        let mut keys: Option<(QualifiedName, Vec<KeyColumn>)> = None;
        let mut features: Vec<ServiceFeature> = Vec::new();
        let mut dependencies = BTreeSet::new();
        for item in &create.items {
            let view_name = self
                .names
                .find(&txn.state, ObjectKind::FeatureView, &item.view)
                .ok_or_else(|| undefined(ObjectKind::FeatureView, &item.view))?;
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
        Ok(DdlOutcome::Command("CREATE FEATURE SERVICE"))
    }
}

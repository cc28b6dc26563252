//! `SHOW ENTITIES | FEATURE VIEWS | FEATURE SERVICES` and `SHOW CREATE …`:
//! queries over the system tables, which the engine runs.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use featuredb_catalog::ObjectKind;
use featuredb_sql::feature::{RegistryKind, ShowRegistry};

use super::context::{DdlOutcome, RegistryDdl, kind_of};
use crate::error::{Error, Result};
use crate::features::names::undefined;

impl RegistryDdl<'_> {
    pub(super) async fn show_registry(&mut self, show: &ShowRegistry) -> Result<DdlOutcome> {
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
                let state = self.registry.snapshot();
                let object_kind = kind_of(*kind);
                let found = self.names
                    .find(&state, object_kind, name)
                    .ok_or_else(|| undefined(object_kind, name))?;
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
        Ok(DdlOutcome::Show(sql))
    }
}

/// The columns a registry SHOW returns, for Describe before it runs (kept
/// in step with the queries of `show_registry`).
pub fn show_schema(show: &ShowRegistry) -> SchemaRef {
    match show {
        ShowRegistry::List(RegistryKind::Entity) => {
            text_columns(&["schema_name", "name", "keys", "comment"])
        }
        ShowRegistry::List(RegistryKind::FeatureView) => Arc::new(Schema::new(vec![
            Field::new("schema_name", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("version", DataType::Int32, true),
            Field::new("entity", DataType::Utf8, true),
            Field::new("keys", DataType::Utf8, true),
            Field::new("timestamp_column", DataType::Utf8, true),
            Field::new("ttl", DataType::Utf8, true),
            Field::new("online", DataType::Boolean, true),
            Field::new("owner", DataType::Utf8, true),
            Field::new("description", DataType::Utf8, true),
        ])),
        ShowRegistry::List(RegistryKind::FeatureService) => Arc::new(Schema::new(vec![
            Field::new("schema_name", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("version", DataType::Int32, true),
            Field::new("keys", DataType::Utf8, true),
            Field::new("features", DataType::Utf8, true),
            Field::new("owner", DataType::Utf8, true),
            Field::new("description", DataType::Utf8, true),
        ])),
        ShowRegistry::Create { .. } => text_columns(&["definition"]),
    }
}

fn text_columns(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

//! `CREATE ENTITY`.

use featuredb_catalog::{Entity, KeyColumn};
use featuredb_sql::feature::CreateEntity;
use featuredb_sql::names::ObjectRef;

use super::context::{DdlOutcome, RegistryDdl, now};
use crate::error::{Error, Result};
use crate::notice::Notice;

impl RegistryDdl<'_> {
    pub(super) async fn create_entity(&mut self, create: &CreateEntity) -> Result<DdlOutcome> {
        let name = self.names.registry_name(&create.name)?;
        let registry = self.registry;
        let mut txn = registry.begin().await;
        if txn.state.entities.contains_key(&name) {
            if create.if_not_exists {
                self.notice(Notice::informational(
                    "42710",
                    format!("entity \"{}\" already exists, skipping", name.name),
                ));
                return Ok(DdlOutcome::Command("CREATE ENTITY"));
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
        Ok(DdlOutcome::Command("CREATE ENTITY"))
    }
}

//! `DROP ENTITY | FEATURE VIEW | FEATURE SERVICE`: refused while other
//! objects depend on the targets, unless CASCADE drops those too.

use featuredb_catalog::{ObjectKind, QualifiedName};
use featuredb_sql::feature::{DropRegistryObjects, RegistryKind};

use super::context::{DdlOutcome, RegistryDdl, kind_of};
use super::dependencies::{dependents_closure, describe_dependents, remove_registry_objects};
use crate::error::{Error, Result};
use crate::features::names::undefined;
use crate::notice::Notice;

impl RegistryDdl<'_> {
    pub(super) async fn drop_registry_objects(
        &mut self,
        drop: &DropRegistryObjects,
    ) -> Result<DdlOutcome> {
        let kind = kind_of(drop.kind);
        let registry = self.registry;
        let mut txn = registry.begin().await;
        let mut targets = Vec::new();
        for name in &drop.names {
            match self.names.find(&txn.state, kind, name) {
                Some(found) => targets.push((kind, found)),
                None if drop.if_exists => self.notice(Notice::informational(
                    "00000",
                    format!("{} \"{}\" does not exist, skipping", kind.noun(), name.name),
                )),
                None => return Err(undefined(kind, name)),
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
        remove_registry_objects(&mut txn, &doomed, &targets, self.notices);
        txn.commit().await?;
        Ok(DdlOutcome::Dropped {
            tag: drop_tag(drop.kind),
            objects: doomed,
        })
    }
}

fn drop_tag(kind: RegistryKind) -> &'static str {
    match kind {
        RegistryKind::Entity => "DROP ENTITY",
        RegistryKind::FeatureView => "DROP FEATURE VIEW",
        RegistryKind::FeatureService => "DROP FEATURE SERVICE",
    }
}

//! `ALTER TABLE|VIEW name RENAME TO new_name`.
//!
//! Tables and plain views can be renamed within their schema. Definitions
//! that read a relation refer to it by name (stored qualified in their
//! query), so renaming a relation does not carry its readers along, as
//! PostgreSQL's OID references would: they read whatever relation has the
//! name they were defined over. That is what dbt's swap expects —
//! `x` → `x__dbt_backup`, `x__dbt_tmp` → `x`, drop the backup — and it
//! keeps feature views defined over a dbt model alive (with their versions,
//! history and online rows) across rebuilds of the model. Between the two
//! renames the readers fail with 42P01; a NOTICE says so.
//!
//! Feature views and services are not renamed: their versions,
//! materialization and readers are keyed by name.

use featuredb_catalog::{ObjectKind, QualifiedName, is_system_schema};
use featuredb_sql::alter::{RenameRelation, RenameTarget};

use super::outcome::{CommandTag, Outcome};
use super::session::Session;
use crate::error::{Error, Result};
use crate::notice::Notice;

impl Session {
    pub(crate) async fn rename_relation(&mut self, rename: &RenameRelation) -> Result<Outcome> {
        let tag = match rename.target {
            RenameTarget::Table => "ALTER TABLE",
            RenameTarget::View => "ALTER VIEW",
        };
        // The registry transaction serialises this with every other DDL
        // that creates, drops or reads relation names.
        if let Some(temp) = self.names().temp_table_named(&rename.name) {
            if rename.target == RenameTarget::View {
                return Err(Error::WrongObjectType(format!("\"{temp}\" is not a view")));
            }
            self.temp.rename(&temp, &rename.new_name)?;
            return Ok(Outcome::Command(CommandTag::new(tag)));
        }
        let registry = self.engine.registry.clone();
        let mut txn = registry.begin().await;
        let Some((kind, name)) = self.names().find_relation(&txn.state, &rename.name) else {
            if rename.if_exists {
                self.notice(Notice::informational(
                    "00000",
                    format!("relation \"{}\" does not exist, skipping", rename.name),
                ));
                return Ok(Outcome::Command(CommandTag::new(tag)));
            }
            return Err(Error::UndefinedTable {
                name: rename.name.to_string(),
                position: None,
            });
        };
        match (rename.target, kind) {
            (RenameTarget::View, ObjectKind::Table) => {
                return Err(Error::WrongObjectType(format!(
                    "\"{}\" is not a view",
                    name.name
                )));
            }
            (_, ObjectKind::FeatureView | ObjectKind::FeatureService) => {
                return Err(Error::FeatureNotSupported(format!(
                    "cannot rename {} {name}: its versions, materialization and readers are \
                     keyed by its name; create it under the new name instead",
                    kind.noun()
                )));
            }
            _ => {}
        }
        if is_system_schema(&name.schema) || name.schema == crate::online::MATERIALIZED_SCHEMA {
            return Err(Error::FeatureNotSupported(format!(
                "cannot rename {name}: featuredb maintains it"
            )));
        }
        let new = QualifiedName::new(&name.schema, &rename.new_name);
        let taken = self.engine.offline.table(&new.schema, &new.name).is_some()
            || self
                .engine
                .offline
                .broken_table(&new.schema, &new.name)
                .is_some()
            || txn
                .state
                .relation_names_in(&new.schema)
                .any(|n| n == new.name);
        if taken {
            return Err(Error::DuplicateTable(new.name.clone()));
        }
        let readers = txn.state.dependents(kind, &name);
        match kind {
            ObjectKind::Table => {
                self.engine.offline.rename_table(&name, &new.name).await?;
                drop(txn);
            }
            ObjectKind::View => {
                let mut view = txn
                    .state
                    .sql_views
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| Error::internal(format!("view {name} vanished")))?;
                txn.remove(ObjectKind::View, &name);
                view.sql = format!("CREATE VIEW {new} AS {}", view.query);
                view.name = new;
                txn.put_sql_view(view)?;
                txn.commit().await?;
            }
            _ => return Err(Error::internal("unexpected relation kind in rename")),
        }
        for (reader_kind, reader) in readers {
            self.notice(Notice::informational(
                "00000",
                format!(
                    "{} {reader} reads {name} by name: it cannot be read until a relation named \
                     {name} exists again",
                    reader_kind.noun()
                ),
            ));
        }
        Ok(Outcome::Command(CommandTag::new(tag)))
    }
}

//! Finding relations and registry objects by the names a statement uses:
//! qualified names as written, unqualified ones through the session's
//! `search_path`, with its temporary tables found first (as PostgreSQL's
//! implicit `pg_temp` on every path).

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast;
use featuredb_catalog::{Dependency, ObjectKind, QualifiedName, RegistryState, is_system_schema};
use featuredb_sql::names::ObjectRef;

use super::resolve::{NameResolver, ResolveMode};
use crate::error::{Error, Result};
use crate::offline::{OfflineStore, TableHandle};
use crate::pgcompat::temp_tables::TempTables;

/// How names resolve for one statement: the schemas of the search path and
/// the temporary tables of the session that runs it.
#[derive(Clone)]
pub struct NameScope {
    pub offline: Arc<OfflineStore>,
    /// The `search_path` setting; which of its schemas exist is asked at
    /// each use ([`Self::search_path`]), as schemas come and go while a
    /// statement waits for the registry's lock.
    pub search_path_setting: Vec<String>,
    /// The schema DataFusion resolves unqualified names in.
    pub default_schema: String,
    pub temp: Arc<TempTables>,
}

impl NameScope {
    /// The existing schemas of the search path, in order.
    pub fn search_path(&self) -> Vec<String> {
        self.search_path_setting
            .iter()
            .filter(|schema| self.offline.schema_exists(schema))
            .cloned()
            .collect()
    }

    /// Where unqualified new objects go: the first existing schema.
    pub fn creation_schema(&self) -> Result<String> {
        self.search_path().into_iter().next().ok_or_else(|| {
            Error::UndefinedSchema("no schema has been selected to create in".to_string())
        })
    }

    /// A resolver of `sql`'s names against `registry`.
    pub fn resolver<'a>(
        &'a self,
        registry: &'a RegistryState,
        sql: &'a str,
        mode: ResolveMode,
    ) -> NameResolver<'a> {
        NameResolver::new(
            &self.offline,
            registry,
            self.search_path(),
            &self.default_schema,
            sql,
            mode,
        )
        .with_temp(&self.temp)
    }

    /// Which schema a new object's name puts it in (system schemas
    /// refused).
    pub fn creation_name(&self, name: &ObjectRef) -> Result<QualifiedName> {
        let schema = match &name.schema {
            Some(schema) => {
                if is_system_schema(schema) {
                    return Err(Error::FeatureNotSupported(format!(
                        "cannot create objects in system schema {schema}"
                    )));
                }
                schema.clone()
            }
            None => self.creation_schema()?,
        };
        Ok(QualifiedName::new(schema, &name.name))
    }

    /// Where a new registry object named `name` goes: as
    /// [`Self::creation_name`], in a schema that exists.
    pub fn registry_name(&self, name: &ObjectRef) -> Result<QualifiedName> {
        let qualified = self.creation_name(name)?;
        if name.schema.is_some() && !self.offline.schema_exists(&qualified.schema) {
            return Err(Error::UndefinedSchema(qualified.schema));
        }
        Ok(qualified)
    }

    /// Finds an existing registry object, through `search_path` if
    /// unqualified.
    pub fn find(
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
                .search_path()
                .iter()
                .map(|schema| QualifiedName::new(schema, &name.name))
                .collect(),
        };
        candidates.into_iter().find(exists)
    }

    /// Fails if `name` is taken in the relation namespace by something other
    /// than an object of `kind` (which OR REPLACE may replace).
    pub fn check_relation_free(
        &self,
        state: &RegistryState,
        name: &QualifiedName,
        kind: ObjectKind,
    ) -> Result<()> {
        let taken = self.offline.table(&name.schema, &name.name).is_some()
            || (kind != ObjectKind::FeatureView && state.views.contains_key(name))
            || (kind != ObjectKind::FeatureService && state.services.contains_key(name))
            || (kind != ObjectKind::View && state.sql_views.contains_key(name));
        if taken {
            return Err(Error::DuplicateTable(name.name.clone()));
        }
        Ok(())
    }

    /// The relation a name refers to, searching `search_path` when
    /// unqualified: the first schema holding a relation of that name.
    pub fn find_relation(
        &self,
        state: &RegistryState,
        name: &ObjectRef,
    ) -> Option<(ObjectKind, QualifiedName)> {
        let schemas = match &name.schema {
            Some(schema) => vec![schema.clone()],
            None => self.search_path(),
        };
        schemas.into_iter().find_map(|schema| {
            let qualified = QualifiedName::new(&schema, &name.name);
            let kind = if self.offline.table(&schema, &name.name).is_some()
                || self.offline.broken_table(&schema, &name.name).is_some()
            {
                ObjectKind::Table
            } else if state.sql_views.contains_key(&qualified) {
                ObjectKind::View
            } else if state.views.contains_key(&qualified) {
                ObjectKind::FeatureView
            } else if state.services.contains_key(&qualified) {
                ObjectKind::FeatureService
            } else {
                return None;
            };
            Some((kind, qualified))
        })
    }

    /// Fails with PostgreSQL's 42809 when `name` is a relation of another
    /// kind than the statement (`DROP TABLE` of a view) expects.
    pub fn refuse_other_kind(
        &self,
        state: &RegistryState,
        name: &ObjectRef,
        expected: ObjectKind,
    ) -> Result<()> {
        match self.find_relation(state, name) {
            Some((kind, found)) if kind != expected => Err(Error::WrongObjectType(format!(
                "\"{}\" is not a {} (it is a {}; use DROP {})",
                found.name,
                expected.noun(),
                kind.noun(),
                kind.noun().to_uppercase()
            ))),
            _ => Ok(()),
        }
    }

    /// The session's temporary table a name refers to: unqualified names
    /// find temporary tables first, `pg_temp.name` only them.
    pub fn temp_table_named(&self, name: &ObjectRef) -> Option<String> {
        let in_temp_schema = name
            .schema
            .as_deref()
            .is_none_or(|schema| self.temp.is_temp_schema(schema));
        (in_temp_schema && self.temp.contains(&name.name)).then(|| name.name.clone())
    }

    /// The table a name refers to, searching `search_path` when unqualified.
    pub fn lookup_table(&self, name: &ObjectRef) -> Result<Arc<TableHandle>> {
        let schemas = match &name.schema {
            Some(schema) => vec![schema.clone()],
            None => self.search_path(),
        };
        for schema in schemas {
            if let Some(reason) = self.offline.broken_table(&schema, &name.name) {
                return Err(Error::internal(format!(
                    "table {schema}.{} cannot be read: {reason}",
                    name.name
                )));
            }
            if let Some(table) = self.offline.table(&schema, &name.name) {
                return Ok(table);
            }
        }
        Err(Error::UndefinedTable {
            name: name.to_string(),
            position: None,
        })
    }

    /// A definition's query with every name qualified (so that it means the
    /// same under any search_path), and the relations it reads.
    pub fn qualify_definition(
        &self,
        state: &RegistryState,
        sql: &str,
        query: &ast::Query,
    ) -> Result<(Box<ast::Query>, BTreeSet<Dependency>)> {
        let mut query = Box::new(query.clone());
        let resolver = self
            .resolver(state, sql, ResolveMode::Definition)
            .qualify_only();
        resolver.resolve_query(&mut query)?;
        Ok((query, resolver.dependencies()))
    }
}

/// The error for a registry object or relation that does not exist.
pub fn undefined(kind: ObjectKind, name: &ObjectRef) -> Error {
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

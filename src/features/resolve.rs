//! Resolving relation names the way PostgreSQL does, before DataFusion
//! plans: tables, feature views and feature services.
//!
//! - Unqualified names are looked up through `search_path`, in order;
//!   names found in a schema other than DataFusion's default are qualified.
//!   In view definitions every name is qualified, so a stored definition
//!   means the same thing whatever the search path of a later reader.
//! - Unknown relations fail with PostgreSQL's error (`relation "x" does not
//!   exist`, 42P01) and the position of the name.
//! - References to feature views and services are replaced by the
//!   subquery that computes them (`temporal.rs`), at the requested point in
//!   time; the dependencies of a definition are collected on the way.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, Statement, TableAlias, TableFactor, TableObject,
    VisitMut, VisitorMut,
};
use featuredb_catalog::{
    DEFAULT_DATABASE, Dependency, ObjectKind, QualifiedName, RegistryState, is_system_schema,
};
use featuredb_sql::error::char_position;
use featuredb_sql::names::normalize_ident;
use featuredb_sql::temporal::split_version;

use super::temporal::{self, TemporalClause};
use crate::error::Error;
use crate::offline::OfflineStore;
use crate::pgcompat::temp_tables::{TEMP_SCHEMA, TempTables};

/// How far feature views may nest (cycles are rejected when they are
/// created; this bounds any that slipped through).
const MAX_VIEW_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveMode {
    /// A query: feature views are read as of now unless it says otherwise.
    Query,
    /// The body of a feature view: names are all qualified, and a feature
    /// view read without FOR SYSTEM_TIME means its whole history.
    Definition,
}

/// What a name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    Table(QualifiedName),
    FeatureView(QualifiedName),
    FeatureService(QualifiedName),
    /// A plain SQL view.
    View(QualifiedName),
    /// One of the session's temporary tables.
    Temporary(String),
}

pub struct NameResolver<'a> {
    pub store: &'a OfflineStore,
    pub registry: &'a RegistryState,
    /// Existing schemas of `search_path`, in order.
    pub search_path: Vec<String>,
    /// The schema DataFusion resolves unqualified names in.
    pub default_schema: &'a str,
    /// The statement text, to turn spans into positions.
    pub sql: &'a str,
    pub mode: ResolveMode,
    /// Replace feature views and services by their subqueries (off when
    /// only qualifying a definition for storage).
    pub expand: bool,
    pub depth: usize,
    /// The session's temporary tables, found before `search_path`.
    temp: Option<&'a TempTables>,
    dependencies: RefCell<BTreeSet<Dependency>>,
}

impl<'a> NameResolver<'a> {
    pub fn new(
        store: &'a OfflineStore,
        registry: &'a RegistryState,
        search_path: Vec<String>,
        default_schema: &'a str,
        sql: &'a str,
        mode: ResolveMode,
    ) -> Self {
        Self {
            store,
            registry,
            search_path,
            default_schema,
            sql,
            mode,
            expand: true,
            depth: 0,
            temp: None,
            dependencies: RefCell::new(BTreeSet::new()),
        }
    }

    /// Lets names find the session's temporary tables (first, as PostgreSQL's
    /// implicit `pg_temp` on every search path).
    pub fn with_temp(mut self, temp: &'a TempTables) -> Self {
        self.temp = Some(temp);
        self
    }

    /// Only qualify names (and collect dependencies); leave feature views
    /// as references.
    pub fn qualify_only(mut self) -> Self {
        self.expand = false;
        self
    }

    /// The relations the resolved statement reads.
    pub fn dependencies(&self) -> BTreeSet<Dependency> {
        self.dependencies.borrow().clone()
    }

    pub fn resolve(&self, statement: &mut Statement) -> Result<(), Error> {
        if let Statement::Insert(insert) = statement
            && let TableObject::TableName(name) = &mut insert.table
        {
            match self.resolve_name(name)? {
                Some(Relation::Table(_) | Relation::Temporary(_)) | None => {}
                Some(_) => {
                    return Err(Error::FeatureNotSupported(format!(
                        "cannot insert into {name}: views, feature views and services are computed, insert into their source tables"
                    )));
                }
            }
        }
        self.visit(statement)
    }

    pub fn resolve_query(&self, query: &mut Query) -> Result<(), Error> {
        self.visit(query)
    }

    fn visit<V: VisitMut>(&self, node: &mut V) -> Result<(), Error> {
        let mut visitor = Visitor {
            resolver: self,
            cte_scopes: Vec::new(),
        };
        match node.visit(&mut visitor) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(err) => Err(*err),
        }
    }

    fn position(&self, ident: &Ident) -> Option<usize> {
        char_position(self.sql, ident.span.start.line, ident.span.start.column)
    }

    /// What `schema.name` is, if anything.
    pub fn lookup(&self, schema: &str, name: &str) -> Option<Relation> {
        if let Some(temp) = self.temp
            && temp.is_temp_schema(schema)
        {
            return temp
                .contains(name)
                .then(|| Relation::Temporary(name.to_string()));
        }
        let qualified = QualifiedName::new(schema, name);
        if self.store.table(schema, name).is_some()
            || self.store.broken_table(schema, name).is_some()
        {
            Some(Relation::Table(qualified))
        } else if self.registry.views.contains_key(&qualified) {
            Some(Relation::FeatureView(qualified))
        } else if self.registry.services.contains_key(&qualified) {
            Some(Relation::FeatureService(qualified))
        } else if self.registry.sql_views.contains_key(&qualified) {
            Some(Relation::View(qualified))
        } else {
            None
        }
    }

    /// Resolves and qualifies a relation name in place. `None` for names
    /// left to DataFusion (system schemas).
    pub(crate) fn resolve_name(&self, name: &mut ObjectName) -> Result<Option<Relation>, Error> {
        let parts: Vec<Ident> = name
            .0
            .iter()
            .filter_map(ObjectNamePart::as_ident)
            .cloned()
            .collect();
        if parts.len() != name.0.len() {
            return Ok(None);
        }
        let (schema_ident, relation_ident) = match parts.as_slice() {
            [relation] => (None, relation.clone()),
            [schema, relation] => (Some(schema.clone()), relation.clone()),
            [database, schema, relation] => {
                if normalize_ident(database) != DEFAULT_DATABASE {
                    return Err(Error::FeatureNotSupported(format!(
                        "cross-database references are not implemented: {name}"
                    )));
                }
                (Some(schema.clone()), relation.clone())
            }
            _ => return Ok(None),
        };
        let relation_name = normalize_ident(&relation_ident);
        let (base_name, _) = split_version(&relation_name);
        let found = match &schema_ident {
            Some(schema) => {
                let schema_name = normalize_ident(schema);
                if is_system_schema(&schema_name) {
                    return Ok(None);
                }
                self.lookup(&schema_name, base_name)
                    .ok_or_else(|| Error::UndefinedTable {
                        name: format!("{schema_name}.{relation_name}"),
                        position: self.position(schema),
                    })?
            }
            None => self
                .temp
                .filter(|temp| temp.contains(base_name))
                .map(|_| Relation::Temporary(base_name.to_string()))
                .or_else(|| {
                    self.search_path
                        .iter()
                        .find_map(|schema| self.lookup(schema, base_name))
                })
                .ok_or_else(|| Error::UndefinedTable {
                    name: relation_name.clone(),
                    position: self.position(&relation_ident),
                })?,
        };
        let qualified = match &found {
            Relation::Table(q)
            | Relation::FeatureView(q)
            | Relation::FeatureService(q)
            | Relation::View(q) => q.clone(),
            Relation::Temporary(name) => {
                if self.mode == ResolveMode::Definition {
                    return Err(Error::FeatureNotSupported(format!(
                        "cannot read temporary table {name} in a definition: views and feature \
                         views outlive the session"
                    )));
                }
                QualifiedName::new(TEMP_SCHEMA, name)
            }
        };
        let needs_qualifier = self.mode == ResolveMode::Definition
            || matches!(found, Relation::Temporary(_))
            || schema_ident.is_none() && qualified.schema != self.default_schema;
        if matches!(found, Relation::Temporary(_)) {
            // Whatever the qualifier (none, pg_temp, pg_temp_<pid>, with the
            // database), DataFusion knows the schema as pg_temp.
            name.0 = vec![
                ObjectNamePart::Identifier(identifier(TEMP_SCHEMA)),
                ObjectNamePart::Identifier(relation_ident),
            ];
        } else if needs_qualifier && parts.len() == 1 {
            name.0 = vec![
                ObjectNamePart::Identifier(identifier(&qualified.schema)),
                ObjectNamePart::Identifier(relation_ident),
            ];
        }
        Ok(Some(found))
    }

    fn record(&self, kind: ObjectKind, name: QualifiedName, version: Option<u32>) {
        self.dependencies.borrow_mut().insert(Dependency {
            kind,
            name,
            version,
        });
    }

    /// Records that the statement reads `table`.
    pub(crate) fn record_table(&self, table: QualifiedName) {
        self.record(ObjectKind::Table, table, None);
    }

    /// A resolver for the body of a feature view being expanded.
    pub(crate) fn nested(&self) -> Result<NameResolver<'a>, Error> {
        if self.depth >= MAX_VIEW_DEPTH {
            return Err(Error::FeatureNotSupported(
                "feature views are nested too deeply (is there a cycle?)".to_string(),
            ));
        }
        let mut nested = NameResolver::new(
            self.store,
            self.registry,
            self.search_path.clone(),
            self.default_schema,
            "",
            ResolveMode::Definition,
        );
        nested.depth = self.depth + 1;
        nested.temp = self.temp;
        Ok(nested)
    }

    fn rewrite_table_factor(
        &self,
        table_factor: &mut TableFactor,
        ctes: &[HashSet<String>],
    ) -> Result<(), Error> {
        let TableFactor::Table {
            name,
            args: None,
            version,
            alias,
            ..
        } = table_factor
        else {
            return Ok(());
        };
        if name.0.len() == 1
            && let Some(ident) = name.0[0].as_ident()
        {
            let normalized = normalize_ident(ident);
            if ctes.iter().any(|scope| scope.contains(&normalized)) {
                return Ok(());
            }
        }
        let Some(relation) = self.resolve_name(name)? else {
            return Ok(());
        };
        let relation_name = name
            .0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .map(normalize_ident)
            .unwrap_or_default();
        let (base, pinned) = split_version(&relation_name);
        let base = base.to_string();
        match relation {
            Relation::Temporary(name) => {
                if version.is_some() || pinned.is_some() {
                    return Err(Error::FeatureNotSupported(format!(
                        "FOR SYSTEM_TIME and VERSION apply to feature views; {name} is a temporary table"
                    )));
                }
                Ok(())
            }
            Relation::Table(qualified) => {
                if version.is_some() || pinned.is_some() {
                    return Err(Error::FeatureNotSupported(format!(
                        "FOR SYSTEM_TIME and VERSION apply to feature views; {qualified} is a table"
                    )));
                }
                self.record(ObjectKind::Table, qualified, None);
                Ok(())
            }
            Relation::FeatureView(qualified) => {
                self.record(ObjectKind::FeatureView, qualified.clone(), pinned);
                if !self.expand {
                    return Ok(());
                }
                let clause = TemporalClause::from_version(version.take(), self.mode)?;
                let subquery = temporal::view_subquery(self, &qualified, pinned, &clause)?;
                let alias = alias.take().unwrap_or_else(|| temporal::alias(&base));
                *table_factor = derived(subquery, alias);
                Ok(())
            }
            Relation::FeatureService(qualified) => {
                if pinned.is_some() {
                    return Err(Error::FeatureNotSupported(format!(
                        "VERSION applies to feature views; {qualified} is a feature service"
                    )));
                }
                self.record(ObjectKind::FeatureService, qualified.clone(), None);
                if !self.expand {
                    return Ok(());
                }
                let clause = TemporalClause::from_version(version.take(), ResolveMode::Query)?;
                let subquery = temporal::service_subquery(self, &qualified, &clause)?;
                let alias = alias.take().unwrap_or_else(|| temporal::alias(&base));
                *table_factor = derived(subquery, alias);
                Ok(())
            }
            Relation::View(qualified) => {
                if version.is_some() || pinned.is_some() {
                    return Err(Error::FeatureNotSupported(format!(
                        "FOR SYSTEM_TIME and VERSION apply to feature views; {qualified} is a view"
                    )));
                }
                self.record(ObjectKind::View, qualified.clone(), None);
                if !self.expand {
                    return Ok(());
                }
                let view = &self.registry.sql_views[&qualified];
                let mut subquery = super::ddl::view_query(view)?;
                // Read as a query is: feature views inside as of now.
                let mut nested = self.nested()?;
                nested.mode = ResolveMode::Query;
                nested.resolve_query(&mut subquery)?;
                let alias = alias.take().unwrap_or_else(|| temporal::alias(&base));
                *table_factor = derived(subquery, alias);
                Ok(())
            }
        }
    }
}

/// The relation `(subquery) AS alias` replacing a feature view or service.
fn derived(subquery: Box<Query>, alias: TableAlias) -> TableFactor {
    TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(alias),
        sample: None,
    }
}

/// An identifier for `name`, quoted only where SQL needs it.
fn identifier(name: &str) -> Ident {
    if featuredb_catalog::names::quote_ident(name) == name {
        Ident::new(name)
    } else {
        Ident::with_quote('"', name)
    }
}

struct Visitor<'r, 'a> {
    resolver: &'r NameResolver<'a>,
    /// Names of common table expressions in scope, innermost last.
    cte_scopes: Vec<HashSet<String>>,
}

impl VisitorMut for Visitor<'_, '_> {
    type Break = Box<Error>;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        let names = query
            .with
            .as_ref()
            .map(|with| {
                with.cte_tables
                    .iter()
                    .map(|cte| normalize_ident(&cte.alias.name))
                    .collect()
            })
            .unwrap_or_default();
        self.cte_scopes.push(names);
        // AS OF joins are rewritten before their relations are resolved:
        // what they become depends on the join around them.
        if self.resolver.expand
            && let Err(e) = super::asof::ast::rewrite_query(self.resolver, query, &self.cte_scopes)
        {
            return ControlFlow::Break(Box::new(e));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<Self::Break> {
        self.cte_scopes.pop();
        ControlFlow::Continue(())
    }

    // After the children: a factor replaced by a subquery is not visited
    // again (its subquery was resolved when it was built).
    fn post_visit_table_factor(
        &mut self,
        table_factor: &mut TableFactor,
    ) -> ControlFlow<Self::Break> {
        match self
            .resolver
            .rewrite_table_factor(table_factor, &self.cte_scopes)
        {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(Box::new(e)),
        }
    }
}

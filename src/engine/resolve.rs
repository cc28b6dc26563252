//! Resolving table names the way PostgreSQL does, before DataFusion plans.
//!
//! DataFusion knows one default schema; PostgreSQL searches every schema of
//! `search_path` in order. Unqualified names that live in a later schema are
//! qualified here, and references to tables that exist nowhere fail with
//! PostgreSQL's error (`relation "x" does not exist`, 42P01, with the
//! position of the name) instead of a planner message.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, Statement, TableFactor, TableObject, VisitMut,
    VisitorMut,
};
use featuredb_catalog::{DEFAULT_DATABASE, is_system_schema};
use featuredb_sql::error::char_position;
use featuredb_sql::names::normalize_ident;

use crate::error::Error;
use crate::offline::OfflineStore;

pub struct NameResolver<'a> {
    pub store: &'a OfflineStore,
    /// Existing schemas of `search_path`, in order.
    pub search_path: &'a [String],
    /// The schema DataFusion resolves unqualified names in.
    pub default_schema: &'a str,
    /// The statement text, to turn spans into positions.
    pub sql: &'a str,
}

impl NameResolver<'_> {
    pub fn resolve(&self, statement: &mut Statement) -> Result<(), Error> {
        if let Statement::Insert(insert) = statement
            && let TableObject::TableName(name) = &mut insert.table
        {
            self.resolve_name(name)?;
        }
        let mut visitor = Visitor {
            resolver: self,
            cte_scopes: Vec::new(),
        };
        match statement.visit(&mut visitor) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(err) => Err(*err),
        }
    }

    fn position(&self, ident: &Ident) -> Option<usize> {
        char_position(self.sql, ident.span.start.line, ident.span.start.column)
    }

    fn resolve_name(&self, name: &mut ObjectName) -> Result<(), Error> {
        let parts: Vec<&Ident> = name.0.iter().filter_map(ObjectNamePart::as_ident).collect();
        if parts.len() != name.0.len() {
            return Ok(());
        }
        match parts.as_slice() {
            [table] => {
                let table_name = normalize_ident(table);
                let found = self.search_path.iter().find(|schema| {
                    self.store.table(schema, &table_name).is_some()
                        || self.store.broken_table(schema, &table_name).is_some()
                });
                match found {
                    Some(schema) if schema == self.default_schema => Ok(()),
                    Some(schema) => {
                        let ident = (*table).clone();
                        name.0 = vec![
                            ObjectNamePart::Identifier(Ident::with_quote('"', schema.clone())),
                            ObjectNamePart::Identifier(ident),
                        ];
                        Ok(())
                    }
                    None => Err(Error::UndefinedTable {
                        name: table_name,
                        position: self.position(table),
                    }),
                }
            }
            [schema, table] => self.check_qualified(schema, table),
            [database, schema, table] => {
                let database_name = normalize_ident(database);
                if database_name != DEFAULT_DATABASE {
                    return Err(Error::FeatureNotSupported(format!(
                        "cross-database references are not implemented: {name}"
                    )));
                }
                self.check_qualified(schema, table)
            }
            _ => Ok(()),
        }
    }

    fn check_qualified(&self, schema: &Ident, table: &Ident) -> Result<(), Error> {
        let schema_name = normalize_ident(schema);
        if is_system_schema(&schema_name) {
            return Ok(());
        }
        let table_name = normalize_ident(table);
        if self.store.table(&schema_name, &table_name).is_some()
            || self.store.broken_table(&schema_name, &table_name).is_some()
        {
            return Ok(());
        }
        Err(Error::UndefinedTable {
            name: format!("{schema_name}.{table_name}"),
            position: self.position(schema),
        })
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
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<Self::Break> {
        self.cte_scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(
        &mut self,
        table_factor: &mut TableFactor,
    ) -> ControlFlow<Self::Break> {
        if let TableFactor::Table {
            name, args: None, ..
        } = table_factor
        {
            if name.0.len() == 1
                && let Some(ident) = name.0[0].as_ident()
            {
                let normalized = normalize_ident(ident);
                if self
                    .cte_scopes
                    .iter()
                    .any(|scope| scope.contains(&normalized))
                {
                    return ControlFlow::Continue(());
                }
            }
            if let Err(err) = self.resolver.resolve_name(name) {
                return ControlFlow::Break(Box::new(err));
            }
        }
        ControlFlow::Continue(())
    }
}

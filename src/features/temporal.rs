//! Reading feature views as temporal tables.
//!
//! A feature view holds rows (key, event time, features). Read at time t
//! (`FOR SYSTEM_TIME AS OF t`, or now() by default) it is the latest row
//! per key with event time ≤ t, among rows not older than t − TTL, rows
//! with a NULL key never counting; `FOR SYSTEM_TIME ALL` is every row.
//!
//! Until views are materialized this is computed from the view's defining
//! query, as SQL that DataFusion plans (so filters on keys and time reach
//! the table scans): a `row_number()` over each key's rows, newest first.
//! Ties on event time go to the row written last where the view reads one
//! table (its write order is known); otherwise they are broken by the
//! feature values, deterministically.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Query, TableAlias, TableVersion, visit_expressions,
};
use featuredb_catalog::names::quote_ident;
use featuredb_catalog::{FeatureViewVersion, QualifiedName};
use featuredb_sql::Statement;
use featuredb_sql::temporal::ALL_HISTORY;

use super::resolve::{NameResolver, ResolveMode};
use crate::error::Error;
use crate::offline::OfflineStore;
use crate::offline::write_order::{WRITE_ORDER_COLUMN, WRITE_ORDERED_FUNCTION};

/// Which rows of a feature view a read wants.
#[derive(Debug, Clone)]
pub enum TemporalClause {
    /// As of the current time.
    Now,
    /// As of a constant time expression.
    AsOf(Box<Expr>),
    /// The whole history.
    All,
    /// The whole history as the right side of an AS OF join: with a
    /// column `tie_column` that orders rows with the same key and event
    /// time (greatest wins: the row written last, see `asof/`).
    AsOfJoinHistory { tie_column: String },
}

impl TemporalClause {
    /// The clause of a table reference; without one, queries read the
    /// current state and view definitions the whole history.
    pub fn from_version(version: Option<TableVersion>, mode: ResolveMode) -> Result<Self, Error> {
        match version {
            None => Ok(match mode {
                ResolveMode::Query => TemporalClause::Now,
                ResolveMode::Definition => TemporalClause::All,
            }),
            Some(TableVersion::ForSystemTimeAsOf(Expr::Identifier(ident)))
                if ident.value.eq_ignore_ascii_case(ALL_HISTORY) =>
            {
                Ok(TemporalClause::All)
            }
            Some(TableVersion::ForSystemTimeAsOf(Expr::Identifier(ident)))
                if ident.value.starts_with(super::asof::TIE_COLUMN_PREFIX) =>
            {
                Ok(TemporalClause::AsOfJoinHistory {
                    tie_column: ident.value,
                })
            }
            Some(TableVersion::ForSystemTimeAsOf(expr)) => {
                let mut column = None;
                let _ = visit_expressions(&expr, |e| {
                    if let Expr::Identifier(_) | Expr::CompoundIdentifier(_) = e {
                        column = Some(e.to_string());
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                });
                if let Some(column) = column {
                    return Err(Error::FeatureNotSupported(format!(
                        "FOR SYSTEM_TIME AS OF needs a time that does not depend on other rows \
                         (found {column}); to read features at each row's own time, use an AS OF join"
                    )));
                }
                Ok(TemporalClause::AsOf(Box::new(expr)))
            }
            Some(other) => Err(Error::FeatureNotSupported(format!(
                "{other} is not supported; use FOR SYSTEM_TIME AS OF … or name VERSION n"
            ))),
        }
    }
}

/// The alias a replaced reference keeps, so `view.column` still resolves.
pub fn alias(name: &str) -> TableAlias {
    TableAlias {
        explicit: true,
        name: Ident::with_quote('"', name),
        columns: vec![],
    }
}

fn column_list(columns: impl Iterator<Item = String>) -> String {
    columns
        .map(|c| quote_ident(&c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SQL of a feature view version read with `clause`.
pub fn view_sql(view: &FeatureViewVersion, clause: &TemporalClause) -> String {
    let columns = column_list(view.columns.iter().map(|c| c.name.clone()));
    let time = match clause {
        TemporalClause::All => {
            return format!(
                "SELECT {columns} FROM ({}) AS featuredb_history",
                view.query
            );
        }
        TemporalClause::AsOfJoinHistory { tie_column } => {
            return as_of_join_history_sql(view, &columns, tie_column);
        }
        TemporalClause::Now => "now()".to_string(),
        TemporalClause::AsOf(expr) => format!("({expr})"),
    };
    // The time as the event time's type: a parameter gets that type, and
    // a timestamptz read against a timestamp column becomes wall-clock
    // time in the session zone (see timestamps.rs).
    let time = match view.columns.iter().find(|c| c.name == view.timestamp) {
        Some(column) => format!("CAST({time} AS {})", column.data_type),
        None => time,
    };
    // Windowed features are aggregated at the time read, not taken from
    // the newest row (see `windows`). Definitions were checked when
    // stored.
    if let Ok(Some(windowed)) = super::windows::windowed_view(view) {
        return super::windows::as_of_sql(view, &windowed, &time);
    }
    let history = format!(
        "({}) AS featuredb_history",
        view.write_ordered_query.as_deref().unwrap_or(&view.query)
    );
    let ts = quote_ident(&view.timestamp);
    let mut conditions: Vec<String> = view
        .keys
        .iter()
        .map(|k| format!("{} IS NOT NULL", quote_ident(k)))
        .collect();
    conditions.push(format!("{ts} <= {time}"));
    if let Some(ttl) = &view.ttl {
        // "Not older than t − TTL": a row exactly TTL old still counts.
        conditions.push(format!("{ts} >= {time} - {ttl}"));
    }
    let partition = column_list(view.keys.iter().cloned());
    // Ties on event time: the row written last where the write order is
    // known, otherwise a deterministic order on the features.
    let mut order = vec![format!("{ts} DESC")];
    if view.write_ordered_query.is_some() {
        order.push(format!("{WRITE_ORDER_COLUMN} DESC"));
    } else {
        order.extend(
            view.features()
                .map(|c| format!("{} DESC NULLS LAST", quote_ident(&c.name))),
        );
    }
    format!(
        "SELECT {columns} FROM (SELECT *, row_number() OVER (PARTITION BY {partition} ORDER BY {order}) AS featuredb_rank \
         FROM {history} WHERE {conditions}) AS featuredb_ranked WHERE featuredb_rank = 1",
        order = order.join(", "),
        conditions = conditions.join(" AND "),
    )
}

/// A view's history with the column that breaks ties on event time: the
/// write order where it is known, otherwise the rank of the row by its
/// features as [`view_sql`] orders them (negated: greatest wins).
fn as_of_join_history_sql(view: &FeatureViewVersion, columns: &str, tie_column: &str) -> String {
    let tie = quote_ident(tie_column);
    if let Some(query) = &view.write_ordered_query {
        return format!(
            "SELECT {columns}, {WRITE_ORDER_COLUMN} AS {tie} FROM ({query}) AS featuredb_history"
        );
    }
    let order: Vec<String> = view
        .features()
        .map(|c| format!("{} DESC NULLS LAST", quote_ident(&c.name)))
        .collect();
    if order.is_empty() {
        return format!(
            "SELECT {columns}, CAST(0 AS BIGINT) AS {tie} FROM ({}) AS featuredb_history",
            view.query
        );
    }
    let partition = column_list(
        view.keys
            .iter()
            .cloned()
            .chain(std::iter::once(view.timestamp.clone())),
    );
    format!(
        "SELECT {columns}, -CAST(row_number() OVER (PARTITION BY {partition} ORDER BY {}) AS BIGINT) AS {tie} \
         FROM ({}) AS featuredb_history",
        order.join(", "),
        view.query
    )
}

/// `query` rewritten to read its table in write order and to output
/// [`WRITE_ORDER_COLUMN`], if it is a plain SELECT over one base table
/// (projections, filters, no grouping or windows), the shape in which
/// "the row written last" means something. `query` is a stored
/// definition, its names already qualified.
pub fn write_ordered_query(query: &Query, store: &OfflineStore) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{GroupByExpr, SelectItem, SetExpr, TableFactor};
    if query.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let plain = select.from.len() == 1
        && select.from[0].joins.is_empty()
        && select.distinct.is_none()
        && select.having.is_none()
        && select.named_window.is_empty()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if !plain || has_window_function(&select.projection) {
        return None;
    }
    let TableFactor::Table {
        name,
        args: None,
        version: None,
        alias,
        ..
    } = &select.from[0].relation
    else {
        return None;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(featuredb_sql::names::normalize_ident))
        .collect::<Option<_>>()?;
    let [schema, table] = parts.as_slice() else {
        return None;
    };
    store.table(schema, table)?;
    let alias_name = alias
        .as_ref()
        .map(|a| a.name.value.clone())
        .unwrap_or_else(|| table.clone());
    let replacement = parse_query(&format!(
        "SELECT 1 FROM {WRITE_ORDERED_FUNCTION}({}, {}) AS {}",
        sql_string(schema),
        sql_string(table),
        quote_ident(&alias_name)
    ))
    .ok()?;
    let SetExpr::Select(replacement) = *replacement.body else {
        return None;
    };
    let mut rewritten = query.clone();
    let SetExpr::Select(select) = rewritten.body.as_mut() else {
        return None;
    };
    select.from[0].relation = replacement.from[0].relation.clone();
    // A wildcard already brings the column along.
    let has_wildcard = select.projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    if !has_wildcard {
        select
            .projection
            .push(SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(
                WRITE_ORDER_COLUMN,
            ))));
    }
    Some(rewritten.to_string())
}

fn has_window_function(projection: &[datafusion::sql::sqlparser::ast::SelectItem]) -> bool {
    let mut found = false;
    for item in projection {
        let _ = visit_expressions(item, |e| {
            if let Expr::Function(f) = e
                && f.over.is_some()
            {
                found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
    }
    found
}

fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

pub(crate) fn parse_query(sql: &str) -> Result<Box<Query>, Error> {
    match featuredb_sql::parse_statement(sql)? {
        Statement::Query(statement) => match *statement {
            datafusion::sql::sqlparser::ast::Statement::Query(query) => Ok(query),
            _ => Err(Error::internal("temporal rewrite produced a non-query")),
        },
        _ => Err(Error::internal("temporal rewrite produced a non-query")),
    }
}

pub(crate) fn view_version<'v>(
    resolver: &'v NameResolver<'_>,
    name: &QualifiedName,
    version: Option<u32>,
) -> Result<&'v FeatureViewVersion, Error> {
    let view = resolver
        .registry
        .views
        .get(name)
        .ok_or_else(|| Error::UndefinedTable {
            name: name.to_string(),
            position: None,
        })?;
    match version {
        None => Ok(view.current()),
        Some(version) => view.version(version).ok_or_else(|| Error::UndefinedObject {
            message: format!(
                "feature view {name} has no version {version} (versions 1 to {})",
                view.current().version
            ),
        }),
    }
}

/// The subquery replacing a reference to a feature view.
pub fn view_subquery(
    resolver: &NameResolver<'_>,
    name: &QualifiedName,
    version: Option<u32>,
    clause: &TemporalClause,
) -> Result<Box<Query>, Error> {
    let view = view_version(resolver, name, version)?;
    if let TemporalClause::AsOfJoinHistory { .. } = clause
        && super::windows::windowed_view(view)?.is_some()
    {
        return Err(Error::FeatureNotSupported(format!(
            "AS OF joins with windowed feature view {name} are not supported yet; read it \
             FOR SYSTEM_TIME AS OF a time, or join its history (FOR SYSTEM_TIME ALL)"
        )));
    }
    let mut query = parse_query(&view_sql(view, clause))?;
    resolver.nested()?.resolve_query(&mut query)?;
    Ok(query)
}

/// The subquery replacing a reference to a feature service: for every key
/// any of its views holds at that time, the features from each view.
pub fn service_subquery(
    resolver: &NameResolver<'_>,
    name: &QualifiedName,
    clause: &TemporalClause,
) -> Result<Box<Query>, Error> {
    match clause {
        TemporalClause::All => {
            return Err(Error::FeatureNotSupported(
                "FOR SYSTEM_TIME ALL is not defined for feature services; read their views"
                    .to_string(),
            ));
        }
        TemporalClause::AsOfJoinHistory { .. } => {
            return Err(Error::FeatureNotSupported(
                "AS OF joins read feature views; join each view of the service".to_string(),
            ));
        }
        _ => {}
    }
    let service = resolver
        .registry
        .services
        .get(name)
        .ok_or_else(|| Error::UndefinedTable {
            name: name.to_string(),
            position: None,
        })?
        .current();
    // One subquery per (view, version) the service reads.
    let mut sources: Vec<(QualifiedName, Option<u32>)> = Vec::new();
    for feature in &service.features {
        let source = (feature.view.clone(), feature.view_version);
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    let keys: Vec<String> = service.keys.iter().map(|k| k.name.clone()).collect();
    let mut view_sqls = Vec::new();
    for (view, version) in &sources {
        view_sqls.push(view_sql(view_version(resolver, view, *version)?, clause));
    }
    let key_list = column_list(keys.iter().cloned());
    let all_keys = view_sqls
        .iter()
        .enumerate()
        .map(|(i, sql)| format!("SELECT {key_list} FROM ({sql}) AS featuredb_keys_{i}"))
        .collect::<Vec<_>>()
        .join(" UNION ");
    let mut select: Vec<String> = keys
        .iter()
        .map(|k| format!("featuredb_keys.{}", quote_ident(k)))
        .collect();
    for feature in &service.features {
        let index = sources
            .iter()
            .position(|s| s.0 == feature.view && s.1 == feature.view_version)
            .expect("every feature's source was collected");
        select.push(format!(
            "featuredb_source_{index}.{} AS {}",
            quote_ident(&feature.feature),
            quote_ident(&feature.output_name)
        ));
    }
    let joins: Vec<String> = view_sqls
        .iter()
        .enumerate()
        .map(|(i, sql)| {
            let on = keys
                .iter()
                .map(|k| {
                    format!(
                        "featuredb_source_{i}.{k} = featuredb_keys.{k}",
                        k = quote_ident(k)
                    )
                })
                .collect::<Vec<_>>()
                .join(" AND ");
            format!("LEFT JOIN ({sql}) AS featuredb_source_{i} ON {on}")
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM ({all_keys}) AS featuredb_keys {}",
        select.join(", "),
        joins.join(" ")
    );
    let mut query = parse_query(&sql)?;
    resolver.nested()?.resolve_query(&mut query)?;
    Ok(query)
}

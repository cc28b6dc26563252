//! AS OF joins in the AST, before DataFusion plans it.
//!
//! Two shapes arrive here: `JoinOperator::AsOf` (every ASOF syntax, see
//! `featuredb_sql::asof`) and an ordinary `[LEFT] JOIN fv FOR SYSTEM_TIME
//! AS OF <expr> ON …` whose time depends on the left side. Each becomes an
//! ordinary INNER or LEFT join that DataFusion plans, its condition headed
//! by the marker `featuredb_asof_join(tolerance, ttl, tie)`; the analyzer
//! rule in `logical.rs` turns the marked join into the AS OF operator.
//!
//! Ties on time go to the row written last, so the right side is read with
//! its write order as a hidden column (`featuredb_asof_tie_N`): a table
//! through `featuredb_write_ordered`, a feature view through its history
//! (`temporal.rs`). `SELECT *` at the join's level excludes that column.
//! Other relations (subqueries, CTEs) have no write order; their ties go
//! to the row that comes last in their output.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, ExcludeSelectItem, Expr, Ident, Join, JoinConstraint, JoinOperator, ObjectName,
    Query, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor, TableVersion,
    TableWithJoins, WildcardAdditionalOptions, visit_expressions,
};
use featuredb_catalog::names::quote_ident;
use featuredb_sql::asof::{AsOfKind, AsOfSpec};
use featuredb_sql::names::normalize_ident;
use featuredb_sql::temporal::{ALL_HISTORY, split_version};

use super::{MARKER_FUNCTION, TIE_COLUMN_PREFIX};
use crate::error::Error;
use crate::features::resolve::{NameResolver, Relation};
use crate::features::temporal::{parse_query, view_version};
use crate::offline::write_order::WRITE_ORDERED_FUNCTION;

/// Rewrites the AS OF joins of `query`'s own SELECTs (nested queries are
/// visited on their own). `ctes` are the CTE names in scope.
pub fn rewrite_query(
    resolver: &NameResolver<'_>,
    query: &mut Query,
    ctes: &[HashSet<String>],
) -> Result<(), Error> {
    rewrite_set_expr(resolver, query.body.as_mut(), ctes)
}

fn rewrite_set_expr(
    resolver: &NameResolver<'_>,
    body: &mut SetExpr,
    ctes: &[HashSet<String>],
) -> Result<(), Error> {
    match body {
        SetExpr::Select(select) => {
            let mut rewriter = SelectRewriter {
                resolver,
                ctes,
                hidden: Vec::new(),
            };
            for from in &mut select.from {
                rewriter.table_with_joins(from)?;
            }
            rewriter.exclude_hidden(&select.from, &mut select.projection)
        }
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(resolver, left, ctes)?;
            rewrite_set_expr(resolver, right, ctes)
        }
        _ => Ok(()),
    }
}

struct SelectRewriter<'r, 'a> {
    resolver: &'r NameResolver<'a>,
    ctes: &'r [HashSet<String>],
    /// What `*` leaves out, per relation rewritten.
    hidden: Vec<Hidden>,
}

/// Columns of an AS OF join's right side that `*` does not show.
struct Hidden {
    alias: String,
    /// The write-order column.
    tie: Option<String>,
    /// USING columns: `*` shows the spine's.
    using: Vec<String>,
}

/// What the right side of an AS OF join is.
struct RightSide {
    /// The name its columns are qualified with.
    alias: Option<String>,
    tie: Option<String>,
    ttl: Option<String>,
    /// A feature view's event-time column.
    time_column: Option<String>,
}

impl SelectRewriter<'_, '_> {
    fn table_with_joins(&mut self, from: &mut TableWithJoins) -> Result<(), Error> {
        self.nested(&mut from.relation)?;
        let mut left_alias = factor_alias(&from.relation);
        for (i, join) in from.joins.iter_mut().enumerate() {
            self.nested(&mut join.relation)?;
            // USING names the spine's columns unqualified: only a single
            // relation on the left says whose they are.
            let single_left = if i == 0 { left_alias.take() } else { None };
            self.join(join, single_left)?;
        }
        Ok(())
    }

    fn nested(&mut self, factor: &mut TableFactor) -> Result<(), Error> {
        if let TableFactor::NestedJoin {
            table_with_joins, ..
        } = factor
        {
            self.table_with_joins(table_with_joins)?;
        }
        Ok(())
    }

    fn join(&mut self, join: &mut Join, single_left: Option<String>) -> Result<(), Error> {
        let (kind, spec, constraint, time) = match &join.join_operator {
            JoinOperator::AsOf {
                match_condition,
                constraint,
            } => {
                let spec = AsOfSpec::take(match_condition)
                    .ok_or_else(|| Error::internal("ASOF join without its specification marker"))?;
                (spec.kind, Some(spec), constraint.clone(), None)
            }
            operator => {
                let Some(time) = as_of_column_time(&join.relation) else {
                    return Ok(());
                };
                let (kind, constraint) = match operator {
                    JoinOperator::Join(c) | JoinOperator::Inner(c) => (AsOfKind::Inner, c),
                    JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (AsOfKind::Left, c),
                    _ => {
                        return Err(Error::FeatureNotSupported(format!(
                            "FOR SYSTEM_TIME AS OF {time} reads a feature view at each row's time: \
                             write JOIN or LEFT JOIN … ON the keys"
                        )));
                    }
                };
                (kind, None, constraint.clone(), Some(time))
            }
        };
        let number = self.hidden.len() + 1;
        let tie_column = format!("{TIE_COLUMN_PREFIX}{number}");
        let right = self.right_side(&mut join.relation, &tie_column, time.is_some())?;
        let mut hidden = right.alias.clone().map(|alias| Hidden {
            alias,
            tie: right.tie.clone(),
            using: Vec::new(),
        });
        let qualified = |column: &str| match &right.alias {
            Some(alias) => format!("{}.{}", quote_ident(alias), quote_ident(column)),
            None => quote_ident(column),
        };
        let tolerance = spec
            .as_ref()
            .and_then(|s| s.tolerance.as_ref())
            .map(|t| t.to_string());
        let marker = parse_expr(&format!(
            "{MARKER_FUNCTION}({}, {}, {})",
            tolerance.as_deref().unwrap_or("NULL"),
            right.ttl.as_deref().unwrap_or("NULL"),
            right
                .tie
                .as_deref()
                .map(qualified)
                .as_deref()
                .unwrap_or("NULL"),
        ))?;
        let mut conditions = vec![marker];
        if let Some(condition) = spec.and_then(|s| s.match_condition) {
            conditions.push(condition);
        }
        if let Some(time) = &time {
            let column = right.time_column.as_deref().ok_or_else(|| {
                Error::internal("an AS OF join on a feature view without its time column")
            })?;
            conditions.push(parse_expr(&format!("({time}) >= {}", qualified(column)))?);
        }
        let constraint = match constraint {
            JoinConstraint::On(on) => {
                conditions.push(on);
                JoinConstraint::On(conjunction(conditions))
            }
            JoinConstraint::Using(columns) => {
                // USING (keys…, time) is ON left.key = right.key … AND
                // left.time >= right.time; `*` shows the spine's columns.
                if conditions.len() > 1 {
                    return Err(Error::InvalidJoinCondition(
                        "ASOF JOIN … USING takes its time from the last USING column; \
                         with MATCH_CONDITION or AS OF, write ON"
                            .to_string(),
                    ));
                }
                let (Some(left), Some(right_alias)) = (&single_left, &right.alias) else {
                    return Err(Error::InvalidJoinCondition(
                        "ASOF JOIN … USING needs one named relation on each side; write ON instead"
                            .to_string(),
                    ));
                };
                let names: Vec<String> = columns
                    .iter()
                    .map(|c| c.0.last().and_then(|p| p.as_ident()).map(normalize_ident))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        Error::InvalidJoinCondition("USING takes column names".to_string())
                    })?;
                for (i, name) in names.iter().enumerate() {
                    let op = if i + 1 == names.len() { ">=" } else { "=" };
                    conditions.push(parse_expr(&format!(
                        "{}.{c} {op} {}.{c}",
                        quote_ident(left),
                        quote_ident(right_alias),
                        c = quote_ident(name)
                    ))?);
                }
                if let Some(hidden) = hidden.as_mut() {
                    hidden.using = names;
                }
                JoinConstraint::On(conjunction(conditions))
            }
            JoinConstraint::Natural | JoinConstraint::None => {
                return Err(Error::InvalidJoinCondition(
                    "ASOF JOIN needs ON keys AND an inequality on time, or USING (keys…, time)"
                        .to_string(),
                ));
            }
        };
        self.hidden.extend(hidden);
        join.join_operator = match kind {
            AsOfKind::Inner => JoinOperator::Inner(constraint),
            AsOfKind::Left => JoinOperator::LeftOuter(constraint),
        };
        Ok(())
    }

    /// Reads the right side in write order where it has one and finds out
    /// what it is.
    fn right_side(
        &self,
        relation: &mut TableFactor,
        tie_column: &str,
        as_of_column: bool,
    ) -> Result<RightSide, Error> {
        let mut side = RightSide {
            alias: factor_alias(relation),
            tie: None,
            ttl: None,
            time_column: None,
        };
        let TableFactor::Table {
            name,
            args: None,
            version,
            alias,
            ..
        } = relation
        else {
            return not_a_view(side, as_of_column);
        };
        if let [part] = name.0.as_slice()
            && let Some(ident) = part.as_ident()
            && self
                .ctes
                .iter()
                .any(|scope| scope.contains(&normalize_ident(ident)))
        {
            return not_a_view(side, as_of_column);
        }
        let mut resolved_name = name.clone();
        let Some(found) = self.resolver.resolve_name(&mut resolved_name)? else {
            return not_a_view(side, as_of_column);
        };
        match found {
            Relation::Table(table) => {
                if as_of_column {
                    return not_a_view(side, true);
                }
                if version.is_some() {
                    return Err(Error::FeatureNotSupported(format!(
                        "FOR SYSTEM_TIME applies to feature views; {table} is a table"
                    )));
                }
                let alias_name = side.alias.clone().unwrap_or_else(|| table.name.clone());
                let mut query = parse_query(&format!(
                    "SELECT 1 FROM {WRITE_ORDERED_FUNCTION}({}, {}, {}) AS {}",
                    sql_string(&table.schema),
                    sql_string(&table.name),
                    sql_string(tie_column),
                    quote_ident(&alias_name)
                ))?;
                let SetExpr::Select(select) = query.body.as_mut() else {
                    return Err(Error::internal("write-ordered relation is not a SELECT"));
                };
                let mut replacement = select.from.remove(0).relation;
                if let (
                    TableFactor::Table {
                        alias: Some(new_alias),
                        ..
                    },
                    Some(old_alias),
                ) = (&mut replacement, alias.take())
                {
                    // Keep column aliases (`AS r(a, b)`) as written.
                    *new_alias = old_alias;
                }
                self.resolver.record_table(table);
                *relation = replacement;
                side.alias = Some(alias_name);
                side.tie = Some(tie_column.to_string());
                Ok(side)
            }
            // A plain view is read like the subquery it stands for.
            Relation::View(_) | Relation::Temporary(_) => not_a_view(side, as_of_column),
            Relation::FeatureView(view_name) => {
                match version {
                    None => {}
                    Some(TableVersion::ForSystemTimeAsOf(Expr::Identifier(i)))
                        if i.value.eq_ignore_ascii_case(ALL_HISTORY) => {}
                    Some(TableVersion::ForSystemTimeAsOf(_)) if as_of_column => {}
                    Some(other) => {
                        return Err(Error::FeatureNotSupported(format!(
                            "{other} cannot be combined with ASOF JOIN, which reads the view's history"
                        )));
                    }
                }
                let last = resolved_name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(normalize_ident)
                    .unwrap_or_default();
                let (base, pinned) = split_version(&last);
                let view = view_version(self.resolver, &view_name, pinned)?;
                side.alias = Some(side.alias.unwrap_or_else(|| base.to_string()));
                side.tie = Some(tie_column.to_string());
                side.ttl = view.ttl.clone();
                side.time_column = Some(view.timestamp.clone());
                // The name resolver expands the view into this history.
                *version = Some(TableVersion::ForSystemTimeAsOf(Expr::Identifier(
                    Ident::new(tie_column),
                )));
                Ok(side)
            }
            Relation::FeatureService(service) => Err(Error::FeatureNotSupported(format!(
                "AS OF joins read feature views; {service} is a feature service: join each of its views"
            ))),
        }
    }

    /// Keeps the hidden columns out of `*` and `alias.*`.
    fn exclude_hidden(
        &self,
        from: &[TableWithJoins],
        projection: &mut Vec<SelectItem>,
    ) -> Result<(), Error> {
        if self.hidden.is_empty() {
            return Ok(());
        }
        let ties: Vec<Ident> = self
            .hidden
            .iter()
            .filter_map(|h| h.tie.as_deref().map(Ident::new))
            .collect();
        let uses_using = self.hidden.iter().any(|h| !h.using.is_empty());
        let mut items = Vec::with_capacity(projection.len());
        for item in projection.drain(..) {
            match item {
                // With USING, `*` is spelled out relation by relation, so
                // that the right side's USING columns can be left out.
                SelectItem::Wildcard(_) if uses_using => {
                    for relation in from.iter().flat_map(|f| {
                        std::iter::once(&f.relation).chain(f.joins.iter().map(|j| &j.relation))
                    }) {
                        let alias = factor_alias(relation).ok_or_else(|| {
                            Error::FeatureNotSupported(
                                "SELECT * with ASOF JOIN … USING needs every relation named"
                                    .to_string(),
                            )
                        })?;
                        let mut options = WildcardAdditionalOptions::default();
                        if let Some(hidden) = self.hidden.iter().find(|h| h.alias == alias) {
                            let excluded: Vec<Ident> = hidden
                                .tie
                                .iter()
                                .chain(&hidden.using)
                                .map(|c| Ident::new(c.as_str()))
                                .collect();
                            if !excluded.is_empty() {
                                options.opt_exclude = Some(ExcludeSelectItem::Multiple(excluded));
                            }
                        }
                        items.push(SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(ObjectName::from(vec![
                                Ident::with_quote('"', alias),
                            ])),
                            options,
                        ));
                    }
                }
                SelectItem::Wildcard(mut options) => {
                    if !ties.is_empty() {
                        options.opt_exclude = Some(ExcludeSelectItem::Multiple(ties.clone()));
                    }
                    items.push(SelectItem::Wildcard(options));
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    mut options,
                ) => {
                    let qualifier = name
                        .0
                        .last()
                        .and_then(|p| p.as_ident())
                        .map(normalize_ident);
                    if let Some(tie) = self
                        .hidden
                        .iter()
                        .find(|h| Some(&h.alias) == qualifier.as_ref())
                        .and_then(|h| h.tie.as_deref())
                    {
                        options.opt_exclude = Some(ExcludeSelectItem::Single(Ident::new(tie)));
                    }
                    items.push(SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        options,
                    ));
                }
                other => items.push(other),
            }
        }
        *projection = items;
        Ok(())
    }
}

/// The error for a relation that is not a feature view on the right of
/// `FOR SYSTEM_TIME AS OF <column>`; otherwise the side as found.
fn not_a_view(side: RightSide, as_of_column: bool) -> Result<RightSide, Error> {
    if as_of_column {
        return Err(Error::FeatureNotSupported(
            "FOR SYSTEM_TIME AS OF a column reads a feature view at each row's time; \
             for tables and subqueries write ASOF JOIN … ON keys AND s.ts >= r.ts"
                .to_string(),
        ));
    }
    Ok(side)
}

/// The time of `fv FOR SYSTEM_TIME AS OF <expr>` when it refers to columns
/// (of the other side of the join).
fn as_of_column_time(relation: &TableFactor) -> Option<Expr> {
    let TableFactor::Table {
        version: Some(TableVersion::ForSystemTimeAsOf(expr)),
        ..
    } = relation
    else {
        return None;
    };
    let mut has_column = false;
    let _ = visit_expressions(expr, |e| {
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            has_column = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    match expr {
        Expr::Identifier(ident)
            if ident.value.eq_ignore_ascii_case(ALL_HISTORY)
                || ident.value.starts_with(TIE_COLUMN_PREFIX) =>
        {
            None
        }
        _ if has_column => Some(expr.clone()),
        _ => None,
    }
}

/// The name a relation's columns are qualified with.
fn factor_alias(factor: &TableFactor) -> Option<String> {
    match factor {
        TableFactor::Table { alias: Some(a), .. }
        | TableFactor::Derived { alias: Some(a), .. }
        | TableFactor::TableFunction { alias: Some(a), .. }
        | TableFactor::Function { alias: Some(a), .. }
        | TableFactor::UNNEST { alias: Some(a), .. } => Some(normalize_ident(&a.name)),
        TableFactor::Table { name, .. } => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| split_version(&normalize_ident(i)).0.to_string()),
        _ => None,
    }
}

fn conjunction(conditions: Vec<Expr>) -> Expr {
    conditions
        .into_iter()
        .map(|c| match c {
            c @ (Expr::Function(_) | Expr::Nested(_)) => c,
            c => Expr::Nested(Box::new(c)),
        })
        .reduce(|left, right| Expr::BinaryOp {
            left: Box::new(left),
            op: BinaryOperator::And,
            right: Box::new(right),
        })
        .expect("at least the marker")
}

fn parse_expr(sql: &str) -> Result<Expr, Error> {
    let query = parse_query(&format!("SELECT {sql}"))?;
    if let SetExpr::Select(select) = *query.body
        && let Some(SelectItem::UnnamedExpr(expr)) = select.projection.into_iter().next()
    {
        return Ok(expr);
    }
    Err(Error::internal(format!("not an expression: {sql}")))
}

fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

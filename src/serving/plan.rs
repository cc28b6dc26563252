//! Planning a lookup: which views hold its rows, where their values go,
//! how its keys are typed, and its select list — plain columns copied, or
//! expressions planned once by DataFusion over an empty relation of the
//! rows' columns.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalMonthDayNano, Schema, SchemaRef};
use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan};
use datafusion::sql::sqlparser::ast::{self, Expr, Query, SelectItem, SetExpr, Value};
use featuredb_catalog::names::quote_ident;
use featuredb_catalog::{ColumnType, FeatureViewVersion, QualifiedName, RegistryState};
use featuredb_sql::names::normalize_ident;

use super::service::LookupService;
use super::shape::{KeyMatch, ValueRef, column_name, is_whole_row, key_match, lookup_shape};
use crate::error::{Error, Result};
use crate::features::materialize::{shape_of, window_rows_shape};
use crate::features::temporal::parse_query;
use crate::features::windows::{WindowArguments, windowed_view};
use crate::features::{NameScope, Relation, ResolveMode, SqlPlanner};
use crate::online::readable_as_datum;
use crate::pgcompat::column_names::{postgres_column_names, rename_columns};

/// One view a lookup reads.
#[derive(Debug, Clone)]
pub(super) struct ViewPart {
    pub(super) name: QualifiedName,
    pub(super) version: u32,
    /// The definition's shape, when the materialized version differs from
    /// the planned one (a version that changed only TTL, ONLINE or
    /// descriptions); `None` when the versions were the same.
    pub(super) shape: Option<String>,
    /// The view's columns' types, as stored online.
    pub(super) types: Vec<DataType>,
    /// Positions of the key columns among the view's columns, in the
    /// lookup's key order.
    pub(super) key_positions: Vec<usize>,
    /// (row column, view column): where the view's values go.
    pub(super) mapping: Vec<(usize, usize)>,
    /// The inverse of `mapping`: for each view column, its row column.
    pub(super) targets: Vec<Option<usize>>,
    pub(super) ttl: Option<Ttl>,
    /// For a windowed view: how its rows (its base's) become the view's.
    pub(super) windows: Option<Arc<WindowedPart>>,
}

/// How a windowed view's stored rows (rows of its base query) become its
/// rows: its other columns copied, its windows computed at request time.
#[derive(Debug)]
pub(super) struct WindowedPart {
    pub(super) arguments: WindowArguments,
    /// The base's column types, as stored online.
    pub(super) base_types: Vec<DataType>,
    /// For each view column, where it comes from.
    pub(super) sources: Vec<WindowedSource>,
    /// Which rows in memory are the view's ([`shape_of`]).
    pub(super) shape: String,
    pub(super) unit: EventTimeUnit,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum WindowedSource {
    Base(usize),
    Window(usize),
}

/// The [`WindowedPart`] of `view`, if it has windowed features.
fn windowed_part(view: &FeatureViewVersion) -> Result<Option<WindowedPart>> {
    let (Some(base), Some(windowed)) = (&view.windowed_base, windowed_view(view)?) else {
        return Ok(None);
    };
    let arguments = WindowArguments::of(view, &windowed)?;
    let base_types = base
        .columns
        .iter()
        .map(|c| c.column_type.as_ref().map(ColumnType::to_arrow))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::internal("a windowed view's base has a column with no type"))?;
    let sources = view
        .columns
        .iter()
        .map(
            |c| match arguments.features.iter().position(|f| f.name == c.name) {
                Some(window) => Ok(WindowedSource::Window(window)),
                None => base
                    .columns
                    .iter()
                    .position(|b| b.name == c.name)
                    .map(WindowedSource::Base)
                    .ok_or_else(|| {
                        Error::internal(format!("column {} is not in the base", c.name))
                    }),
            },
        )
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(WindowedPart {
        arguments,
        base_types,
        sources,
        shape: window_rows_shape(view, &windowed),
        unit: event_time_unit(view),
    }))
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Ttl {
    pub(super) interval: IntervalMonthDayNano,
    pub(super) unit: EventTimeUnit,
}

/// How the online store records a view's event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventTimeUnit {
    /// timestamptz: µs since the epoch, UTC.
    InstantMicros,
    /// timestamp: wall-clock µs (compared in the session's time zone).
    WallMicros,
    Days,
    /// Integer event times have no TTL arithmetic.
    Integer,
}

/// What the select list does with the looked-up rows.
#[derive(Debug, Clone)]
pub(super) enum Projection {
    Columns(Vec<usize>),
    /// Expressions planned once; `input` is the rows' schema as DataFusion
    /// typed it.
    Exprs {
        exprs: Vec<LogicalExpr>,
        input: DFSchemaRef,
    },
}

/// A prepared online lookup.
#[derive(Debug, Clone)]
pub struct LookupPlan {
    /// The service read (its version), when not a single view.
    pub(super) service: Option<(QualifiedName, u32)>,
    pub(super) parts: Vec<ViewPart>,
    /// Key columns' types, in key order.
    pub(super) key_types: Vec<DataType>,
    /// The rows looked up: key columns, then the values of each part.
    pub(super) row_schema: SchemaRef,
    pub(super) keys: KeyMatch,
    pub(super) projection: Projection,
    /// Whether results are read straight from the stored rows: a plain
    /// column projection over types [`crate::online::ValueReader`] reads.
    pub(super) direct: bool,
    pub output: SchemaRef,
    pub param_types: Vec<DataType>,
}

impl LookupPlan {
    /// Whether results are read straight from the stored rows.
    pub fn is_direct(&self) -> bool {
        self.direct
    }
}

/// The event time unit and TTL of a view.
pub(super) fn ttl_of(view: &FeatureViewVersion) -> Result<Option<Ttl>> {
    let Some(ttl) = &view.ttl else {
        return Ok(None);
    };
    let unit = event_time_unit(view);
    let text = parse_interval_text(ttl)
        .ok_or_else(|| Error::internal(format!("cannot read the TTL {ttl}")))?;
    let interval =
        datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(&text)?;
    Ok(Some(Ttl { interval, unit }))
}

/// How the online store records `view`'s event time.
fn event_time_unit(view: &FeatureViewVersion) -> EventTimeUnit {
    match view.timestamp_type() {
        Some(ColumnType::TimestampTz) => EventTimeUnit::InstantMicros,
        Some(ColumnType::Timestamp) => EventTimeUnit::WallMicros,
        Some(ColumnType::Date) => EventTimeUnit::Days,
        _ => EventTimeUnit::Integer,
    }
}

/// `INTERVAL '30 days'` / `INTERVAL '30' DAY` → "30 days" / "30 DAY".
pub(super) fn parse_interval_text(sql: &str) -> Option<String> {
    let expr = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(sql)
    .ok()?
    .parse_expr()
    .ok()?;
    let Expr::Interval(interval) = expr else {
        return None;
    };
    let Expr::Value(value) = interval.value.as_ref() else {
        return None;
    };
    let Value::SingleQuotedString(text) = &value.value else {
        return None;
    };
    Some(match &interval.leading_field {
        Some(field) => format!("{text} {field}"),
        None => text.clone(),
    })
}

impl LookupService {
    /// A lookup plan for `statement`, if it is an online lookup.
    ///
    /// `names` resolves the relation it reads as the caller's other
    /// queries would; `planner` plans select-list expressions (on-demand
    /// features), with the caller's settings.
    pub async fn plan(
        &self,
        sql: &str,
        statement: &ast::Statement,
        declared: &[Option<DataType>],
        names: &NameScope,
        planner: &mut dyn SqlPlanner,
    ) -> Result<Option<LookupPlan>> {
        let ast::Statement::Query(query) = statement else {
            return Ok(None);
        };
        let Some((select, name, alias)) = lookup_shape(query) else {
            return Ok(None);
        };
        let registry = self.registry.snapshot();
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.as_ident().map(normalize_ident))
            .collect::<Option<_>>()
            .unwrap_or_default();
        let resolver = names.resolver(&registry, sql, ResolveMode::Query);
        let relation = match parts.as_slice() {
            [schema, relation] => resolver.lookup(schema, relation),
            // A temporary table shadows everything on the path.
            [relation] if names.temp.contains(relation) => None,
            [relation] => names
                .search_path()
                .iter()
                .find_map(|schema| resolver.lookup(schema, relation)),
            _ => None,
        };
        let online = &self.online;
        // A windowed view is served online once its rows are in memory.
        let materialized = |view: &FeatureViewVersion, name: &QualifiedName| {
            view.online
                && match windowed_view(view) {
                    Ok(None) => true,
                    Ok(Some(windowed)) => {
                        online.has_window_events(name, &window_rows_shape(view, &windowed))
                    }
                    Err(_) => false,
                }
                && online.materialization(name).is_some_and(|m| {
                    m.online && (m.version == view.version || m.shape == shape_of(view))
                })
        };
        let view_part = |name: &QualifiedName,
                         view: &FeatureViewVersion,
                         key_names: &[String]|
         -> Result<Option<ViewPart>> {
            let key_positions = key_names
                .iter()
                .map(|k| view.columns.iter().position(|c| &c.name == k))
                .collect::<Option<Vec<_>>>();
            let types = view
                .columns
                .iter()
                .map(|c| c.column_type.as_ref().map(ColumnType::to_arrow))
                .collect::<Option<Vec<_>>>();
            let (Some(key_positions), Some(types)) = (key_positions, types) else {
                return Ok(None);
            };
            Ok(Some(ViewPart {
                name: name.clone(),
                version: view.version,
                shape: online
                    .materialization(name)
                    .filter(|m| m.version != view.version)
                    .map(|_| shape_of(view)),
                types,
                key_positions,
                mapping: Vec::new(),
                targets: Vec::new(),
                ttl: ttl_of(view)?,
                windows: windowed_part(view)?.map(Arc::new),
            }))
        };

        let (service, view_parts, key_names, key_types, fields, relation_name) = match relation {
            Some(Relation::FeatureView(name)) => {
                let view = registry.views[&name].current();
                if !materialized(view, &name) {
                    return Ok(None);
                }
                let Some(mut part) = view_part(&name, view, &view.keys)? else {
                    return Ok(None);
                };
                let fields: Vec<Field> = view
                    .columns
                    .iter()
                    .zip(&part.types)
                    .map(|(c, t)| Field::new(&c.name, t.clone(), true))
                    .collect();
                // The row is the view's row: keys are among its columns.
                part.mapping = (0..fields.len()).map(|i| (i, i)).collect();
                let key_types = part
                    .key_positions
                    .iter()
                    .map(|&i| part.types[i].clone())
                    .collect();
                (
                    None,
                    vec![part],
                    view.keys.clone(),
                    key_types,
                    fields,
                    name.name.clone(),
                )
            }
            Some(Relation::FeatureService(name)) => {
                let service = registry.services[&name].current();
                let key_names: Vec<String> = service.keys.iter().map(|k| k.name.clone()).collect();
                let key_types: Vec<DataType> = service
                    .keys
                    .iter()
                    .map(|k| k.data_type.to_arrow())
                    .collect();
                let mut fields: Vec<Field> = service
                    .keys
                    .iter()
                    .map(|k| Field::new(&k.name, k.data_type.to_arrow(), true))
                    .collect();
                let mut view_parts: Vec<ViewPart> = Vec::new();
                for feature in &service.features {
                    let Some(view) = registry.views.get(&feature.view) else {
                        return Ok(None);
                    };
                    let version = match feature.view_version {
                        Some(v) => match view.version(v) {
                            Some(version) => version,
                            None => return Ok(None),
                        },
                        None => view.current(),
                    };
                    // A pinned old version is not what the online store holds.
                    if version.version != view.current().version
                        && version.query != view.current().query
                        || !materialized(view.current(), &feature.view)
                    {
                        return Ok(None);
                    }
                    let index = match view_parts.iter().position(|p| p.name == feature.view) {
                        Some(index) => index,
                        None => {
                            let Some(part) =
                                view_part(&feature.view, view.current(), &version.keys)?
                            else {
                                return Ok(None);
                            };
                            view_parts.push(part);
                            view_parts.len() - 1
                        }
                    };
                    let part = &mut view_parts[index];
                    let Some(column) = view
                        .current()
                        .columns
                        .iter()
                        .position(|c| c.name == feature.feature)
                    else {
                        return Ok(None);
                    };
                    part.mapping.push((fields.len(), column));
                    fields.push(Field::new(
                        &feature.output_name,
                        part.types[column].clone(),
                        true,
                    ));
                }
                (
                    Some((name.clone(), service.version)),
                    view_parts,
                    key_names,
                    key_types,
                    fields,
                    name.name.clone(),
                )
            }
            _ => return Ok(None),
        };
        let mut qualifiers = vec![relation_name.clone()];
        if let Some(alias) = &alias {
            qualifiers = vec![alias.clone()];
        }
        let Some(selection) = &select.selection else {
            return Ok(None);
        };
        let Some(keys) = key_match(selection, &key_names, &qualifiers) else {
            return Ok(None);
        };
        let row_schema = Arc::new(Schema::new(fields));

        // Plain columns are copied; anything else is planned once.
        let mut columns = Vec::new();
        let mut output_fields = Vec::new();
        let mut plain = true;
        for item in &select.projection {
            match item {
                item if is_whole_row(item, &qualifiers) => {
                    for (i, field) in row_schema.fields().iter().enumerate() {
                        columns.push(i);
                        output_fields.push(field.as_ref().clone());
                    }
                }
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                    match column_name(expr, &qualifiers).and_then(|c| row_schema.index_of(&c).ok())
                    {
                        Some(index) => {
                            columns.push(index);
                            let name = match item {
                                SelectItem::ExprWithAlias { alias, .. } => normalize_ident(alias),
                                _ => row_schema.field(index).name().clone(),
                            };
                            output_fields
                                .push(row_schema.field(index).as_ref().clone().with_name(name));
                        }
                        None => plain = false,
                    }
                }
                _ => plain = false,
            }
        }
        let mut param_count = 0;
        let mut note_param = |v: &ValueRef| {
            if let ValueRef::Param(n) = v {
                param_count = param_count.max(n + 1);
            }
        };
        match &keys {
            KeyMatch::One(values) | KeyMatch::List(values) => {
                values.iter().for_each(&mut note_param)
            }
            KeyMatch::Array(n) => note_param(&ValueRef::Param(*n)),
        }
        let (projection, output, param_types) = if plain {
            let mut param_types = vec![DataType::Utf8; param_count];
            let key_param_type = |i: usize| key_types[i].clone();
            match &keys {
                KeyMatch::One(values) => {
                    for (i, v) in values.iter().enumerate() {
                        if let ValueRef::Param(n) = v {
                            param_types[*n] = key_param_type(i);
                        }
                    }
                }
                KeyMatch::List(values) => {
                    for v in values {
                        if let ValueRef::Param(n) = v {
                            param_types[*n] = key_param_type(0);
                        }
                    }
                }
                KeyMatch::Array(n) => {
                    param_types[*n] =
                        DataType::List(Arc::new(Field::new("item", key_param_type(0), true)));
                }
            }
            for (i, t) in declared.iter().enumerate() {
                if let (Some(t), Some(slot)) = (t, param_types.get_mut(i)) {
                    *slot = t.clone();
                }
            }
            (
                Projection::Columns(columns),
                Arc::new(Schema::new(output_fields)),
                param_types,
            )
        } else {
            match plan_expressions(
                planner,
                &registry,
                query,
                &row_schema,
                alias.as_deref().unwrap_or(&relation_name),
                declared,
            )
            .await
            {
                Some(planned) => planned,
                None => return Ok(None),
            }
        };
        if param_types.len() < param_count {
            return Ok(None);
        }
        let mut view_parts = view_parts;
        for part in &mut view_parts {
            part.targets = vec![None; part.types.len()];
            for &(to, from) in &part.mapping {
                part.targets[from] = Some(to);
            }
        }
        let direct = matches!(projection, Projection::Columns(_))
            && key_types
                .iter()
                .chain(view_parts.iter().flat_map(|p| &p.types))
                .all(readable_as_datum);
        Ok(Some(LookupPlan {
            service,
            parts: view_parts,
            direct,
            key_types,
            row_schema,
            keys,
            projection,
            output,
            param_types,
        }))
    }
}

/// Plans the select list over an empty relation with the rows' columns.
async fn plan_expressions(
    planner: &mut dyn SqlPlanner,
    registry: &RegistryState,
    query: &Query,
    row_schema: &SchemaRef,
    alias: &str,
    declared: &[Option<DataType>],
) -> Option<(Projection, SchemaRef, Vec<DataType>)> {
    let columns: Vec<String> = row_schema
        .fields()
        .iter()
        .map(|f| {
            let sql_type = ColumnType::from_arrow(f.data_type())?.to_string();
            Some(format!(
                "CAST(NULL AS {sql_type}) AS {}",
                quote_ident(f.name())
            ))
        })
        .collect::<Option<_>>()?;
    let mut rewritten: Query = query.clone();
    let SetExpr::Select(select) = rewritten.body.as_mut() else {
        return None;
    };
    let relation = parse_query(&format!(
        "SELECT 1 FROM (SELECT {}) AS {}",
        columns.join(", "),
        quote_ident(alias)
    ))
    .ok()?;
    let SetExpr::Select(replacement) = *relation.body else {
        return None;
    };
    select.from[0].relation = replacement.from[0].relation.clone();
    let statement = ast::Statement::Query(Box::new(rewritten));
    let sql = statement.to_string();
    let (plan, param_types) = planner
        .plan(registry, ResolveMode::Query, &sql, &statement, declared)
        .await
        .ok()?;
    let state = planner.state();
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
        .ok()?;
    let LogicalPlan::Projection(projection) = &plan else {
        return None;
    };
    // Aggregates and window functions are over the rows found (one row
    // even when none is, for count(*)): not a per-row projection.
    let per_row = !projection
        .input
        .exists(|node| {
            Ok(matches!(
                node,
                LogicalPlan::Aggregate(_) | LogicalPlan::Window(_)
            ))
        })
        .ok()?;
    if !per_row {
        return None;
    }
    let input = projection.input.schema().clone();
    let output = Arc::new(plan.schema().as_arrow().clone());
    let output = rename_columns(
        &output,
        &postgres_column_names(query, output.fields().len()),
    );
    Some((
        Projection::Exprs {
            exprs: projection.expr.clone(),
            input,
        },
        output,
        param_types,
    ))
}

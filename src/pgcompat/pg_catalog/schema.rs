//! The `pg_catalog` and `information_schema` schemas as DataFusion sees
//! them: datafusion-pg-catalog's static tables and functions, with the
//! tables describing featuredb's own objects built live (see `rows`), and
//! the catalog functions registered in each session's context.

use std::any::Any;
use std::sync::{Arc, LazyLock};

use super::functions;
use super::information_schema as information_schema_tables;
use super::relations::Relations;
use super::rows;
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    self as pg, PgCatalogSchemaProvider, PgCatalogStaticTables, format_type, has_privilege_udf,
    pg_get_expr_udf, quote_ident_udf,
};

pub const PG_CATALOG_SCHEMA: &str = "pg_catalog";

/// The snapshot of PostgreSQL 15's static catalog tables (types, operators,
/// functions, casts), loaded once per process.
static STATIC_TABLES: LazyLock<DFResult<Arc<PgCatalogStaticTables>>> =
    LazyLock::new(|| PgCatalogStaticTables::try_new().map(Arc::new));

pub(super) fn static_tables() -> DFResult<Arc<PgCatalogStaticTables>> {
    STATIC_TABLES
        .as_ref()
        .map(Arc::clone)
        .map_err(|e| DataFusionError::Internal(format!("loading pg_catalog: {e}")))
}

/// The `pg_catalog` schema. `described` is the catalog the crate's generic
/// tables (`pg_tables`, `pg_database`) list.
pub fn schema(
    described: Arc<dyn CatalogProviderList>,
    relations: Relations,
) -> DFResult<Arc<dyn SchemaProvider>> {
    let generic =
        PgCatalogSchemaProvider::try_new(described, static_tables()?, EmptyContextProvider)?;
    Ok(Arc::new(PgCatalog { generic, relations }))
}

struct PgCatalog {
    generic: PgCatalogSchemaProvider<Arc<dyn CatalogProviderList>, EmptyContextProvider>,
    relations: Relations,
}

impl std::fmt::Debug for PgCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCatalog")
    }
}

fn memtable(batch: datafusion::arrow::array::RecordBatch) -> DFResult<Arc<dyn TableProvider>> {
    Ok(Arc::new(MemTable::try_new(
        batch.schema(),
        vec![vec![batch]],
    )?))
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.generic.table_names()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let name = name.to_ascii_lowercase();
        let ours = match name.as_str() {
            "pg_namespace" => rows::pg_namespace(&self.relations.schemas())?,
            "pg_roles" => rows::pg_roles(&self.relations.roles())?,
            "pg_class" => rows::pg_class(&self.relations.relations().await?)?,
            "pg_attribute" => rows::pg_attribute(&self.relations.relations().await?)?,
            "pg_views" => rows::pg_views(&self.relations.relations().await?)?,
            "pg_tables" => rows::pg_tables(&self.relations.relations().await?)?,
            "pg_settings" => rows::pg_settings(&self.relations.settings())?,
            "pg_description" => {
                // PostgreSQL's descriptions of built-in objects, then ours.
                let builtin = static_tables()?.pg_description.clone();
                let mut batches = builtin.data().to_vec();
                batches.push(rows::pg_description(
                    &self.relations.relations().await?,
                    &builtin.schema(),
                )?);
                return Ok(Some(Arc::new(MemTable::try_new(
                    builtin.schema(),
                    vec![batches],
                )?)));
            }
            "pg_cursors" => return open_cursors().map(Some),
            "pg_type" => return pg_type().map(Some),
            "pg_policy" => {
                let table = static_tables()?.pg_policy.clone();
                return empty_with_arrays(&table, &[("polroles", DataType::Int32)]).map(Some);
            }
            "pg_index" => {
                let table = static_tables()?.pg_index.clone();
                let arrays = [
                    ("indkey", DataType::Int16),
                    ("indcollation", DataType::Int32),
                    ("indclass", DataType::Int32),
                    ("indoption", DataType::Int16),
                ];
                return empty_with_arrays(&table, &arrays).map(Some);
            }
            "pg_constraint" => {
                let table = static_tables()?.pg_constraint.clone();
                let arrays = [
                    ("conkey", DataType::Int16),
                    ("confkey", DataType::Int16),
                    ("conpfeqop", DataType::Int32),
                    ("conppeqop", DataType::Int32),
                    ("conffeqop", DataType::Int32),
                    ("confdelsetcols", DataType::Int16),
                    ("conexclop", DataType::Int32),
                ];
                return empty_with_arrays(&table, &arrays).map(Some);
            }
            _ => return self.generic.table(&name).await,
        };
        memtable(ours).map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.generic.table_exist(name)
    }
}

/// `pg_cursors`, in PostgreSQL's shape. Cursors belong to sessions and the
/// catalog is shared, so it lists none (psycopg only consults it before
/// closing a cursor it did not declare itself).
fn open_cursors() -> DFResult<Arc<dyn TableProvider>> {
    use datafusion::arrow::datatypes::{Schema, TimeUnit};
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("statement", DataType::Utf8, false),
        Field::new("is_holdable", DataType::Boolean, false),
        Field::new("is_binary", DataType::Boolean, false),
        Field::new("is_scrollable", DataType::Boolean, false),
        Field::new(
            "creation_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

/// A catalog table featuredb has no rows for (row policies, indexes,
/// constraints), with its array columns typed as the arrays they are:
/// clients `unnest` them and compare them with `= ANY` (the snapshot
/// stores them as text).
/// datafusion-pg-catalog's `pg_type`, with `typacl` an array (`aclitem[]`
/// in PostgreSQL, NULL for every built-in type) instead of text, so that
/// `array_to_string(typacl, …)` (psql's `\dT+`) plans.
fn pg_type() -> DFResult<Arc<dyn TableProvider>> {
    static PG_TYPE: std::sync::OnceLock<Arc<MemTable>> = std::sync::OnceLock::new();
    if let Some(table) = PG_TYPE.get() {
        return Ok(table.clone());
    }
    let builtin = static_tables()?.pg_type.clone();
    let list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
        builtin
            .schema()
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "typacl" => Field::new("typacl", list.clone(), true),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let batches = builtin
        .data()
        .iter()
        .map(|batch| {
            let columns = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| match field.name().as_str() {
                    "typacl" => datafusion::arrow::array::new_null_array(&list, batch.num_rows()),
                    _ => column.clone(),
                })
                .collect();
            datafusion::arrow::array::RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let table = Arc::new(MemTable::try_new(schema, vec![batches])?);
    Ok(PG_TYPE.get_or_init(|| table).clone())
}

fn empty_with_arrays(
    table: &datafusion_pg_catalog::pg_catalog::ArrowTable,
    arrays: &[(&str, DataType)],
) -> DFResult<Arc<dyn TableProvider>> {
    let builtin = table.schema();
    let fields: Vec<Field> = builtin
        .fields()
        .iter()
        .map(|f| match arrays.iter().find(|(name, _)| name == f.name()) {
            Some((name, element)) => Field::new(
                *name,
                DataType::List(Arc::new(Field::new_list_field(element.clone(), true))),
                true,
            ),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

/// The `information_schema` schema (see `information_schema.rs`).
pub fn information_schema(relations: Relations) -> Arc<dyn SchemaProvider> {
    Arc::new(InformationSchema { relations })
}

struct InformationSchema {
    relations: Relations,
}

impl std::fmt::Debug for InformationSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InformationSchema")
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        information_schema_tables::VIEWS
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let name = name.to_ascii_lowercase();
        if !information_schema_tables::VIEWS.contains(&name.as_str()) {
            return Ok(None);
        }
        let relations = self.relations.relations().await?;
        match information_schema_tables::view(&name, &self.relations.schemas(), &relations)? {
            Some(batch) => memtable(batch).map(Some),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        information_schema_tables::VIEWS.contains(&name.to_ascii_lowercase().as_str())
    }
}

/// Registers the catalog functions clients call. featuredb's own versions
/// of session-dependent functions (`current_user`, `current_schema`,
/// `current_database`, …) are registered after these and take precedence.
pub fn register_functions(ctx: &SessionContext, relations: &Relations) {
    functions::register(ctx, relations);
    for udf in [
        pg::create_pg_get_userbyid_udf(),
        has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
        format_type::create_format_type_udf(),
        pg_get_expr_udf::create_pg_get_expr_udf(),
        pg::create_pg_get_partkeydef_udf(),
        pg::create_pg_relation_is_publishable_udf(),
        pg::create_pg_get_statisticsobjdef_columns_udf(),
        pg::create_pg_encoding_to_char_udf(),
        pg::create_pg_stat_get_numscans(),
        pg::create_pg_get_constraintdef(),
        pg::create_pg_get_partition_ancestors_udf(),
        quote_ident_udf::create_quote_ident_udf(),
        quote_ident_udf::create_parse_ident_udf(),
        // Only built-in objects of these kinds exist, all in pg_catalog.
        constant_predicate("pg_function_is_visible", true),
        constant_predicate("pg_type_is_visible", true),
        constant_predicate("pg_operator_is_visible", true),
        constant_predicate("pg_opclass_is_visible", true),
        constant_predicate("pg_opfamily_is_visible", true),
        constant_predicate("pg_collation_is_visible", true),
        constant_predicate("pg_conversion_is_visible", true),
        constant_predicate("pg_statistics_obj_is_visible", true),
        constant_predicate("pg_ts_config_is_visible", true),
        constant_predicate("pg_ts_dict_is_visible", true),
        constant_predicate("pg_ts_parser_is_visible", true),
        constant_predicate("pg_ts_template_is_visible", true),
        // A session's catalog shows no other session's temporary schema.
        constant_predicate("pg_is_other_temp_schema", false),
    ] {
        ctx.register_udf(udf);
    }
    // Loading cannot fail once the engine (which built `schema`) exists.
    if let Ok(static_tables) = static_tables() {
        ctx.register_udtf("pg_get_keywords", static_tables.pg_get_keywords.clone());
    }
}

/// Functions and types all live in `pg_catalog`, which is always searched.
/// A predicate on an object id that is `value` for every object.
fn constant_predicate(name: &str, value: bool) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = ColumnarValue::values_to_arrays(args)?[0].len();
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![
                value;
                rows
            ]))))
        }),
    )
}

/// Registers the functions that depend on the session's search path:
/// `pg_table_is_visible` (a relation in a schema on the path),
/// `to_regclass` and `current_schemas`.
pub fn register_search_path_functions(
    ctx: &SessionContext,
    relations: &Relations,
    search_path: &[String],
) {
    let visible_in = relations.clone();
    // The session's temporary schema is searched first, as in PostgreSQL.
    let path: Vec<String> = relations
        .temp_schema()
        .into_iter()
        .chain(search_path.iter().cloned())
        .collect();
    ctx.register_udf(create_udf(
        "pg_table_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let visible = visible_in.visible_relation_oids(&path);
            let oids = ColumnarValue::values_to_arrays(args)?;
            let oids = datafusion::common::cast::as_int32_array(&oids[0])?;
            let result: BooleanArray = oids
                .iter()
                .map(|oid| oid.map(|oid| visible.contains(&oid)))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(result)))
        }),
    ));
    let resolver = relations.clone();
    let path: Vec<String> = search_path.to_vec();
    ctx.register_udf(functions::oid_of_name("to_regclass", move |name| {
        resolver.regclass(name, &path)
    }));
    let existing = relations.clone();
    let explicit: Vec<String> = search_path.to_vec();
    ctx.register_udf(create_udf(
        "current_schemas",
        vec![DataType::Boolean],
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let include_implicit = ColumnarValue::values_to_arrays(args)?;
            let include_implicit =
                datafusion::common::cast::as_boolean_array(&include_implicit[0])?;
            let mut values: Vec<&str> = Vec::new();
            let mut offsets = vec![0usize];
            for row in 0..include_implicit.len() {
                if include_implicit.is_valid(row) && include_implicit.value(row) {
                    values.push(PG_CATALOG_SCHEMA);
                }
                // Only schemas that exist, as in PostgreSQL ("$user" often
                // does not).
                values.extend(
                    explicit
                        .iter()
                        .filter(|schema| existing.schema_exists(schema))
                        .map(String::as_str),
                );
                offsets.push(values.len());
            }
            let list = ListArray::new(
                Arc::new(Field::new_list_field(DataType::Utf8, true)),
                OffsetBuffer::from_lengths(offsets.windows(2).map(|w| w[1] - w[0])),
                Arc::new(StringArray::from(values)) as ArrayRef,
                None,
            );
            Ok(ColumnarValue::Array(Arc::new(list)))
        }),
    ));
}

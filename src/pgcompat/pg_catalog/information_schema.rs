//! `information_schema` as PostgreSQL presents it: standard type names
//! (`bigint`, `character varying`, `timestamp with time zone`, `ARRAY`),
//! lengths, precisions and scales, `YES`/`NO` flags, view definitions.
//! BI tools, dbt and drivers read columns and their types from here.
//! Built from the same relations as `pg_class`/`pg_attribute`, live on
//! every query. Constraint and routine views exist and are empty:
//! featuredb has no keys, constraints or user functions.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::error::Result as DFResult;
use featuredb_catalog::DEFAULT_DATABASE;
use pgwire::api::Type;

use super::relations::{Attribute, Relation, RelationKind};

pub const INFORMATION_SCHEMA: &str = "information_schema";

/// The views this schema has.
pub const VIEWS: &[&str] = &[
    "schemata",
    "tables",
    "columns",
    "views",
    "table_constraints",
    "key_column_usage",
    "referential_constraints",
    "constraint_column_usage",
    "routines",
    "parameters",
];

/// What `information_schema.columns` says about a column's type.
struct ColumnType {
    data_type: &'static str,
    udt_name: String,
    character_maximum_length: Option<i32>,
    numeric_precision: Option<i32>,
    numeric_precision_radix: Option<i32>,
    numeric_scale: Option<i32>,
    datetime_precision: Option<i32>,
}

fn column_type(attribute: &Attribute) -> ColumnType {
    let ty = Type::from_oid(attribute.type_oid).unwrap_or(Type::TEXT);
    let typmod = (attribute.typmod >= 4).then_some(attribute.typmod - 4);
    let mut info = ColumnType {
        data_type: "USER-DEFINED",
        udt_name: ty.name().to_string(),
        character_maximum_length: None,
        numeric_precision: None,
        numeric_precision_radix: None,
        numeric_scale: None,
        datetime_precision: None,
    };
    let binary = |bits: i32, scale: Option<i32>| (Some(bits), Some(2), scale);
    let (precision, radix, scale) = match ty {
        Type::INT2 => binary(16, Some(0)),
        Type::INT4 => binary(32, Some(0)),
        Type::INT8 => binary(64, Some(0)),
        Type::FLOAT4 => binary(24, None),
        Type::FLOAT8 => binary(53, None),
        Type::NUMERIC => match typmod {
            Some(m) => (Some((m >> 16) & 0xffff), Some(10), Some(m & 0xffff)),
            None => (None, Some(10), None),
        },
        _ => (None, None, None),
    };
    info.numeric_precision = precision;
    info.numeric_precision_radix = radix;
    info.numeric_scale = scale;
    info.data_type = match ty {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        Type::TEXT => "text",
        Type::VARCHAR => "character varying",
        Type::BPCHAR => "character",
        Type::BYTEA => "bytea",
        Type::DATE => "date",
        Type::TIME => "time without time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::INTERVAL => "interval",
        Type::JSON => "json",
        Type::JSONB => "jsonb",
        Type::OID => "oid",
        _ if matches!(ty.kind(), postgres_types::Kind::Array(_)) => "ARRAY",
        _ => "USER-DEFINED",
    };
    if matches!(ty, Type::VARCHAR | Type::BPCHAR) {
        info.character_maximum_length = typmod;
    }
    info.datetime_precision = match ty {
        Type::DATE => Some(0),
        Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::INTERVAL => Some(6),
        _ => None,
    };
    info
}

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn optional_strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn ints(values: impl IntoIterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int32Array>())
}

fn repeat(value: &str, rows: usize) -> ArrayRef {
    strings(std::iter::repeat_n(value, rows))
}

fn nulls(rows: usize) -> ArrayRef {
    optional_strings(std::iter::repeat_n(None, rows))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> DFResult<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, array)| array).collect(),
    )?)
}

/// An empty view with text columns.
fn empty(columns: &[&str]) -> DFResult<RecordBatch> {
    batch(columns.iter().map(|name| (*name, nulls(0))).collect())
}

/// The rows of view `name`; `None` if there is no such view.
pub fn view(
    name: &str,
    schemas: &[String],
    relations: &[Relation],
) -> DFResult<Option<RecordBatch>> {
    Ok(Some(match name {
        "schemata" => schemata(schemas)?,
        "tables" => tables(relations)?,
        "columns" => columns(relations)?,
        "views" => views(relations)?,
        "table_constraints" => empty(&[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "constraint_type",
            "is_deferrable",
            "initially_deferred",
            "enforced",
            "nulls_distinct",
        ])?,
        "key_column_usage" => empty(&[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position",
            "position_in_unique_constraint",
        ])?,
        "referential_constraints" => empty(&[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "unique_constraint_catalog",
            "unique_constraint_schema",
            "unique_constraint_name",
            "match_option",
            "update_rule",
            "delete_rule",
        ])?,
        "constraint_column_usage" => empty(&[
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
        ])?,
        "routines" => empty(&[
            "specific_catalog",
            "specific_schema",
            "specific_name",
            "routine_catalog",
            "routine_schema",
            "routine_name",
            "routine_type",
            "data_type",
            "routine_definition",
            "external_language",
        ])?,
        "parameters" => empty(&[
            "specific_catalog",
            "specific_schema",
            "specific_name",
            "ordinal_position",
            "parameter_mode",
            "parameter_name",
            "data_type",
        ])?,
        _ => return Ok(None),
    }))
}

fn schemata(schemas: &[String]) -> DFResult<RecordBatch> {
    let rows = schemas.len();
    batch(vec![
        ("catalog_name", repeat(DEFAULT_DATABASE, rows)),
        ("schema_name", strings(schemas.iter().map(String::as_str))),
        ("schema_owner", repeat("postgres", rows)),
        ("default_character_set_catalog", nulls(rows)),
        ("default_character_set_schema", nulls(rows)),
        ("default_character_set_name", nulls(rows)),
        ("sql_path", nulls(rows)),
    ])
}

fn tables(relations: &[Relation]) -> DFResult<RecordBatch> {
    let rows = relations.len();
    let is_table = |r: &Relation| r.kind != RelationKind::View;
    batch(vec![
        ("table_catalog", repeat(DEFAULT_DATABASE, rows)),
        (
            "table_schema",
            strings(relations.iter().map(|r| r.schema.as_str())),
        ),
        (
            "table_name",
            strings(relations.iter().map(|r| r.name.as_str())),
        ),
        (
            "table_type",
            strings(relations.iter().map(|r| match r.kind {
                RelationKind::Table => "BASE TABLE",
                RelationKind::TemporaryTable => "LOCAL TEMPORARY",
                RelationKind::View => "VIEW",
            })),
        ),
        ("self_referencing_column_name", nulls(rows)),
        ("reference_generation", nulls(rows)),
        ("user_defined_type_catalog", nulls(rows)),
        ("user_defined_type_schema", nulls(rows)),
        ("user_defined_type_name", nulls(rows)),
        (
            "is_insertable_into",
            strings(
                relations
                    .iter()
                    .map(|r| if is_table(r) { "YES" } else { "NO" }),
            ),
        ),
        ("is_typed", repeat("NO", rows)),
        ("commit_action", nulls(rows)),
    ])
}

fn columns(relations: &[Relation]) -> DFResult<RecordBatch> {
    let columns: Vec<(&Relation, usize, &Attribute, ColumnType)> = relations
        .iter()
        .flat_map(|r| {
            r.attributes
                .iter()
                .enumerate()
                .map(move |(i, a)| (r, i + 1, a, column_type(a)))
        })
        .collect();
    let rows = columns.len();
    let positions: Vec<String> = columns.iter().map(|c| c.1.to_string()).collect();
    batch(vec![
        ("table_catalog", repeat(DEFAULT_DATABASE, rows)),
        (
            "table_schema",
            strings(columns.iter().map(|c| c.0.schema.as_str())),
        ),
        (
            "table_name",
            strings(columns.iter().map(|c| c.0.name.as_str())),
        ),
        (
            "column_name",
            strings(columns.iter().map(|c| c.2.name.as_str())),
        ),
        (
            "ordinal_position",
            ints(columns.iter().map(|c| i32::try_from(c.1).ok())),
        ),
        ("column_default", nulls(rows)),
        (
            "is_nullable",
            strings(
                columns
                    .iter()
                    .map(|c| if c.2.not_null { "NO" } else { "YES" }),
            ),
        ),
        ("data_type", strings(columns.iter().map(|c| c.3.data_type))),
        (
            "character_maximum_length",
            ints(columns.iter().map(|c| c.3.character_maximum_length)),
        ),
        (
            "character_octet_length",
            ints(columns.iter().map(|c| {
                c.3.character_maximum_length
                    .map(|n| n.saturating_mul(4))
                    .or_else(|| (c.3.udt_name == "text").then_some(1_073_741_824))
            })),
        ),
        (
            "numeric_precision",
            ints(columns.iter().map(|c| c.3.numeric_precision)),
        ),
        (
            "numeric_precision_radix",
            ints(columns.iter().map(|c| c.3.numeric_precision_radix)),
        ),
        (
            "numeric_scale",
            ints(columns.iter().map(|c| c.3.numeric_scale)),
        ),
        (
            "datetime_precision",
            ints(columns.iter().map(|c| c.3.datetime_precision)),
        ),
        ("interval_type", nulls(rows)),
        ("interval_precision", ints(std::iter::repeat_n(None, rows))),
        ("character_set_catalog", nulls(rows)),
        ("character_set_schema", nulls(rows)),
        ("character_set_name", nulls(rows)),
        ("collation_catalog", nulls(rows)),
        ("collation_schema", nulls(rows)),
        ("collation_name", nulls(rows)),
        ("domain_catalog", nulls(rows)),
        ("domain_schema", nulls(rows)),
        ("domain_name", nulls(rows)),
        ("udt_catalog", repeat(DEFAULT_DATABASE, rows)),
        ("udt_schema", repeat("pg_catalog", rows)),
        (
            "udt_name",
            strings(columns.iter().map(|c| c.3.udt_name.as_str())),
        ),
        (
            "dtd_identifier",
            strings(positions.iter().map(String::as_str)),
        ),
        ("is_self_referencing", repeat("NO", rows)),
        ("is_identity", repeat("NO", rows)),
        ("identity_generation", nulls(rows)),
        ("is_generated", repeat("NEVER", rows)),
        ("generation_expression", nulls(rows)),
        (
            "is_updatable",
            strings(columns.iter().map(|c| {
                if c.0.kind != RelationKind::View {
                    "YES"
                } else {
                    "NO"
                }
            })),
        ),
    ])
}

fn views(relations: &[Relation]) -> DFResult<RecordBatch> {
    let views: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.kind == RelationKind::View)
        .collect();
    let rows = views.len();
    batch(vec![
        ("table_catalog", repeat(DEFAULT_DATABASE, rows)),
        (
            "table_schema",
            strings(views.iter().map(|r| r.schema.as_str())),
        ),
        ("table_name", strings(views.iter().map(|r| r.name.as_str()))),
        (
            "view_definition",
            optional_strings(views.iter().map(|r| r.definition.as_deref())),
        ),
        ("check_option", repeat("NONE", rows)),
        ("is_updatable", repeat("NO", rows)),
        ("is_insertable_into", repeat("NO", rows)),
        ("is_trigger_updatable", repeat("NO", rows)),
        ("is_trigger_deletable", repeat("NO", rows)),
        ("is_trigger_insertable_into", repeat("NO", rows)),
    ])
}

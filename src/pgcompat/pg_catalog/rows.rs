//! featuredb's objects (see [`super::relations`]) as the rows of
//! PostgreSQL's catalog tables: `pg_namespace`, `pg_class`, `pg_attribute`,
//! `pg_description`, `pg_views`, `pg_tables`, `pg_settings`, `pg_roles`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int16Array, Int32Array, ListArray, RecordBatch,
    StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result as DFResult;

use pgwire::api::Type;

use super::relations::{Attribute, OWNER_OID, PG_CLASS_OID, Relation, RelationKind, namespace_oid};
use crate::pgcompat::settings::SettingRow;

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn optional_strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn int32s(values: impl IntoIterator<Item = i32>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int32Array>())
}

fn repeat_i32(value: i32, rows: usize) -> ArrayRef {
    int32s(std::iter::repeat_n(value, rows))
}

fn repeat_bool(value: bool, rows: usize) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value; rows]))
}

fn repeat_str(value: &str, rows: usize) -> ArrayRef {
    strings(std::iter::repeat_n(value, rows))
}

/// A `text[]` column of NULLs.
fn null_text_array(name: &str, rows: usize) -> (Field, ArrayRef) {
    let array = ListArray::new_null(Arc::new(Field::new_list_field(DataType::Utf8, true)), rows);
    (
        field(name, array.data_type().clone(), true),
        Arc::new(array),
    )
}

fn null_strings(rows: usize) -> ArrayRef {
    optional_strings(std::iter::repeat_n(None, rows))
}

fn batch(fields: Vec<(Field, ArrayRef)>) -> DFResult<RecordBatch> {
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = fields.into_iter().unzip();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

pub fn pg_namespace(schemas: &[String]) -> DFResult<RecordBatch> {
    let rows = schemas.len();
    batch(vec![
        (
            field("oid", DataType::Int32, false),
            int32s(schemas.iter().map(|s| namespace_oid(s))),
        ),
        (
            field("nspname", DataType::Utf8, false),
            strings(schemas.iter().map(String::as_str)),
        ),
        (
            field("nspowner", DataType::Int32, false),
            repeat_i32(OWNER_OID, rows),
        ),
        (field("nspacl", DataType::Utf8, true), null_strings(rows)),
        (field("options", DataType::Utf8, true), null_strings(rows)),
    ])
}

pub fn pg_class(relations: &[Relation]) -> DFResult<RecordBatch> {
    let rows = relations.len();
    let int32 =
        |name: &str, value: i32| (field(name, DataType::Int32, false), repeat_i32(value, rows));
    let boolean = |name: &str, value: bool| {
        (
            field(name, DataType::Boolean, false),
            repeat_bool(value, rows),
        )
    };
    let reloptions =
        ListArray::new_null(Arc::new(Field::new_list_field(DataType::Utf8, true)), rows);
    batch(vec![
        (
            field("oid", DataType::Int32, false),
            int32s(relations.iter().map(|r| r.oid)),
        ),
        (
            field("relname", DataType::Utf8, false),
            strings(relations.iter().map(|r| r.name.as_str())),
        ),
        (
            field("relnamespace", DataType::Int32, false),
            int32s(relations.iter().map(|r| namespace_oid(&r.schema))),
        ),
        int32("reltype", 0),
        int32("reloftype", 0),
        int32("relowner", OWNER_OID),
        int32("relam", 0),
        (
            field("relfilenode", DataType::Int32, false),
            int32s(relations.iter().map(|r| r.oid)),
        ),
        int32("reltablespace", 0),
        int32("relpages", 0),
        (
            field("reltuples", DataType::Float64, false),
            Arc::new(Float64Array::from(vec![-1.0; rows])),
        ),
        int32("relallvisible", 0),
        int32("reltoastrelid", 0),
        boolean("relhasindex", false),
        boolean("relisshared", false),
        (
            field("relpersistence", DataType::Utf8, false),
            strings(relations.iter().map(|r| r.kind.relpersistence())),
        ),
        (
            field("relkind", DataType::Utf8, false),
            strings(relations.iter().map(|r| r.kind.relkind())),
        ),
        (
            field("relnatts", DataType::Int16, false),
            Arc::new(
                relations
                    .iter()
                    .map(|r| i16::try_from(r.attributes.len()).unwrap_or(i16::MAX))
                    .collect::<Int16Array>(),
            ),
        ),
        (
            field("relchecks", DataType::Int16, false),
            Arc::new(Int16Array::from(vec![0; rows])),
        ),
        boolean("relhasrules", false),
        boolean("relhastriggers", false),
        boolean("relhassubclass", false),
        boolean("relrowsecurity", false),
        boolean("relforcerowsecurity", false),
        boolean("relispopulated", true),
        (
            field("relreplident", DataType::Utf8, false),
            repeat_str("d", rows),
        ),
        boolean("relispartition", false),
        int32("relrewrite", 0),
        int32("relfrozenxid", 0),
        int32("relminmxid", 0),
        // aclitem[] in PostgreSQL; NULL (default privileges) here.
        (
            field("relacl", reloptions.data_type().clone(), true),
            Arc::new(ListArray::new_null(
                Arc::new(Field::new_list_field(DataType::Utf8, true)),
                rows,
            )),
        ),
        (
            field("reloptions", reloptions.data_type().clone(), true),
            Arc::new(reloptions),
        ),
        (
            field("relpartbound", DataType::Utf8, true),
            null_strings(rows),
        ),
    ])
}

pub fn pg_attribute(relations: &[Relation]) -> DFResult<RecordBatch> {
    let columns: Vec<(i32, i16, &Attribute)> = relations
        .iter()
        .flat_map(|r| {
            r.attributes
                .iter()
                .enumerate()
                .map(move |(i, a)| (r.oid, i16::try_from(i + 1).unwrap_or(i16::MAX), a))
        })
        .collect();
    let rows = columns.len();
    let int32 =
        |name: &str, value: i32| (field(name, DataType::Int32, false), repeat_i32(value, rows));
    let boolean = |name: &str, value: bool| {
        (
            field(name, DataType::Boolean, false),
            repeat_bool(value, rows),
        )
    };
    let type_size =
        |oid: u32| Type::from_oid(oid).map_or(-1, |t| crate::pgtypes::oid::type_size(&t));
    batch(vec![
        (
            field("attrelid", DataType::Int32, false),
            int32s(columns.iter().map(|c| c.0)),
        ),
        (
            field("attname", DataType::Utf8, false),
            strings(columns.iter().map(|c| c.2.name.as_str())),
        ),
        (
            field("atttypid", DataType::Int32, false),
            int32s(columns.iter().map(|c| c.2.type_oid as i32)),
        ),
        int32("attstattarget", -1),
        (
            field("attlen", DataType::Int16, false),
            Arc::new(
                columns
                    .iter()
                    .map(|c| type_size(c.2.type_oid))
                    .collect::<Int16Array>(),
            ),
        ),
        (
            field("attnum", DataType::Int16, false),
            Arc::new(columns.iter().map(|c| c.1).collect::<Int16Array>()),
        ),
        (
            field("attndims", DataType::Int32, false),
            int32s(columns.iter().map(|c| c.2.dimensions)),
        ),
        int32("attcacheoff", -1),
        (
            field("atttypmod", DataType::Int32, false),
            int32s(columns.iter().map(|c| c.2.typmod)),
        ),
        (
            field("attbyval", DataType::Boolean, false),
            Arc::new(
                columns
                    .iter()
                    .map(|c| Some((1..=8).contains(&type_size(c.2.type_oid))))
                    .collect::<BooleanArray>(),
            ),
        ),
        (
            field("attalign", DataType::Utf8, false),
            repeat_str("i", rows),
        ),
        (
            field("attstorage", DataType::Utf8, false),
            // PostgreSQL's typstorage: numeric "main", other
            // variable-length types "extended".
            strings(columns.iter().map(|c| match c.2.type_oid {
                oid if oid == Type::NUMERIC.oid() => "m",
                oid if type_size(oid) < 0 => "x",
                _ => "p",
            })),
        ),
        (
            field("attcompression", DataType::Utf8, true),
            null_strings(rows),
        ),
        (
            field("attnotnull", DataType::Boolean, false),
            Arc::new(
                columns
                    .iter()
                    .map(|c| Some(c.2.not_null))
                    .collect::<BooleanArray>(),
            ),
        ),
        boolean("atthasdef", false),
        boolean("atthasmissing", false),
        (
            field("attidentity", DataType::Utf8, false),
            repeat_str("", rows),
        ),
        (
            field("attgenerated", DataType::Utf8, false),
            repeat_str("", rows),
        ),
        boolean("attisdropped", false),
        boolean("attislocal", true),
        int32("attinhcount", 0),
        int32("attcollation", 0),
        // aclitem[] and text[] in PostgreSQL (psql's \dp aggregates them).
        null_text_array("attacl", rows),
        null_text_array("attoptions", rows),
        (
            field("attfdwoptions", DataType::Utf8, true),
            null_strings(rows),
        ),
        (
            field("attmissingval", DataType::Utf8, true),
            null_strings(rows),
        ),
    ])
}

/// Descriptions of feature views and services (`COMMENT`-like, from their
/// `description` option), in `pg_description`'s shape.
pub fn pg_description(relations: &[Relation], schema: &SchemaRef) -> DFResult<RecordBatch> {
    let described: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.description.is_some())
        .collect();
    let rows = described.len();
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            int32s(described.iter().map(|r| r.oid)),
            repeat_i32(PG_CLASS_OID, rows),
            repeat_i32(0, rows),
            strings(
                described
                    .iter()
                    .map(|r| r.description.as_deref().unwrap_or("")),
            ),
        ],
    )?)
}

pub fn pg_views(relations: &[Relation]) -> DFResult<RecordBatch> {
    let views: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.definition.is_some())
        .collect();
    batch(vec![
        (
            field("schemaname", DataType::Utf8, true),
            strings(views.iter().map(|r| r.schema.as_str())),
        ),
        (
            field("viewname", DataType::Utf8, true),
            strings(views.iter().map(|r| r.name.as_str())),
        ),
        (
            field("viewowner", DataType::Utf8, true),
            repeat_str("postgres", views.len()),
        ),
        (
            field("definition", DataType::Utf8, true),
            strings(views.iter().map(|r| r.definition.as_deref().unwrap_or(""))),
        ),
    ])
}

/// PostgreSQL 15's `pg_settings`, from the session's settings.
pub fn pg_settings(rows: &[SettingRow]) -> DFResult<RecordBatch> {
    let count = rows.len();
    let text = |name: &str, values: Vec<Option<&str>>| {
        (field(name, DataType::Utf8, true), optional_strings(values))
    };
    let enumvals = {
        let mut builder = datafusion::arrow::array::ListBuilder::new(
            datafusion::arrow::array::StringBuilder::new(),
        );
        for row in rows {
            match &row.enumvals {
                Some(values) => {
                    for value in values {
                        builder.values().append_value(value);
                    }
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        builder.finish()
    };
    batch(vec![
        text("name", rows.iter().map(|r| Some(r.name.as_str())).collect()),
        text(
            "setting",
            rows.iter().map(|r| Some(r.setting.as_str())).collect(),
        ),
        text("unit", rows.iter().map(|r| r.unit).collect()),
        text("category", vec![None; count]),
        text(
            "short_desc",
            rows.iter().map(|r| Some(r.short_desc.as_str())).collect(),
        ),
        text("extra_desc", vec![None; count]),
        text("context", rows.iter().map(|r| Some(r.context)).collect()),
        text("vartype", rows.iter().map(|r| Some(r.vartype)).collect()),
        text("source", rows.iter().map(|r| Some(r.source)).collect()),
        text(
            "min_val",
            rows.iter().map(|r| r.min_val.as_deref()).collect(),
        ),
        text(
            "max_val",
            rows.iter().map(|r| r.max_val.as_deref()).collect(),
        ),
        (
            field("enumvals", enumvals.data_type().clone(), true),
            Arc::new(enumvals),
        ),
        text(
            "boot_val",
            rows.iter().map(|r| Some(r.boot_val.as_str())).collect(),
        ),
        text(
            "reset_val",
            rows.iter().map(|r| Some(r.reset_val.as_str())).collect(),
        ),
        text("sourcefile", vec![None; count]),
        (
            field("sourceline", DataType::Int32, true),
            Arc::new(datafusion::arrow::array::Int32Array::new_null(count)),
        ),
        (
            field("pending_restart", DataType::Boolean, true),
            repeat_bool(false, count),
        ),
    ])
}

/// PostgreSQL 15's `pg_tables`: plain tables only (dbt tells tables from
/// views by which of `pg_tables` and `pg_views` lists a relation).
pub fn pg_tables(relations: &[Relation]) -> DFResult<RecordBatch> {
    let tables: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.kind != RelationKind::View)
        .collect();
    let rows = tables.len();
    let boolean = |name: &str| {
        (
            field(name, DataType::Boolean, true),
            repeat_bool(false, rows),
        )
    };
    batch(vec![
        (
            field("schemaname", DataType::Utf8, true),
            strings(tables.iter().map(|r| r.schema.as_str())),
        ),
        (
            field("tablename", DataType::Utf8, true),
            strings(tables.iter().map(|r| r.name.as_str())),
        ),
        (
            field("tableowner", DataType::Utf8, true),
            repeat_str("postgres", rows),
        ),
        (
            field("tablespace", DataType::Utf8, true),
            optional_strings(tables.iter().map(|_| None)),
        ),
        boolean("hasindexes"),
        boolean("hasrules"),
        boolean("hastriggers"),
        boolean("rowsecurity"),
    ])
}

pub fn pg_roles(roles: &[(i32, String)]) -> DFResult<RecordBatch> {
    let rows = roles.len();
    let boolean = |name: &str, value: bool| {
        (
            field(name, DataType::Boolean, true),
            repeat_bool(value, rows),
        )
    };
    batch(vec![
        (
            field("rolname", DataType::Utf8, true),
            strings(roles.iter().map(|(_, name)| name.as_str())),
        ),
        boolean("rolsuper", true),
        boolean("rolinherit", true),
        boolean("rolcreaterole", true),
        boolean("rolcreatedb", true),
        boolean("rolcanlogin", true),
        boolean("rolreplication", false),
        (
            field("rolconnlimit", DataType::Int32, true),
            repeat_i32(-1, rows),
        ),
        (
            field("rolpassword", DataType::Utf8, true),
            repeat_str("********", rows),
        ),
        (
            field(
                "rolvaliduntil",
                DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Microsecond,
                    Some("UTC".into()),
                ),
                true,
            ),
            Arc::new(
                datafusion::arrow::array::TimestampMicrosecondArray::new_null(rows)
                    .with_timezone("UTC"),
            ),
        ),
        boolean("rolbypassrls", true),
        (field("rolconfig", DataType::Utf8, true), null_strings(rows)),
        (
            field("oid", DataType::Int32, true),
            int32s(roles.iter().map(|(oid, _)| *oid)),
        ),
    ])
}

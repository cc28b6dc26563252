//! Mapping table definitions to Iceberg schemas and back.
//!
//! The declared [`TableSchemaDef`] is stored as a table property so that types
//! Iceberg lacks (SMALLINT, VARCHAR(n)) survive a restart. Tables written by
//! other engines have no such property; their definition is derived from the
//! Iceberg schema.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use featuredb_catalog::{ColumnDef, ColumnType, TableSchemaDef};
use iceberg::spec::{ListType, NestedField, PrimitiveType, Schema, Type};

use crate::error::{Error, Result};

/// Table property holding the JSON-encoded [`TableSchemaDef`].
pub const SCHEMA_PROPERTY: &str = "featuredb.schema";

/// The Iceberg schema for a new table: top-level fields get ids 1..=n, list
/// elements ids after that.
pub fn iceberg_schema(def: &TableSchemaDef) -> Result<Schema> {
    let mut next_nested_id = def.columns.len() as i32 + 1;
    let fields = def
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let field_type = iceberg_type(&column.data_type, &mut next_nested_id);
            Arc::new(NestedField::new(
                index as i32 + 1,
                &column.name,
                field_type,
                !column.nullable,
            ))
        })
        .collect::<Vec<_>>();
    Ok(Schema::builder().with_fields(fields).build()?)
}

fn iceberg_type(column_type: &ColumnType, next_nested_id: &mut i32) -> Type {
    let primitive = match column_type {
        ColumnType::Boolean => PrimitiveType::Boolean,
        ColumnType::SmallInt | ColumnType::Integer => PrimitiveType::Int,
        ColumnType::BigInt => PrimitiveType::Long,
        ColumnType::Real => PrimitiveType::Float,
        ColumnType::DoublePrecision => PrimitiveType::Double,
        ColumnType::Numeric { precision, scale } => PrimitiveType::Decimal {
            precision: *precision as u32,
            scale: *scale as u32,
        },
        ColumnType::Text | ColumnType::Varchar { .. } => PrimitiveType::String,
        ColumnType::Bytea => PrimitiveType::Binary,
        ColumnType::Date => PrimitiveType::Date,
        ColumnType::Time => PrimitiveType::Time,
        ColumnType::Timestamp => PrimitiveType::Timestamp,
        ColumnType::TimestampTz => PrimitiveType::Timestamptz,
        ColumnType::Array(element) => {
            let id = *next_nested_id;
            *next_nested_id += 1;
            let element_type = iceberg_type(element, next_nested_id);
            return Type::List(ListType::new(Arc::new(NestedField::list_element(
                id,
                element_type,
                false,
            ))));
        }
    };
    Type::Primitive(primitive)
}

/// The declared definition of a loaded table: from the property if present,
/// otherwise derived from the Iceberg schema.
pub fn table_schema_def(
    schema: &Schema,
    properties: &std::collections::HashMap<String, String>,
) -> Result<TableSchemaDef> {
    if let Some(json) = properties.get(SCHEMA_PROPERTY) {
        let def: TableSchemaDef = serde_json::from_str(json).map_err(|e| {
            Error::internal(format!("table property {SCHEMA_PROPERTY} is corrupt: {e}"))
        })?;
        // The property must describe the current Iceberg schema; if another
        // engine evolved the schema, trust Iceberg.
        let names_match = def.columns.len() == schema.as_struct().fields().len()
            && def
                .columns
                .iter()
                .zip(schema.as_struct().fields())
                .all(|(c, f)| c.name == f.name);
        if names_match {
            return Ok(def);
        }
    }
    let columns = schema
        .as_struct()
        .fields()
        .iter()
        .map(|field| {
            Ok(ColumnDef {
                name: field.name.clone(),
                data_type: column_type_of(&field.field_type).ok_or_else(|| {
                    Error::FeatureNotSupported(format!(
                        "column \"{}\" has Iceberg type {} which featuredb cannot read",
                        field.name, field.field_type
                    ))
                })?,
                nullable: !field.required,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TableSchemaDef { columns })
}

fn column_type_of(field_type: &Type) -> Option<ColumnType> {
    Some(match field_type {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => ColumnType::Boolean,
            PrimitiveType::Int => ColumnType::Integer,
            PrimitiveType::Long => ColumnType::BigInt,
            PrimitiveType::Float => ColumnType::Real,
            PrimitiveType::Double => ColumnType::DoublePrecision,
            PrimitiveType::Decimal { precision, scale } => ColumnType::Numeric {
                precision: *precision as u8,
                scale: *scale as i8,
            },
            PrimitiveType::Date => ColumnType::Date,
            PrimitiveType::Time => ColumnType::Time,
            PrimitiveType::Timestamp => ColumnType::Timestamp,
            PrimitiveType::Timestamptz => ColumnType::TimestampTz,
            PrimitiveType::String => ColumnType::Text,
            PrimitiveType::Binary => ColumnType::Bytea,
            _ => return None,
        },
        Type::List(list) => {
            let element = column_type_of(&list.element_field.field_type)?;
            if !element.is_scalar() {
                return None;
            }
            ColumnType::Array(Box::new(element))
        }
        _ => return None,
    })
}

/// The Arrow schema data files are written with (Iceberg's mapping, with
/// field ids): SMALLINT is stored as Int32, since Iceberg has no 16-bit int.
pub fn storage_arrow_schema(schema: &Schema) -> Result<SchemaRef> {
    Ok(Arc::new(iceberg::arrow::schema_to_arrow_schema(schema)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> TableSchemaDef {
        TableSchemaDef {
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    data_type: ColumnType::BigInt,
                    nullable: false,
                },
                ColumnDef {
                    name: "small".into(),
                    data_type: ColumnType::SmallInt,
                    nullable: true,
                },
                ColumnDef {
                    name: "tags".into(),
                    data_type: ColumnType::Array(Box::new(ColumnType::Text)),
                    nullable: true,
                },
                ColumnDef {
                    name: "ts".into(),
                    data_type: ColumnType::TimestampTz,
                    nullable: true,
                },
            ],
        }
    }

    #[test]
    fn builds_iceberg_schema_with_unique_ids() {
        let schema = iceberg_schema(&def()).unwrap();
        let fields = schema.as_struct().fields();
        assert_eq!(fields[0].id, 1);
        assert!(fields[0].required);
        assert_eq!(fields[3].id, 4);
        match fields[2].field_type.as_ref() {
            Type::List(list) => assert_eq!(list.element_field.id, 5),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn property_round_trip_and_derivation() {
        let def = def();
        let schema = iceberg_schema(&def).unwrap();
        let mut props = std::collections::HashMap::new();
        props.insert(
            SCHEMA_PROPERTY.to_string(),
            serde_json::to_string(&def).unwrap(),
        );
        assert_eq!(table_schema_def(&schema, &props).unwrap(), def);

        // Without the property SMALLINT degrades to INTEGER.
        let derived = table_schema_def(&schema, &Default::default()).unwrap();
        assert_eq!(derived.columns[1].data_type, ColumnType::Integer);
        assert_eq!(derived.columns[2].data_type, def.columns[2].data_type);
    }
}

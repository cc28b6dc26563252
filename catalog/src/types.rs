//! The column types a featuredb table can declare.
//!
//! A `ColumnType` is what the user wrote in `CREATE TABLE`, normalised. It is
//! persisted with the table (so `SMALLINT` or `VARCHAR(20)` survive a restart
//! even though Iceberg has neither), maps to one Arrow type for the engine, and
//! prints as PostgreSQL's canonical type name.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

/// Time zone every `TIMESTAMPTZ` value is stored in (Iceberg's rule).
pub const UTC: &str = "+00:00";

/// Largest precision of a `NUMERIC` column: Iceberg decimals are 128-bit.
pub const MAX_NUMERIC_PRECISION: u8 = 38;

/// Precision and scale of a bare `NUMERIC`, which PostgreSQL treats as
/// unbounded and which we must bound (same choice as DataFusion).
pub const DEFAULT_NUMERIC: (u8, i8) = (38, 10);

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Boolean,
    SmallInt,
    Integer,
    BigInt,
    Real,
    DoublePrecision,
    Numeric { precision: u8, scale: i8 },
    Text,
    Varchar { max_len: Option<u32> },
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Array(Box<ColumnType>),
}

impl ColumnType {
    /// The Arrow type the engine sees for this column.
    pub fn to_arrow(&self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Integer => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Real => DataType::Float32,
            ColumnType::DoublePrecision => DataType::Float64,
            ColumnType::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::Text | ColumnType::Varchar { .. } => DataType::Utf8,
            ColumnType::Bytea => DataType::LargeBinary,
            ColumnType::Date => DataType::Date32,
            ColumnType::Time => DataType::Time64(TimeUnit::Microsecond),
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
            }
            ColumnType::Array(element) => {
                DataType::List(Arc::new(Field::new("element", element.to_arrow(), true)))
            }
        }
    }

    /// The column type to store values of an Arrow type in (`CREATE TABLE …
    /// AS SELECT`): `None` for types a table cannot hold.
    pub fn from_arrow(data_type: &DataType) -> Option<ColumnType> {
        Some(match data_type {
            DataType::Boolean => ColumnType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => ColumnType::SmallInt,
            DataType::Int32 | DataType::UInt16 => ColumnType::Integer,
            DataType::Int64 | DataType::UInt32 => ColumnType::BigInt,
            DataType::UInt64 => ColumnType::Numeric {
                precision: 20,
                scale: 0,
            },
            DataType::Float16 | DataType::Float32 => ColumnType::Real,
            DataType::Float64 => ColumnType::DoublePrecision,
            DataType::Decimal128(p, s) if *p <= MAX_NUMERIC_PRECISION && *s >= 0 => {
                ColumnType::Numeric {
                    precision: *p,
                    scale: *s,
                }
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                ColumnType::Text
            }
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => ColumnType::Bytea,
            DataType::Date32 | DataType::Date64 => ColumnType::Date,
            DataType::Time32(_) | DataType::Time64(_) => ColumnType::Time,
            DataType::Timestamp(_, None) => ColumnType::Timestamp,
            DataType::Timestamp(_, Some(_)) => ColumnType::TimestampTz,
            DataType::Dictionary(_, value) => return ColumnType::from_arrow(value),
            DataType::List(field)
            | DataType::LargeList(field)
            | DataType::FixedSizeList(field, _) => {
                let element = ColumnType::from_arrow(field.data_type())?;
                if !element.is_scalar() {
                    return None;
                }
                ColumnType::Array(Box::new(element))
            }
            _ => return None,
        })
    }

    /// Whether values of this type can be compared and sorted (used to reject
    /// arrays where a scalar is required).
    pub fn is_scalar(&self) -> bool {
        !matches!(self, ColumnType::Array(_))
    }
}

impl fmt::Display for ColumnType {
    /// PostgreSQL's canonical spelling, as `format_type` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => write!(f, "boolean"),
            ColumnType::SmallInt => write!(f, "smallint"),
            ColumnType::Integer => write!(f, "integer"),
            ColumnType::BigInt => write!(f, "bigint"),
            ColumnType::Real => write!(f, "real"),
            ColumnType::DoublePrecision => write!(f, "double precision"),
            ColumnType::Numeric { precision, scale } => write!(f, "numeric({precision},{scale})"),
            ColumnType::Text => write!(f, "text"),
            ColumnType::Varchar { max_len: None } => write!(f, "character varying"),
            ColumnType::Varchar { max_len: Some(n) } => write!(f, "character varying({n})"),
            ColumnType::Bytea => write!(f, "bytea"),
            ColumnType::Date => write!(f, "date"),
            ColumnType::Time => write!(f, "time without time zone"),
            ColumnType::Timestamp => write!(f, "timestamp without time zone"),
            ColumnType::TimestampTz => write!(f, "timestamp with time zone"),
            ColumnType::Array(element) => write!(f, "{element}[]"),
        }
    }
}

/// One column of a table definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: ColumnType,
    pub nullable: bool,
}

/// The declared columns of a table, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TableSchemaDef {
    pub columns: Vec<ColumnDef>,
}

impl TableSchemaDef {
    /// The Arrow schema the engine plans against.
    pub fn to_arrow(&self) -> Schema {
        Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.to_arrow(), c.nullable))
                .collect::<Vec<_>>(),
        )
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_postgres_names() {
        assert_eq!(ColumnType::DoublePrecision.to_string(), "double precision");
        assert_eq!(
            ColumnType::Varchar { max_len: Some(20) }.to_string(),
            "character varying(20)"
        );
        assert_eq!(
            ColumnType::Array(Box::new(ColumnType::BigInt)).to_string(),
            "bigint[]"
        );
        assert_eq!(
            ColumnType::Numeric {
                precision: 10,
                scale: 2
            }
            .to_string(),
            "numeric(10,2)"
        );
    }

    #[test]
    fn round_trips_through_json() {
        let schema = TableSchemaDef {
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    data_type: ColumnType::SmallInt,
                    nullable: false,
                },
                ColumnDef {
                    name: "tags".into(),
                    data_type: ColumnType::Array(Box::new(ColumnType::Varchar {
                        max_len: Some(5),
                    })),
                    nullable: true,
                },
            ],
        };
        let json = serde_json::to_string(&schema).unwrap();
        let back: TableSchemaDef = serde_json::from_str(&json).unwrap();
        assert_eq!(back, schema);
    }

    #[test]
    fn maps_to_arrow() {
        assert_eq!(ColumnType::SmallInt.to_arrow(), DataType::Int16);
        assert_eq!(
            ColumnType::TimestampTz.to_arrow(),
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")))
        );
    }
}

//! PostgreSQL types of Arrow data: the OIDs in RowDescription and
//! ParameterDescription, and the Arrow type of a parameter a client declares.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use pgwire::api::Type;

/// The PostgreSQL type a column of `data_type` is described as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Null => Type::TEXT,
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 => Type::INT8,
        // PostgreSQL's unsigned 32-bit type is oid.
        DataType::UInt32 => Type::OID,
        DataType::UInt64 => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => Type::NUMERIC,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::Dictionary(_, value) => pg_type(value),
        DataType::List(element)
        | DataType::LargeList(element)
        | DataType::ListView(element)
        | DataType::LargeListView(element)
        | DataType::FixedSizeList(element, _) => array_type_of(&pg_type(element.data_type())),
        // Printed with Arrow's display format; there is no faithful PostgreSQL type.
        DataType::Struct(_) | DataType::Map(_, _) | DataType::Union(_, _) => Type::TEXT,
        DataType::RunEndEncoded(_, values) => pg_type(values.data_type()),
    }
}

/// The array type whose elements are `element`.
pub fn array_type_of(element: &Type) -> Type {
    match *element {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::OID => Type::OID_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        Type::JSON => Type::JSON_ARRAY,
        Type::VARCHAR => Type::VARCHAR_ARRAY,
        _ => Type::TEXT_ARRAY,
    }
}

/// The Arrow type for a parameter the client declared with `oid` (0 or an
/// unknown OID leaves it to inference).
pub fn data_type_of_oid(oid: u32) -> Option<DataType> {
    let ty = Type::from_oid(oid)?;
    data_type_of(&ty)
}

fn data_type_of(ty: &Type) -> Option<DataType> {
    Some(match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 | Type::OID => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::CHAR => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00"))),
        Type::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        Type::JSON | Type::JSONB => DataType::Utf8,
        Type::UNKNOWN => return None,
        _ => match ty.kind() {
            postgres_types::Kind::Array(element) => {
                let element = data_type_of(element)?;
                DataType::List(Arc::new(Field::new("item", element, true)))
            }
            _ => return None,
        },
    })
}

/// `typlen` of the type, as RowDescription reports it.
pub fn type_size(ty: &Type) -> i16 {
    match *ty {
        Type::BOOL => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::TIME => 8,
        Type::INTERVAL => 16,
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_common_types() {
        assert_eq!(pg_type(&DataType::Int64), Type::INT8);
        assert_eq!(pg_type(&DataType::Utf8View), Type::TEXT);
        assert_eq!(
            pg_type(&DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("+00:00".into())
            )),
            Type::TIMESTAMPTZ
        );
        assert_eq!(
            pg_type(&DataType::List(Arc::new(Field::new(
                "element",
                DataType::Int64,
                true
            )))),
            Type::INT8_ARRAY
        );
        assert_eq!(data_type_of_oid(20), Some(DataType::Int64));
        assert_eq!(data_type_of_oid(0), None);
        assert!(matches!(data_type_of_oid(1016), Some(DataType::List(_))));
    }
}

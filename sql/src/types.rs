//! Mapping SQL type names to the column types a table can store.

use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, CharacterLength, DataType, ExactNumberInfo, TimezoneInfo,
};
use featuredb_catalog::ColumnType;
use featuredb_catalog::types::{DEFAULT_NUMERIC, MAX_NUMERIC_PRECISION};

use crate::error::{ParseError, ParseErrorKind};

/// Resolves a column type written in `CREATE TABLE`.
pub fn column_type(data_type: &DataType) -> Result<ColumnType, ParseError> {
    use DataType as D;
    let resolved = match data_type {
        D::Bool | D::Boolean => ColumnType::Boolean,
        D::SmallInt(_) | D::Int2(_) => ColumnType::SmallInt,
        D::Int(_) | D::Integer(_) | D::Int4(_) => ColumnType::Integer,
        D::BigInt(_) | D::Int8(_) => ColumnType::BigInt,
        D::Real | D::Float4 => ColumnType::Real,
        D::DoublePrecision | D::Float8 | D::Double(ExactNumberInfo::None) => {
            ColumnType::DoublePrecision
        }
        // PostgreSQL: FLOAT(p) is real for p <= 24, double precision above.
        D::Float(ExactNumberInfo::None) => ColumnType::DoublePrecision,
        D::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => ColumnType::Real,
        D::Float(ExactNumberInfo::Precision(p)) if *p <= 53 => ColumnType::DoublePrecision,
        D::Numeric(info) | D::Decimal(info) | D::Dec(info) => numeric(info)?,
        D::Text | D::String(None) => ColumnType::Text,
        D::Varchar(length) | D::CharacterVarying(length) | D::CharVarying(length) => {
            ColumnType::Varchar {
                max_len: char_length(length)?,
            }
        }
        D::Bytea => ColumnType::Bytea,
        D::Date => ColumnType::Date,
        D::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => ColumnType::Time,
        D::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            ColumnType::Timestamp
        }
        D::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => ColumnType::TimestampTz,
        D::Array(ArrayElemTypeDef::SquareBracket(element, _))
        | D::Array(ArrayElemTypeDef::AngleBracket(element))
        | D::Array(ArrayElemTypeDef::Parenthesis(element)) => {
            let element = column_type(element)?;
            if !element.is_scalar() {
                return Err(ParseError::unsupported(
                    "multidimensional arrays are not supported",
                ));
            }
            ColumnType::Array(Box::new(element))
        }
        D::Custom(name, modifiers) if modifiers.is_empty() => {
            match name.to_string().to_lowercase().as_str() {
                "timestamptz" => ColumnType::TimestampTz,
                "int2" => ColumnType::SmallInt,
                "int4" => ColumnType::Integer,
                "int8" => ColumnType::BigInt,
                "float4" => ColumnType::Real,
                "float8" => ColumnType::DoublePrecision,
                "bool" => ColumnType::Boolean,
                other => {
                    return Err(ParseError::new(
                        ParseErrorKind::UndefinedType,
                        format!("type \"{other}\" does not exist"),
                    ));
                }
            }
        }
        other => {
            return Err(ParseError::new(
                ParseErrorKind::UndefinedType,
                format!("type {other} is not supported in tables"),
            ));
        }
    };
    Ok(resolved)
}

fn numeric(info: &ExactNumberInfo) -> Result<ColumnType, ParseError> {
    let (precision, scale) = match info {
        ExactNumberInfo::None => return Ok(default_numeric()),
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
    };
    if precision == 0 || precision > MAX_NUMERIC_PRECISION as u64 {
        return Err(ParseError::invalid_parameter(format!(
            "NUMERIC precision {precision} must be between 1 and {MAX_NUMERIC_PRECISION}"
        )));
    }
    if scale < 0 || scale as u64 > precision {
        return Err(ParseError::invalid_parameter(format!(
            "NUMERIC scale {scale} must be between 0 and precision {precision}"
        )));
    }
    Ok(ColumnType::Numeric {
        precision: precision as u8,
        scale: scale as i8,
    })
}

fn default_numeric() -> ColumnType {
    ColumnType::Numeric {
        precision: DEFAULT_NUMERIC.0,
        scale: DEFAULT_NUMERIC.1,
    }
}

fn char_length(length: &Option<CharacterLength>) -> Result<Option<u32>, ParseError> {
    match length {
        None => Ok(None),
        Some(CharacterLength::IntegerLength { length, .. }) => {
            if *length == 0 || *length > 10_485_760 {
                return Err(ParseError::invalid_parameter(format!(
                    "length for type varchar must be between 1 and 10485760, got {length}"
                )));
            }
            Ok(Some(*length as u32))
        }
        Some(CharacterLength::Max) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_statement;
    use crate::statement::Statement;

    fn types_of(sql: &str) -> Vec<ColumnType> {
        match parse_statement(sql).unwrap() {
            Statement::CreateTable(t) => t.columns.into_iter().map(|c| c.data_type).collect(),
            other => panic!("not a create table: {other:?}"),
        }
    }

    #[test]
    fn resolves_postgres_type_names() {
        let types = types_of(
            "create table t (a bigint, b int, c smallint, d double precision, e real, \
             f numeric(10,2), g boolean, h text, i varchar(5), j bytea, k date, \
             l timestamp, m timestamptz, n timestamp with time zone, o int8[], p text[], \
             q float8, r int4, s numeric)",
        );
        use ColumnType::*;
        assert_eq!(
            types,
            vec![
                BigInt,
                Integer,
                SmallInt,
                DoublePrecision,
                Real,
                Numeric {
                    precision: 10,
                    scale: 2
                },
                Boolean,
                Text,
                Varchar { max_len: Some(5) },
                Bytea,
                Date,
                Timestamp,
                TimestampTz,
                TimestampTz,
                Array(Box::new(BigInt)),
                Array(Box::new(Text)),
                DoublePrecision,
                Integer,
                Numeric {
                    precision: 38,
                    scale: 10
                },
            ]
        );
    }

    #[test]
    fn rejects_unstorable_types() {
        let err = parse_statement("create table t (a numeric(50,2))").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::InvalidParameter);
        let err = parse_statement("create table t (a geometry)").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::UndefinedType);
    }
}

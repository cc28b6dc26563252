//! Reading PostgreSQL text and binary values into Arrow: bind parameters and
//! COPY FROM fields.
//!
//! A [`ColumnParser`] accumulates one column of text values into an Arrow
//! array of a given type, with PostgreSQL's input syntax and errors.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBufferBuilder, BooleanBuilder,
    Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, IntervalMonthDayNanoBuilder, LargeBinaryBuilder, ListArray, StringBuilder,
    StringViewBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, IntervalMonthDayNano};
use datafusion::common::ScalarValue;
use pgwire::api::Type;

use super::datetime::{
    PG_EPOCH_DAYS, PG_EPOCH_MICROS, parse_date, parse_interval, parse_time, parse_timestamp,
    parse_timestamptz,
};
use super::numeric::{parse_decimal, read_decimal_binary};
use super::time_zone::SessionTimeZone;
use crate::error::{Error, Result};

/// Why one text value was rejected; the caller adds context (parameter
/// number, COPY line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// `invalid input syntax for type T: "v"` (22P02).
    Syntax { type_name: String, value: String },
    /// `value "v" is out of range for type T` (22003).
    OutOfRange { type_name: String, value: String },
    /// A date, time or timestamp that does not parse (22007).
    DateTime { type_name: String, value: String },
}

impl ValueError {
    pub fn message(&self) -> String {
        match self {
            ValueError::Syntax { type_name, value } | ValueError::DateTime { type_name, value } => {
                format!("invalid input syntax for type {type_name}: \"{value}\"")
            }
            ValueError::OutOfRange { type_name, value } => {
                format!("value \"{value}\" is out of range for type {type_name}")
            }
        }
    }

    pub fn into_error(self) -> Error {
        match self {
            ValueError::Syntax { .. } => Error::InvalidTextRepresentation {
                message: self.message(),
            },
            ValueError::OutOfRange { .. } => Error::NumericValueOutOfRange {
                message: self.message(),
            },
            ValueError::DateTime { .. } => Error::InvalidDatetimeFormat {
                message: self.message(),
            },
        }
    }
}

fn syntax(type_name: &str, value: &str) -> ValueError {
    ValueError::Syntax {
        type_name: type_name.to_string(),
        value: value.to_string(),
    }
}

fn datetime(type_name: &str, value: &str) -> ValueError {
    ValueError::DateTime {
        type_name: type_name.to_string(),
        value: value.to_string(),
    }
}

fn out_of_range(type_name: &str, value: &str) -> ValueError {
    ValueError::OutOfRange {
        type_name: type_name.to_string(),
        value: value.to_string(),
    }
}

enum Builder {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal128(Decimal128Builder, u8, i8),
    Utf8(StringBuilder),
    Utf8View(StringViewBuilder),
    Binary(BinaryBuilder),
    LargeBinary(LargeBinaryBuilder),
    Date32(Date32Builder),
    Time64(Time64MicrosecondBuilder),
    /// Parsed as microseconds; cast to the target unit at the end.
    Timestamp(TimestampMicrosecondBuilder, bool),
    Interval(IntervalMonthDayNanoBuilder),
    List(Box<ListBuilder>),
    /// Types without a native parser: collected as text, cast at the end.
    ViaText(StringBuilder),
}

struct ListBuilder {
    field: FieldRef,
    elements: ColumnParser,
    offsets: Vec<i32>,
    validity: BooleanBufferBuilder,
}

/// Builds one Arrow column from PostgreSQL text values.
pub struct ColumnParser {
    target: DataType,
    builder: Builder,
    time_zone: SessionTimeZone,
}

impl ColumnParser {
    pub fn new(target: &DataType, time_zone: &SessionTimeZone, capacity: usize) -> Self {
        let builder = match target {
            DataType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Int16 => Builder::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Builder::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float32 => Builder::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Decimal128(p, s) => Builder::Decimal128(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(*p, *s)
                    .unwrap_or_default(),
                *p,
                *s,
            ),
            DataType::Utf8 => Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
            DataType::Utf8View => Builder::Utf8View(StringViewBuilder::with_capacity(capacity)),
            DataType::Binary => {
                Builder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16))
            }
            DataType::LargeBinary => {
                Builder::LargeBinary(LargeBinaryBuilder::with_capacity(capacity, capacity * 16))
            }
            DataType::Date32 => Builder::Date32(Date32Builder::with_capacity(capacity)),
            DataType::Time64(_) => {
                Builder::Time64(Time64MicrosecondBuilder::with_capacity(capacity))
            }
            DataType::Timestamp(_, tz) => Builder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity),
                tz.is_some(),
            ),
            DataType::Interval(_) => {
                Builder::Interval(IntervalMonthDayNanoBuilder::with_capacity(capacity))
            }
            DataType::List(field) => Builder::List(Box::new(ListBuilder {
                field: field.clone(),
                elements: ColumnParser::new(field.data_type(), time_zone, capacity),
                offsets: vec![0],
                validity: BooleanBufferBuilder::new(capacity),
            })),
            _ => Builder::ViaText(StringBuilder::with_capacity(capacity, capacity * 16)),
        };
        Self {
            target: target.clone(),
            builder,
            time_zone: time_zone.clone(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.builder {
            Builder::Boolean(b) => b.len(),
            Builder::Int16(b) => b.len(),
            Builder::Int32(b) => b.len(),
            Builder::Int64(b) => b.len(),
            Builder::Float32(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Decimal128(b, _, _) => b.len(),
            Builder::Utf8(b) => b.len(),
            Builder::Utf8View(b) => b.len(),
            Builder::Binary(b) => b.len(),
            Builder::LargeBinary(b) => b.len(),
            Builder::Date32(b) => b.len(),
            Builder::Time64(b) => b.len(),
            Builder::Timestamp(b, _) => b.len(),
            Builder::Interval(b) => b.len(),
            Builder::List(l) => l.offsets.len() - 1,
            Builder::ViaText(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn append_null(&mut self) {
        match &mut self.builder {
            Builder::Boolean(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Decimal128(b, _, _) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Utf8View(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::LargeBinary(b) => b.append_null(),
            Builder::Date32(b) => b.append_null(),
            Builder::Time64(b) => b.append_null(),
            Builder::Timestamp(b, _) => b.append_null(),
            Builder::Interval(b) => b.append_null(),
            Builder::List(l) => {
                let last = *l.offsets.last().unwrap_or(&0);
                l.offsets.push(last);
                l.validity.append(false);
            }
            Builder::ViaText(b) => b.append_null(),
        }
    }

    /// Appends one value written in PostgreSQL's text syntax.
    pub fn append_text(&mut self, text: &str) -> std::result::Result<(), ValueError> {
        match &mut self.builder {
            Builder::Boolean(b) => {
                b.append_value(parse_bool(text).ok_or_else(|| syntax("boolean", text))?)
            }
            Builder::Int16(b) => b.append_value(parse_int::<i16>(text, "smallint")?),
            Builder::Int32(b) => b.append_value(parse_int::<i32>(text, "integer")?),
            Builder::Int64(b) => b.append_value(parse_int::<i64>(text, "bigint")?),
            Builder::Float32(b) => {
                let value = parse_float(text, "real")?;
                if value.is_finite() && (value as f32).is_infinite() {
                    return Err(out_of_range("real", text));
                }
                b.append_value(value as f32)
            }
            Builder::Float64(b) => b.append_value(parse_float(text, "double precision")?),
            Builder::Decimal128(b, precision, scale) => {
                let value = parse_decimal(text, *precision, *scale).ok_or_else(|| {
                    if looks_numeric(text) {
                        ValueError::OutOfRange {
                            type_name: format!("numeric({precision},{scale})"),
                            value: text.to_string(),
                        }
                    } else {
                        syntax("numeric", text)
                    }
                })?;
                b.append_value(value)
            }
            Builder::Utf8(b) => b.append_value(text),
            Builder::Utf8View(b) => b.append_value(text),
            Builder::Binary(b) => {
                b.append_value(parse_bytea(text).ok_or_else(|| syntax("bytea", text))?)
            }
            Builder::LargeBinary(b) => {
                b.append_value(parse_bytea(text).ok_or_else(|| syntax("bytea", text))?)
            }
            Builder::Date32(b) => {
                b.append_value(parse_date(text).ok_or_else(|| syntax("date", text))?)
            }
            Builder::Time64(b) => b.append_value(
                parse_time(text).ok_or_else(|| syntax("time without time zone", text))?,
            ),
            Builder::Timestamp(b, tz) => {
                let micros = if *tz {
                    parse_timestamptz(text, &self.time_zone)
                        .ok_or_else(|| datetime("timestamp with time zone", text))?
                } else {
                    parse_timestamp(text)
                        .ok_or_else(|| datetime("timestamp without time zone", text))?
                };
                b.append_value(micros)
            }
            Builder::Interval(b) => {
                let (months, days, micros) =
                    parse_interval(text).ok_or_else(|| datetime("interval", text))?;
                b.append_value(IntervalMonthDayNano::new(months, days, micros * 1000))
            }
            Builder::List(list) => {
                let elements = parse_array_literal(text).ok_or_else(|| ValueError::Syntax {
                    type_name: "array".to_string(),
                    value: text.to_string(),
                })?;
                for element in &elements {
                    match element {
                        None => list.elements.append_null(),
                        Some(value) => list.elements.append_text(value)?,
                    }
                }
                let last = *list.offsets.last().unwrap_or(&0);
                list.offsets.push(last + elements.len() as i32);
                list.validity.append(true);
            }
            Builder::ViaText(b) => b.append_value(text),
        }
        Ok(())
    }

    /// The column built so far, in the target type.
    pub fn finish(&mut self) -> Result<ArrayRef> {
        let array: ArrayRef = match &mut self.builder {
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Decimal128(b, _, _) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Utf8View(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::LargeBinary(b) => Arc::new(b.finish()),
            Builder::Date32(b) => Arc::new(b.finish()),
            Builder::Time64(b) => Arc::new(b.finish()),
            Builder::Timestamp(b, tz) => {
                let array = b.finish();
                if *tz {
                    Arc::new(array.with_timezone("+00:00"))
                } else {
                    Arc::new(array)
                }
            }
            Builder::Interval(b) => Arc::new(b.finish()),
            Builder::List(list) => {
                let values = list.elements.finish()?;
                let offsets =
                    OffsetBuffer::new(std::mem::replace(&mut list.offsets, vec![0]).into());
                let validity = NullBuffer::new(list.validity.finish());
                Arc::new(ListArray::try_new(
                    list.field.clone(),
                    offsets,
                    values,
                    Some(validity),
                )?)
            }
            Builder::ViaText(b) => Arc::new(b.finish()),
        };
        if array.data_type() == &self.target {
            Ok(array)
        } else {
            Ok(cast(&array, &self.target)?)
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    // PostgreSQL accepts any unique prefix of true/false/yes/no, on/off, 1/0.
    if "true".starts_with(&lower) || "yes".starts_with(&lower) || lower == "on" || lower == "1" {
        Some(true)
    } else if "false".starts_with(&lower)
        || "no".starts_with(&lower)
        || lower == "off"
        || lower == "of"
        || lower == "0"
    {
        Some(false)
    } else {
        None
    }
}

trait BoundedInt: Sized + TryFrom<i64> {}
impl BoundedInt for i16 {}
impl BoundedInt for i32 {}
impl BoundedInt for i64 {}

fn parse_int<T: BoundedInt>(text: &str, type_name: &str) -> std::result::Result<T, ValueError> {
    let trimmed = text.trim();
    match trimmed.parse::<i64>() {
        Ok(value) => T::try_from(value).map_err(|_| out_of_range(type_name, text)),
        Err(e) => {
            use std::num::IntErrorKind;
            match e.kind() {
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                    Err(out_of_range(type_name, text))
                }
                _ => Err(syntax(type_name, text)),
            }
        }
    }
}

fn parse_float(text: &str, type_name: &str) -> std::result::Result<f64, ValueError> {
    let trimmed = text.trim();
    let value: f64 = trimmed.parse().map_err(|_| syntax(type_name, text))?;
    if value.is_infinite() && !trimmed.to_ascii_lowercase().contains("inf") {
        return Err(out_of_range(type_name, text));
    }
    Ok(value)
}

fn looks_numeric(text: &str) -> bool {
    let t = text.trim().trim_start_matches(['+', '-']);
    !t.is_empty()
        && t.chars().any(|c| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
}

/// `\x0a0b` (hex) or the escape format (`\\`, `\ooo`, literal bytes).
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        return hex
            .chunks(2)
            .map(|pair| {
                let high = (pair[0] as char).to_digit(16)?;
                let low = (pair[1] as char).to_digit(16)?;
                Some((high * 16 + low) as u8)
            })
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + (b - b'0') as u32);
            if value > 255 {
                return None;
            }
            out.push(value as u8);
            i += 4;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Splits a one-dimensional array literal `{a,"b c",NULL}` into elements.
pub fn parse_array_literal(text: &str) -> Option<Vec<Option<String>>> {
    let text = text.trim();
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut elements = Vec::new();
    if inner.trim().is_empty() {
        return Some(elements);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '}' || c == '"' {
                    // Nested arrays are not supported.
                    return None;
                }
                chars.next();
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
            value = value.trim_end().to_string();
        }
        if !quoted && value.eq_ignore_ascii_case("null") {
            elements.push(None);
        } else {
            if !quoted && value.is_empty() {
                return None;
            }
            elements.push(Some(value));
        }
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(_) => return None,
        }
    }
    Some(elements)
}

/// A bind parameter sent in text format, as a value of `target`.
pub fn parse_text_param(
    text: &str,
    target: &DataType,
    time_zone: &SessionTimeZone,
) -> Result<ScalarValue> {
    // Integers directly: a key lookup's parameter is parsed on every
    // execution, and an Arrow builder per value cost more than the lookup.
    let integer = match target {
        DataType::Int16 => {
            Some(parse_int::<i16>(text, "smallint").map(|v| ScalarValue::Int16(Some(v))))
        }
        DataType::Int32 => {
            Some(parse_int::<i32>(text, "integer").map(|v| ScalarValue::Int32(Some(v))))
        }
        DataType::Int64 => {
            Some(parse_int::<i64>(text, "bigint").map(|v| ScalarValue::Int64(Some(v))))
        }
        _ => None,
    };
    if let Some(parsed) = integer {
        return parsed.map_err(ValueError::into_error);
    }
    let mut parser = ColumnParser::new(target, time_zone, 1);
    parser.append_text(text).map_err(ValueError::into_error)?;
    let array = parser.finish()?;
    Ok(ScalarValue::try_from_array(&array, 0)?)
}

fn binary_error(ty: &Type, detail: &str) -> Error {
    Error::InvalidBinaryRepresentation {
        message: format!(
            "incorrect binary data format for type {}: {detail}",
            ty.name()
        ),
    }
}

fn fixed<const N: usize>(bytes: &[u8], ty: &Type) -> Result<[u8; N]> {
    bytes
        .try_into()
        .map_err(|_| binary_error(ty, &format!("expected {N} bytes, got {}", bytes.len())))
}

/// A bind parameter sent in binary format as type `ty`, as a value of
/// `target`.
pub fn parse_binary_param(bytes: &[u8], ty: &Type, target: &DataType) -> Result<ScalarValue> {
    let value = decode_binary(bytes, ty)?;
    if &value.data_type() == target {
        Ok(value)
    } else {
        Ok(value.cast_to(target)?)
    }
}

/// PostgreSQL's binary `date`/`timestamp` for `infinity` and `-infinity`:
/// the type's largest and smallest values. Arrow has no infinite dates or
/// times, so they are refused rather than stored as far-off instants.
const INFINITE_DATES: [i32; 2] = [i32::MAX, i32::MIN];
const INFINITE_TIMESTAMPS: [i64; 2] = [i64::MAX, i64::MIN];

/// The range of PostgreSQL's timestamps, in its binary form (µs since
/// 2000-01-01): 4714-11-24 BC to the end of 294276 AD. Arrow counts from
/// 1970, so the last 30 years of it do not fit (refused as well).
const MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;
const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;

/// The range of PostgreSQL's dates, in its binary form (days since
/// 2000-01-01): 4714-11-24 BC to the end of 5874897 AD.
const MIN_DATE: i32 = -2_451_545;
const END_DATE: i32 = 2_145_031_949;

fn infinite(type_name: &str) -> Error {
    Error::DatetimeFieldOverflow(format!(
        "{type_name} out of range: featuredb does not store infinite {type_name}s"
    ))
}

/// A binary `date` (days since 2000-01-01) as days since 1970-01-01.
fn binary_date(days: i32) -> Result<i32> {
    if INFINITE_DATES.contains(&days) {
        return Err(infinite("date"));
    }
    if !(MIN_DATE..END_DATE).contains(&days) {
        return Err(Error::DatetimeFieldOverflow(
            "date out of range".to_string(),
        ));
    }
    Ok(days + PG_EPOCH_DAYS)
}

/// A binary `time` (µs since midnight), which must lie within a day
/// (PostgreSQL answers 22P03 otherwise, as here).
fn binary_time(micros: i64) -> Result<i64> {
    if (0..=86_400_000_000).contains(&micros) {
        Ok(micros)
    } else {
        Err(Error::InvalidBinaryRepresentation {
            message: "time out of range".to_string(),
        })
    }
}

/// A binary `timestamp[tz]` (µs since 2000-01-01) as µs since 1970-01-01.
fn binary_timestamp(micros: i64) -> Result<i64> {
    if INFINITE_TIMESTAMPS.contains(&micros) {
        return Err(infinite("timestamp"));
    }
    let out_of_range = || Error::DatetimeFieldOverflow("timestamp out of range".to_string());
    if !(MIN_TIMESTAMP..END_TIMESTAMP).contains(&micros) {
        return Err(out_of_range());
    }
    micros.checked_add(PG_EPOCH_MICROS).ok_or_else(out_of_range)
}

fn decode_binary(bytes: &[u8], ty: &Type) -> Result<ScalarValue> {
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(Some(fixed::<1>(bytes, ty)?[0] != 0)),
        Type::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes(fixed(bytes, ty)?))),
        Type::INT4 | Type::OID => ScalarValue::Int32(Some(i32::from_be_bytes(fixed(bytes, ty)?))),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(fixed(bytes, ty)?))),
        Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(fixed(bytes, ty)?))),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(fixed(bytes, ty)?))),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::JSON
        | Type::CHAR => ScalarValue::Utf8(Some(
            std::str::from_utf8(bytes)
                .map_err(|_| binary_error(ty, "invalid UTF-8"))?
                .to_string(),
        )),
        Type::JSONB => {
            let text = bytes
                .split_first()
                .filter(|(version, _)| **version == 1)
                .map(|(_, rest)| rest)
                .ok_or_else(|| binary_error(ty, "unsupported jsonb version"))?;
            ScalarValue::Utf8(Some(
                std::str::from_utf8(text)
                    .map_err(|_| binary_error(ty, "invalid UTF-8"))?
                    .to_string(),
            ))
        }
        Type::BYTEA => ScalarValue::Binary(Some(bytes.to_vec())),
        Type::DATE => {
            ScalarValue::Date32(Some(binary_date(i32::from_be_bytes(fixed(bytes, ty)?))?))
        }
        Type::TIME => ScalarValue::Time64Microsecond(Some(binary_time(i64::from_be_bytes(
            fixed(bytes, ty)?,
        ))?)),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            Some(binary_timestamp(i64::from_be_bytes(fixed(bytes, ty)?))?),
            None,
        ),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            Some(binary_timestamp(i64::from_be_bytes(fixed(bytes, ty)?))?),
            Some(Arc::from("+00:00")),
        ),
        Type::INTERVAL => {
            let raw: [u8; 16] = fixed(bytes, ty)?;
            let micros = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
            let days = i32::from_be_bytes(raw[8..12].try_into().expect("4 bytes"));
            let months = i32::from_be_bytes(raw[12..].try_into().expect("4 bytes"));
            let nanos = micros
                .checked_mul(1000)
                .ok_or_else(|| Error::DatetimeFieldOverflow("interval out of range".to_string()))?;
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanos)))
        }
        Type::NUMERIC => {
            let text = read_decimal_binary(bytes).ok_or_else(|| binary_error(ty, "malformed"))?;
            let fraction = text.split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
            let scale = fraction.min(38) as i8;
            let unscaled =
                parse_decimal(&text, 38, scale).ok_or_else(|| Error::NumericValueOutOfRange {
                    message: format!("numeric value {text} does not fit in 38 digits"),
                })?;
            ScalarValue::Decimal128(Some(unscaled), 38, scale)
        }
        _ => match ty.kind() {
            postgres_types::Kind::Array(element) => decode_binary_array(bytes, element)?,
            _ => {
                return Err(Error::FeatureNotSupported(format!(
                    "binary parameters of type {} are not supported",
                    ty.name()
                )));
            }
        },
    })
}

fn decode_binary_array(bytes: &[u8], element: &Type) -> Result<ScalarValue> {
    let ty = &Type::UNKNOWN;
    let read_i32 = |at: usize| -> Result<i32> {
        bytes
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| binary_error(ty, "truncated array"))
    };
    let ndim = read_i32(0)?;
    let element_type = super::oid::data_type_of_oid(element.oid())
        .ok_or_else(|| binary_error(element, "unsupported array element type"))?;
    if ndim == 0 {
        return Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &[],
            &element_type,
        )));
    }
    if ndim != 1 {
        return Err(Error::FeatureNotSupported(
            "multidimensional array parameters are not supported".to_string(),
        ));
    }
    let length = read_i32(12)?;
    if length < 0 {
        return Err(binary_error(ty, "negative array length"));
    }
    let mut at = 20;
    let mut values = Vec::with_capacity(length as usize);
    for _ in 0..length {
        let size = read_i32(at)?;
        at += 4;
        if size < 0 {
            values.push(ScalarValue::try_from(&element_type)?);
        } else {
            let end = at + size as usize;
            let slice = bytes
                .get(at..end)
                .ok_or_else(|| binary_error(ty, "truncated array element"))?;
            let value = decode_binary(slice, element)?;
            values.push(if value.data_type() == element_type {
                value
            } else {
                value.cast_to(&element_type)?
            });
            at = end;
        }
    }
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &values,
        &element_type,
    )))
}

/// The Arrow list field of parameter arrays.
pub fn list_field(element: DataType) -> FieldRef {
    Arc::new(Field::new("item", element, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> SessionTimeZone {
        SessionTimeZone::Named(chrono_tz::UTC)
    }

    #[test]
    fn parses_scalars() {
        assert_eq!(
            parse_text_param("42", &DataType::Int64, &utc()).unwrap(),
            ScalarValue::Int64(Some(42))
        );
        assert_eq!(
            parse_text_param("yes", &DataType::Boolean, &utc()).unwrap(),
            ScalarValue::Boolean(Some(true))
        );
        assert!(matches!(
            parse_text_param("abc", &DataType::Int32, &utc()),
            Err(Error::InvalidTextRepresentation { .. })
        ));
        assert!(matches!(
            parse_text_param("99999", &DataType::Int16, &utc()),
            Err(Error::NumericValueOutOfRange { .. })
        ));
        assert_eq!(
            parse_text_param("12.5", &DataType::Decimal128(10, 2), &utc()).unwrap(),
            ScalarValue::Decimal128(Some(1250), 10, 2)
        );
        assert_eq!(
            parse_text_param("\\x01ff", &DataType::Binary, &utc()).unwrap(),
            ScalarValue::Binary(Some(vec![1, 255]))
        );
    }

    #[test]
    fn parses_arrays() {
        assert_eq!(
            parse_array_literal(r#"{1, 2,NULL,"a b","x\"y"}"#).unwrap(),
            vec![
                Some("1".into()),
                Some("2".into()),
                None,
                Some("a b".into()),
                Some("x\"y".into())
            ]
        );
        assert_eq!(parse_array_literal("{}").unwrap(), vec![]);
        assert!(parse_array_literal("{1,{2}}").is_none());
        let target = DataType::List(list_field(DataType::Int64));
        let value = parse_text_param("{1,NULL}", &target, &utc()).unwrap();
        assert_eq!(value.data_type(), target);
    }

    #[test]
    fn decodes_binary() {
        assert_eq!(
            parse_binary_param(&7i64.to_be_bytes(), &Type::INT8, &DataType::Int64).unwrap(),
            ScalarValue::Int64(Some(7))
        );
        assert_eq!(
            parse_binary_param(&7i32.to_be_bytes(), &Type::INT4, &DataType::Int64).unwrap(),
            ScalarValue::Int64(Some(7))
        );
        assert!(parse_binary_param(&[1, 2], &Type::INT8, &DataType::Int64).is_err());
    }

    /// Binary dates, timestamps and intervals out of range — `infinity`,
    /// `-infinity`, garbage — are refused with 22008 (a time with 22P03, as
    /// PostgreSQL does), never wrapped or panicked on.
    #[test]
    fn binary_datetimes_out_of_range_are_refused() {
        let out_of_range = |bytes: &[u8], ty: &Type, target: DataType| match parse_binary_param(
            bytes, ty, &target,
        ) {
            Err(Error::DatetimeFieldOverflow(message)) => message,
            other => panic!("{ty}: {other:?}"),
        };
        let timestamp =
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None);
        let timestamptz = DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some(Arc::from("+00:00")),
        );
        for micros in [i64::MAX, i64::MIN] {
            let message = out_of_range(&micros.to_be_bytes(), &Type::TIMESTAMP, timestamp.clone());
            assert!(message.contains("infinite"), "{message}");
            out_of_range(
                &micros.to_be_bytes(),
                &Type::TIMESTAMPTZ,
                timestamptz.clone(),
            );
        }
        out_of_range(
            &(i64::MAX - 1).to_be_bytes(),
            &Type::TIMESTAMP,
            timestamp.clone(),
        );
        out_of_range(
            &(MIN_TIMESTAMP - 1).to_be_bytes(),
            &Type::TIMESTAMP,
            timestamp.clone(),
        );
        for days in [i32::MAX, i32::MIN] {
            out_of_range(&days.to_be_bytes(), &Type::DATE, DataType::Date32);
        }
        out_of_range(&(i32::MAX - 1).to_be_bytes(), &Type::DATE, DataType::Date32);
        out_of_range(&END_DATE.to_be_bytes(), &Type::DATE, DataType::Date32);
        out_of_range(&(MIN_DATE - 1).to_be_bytes(), &Type::DATE, DataType::Date32);
        // Within PostgreSQL's range, past what Arrow's µs since 1970 hold.
        out_of_range(
            &(END_TIMESTAMP - 1).to_be_bytes(),
            &Type::TIMESTAMP,
            timestamp.clone(),
        );
        let time = DataType::Time64(datafusion::arrow::datatypes::TimeUnit::Microsecond);
        assert!(matches!(
            parse_binary_param(&(-1i64).to_be_bytes(), &Type::TIME, &time),
            Err(Error::InvalidBinaryRepresentation { .. })
        ));
        let mut interval = i64::MAX.to_be_bytes().to_vec();
        interval.extend_from_slice(&[0; 8]);
        out_of_range(
            &interval,
            &Type::INTERVAL,
            DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
        );
        // The edges of PostgreSQL's range are fine.
        let first = parse_binary_param(&MIN_TIMESTAMP.to_be_bytes(), &Type::TIMESTAMP, &timestamp);
        assert!(first.is_ok());
        let last_date = parse_binary_param(
            &(END_DATE - 1).to_be_bytes(),
            &Type::DATE,
            &DataType::Date32,
        );
        assert!(last_date.is_ok());
        let epoch = parse_binary_param(&0i64.to_be_bytes(), &Type::TIMESTAMP, &timestamp).unwrap();
        assert_eq!(
            epoch,
            ScalarValue::TimestampMicrosecond(Some(PG_EPOCH_MICROS), None)
        );
    }
}

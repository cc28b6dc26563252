//! Encoding Arrow values as PostgreSQL text and binary values: the bytes of
//! a DataRow field, of a COPY TO field, of an array element.
//!
//! A [`ColumnEncoder`] is built once per column of a batch (downcasting the
//! array once), then asked for each row's value.

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryViewArray, BooleanArray, Date32Array, Date64Array,
    Decimal128Array, FixedSizeBinaryArray, FixedSizeListArray, GenericBinaryArray,
    GenericListArray, GenericStringArray, PrimitiveArray, StringViewArray,
};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit,
    IntervalYearMonthType, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;

use super::datum::Datum;
use super::oid::pg_type;
use super::time_zone::SessionTimeZone;
use crate::error::Result;

/// Session settings that change how values print.
#[derive(Debug, Clone)]
pub struct OutputContext {
    pub time_zone: SessionTimeZone,
    pub extra_float_digits: i32,
}

impl Default for OutputContext {
    fn default() -> Self {
        Self {
            time_zone: SessionTimeZone::Named(chrono_tz::UTC),
            extra_float_digits: 1,
        }
    }
}

/// One column of a batch, downcast once, ready to encode any row.
pub enum ColumnEncoder<'a> {
    Null,
    Boolean(&'a BooleanArray),
    Int8(&'a PrimitiveArray<Int8Type>),
    Int16(&'a PrimitiveArray<Int16Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    UInt8(&'a PrimitiveArray<UInt8Type>),
    UInt16(&'a PrimitiveArray<UInt16Type>),
    UInt32(&'a PrimitiveArray<UInt32Type>),
    UInt64(&'a PrimitiveArray<UInt64Type>),
    Float16(&'a PrimitiveArray<Float16Type>),
    Float32(&'a PrimitiveArray<Float32Type>),
    Float64(&'a PrimitiveArray<Float64Type>),
    Decimal128(&'a Decimal128Array, i8),
    Utf8(&'a GenericStringArray<i32>),
    LargeUtf8(&'a GenericStringArray<i64>),
    Utf8View(&'a StringViewArray),
    Binary(&'a GenericBinaryArray<i32>),
    LargeBinary(&'a GenericBinaryArray<i64>),
    BinaryView(&'a BinaryViewArray),
    FixedSizeBinary(&'a FixedSizeBinaryArray),
    Date32(&'a Date32Array),
    Date64(&'a Date64Array),
    /// Time of day: the array (for nulls), its raw values and their unit.
    Time(&'a dyn Array, Ticks<'a>, TimeUnit),
    /// `true` when the timestamp has a time zone (values are UTC instants).
    Timestamp(&'a dyn Array, &'a [i64], TimeUnit, bool),
    Duration(&'a dyn Array, &'a [i64], TimeUnit),
    IntervalYearMonth(&'a PrimitiveArray<IntervalYearMonthType>),
    IntervalDayTime(&'a PrimitiveArray<IntervalDayTimeType>),
    IntervalMonthDayNano(&'a PrimitiveArray<IntervalMonthDayNanoType>),
    List(Box<ListValues<'a>>),
    Dictionary(&'a dyn Array, Box<ColumnEncoder<'a>>),
    /// Anything else prints with Arrow's display format (as text).
    Display(ArrayFormatter<'a>),
}

/// A list column: offsets into a flattened element column.
pub struct ListValues<'a> {
    offsets: ListOffsets<'a>,
    elements: ColumnEncoder<'a>,
    element_array: &'a dyn Array,
    element_type: Type,
}

enum ListOffsets<'a> {
    Small(&'a GenericListArray<i32>),
    Large(&'a GenericListArray<i64>),
    Fixed(&'a FixedSizeListArray),
}

impl ListOffsets<'_> {
    fn range(&self, row: usize) -> std::ops::Range<usize> {
        match self {
            ListOffsets::Small(a) => {
                let o = a.value_offsets();
                o[row] as usize..o[row + 1] as usize
            }
            ListOffsets::Large(a) => {
                let o = a.value_offsets();
                o[row] as usize..o[row + 1] as usize
            }
            ListOffsets::Fixed(a) => {
                let size = a.value_length() as usize;
                row * size..(row + 1) * size
            }
        }
    }
}

fn primitive<T: ArrowPrimitiveType>(array: &dyn Array) -> &PrimitiveArray<T> {
    array.as_primitive::<T>()
}

const DISPLAY_OPTIONS: FormatOptions<'static> = FormatOptions::new().with_display_error(true);

impl<'a> ColumnEncoder<'a> {
    pub fn new(array: &'a dyn Array) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Null => ColumnEncoder::Null,
            DataType::Boolean => ColumnEncoder::Boolean(array.as_boolean()),
            DataType::Int8 => ColumnEncoder::Int8(primitive(array)),
            DataType::Int16 => ColumnEncoder::Int16(primitive(array)),
            DataType::Int32 => ColumnEncoder::Int32(primitive(array)),
            DataType::Int64 => ColumnEncoder::Int64(primitive(array)),
            DataType::UInt8 => ColumnEncoder::UInt8(primitive(array)),
            DataType::UInt16 => ColumnEncoder::UInt16(primitive(array)),
            DataType::UInt32 => ColumnEncoder::UInt32(primitive(array)),
            DataType::UInt64 => ColumnEncoder::UInt64(primitive(array)),
            DataType::Float16 => ColumnEncoder::Float16(primitive(array)),
            DataType::Float32 => ColumnEncoder::Float32(primitive(array)),
            DataType::Float64 => ColumnEncoder::Float64(primitive(array)),
            DataType::Decimal128(_, scale) => {
                ColumnEncoder::Decimal128(array.as_primitive(), *scale)
            }
            DataType::Utf8 => ColumnEncoder::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => ColumnEncoder::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => ColumnEncoder::Utf8View(array.as_string_view()),
            DataType::Binary => ColumnEncoder::Binary(array.as_binary::<i32>()),
            DataType::LargeBinary => ColumnEncoder::LargeBinary(array.as_binary::<i64>()),
            DataType::BinaryView => ColumnEncoder::BinaryView(array.as_binary_view()),
            DataType::FixedSizeBinary(_) => {
                ColumnEncoder::FixedSizeBinary(array.as_fixed_size_binary())
            }
            DataType::Date32 => ColumnEncoder::Date32(array.as_primitive()),
            DataType::Date64 => ColumnEncoder::Date64(array.as_primitive()),
            DataType::Time32(unit) => {
                ColumnEncoder::Time(array, Ticks::I32(i32_values(array)), *unit)
            }
            DataType::Time64(unit) => {
                ColumnEncoder::Time(array, Ticks::I64(i64_values(array)), *unit)
            }
            DataType::Timestamp(unit, tz) => {
                ColumnEncoder::Timestamp(array, i64_values(array), *unit, tz.is_some())
            }
            DataType::Duration(unit) => ColumnEncoder::Duration(array, i64_values(array), *unit),
            DataType::Interval(IntervalUnit::YearMonth) => {
                ColumnEncoder::IntervalYearMonth(array.as_primitive())
            }
            DataType::Interval(IntervalUnit::DayTime) => {
                ColumnEncoder::IntervalDayTime(array.as_primitive())
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                ColumnEncoder::IntervalMonthDayNano(array.as_primitive())
            }
            DataType::List(field) => list(
                ListOffsets::Small(array.as_list::<i32>()),
                field.data_type(),
                array.as_list::<i32>().values(),
            )?,
            DataType::LargeList(field) => list(
                ListOffsets::Large(array.as_list::<i64>()),
                field.data_type(),
                array.as_list::<i64>().values(),
            )?,
            DataType::FixedSizeList(field, _) => list(
                ListOffsets::Fixed(array.as_fixed_size_list()),
                field.data_type(),
                array.as_fixed_size_list().values(),
            )?,
            DataType::Dictionary(_, _) => {
                let dictionary = array.as_any_dictionary();
                ColumnEncoder::Dictionary(
                    dictionary.keys(),
                    Box::new(ColumnEncoder::new(dictionary.values().as_ref())?),
                )
            }
            _ => ColumnEncoder::Display(ArrayFormatter::try_new(array, &DISPLAY_OPTIONS)?),
        })
    }

    /// The value at `row` as a [`Datum`]; `None` for the columns that
    /// print themselves (lists, dictionaries, Arrow's display format).
    fn datum(&self, row: usize) -> Option<Datum<'a>> {
        Some(match self {
            ColumnEncoder::Boolean(a) => Datum::Bool(a.value(row)),
            ColumnEncoder::Int8(a) => Datum::Int2(a.value(row) as i16),
            ColumnEncoder::Int16(a) => Datum::Int2(a.value(row)),
            ColumnEncoder::Int32(a) => Datum::Int4(a.value(row)),
            ColumnEncoder::Int64(a) => Datum::Int8(a.value(row)),
            ColumnEncoder::UInt8(a) => Datum::Int2(a.value(row) as i16),
            ColumnEncoder::UInt16(a) => Datum::Int4(a.value(row) as i32),
            ColumnEncoder::UInt32(a) => Datum::Oid(a.value(row)),
            ColumnEncoder::UInt64(a) => Datum::Numeric(a.value(row) as i128, 0),
            ColumnEncoder::Float16(a) => Datum::Float4(a.value(row).to_f32()),
            ColumnEncoder::Float32(a) => Datum::Float4(a.value(row)),
            ColumnEncoder::Float64(a) => Datum::Float8(a.value(row)),
            ColumnEncoder::Decimal128(a, scale) => Datum::Numeric(a.value(row), *scale),
            ColumnEncoder::Utf8(a) => Datum::Text(a.value(row)),
            ColumnEncoder::LargeUtf8(a) => Datum::Text(a.value(row)),
            ColumnEncoder::Utf8View(a) => Datum::Text(a.value(row)),
            ColumnEncoder::Binary(a) => Datum::Bytea(a.value(row)),
            ColumnEncoder::LargeBinary(a) => Datum::Bytea(a.value(row)),
            ColumnEncoder::BinaryView(a) => Datum::Bytea(a.value(row)),
            ColumnEncoder::FixedSizeBinary(a) => Datum::Bytea(a.value(row)),
            ColumnEncoder::Date32(a) => Datum::Date(a.value(row)),
            ColumnEncoder::Date64(a) => Datum::Date(a.value(row).div_euclid(86_400_000) as i32),
            ColumnEncoder::Time(_, ticks, unit) => Datum::Time(to_micros(ticks.get(row), *unit)),
            ColumnEncoder::Timestamp(_, values, unit, tz) => {
                let micros = to_micros(values[row], *unit);
                if *tz {
                    Datum::TimestampTz(micros)
                } else {
                    Datum::Timestamp(micros)
                }
            }
            ColumnEncoder::Duration(_, values, unit) => Datum::Interval {
                months: 0,
                days: 0,
                micros: to_micros(values[row], *unit),
            },
            ColumnEncoder::IntervalYearMonth(a) => Datum::Interval {
                months: a.value(row),
                days: 0,
                micros: 0,
            },
            ColumnEncoder::IntervalDayTime(a) => {
                let v = a.value(row);
                Datum::Interval {
                    months: 0,
                    days: v.days,
                    micros: v.milliseconds as i64 * 1000,
                }
            }
            ColumnEncoder::IntervalMonthDayNano(a) => {
                let v = a.value(row);
                Datum::Interval {
                    months: v.months,
                    days: v.days,
                    micros: v.nanoseconds / 1000,
                }
            }
            ColumnEncoder::Null
            | ColumnEncoder::List(_)
            | ColumnEncoder::Dictionary(_, _)
            | ColumnEncoder::Display(_) => return None,
        })
    }

    /// Appends the text form of a non-NULL value.
    pub fn write_text(&self, row: usize, ctx: &OutputContext, out: &mut Vec<u8>) {
        if let Some(datum) = self.datum(row) {
            return datum.write_text(ctx, out);
        }
        match self {
            ColumnEncoder::List(list) => list.write_text(row, ctx, out),
            ColumnEncoder::Dictionary(keys, values) => {
                if let Some(index) = dictionary_index(*keys, row) {
                    values.write_text(index, ctx, out)
                }
            }
            ColumnEncoder::Display(formatter) => {
                out.extend_from_slice(formatter.value(row).to_string().as_bytes())
            }
            _ => {}
        }
    }

    /// Appends the binary form of a non-NULL value, as PostgreSQL's
    /// `typsend` for the type [`pg_type`] reports.
    pub fn write_binary(&self, row: usize, ctx: &OutputContext, out: &mut Vec<u8>) {
        if let Some(datum) = self.datum(row) {
            return datum.write_binary(out);
        }
        match self {
            ColumnEncoder::List(list) => list.write_binary(row, ctx, out),
            ColumnEncoder::Dictionary(keys, values) => {
                if let Some(index) = dictionary_index(*keys, row) {
                    values.write_binary(index, ctx, out)
                }
            }
            ColumnEncoder::Display(formatter) => {
                out.extend_from_slice(formatter.value(row).to_string().as_bytes())
            }
            _ => {}
        }
    }

    /// Whether the value at `row` is NULL (a dictionary's NULL may live in
    /// its values).
    pub fn is_null(&self, array: &dyn Array, row: usize) -> bool {
        if array.is_null(row) {
            return true;
        }
        match self {
            ColumnEncoder::Null => true,
            ColumnEncoder::Dictionary(keys, values) => match dictionary_index(*keys, row) {
                Some(index) => values.is_null_at(index),
                None => true,
            },
            _ => false,
        }
    }

    fn is_null_at(&self, row: usize) -> bool {
        match self {
            ColumnEncoder::Null => true,
            ColumnEncoder::Boolean(a) => a.is_null(row),
            ColumnEncoder::Int8(a) => a.is_null(row),
            ColumnEncoder::Int16(a) => a.is_null(row),
            ColumnEncoder::Int32(a) => a.is_null(row),
            ColumnEncoder::Int64(a) => a.is_null(row),
            ColumnEncoder::UInt8(a) => a.is_null(row),
            ColumnEncoder::UInt16(a) => a.is_null(row),
            ColumnEncoder::UInt32(a) => a.is_null(row),
            ColumnEncoder::UInt64(a) => a.is_null(row),
            ColumnEncoder::Float16(a) => a.is_null(row),
            ColumnEncoder::Float32(a) => a.is_null(row),
            ColumnEncoder::Float64(a) => a.is_null(row),
            ColumnEncoder::Decimal128(a, _) => a.is_null(row),
            ColumnEncoder::Utf8(a) => a.is_null(row),
            ColumnEncoder::LargeUtf8(a) => a.is_null(row),
            ColumnEncoder::Utf8View(a) => a.is_null(row),
            ColumnEncoder::Binary(a) => a.is_null(row),
            ColumnEncoder::LargeBinary(a) => a.is_null(row),
            ColumnEncoder::BinaryView(a) => a.is_null(row),
            ColumnEncoder::FixedSizeBinary(a) => a.is_null(row),
            ColumnEncoder::Date32(a) => a.is_null(row),
            ColumnEncoder::Date64(a) => a.is_null(row),
            ColumnEncoder::Time(a, _, _)
            | ColumnEncoder::Timestamp(a, _, _, _)
            | ColumnEncoder::Duration(a, _, _) => a.is_null(row),
            ColumnEncoder::IntervalYearMonth(a) => a.is_null(row),
            ColumnEncoder::IntervalDayTime(a) => a.is_null(row),
            ColumnEncoder::IntervalMonthDayNano(a) => a.is_null(row),
            ColumnEncoder::List(list) => list.is_null(row),
            ColumnEncoder::Dictionary(keys, values) => match dictionary_index(*keys, row) {
                Some(index) => values.is_null_at(index),
                None => true,
            },
            ColumnEncoder::Display(_) => false,
        }
    }
}

fn list<'a>(
    offsets: ListOffsets<'a>,
    element_type: &DataType,
    values: &'a ArrayRef,
) -> Result<ColumnEncoder<'a>> {
    Ok(ColumnEncoder::List(Box::new(ListValues {
        offsets,
        elements: ColumnEncoder::new(values.as_ref())?,
        element_array: values.as_ref(),
        element_type: pg_type(element_type),
    })))
}

impl ListValues<'_> {
    fn is_null(&self, row: usize) -> bool {
        match &self.offsets {
            ListOffsets::Small(a) => a.is_null(row),
            ListOffsets::Large(a) => a.is_null(row),
            ListOffsets::Fixed(a) => a.is_null(row),
        }
    }

    /// "{1,2,NULL}"; strings quoted when PostgreSQL would quote them.
    fn write_text(&self, row: usize, ctx: &OutputContext, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut element = Vec::new();
        for (n, index) in self.offsets.range(row).enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if self.elements.is_null(self.element_array, index) {
                out.extend_from_slice(b"NULL");
                continue;
            }
            element.clear();
            self.elements.write_text(index, ctx, &mut element);
            if needs_array_quotes(&element) {
                out.push(b'"');
                for byte in &element {
                    if *byte == b'"' || *byte == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(*byte);
                }
                out.push(b'"');
            } else {
                out.extend_from_slice(&element);
            }
        }
        out.push(b'}');
    }

    /// ndim, has-nulls flag, element OID, dimension and lower bound, then
    /// each element length-prefixed (-1 for NULL).
    fn write_binary(&self, row: usize, ctx: &OutputContext, out: &mut Vec<u8>) {
        let range = self.offsets.range(row);
        let has_nulls = range
            .clone()
            .any(|i| self.elements.is_null(self.element_array, i));
        let ndim: i32 = if range.is_empty() { 0 } else { 1 };
        out.extend_from_slice(&ndim.to_be_bytes());
        out.extend_from_slice(&(has_nulls as i32).to_be_bytes());
        out.extend_from_slice(&self.element_type.oid().to_be_bytes());
        if range.is_empty() {
            return;
        }
        out.extend_from_slice(&(range.len() as i32).to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for index in range {
            if self.elements.is_null(self.element_array, index) {
                out.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            let length_at = out.len();
            out.extend_from_slice(&0i32.to_be_bytes());
            self.elements.write_binary(index, ctx, out);
            let length = (out.len() - length_at - 4) as i32;
            out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
        }
    }
}

fn needs_array_quotes(element: &[u8]) -> bool {
    element.is_empty()
        || element.eq_ignore_ascii_case(b"null")
        || element.iter().any(|b| {
            matches!(
                b,
                b'{' | b'}' | b',' | b'"' | b'\\' | b' ' | b'\t' | b'\n' | b'\r'
            )
        })
}

fn dictionary_index(keys: &dyn Array, row: usize) -> Option<usize> {
    if keys.is_null(row) {
        return None;
    }
    Some(match keys.data_type() {
        DataType::Int8 => keys.as_primitive::<Int8Type>().value(row) as usize,
        DataType::Int16 => keys.as_primitive::<Int16Type>().value(row) as usize,
        DataType::Int32 => keys.as_primitive::<Int32Type>().value(row) as usize,
        DataType::Int64 => keys.as_primitive::<Int64Type>().value(row) as usize,
        DataType::UInt8 => keys.as_primitive::<UInt8Type>().value(row) as usize,
        DataType::UInt16 => keys.as_primitive::<UInt16Type>().value(row) as usize,
        DataType::UInt32 => keys.as_primitive::<UInt32Type>().value(row) as usize,
        DataType::UInt64 => keys.as_primitive::<UInt64Type>().value(row) as usize,
        _ => return None,
    })
}

/// Raw time-of-day values: Time32 units are 32-bit, Time64 units 64-bit.
pub enum Ticks<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Ticks<'_> {
    fn get(&self, row: usize) -> i64 {
        match self {
            Ticks::I32(v) => v[row] as i64,
            Ticks::I64(v) => v[row],
        }
    }
}

/// The values buffer of a primitive array with 64-bit native values.
fn i64_values(array: &dyn Array) -> &[i64] {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<datafusion::arrow::datatypes::TimestampSecondType>()
            .values(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
            .values(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
            .values(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>()
            .values(),
        DataType::Time64(TimeUnit::Nanosecond) => array
            .as_primitive::<datafusion::arrow::datatypes::Time64NanosecondType>()
            .values(),
        DataType::Time64(_) => array
            .as_primitive::<datafusion::arrow::datatypes::Time64MicrosecondType>()
            .values(),
        DataType::Duration(TimeUnit::Second) => array
            .as_primitive::<datafusion::arrow::datatypes::DurationSecondType>()
            .values(),
        DataType::Duration(TimeUnit::Millisecond) => array
            .as_primitive::<datafusion::arrow::datatypes::DurationMillisecondType>()
            .values(),
        DataType::Duration(TimeUnit::Microsecond) => array
            .as_primitive::<datafusion::arrow::datatypes::DurationMicrosecondType>()
            .values(),
        DataType::Duration(TimeUnit::Nanosecond) => array
            .as_primitive::<datafusion::arrow::datatypes::DurationNanosecondType>()
            .values(),
        _ => &[],
    }
}

fn i32_values(array: &dyn Array) -> &[i32] {
    match array.data_type() {
        DataType::Time32(TimeUnit::Second) => array
            .as_primitive::<datafusion::arrow::datatypes::Time32SecondType>()
            .values(),
        DataType::Time32(_) => array
            .as_primitive::<datafusion::arrow::datatypes::Time32MillisecondType>()
            .values(),
        _ => &[],
    }
}

fn to_micros(value: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => value.saturating_mul(1_000_000),
        TimeUnit::Millisecond => value.saturating_mul(1_000),
        TimeUnit::Microsecond => value,
        TimeUnit::Nanosecond => value.div_euclid(1_000),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, ListArray, StringArray};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;

    fn text_of(array: &dyn Array, row: usize) -> String {
        let encoder = ColumnEncoder::new(array).unwrap();
        let mut out = Vec::new();
        encoder.write_text(row, &OutputContext::default(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn arrays_in_text() {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            Some(vec![]),
        ]);
        assert_eq!(text_of(&list, 0), "{1,NULL,3}");
        assert_eq!(text_of(&list, 1), "{}");

        let values = Arc::new(StringArray::from(vec!["a b", "", "x", "null", "q\"t"])) as ArrayRef;
        let offsets = datafusion::arrow::buffer::OffsetBuffer::new(vec![0, 5].into());
        let field = Arc::new(datafusion::arrow::datatypes::Field::new(
            "item",
            DataType::Utf8,
            true,
        ));
        let list = ListArray::new(field, offsets, values, None);
        assert_eq!(text_of(&list, 0), r#"{"a b","",x,"null","q\"t"}"#);
    }

    #[test]
    fn binary_int_array_layout() {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(7)])]);
        let encoder = ColumnEncoder::new(&list).unwrap();
        let mut out = Vec::new();
        encoder.write_binary(0, &OutputContext::default(), &mut out);
        let mut expected = Vec::new();
        for v in [1i32, 0] {
            expected.extend_from_slice(&v.to_be_bytes());
        }
        expected.extend_from_slice(&20u32.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        assert_eq!(out, expected);
    }

    #[test]
    fn scalars_in_text() {
        assert_eq!(text_of(&Int64Array::from(vec![-42]), 0), "-42");
        assert_eq!(text_of(&BooleanArray::from(vec![true]), 0), "t");
        let bytes = datafusion::arrow::array::BinaryArray::from(vec![&b"\x01\xab"[..]]);
        assert_eq!(text_of(&bytes, 0), "\\x01ab");
    }
}

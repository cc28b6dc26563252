//! The online store's byte formats for keys and rows.
//!
//! Both are self-contained sequences of values in a fixed column order,
//! each value a presence byte (0 = NULL) followed by its bytes in a
//! type-dependent layout: little-endian fixed-width numbers, `u32` length +
//! bytes for text and binary, `u32` count + values for arrays. The column
//! types come from the view's definition, so nothing about a type is
//! stored. Keys are encoded from arrays (refresh) and from scalars (lookups)
//! by the two functions below, which must agree byte for byte: a test
//! checks it for every type.
//!
//! A stored row is `[event time: i64][values…]`, the event time in the
//! unit of the view's timestamp column (µs, days or the integer itself),
//! so a refresh can compare the stored row's time without decoding it.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, LargeBinaryArray, StringArray,
    Time64MicrosecondArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::ScalarValue;

use crate::error::{Error, Result};
use crate::pgtypes::Datum;

/// Whether values of `data_type` can be stored online.
pub fn supported(data_type: &DataType) -> bool {
    match data_type {
        DataType::Boolean
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Utf8
        | DataType::LargeBinary
        | DataType::Date32
        | DataType::Time64(TimeUnit::Microsecond)
        | DataType::Timestamp(TimeUnit::Microsecond, _) => true,
        DataType::List(field) => supported(field.data_type()),
        _ => false,
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

/// Appends row `row` of `array` (of a [`supported`] type).
pub fn encode_array_value(array: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<()> {
    if array.is_null(row) {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    match array.data_type() {
        DataType::Boolean => out.push(array.as_boolean().value(row) as u8),
        DataType::Int16 => {
            out.extend_from_slice(&array.as_primitive::<Int16Type>().value(row).to_le_bytes())
        }
        DataType::Int32 => {
            out.extend_from_slice(&array.as_primitive::<Int32Type>().value(row).to_le_bytes())
        }
        DataType::Int64 => {
            out.extend_from_slice(&array.as_primitive::<Int64Type>().value(row).to_le_bytes())
        }
        DataType::Float32 => {
            out.extend_from_slice(&array.as_primitive::<Float32Type>().value(row).to_le_bytes())
        }
        DataType::Float64 => {
            out.extend_from_slice(&array.as_primitive::<Float64Type>().value(row).to_le_bytes())
        }
        DataType::Decimal128(_, _) => out.extend_from_slice(
            &array
                .as_primitive::<Decimal128Type>()
                .value(row)
                .to_le_bytes(),
        ),
        DataType::Date32 => {
            out.extend_from_slice(&array.as_primitive::<Date32Type>().value(row).to_le_bytes())
        }
        DataType::Time64(TimeUnit::Microsecond) => out.extend_from_slice(
            &array
                .as_primitive::<Time64MicrosecondType>()
                .value(row)
                .to_le_bytes(),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => out.extend_from_slice(
            &array
                .as_primitive::<TimestampMicrosecondType>()
                .value(row)
                .to_le_bytes(),
        ),
        DataType::Utf8 => {
            let value = array.as_string::<i32>().value(row);
            put_len(out, value.len());
            out.extend_from_slice(value.as_bytes());
        }
        DataType::LargeBinary => {
            let value = array.as_binary::<i64>().value(row);
            put_len(out, value.len());
            out.extend_from_slice(value);
        }
        DataType::List(_) => {
            let values = array.as_list::<i32>().value(row);
            put_len(out, values.len());
            for i in 0..values.len() {
                encode_array_value(values.as_ref(), i, out)?;
            }
        }
        other => return Err(unsupported(other)),
    }
    Ok(())
}

/// Encodes rows of one batch as [`encode_array_value`] does, column by
/// column, with each column's type resolved once per batch instead of once
/// per value: a refresh encodes millions of rows.
pub struct RowEncoder<'a> {
    columns: Vec<ColumnEncoder<'a>>,
    size_hint: usize,
}

enum ColumnEncoder<'a> {
    /// A fixed-width number: its encoding is its little-endian bytes,
    /// which is how Arrow holds it on a little-endian machine.
    Fixed {
        values: &'a [u8],
        width: usize,
        nulls: Option<&'a datafusion::arrow::buffer::NullBuffer>,
    },
    Other(&'a dyn Array),
}

impl<'a> RowEncoder<'a> {
    pub fn new(columns: impl IntoIterator<Item = &'a ArrayRef>) -> Self {
        let columns = columns
            .into_iter()
            .map(|array| {
                let fixed = |values: &'a [u8], width: usize| ColumnEncoder::Fixed {
                    values,
                    width,
                    nulls: array.nulls(),
                };
                if cfg!(target_endian = "big") {
                    return ColumnEncoder::Other(array.as_ref());
                }
                match array.data_type() {
                    DataType::Int16 => fixed(array.as_primitive::<Int16Type>().values().inner(), 2),
                    DataType::Int32 => fixed(array.as_primitive::<Int32Type>().values().inner(), 4),
                    DataType::Date32 => {
                        fixed(array.as_primitive::<Date32Type>().values().inner(), 4)
                    }
                    DataType::Float32 => {
                        fixed(array.as_primitive::<Float32Type>().values().inner(), 4)
                    }
                    DataType::Int64 => fixed(array.as_primitive::<Int64Type>().values().inner(), 8),
                    DataType::Float64 => {
                        fixed(array.as_primitive::<Float64Type>().values().inner(), 8)
                    }
                    DataType::Time64(TimeUnit::Microsecond) => fixed(
                        array
                            .as_primitive::<Time64MicrosecondType>()
                            .values()
                            .inner(),
                        8,
                    ),
                    DataType::Timestamp(TimeUnit::Microsecond, _) => fixed(
                        array
                            .as_primitive::<TimestampMicrosecondType>()
                            .values()
                            .inner(),
                        8,
                    ),
                    DataType::Decimal128(_, _) => {
                        fixed(array.as_primitive::<Decimal128Type>().values().inner(), 16)
                    }
                    _ => ColumnEncoder::Other(array.as_ref()),
                }
            })
            .collect::<Vec<_>>();
        // Exact for fixed-width columns; a guess for the others.
        let size_hint = columns
            .iter()
            .map(|column| match column {
                ColumnEncoder::Fixed { width, .. } => 1 + width,
                ColumnEncoder::Other(_) => 1 + 16,
            })
            .sum();
        Self { columns, size_hint }
    }

    /// About how many bytes a row encodes to.
    pub fn size_hint(&self) -> usize {
        self.size_hint
    }

    /// Appends row `row` of every column.
    pub fn encode(&self, row: usize, out: &mut Vec<u8>) -> Result<()> {
        for column in &self.columns {
            match column {
                ColumnEncoder::Fixed {
                    values,
                    width,
                    nulls,
                } => {
                    if nulls.is_some_and(|nulls| nulls.is_null(row)) {
                        out.push(0);
                    } else {
                        out.push(1);
                        out.extend_from_slice(&values[row * width..(row + 1) * width]);
                    }
                }
                ColumnEncoder::Other(array) => encode_array_value(*array, row, out)?,
            }
        }
        Ok(())
    }
}

/// An integer key of `width` bytes (2, 4 or 8: smallint, integer,
/// bigint) encoded as [`encode_scalar`] encodes it; `key` must fit.
pub fn encode_integer_key(key: i64, width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + width);
    encode_integer_key_into(key, width, &mut out);
    out
}

/// [`encode_integer_key`], appended to `out`.
pub fn encode_integer_key_into(key: i64, width: usize, out: &mut Vec<u8>) {
    out.push(1);
    out.extend_from_slice(&key.to_le_bytes()[..width]);
}

/// Appends `value`, which must already have the column's type.
pub fn encode_scalar(value: &ScalarValue, out: &mut Vec<u8>) -> Result<()> {
    if value.is_null() {
        out.push(0);
        return Ok(());
    }
    // The common key types directly (a lookup encodes its keys each time);
    // the layouts match `encode_array_value`, as the tests check.
    match value {
        ScalarValue::Int64(Some(v)) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        ScalarValue::Int32(Some(v)) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        ScalarValue::Utf8(Some(v)) => {
            out.push(1);
            put_len(out, v.len());
            out.extend_from_slice(v.as_bytes());
            Ok(())
        }
        ScalarValue::List(list) => encode_array_value(list.as_ref(), 0, out),
        _ => {
            // One path for every scalar type: the array encoder.
            let array = value.to_array_of_size(1)?;
            encode_array_value(array.as_ref(), 0, out)
        }
    }
}

/// Reads one value of `data_type` at `*pos`, advancing it.
pub fn decode_value(data_type: &DataType, bytes: &[u8], pos: &mut usize) -> Result<ScalarValue> {
    let present = take(bytes, pos, 1)?[0];
    if present == 0 {
        return Ok(ScalarValue::try_from(data_type)?);
    }
    macro_rules! fixed {
        ($t:ty, $n:expr) => {
            <$t>::from_le_bytes(take(bytes, pos, $n)?.try_into().expect("length checked"))
        };
    }
    Ok(match data_type {
        DataType::Boolean => ScalarValue::Boolean(Some(take(bytes, pos, 1)?[0] != 0)),
        DataType::Int16 => ScalarValue::Int16(Some(fixed!(i16, 2))),
        DataType::Int32 => ScalarValue::Int32(Some(fixed!(i32, 4))),
        DataType::Int64 => ScalarValue::Int64(Some(fixed!(i64, 8))),
        DataType::Float32 => ScalarValue::Float32(Some(fixed!(f32, 4))),
        DataType::Float64 => ScalarValue::Float64(Some(fixed!(f64, 8))),
        DataType::Decimal128(p, s) => ScalarValue::Decimal128(Some(fixed!(i128, 16)), *p, *s),
        DataType::Date32 => ScalarValue::Date32(Some(fixed!(i32, 4))),
        DataType::Time64(TimeUnit::Microsecond) => {
            ScalarValue::Time64Microsecond(Some(fixed!(i64, 8)))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            ScalarValue::TimestampMicrosecond(Some(fixed!(i64, 8)), tz.clone())
        }
        DataType::Utf8 => {
            let len = fixed!(u32, 4) as usize;
            let text = std::str::from_utf8(take(bytes, pos, len)?)
                .map_err(|_| corrupt("text value is not UTF-8"))?;
            ScalarValue::Utf8(Some(text.to_string()))
        }
        DataType::LargeBinary => {
            let len = fixed!(u32, 4) as usize;
            ScalarValue::LargeBinary(Some(take(bytes, pos, len)?.to_vec()))
        }
        DataType::List(field) => {
            let count = fixed!(u32, 4) as usize;
            let mut values = Vec::with_capacity(count);
            for _ in 0..count {
                values.push(decode_value(field.data_type(), bytes, pos)?);
            }
            let field: Arc<Field> = field.clone();
            ScalarValue::List(ScalarValue::new_list(
                &values,
                field.data_type(),
                field.is_nullable(),
            ))
        }
        other => return Err(unsupported(other)),
    })
}

/// Reads one value of `data_type` at `*pos` where it lies, advancing
/// `*pos`: `None` for NULL. Lists are not read this way (a lookup that
/// returns them builds Arrow arrays).
pub fn read_datum<'a>(
    data_type: &DataType,
    bytes: &'a [u8],
    pos: &mut usize,
) -> Result<Option<Datum<'a>>> {
    if take(bytes, pos, 1)?[0] == 0 {
        return Ok(None);
    }
    macro_rules! fixed {
        ($t:ty, $n:expr) => {
            <$t>::from_le_bytes(take(bytes, pos, $n)?.try_into().expect("length checked"))
        };
    }
    Ok(Some(match data_type {
        DataType::Boolean => Datum::Bool(take(bytes, pos, 1)?[0] != 0),
        DataType::Int16 => Datum::Int2(fixed!(i16, 2)),
        DataType::Int32 => Datum::Int4(fixed!(i32, 4)),
        DataType::Int64 => Datum::Int8(fixed!(i64, 8)),
        DataType::Float32 => Datum::Float4(fixed!(f32, 4)),
        DataType::Float64 => Datum::Float8(fixed!(f64, 8)),
        DataType::Decimal128(_, scale) => Datum::Numeric(fixed!(i128, 16), *scale),
        DataType::Date32 => Datum::Date(fixed!(i32, 4)),
        DataType::Time64(TimeUnit::Microsecond) => Datum::Time(fixed!(i64, 8)),
        DataType::Timestamp(TimeUnit::Microsecond, None) => Datum::Timestamp(fixed!(i64, 8)),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => Datum::TimestampTz(fixed!(i64, 8)),
        DataType::Utf8 => {
            let len = fixed!(u32, 4) as usize;
            Datum::Text(
                std::str::from_utf8(take(bytes, pos, len)?)
                    .map_err(|_| corrupt("text value is not UTF-8"))?,
            )
        }
        DataType::LargeBinary => {
            let len = fixed!(u32, 4) as usize;
            Datum::Bytea(take(bytes, pos, len)?)
        }
        other => return Err(unsupported(other)),
    }))
}

/// Whether [`read_datum`] reads values of `data_type`.
pub fn readable_as_datum(data_type: &DataType) -> bool {
    supported(data_type) && !matches!(data_type, DataType::List(_))
}

/// Decodes many stored rows into one array per column. `rows[i]` holds
/// row i's encoded values; `None` makes a row of NULLs.
pub fn decode_columns(types: &[DataType], rows: &[Option<&[u8]>]) -> Result<Vec<ArrayRef>> {
    let mut positions = vec![0usize; rows.len()];
    types
        .iter()
        .map(|data_type| decode_column(data_type, rows, &mut positions))
        .collect()
}

fn decode_column(
    data_type: &DataType,
    rows: &[Option<&[u8]>],
    positions: &mut [usize],
) -> Result<ArrayRef> {
    macro_rules! values {
        ($native:ty, $read:expr) => {{
            let mut values: Vec<Option<$native>> = Vec::with_capacity(rows.len());
            for (row, pos) in rows.iter().zip(positions.iter_mut()) {
                let Some(bytes) = row else {
                    values.push(None);
                    continue;
                };
                if take(bytes, pos, 1)?[0] == 0 {
                    values.push(None);
                } else {
                    values.push(Some($read(bytes, pos)?));
                }
            }
            values
        }};
    }
    macro_rules! fixed {
        ($native:ty, $n:expr) => {
            values!($native, |bytes: &[u8],
                              pos: &mut usize|
             -> Result<$native> {
                Ok(<$native>::from_le_bytes(
                    take(bytes, pos, $n)?.try_into().expect("length checked"),
                ))
            })
        };
    }
    Ok(match data_type {
        DataType::Boolean => Arc::new(BooleanArray::from(values!(bool, |bytes: &[u8],
                                                                        pos: &mut usize|
         -> Result<bool> {
            Ok(take(bytes, pos, 1)?[0] != 0)
        }))),
        DataType::Int16 => Arc::new(Int16Array::from(fixed!(i16, 2))),
        DataType::Int32 => Arc::new(Int32Array::from(fixed!(i32, 4))),
        DataType::Int64 => Arc::new(Int64Array::from(fixed!(i64, 8))),
        DataType::Float32 => Arc::new(Float32Array::from(fixed!(f32, 4))),
        DataType::Float64 => Arc::new(Float64Array::from(fixed!(f64, 8))),
        DataType::Date32 => Arc::new(Date32Array::from(fixed!(i32, 4))),
        DataType::Time64(TimeUnit::Microsecond) => {
            Arc::new(Time64MicrosecondArray::from(fixed!(i64, 8)))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            Arc::new(TimestampMicrosecondArray::from(fixed!(i64, 8)).with_timezone_opt(tz.clone()))
        }
        DataType::Decimal128(p, s) => {
            Arc::new(Decimal128Array::from(fixed!(i128, 16)).with_precision_and_scale(*p, *s)?)
        }
        DataType::Utf8 => Arc::new(StringArray::from(values!(&str, read_str))),
        DataType::LargeBinary => Arc::new(LargeBinaryArray::from(values!(&[u8], read_bytes))),
        other => {
            // Arrays: through scalars (rarely on a hot path).
            let mut scalars = Vec::with_capacity(rows.len());
            for (row, pos) in rows.iter().zip(positions.iter_mut()) {
                scalars.push(match row {
                    Some(bytes) => decode_value(other, bytes, pos)?,
                    None => ScalarValue::try_from(other)?,
                });
            }
            if scalars.is_empty() {
                datafusion::arrow::array::new_empty_array(other)
            } else {
                ScalarValue::iter_to_array(scalars)?
            }
        }
    })
}

/// A length-prefixed byte string.
fn read_bytes<'a>(bytes: &'a [u8], pos: &mut usize) -> Result<&'a [u8]> {
    let len = u32::from_le_bytes(take(bytes, pos, 4)?.try_into().expect("length checked"));
    take(bytes, pos, len as usize)
}

fn read_str<'a>(bytes: &'a [u8], pos: &mut usize) -> Result<&'a str> {
    std::str::from_utf8(read_bytes(bytes, pos)?).map_err(|_| corrupt("text value is not UTF-8"))
}

fn take<'a>(bytes: &'a [u8], pos: &mut usize, len: usize) -> Result<&'a [u8]> {
    let end = pos
        .checked_add(len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| corrupt("value runs past the end of the record"))?;
    let slice = &bytes[*pos..end];
    *pos = end;
    Ok(slice)
}

fn corrupt(what: &str) -> Error {
    Error::OnlineStore(format!("corrupt online record: {what}"))
}

fn unsupported(data_type: &DataType) -> Error {
    Error::FeatureNotSupported(format!(
        "values of type {data_type} cannot be stored in the online store"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::ArrayRef;

    #[test]
    fn integer_keys_encode_as_scalars_do() {
        for key in [0i64, 1, -1, 255, 256, -32768, 32767] {
            let mut expected = Vec::new();
            encode_scalar(&ScalarValue::Int16(Some(key as i16)), &mut expected).unwrap();
            assert_eq!(encode_integer_key(key, 2), expected);
        }
        for key in [0i64, -1, 65_536, i32::MIN as i64, i32::MAX as i64] {
            let mut expected = Vec::new();
            encode_scalar(&ScalarValue::Int32(Some(key as i32)), &mut expected).unwrap();
            assert_eq!(encode_integer_key(key, 4), expected);
        }
        for key in [0, -1, 1 << 40, i64::MIN, i64::MAX] {
            let mut expected = Vec::new();
            encode_scalar(&ScalarValue::Int64(Some(key)), &mut expected).unwrap();
            assert_eq!(encode_integer_key(key, 8), expected);
        }
    }

    fn samples() -> Vec<ScalarValue> {
        vec![
            ScalarValue::Boolean(Some(true)),
            ScalarValue::Int16(Some(-7)),
            ScalarValue::Int32(Some(123_456)),
            ScalarValue::Int64(Some(i64::MIN)),
            ScalarValue::Float32(Some(1.5)),
            ScalarValue::Float64(Some(-0.25)),
            ScalarValue::Decimal128(Some(-12345), 10, 2),
            ScalarValue::Utf8(Some("héllo".into())),
            ScalarValue::LargeBinary(Some(vec![0, 1, 255])),
            ScalarValue::Date32(Some(19_000)),
            ScalarValue::Time64Microsecond(Some(3_600_000_000)),
            ScalarValue::TimestampMicrosecond(Some(1_700_000_000_000_000), None),
            ScalarValue::TimestampMicrosecond(Some(-5), Some("UTC".into())),
            ScalarValue::List(ScalarValue::new_list(
                &[ScalarValue::Int32(Some(1)), ScalarValue::Int32(None)],
                &DataType::Int32,
                true,
            )),
            ScalarValue::Int64(None),
        ]
    }

    #[test]
    fn scalars_and_arrays_encode_alike_and_round_trip() {
        for value in samples() {
            let data_type = value.data_type();
            assert!(supported(&data_type), "{data_type}");
            let mut from_scalar = Vec::new();
            encode_scalar(&value, &mut from_scalar).unwrap();
            let array: ArrayRef = value.to_array_of_size(3).unwrap();
            let mut from_array = Vec::new();
            encode_array_value(array.as_ref(), 2, &mut from_array).unwrap();
            assert_eq!(from_scalar, from_array, "{value:?}");
            let mut pos = 0;
            let decoded = decode_value(&data_type, &from_scalar, &mut pos).unwrap();
            assert_eq!(pos, from_scalar.len());
            assert_eq!(decoded, value);
            // And as a column, between a missing row and a second copy.
            let columns = decode_columns(
                std::slice::from_ref(&data_type),
                &[Some(&from_scalar), None, Some(&from_scalar)],
            )
            .unwrap();
            assert_eq!(ScalarValue::try_from_array(&columns[0], 0).unwrap(), value);
            assert!(columns[0].is_null(1));
            assert_eq!(ScalarValue::try_from_array(&columns[0], 2).unwrap(), value);
        }
    }

    #[test]
    fn datums_print_as_arrow_values_do() {
        use crate::pgtypes::{ColumnEncoder, OutputContext};
        let ctx = OutputContext::default();
        for value in samples() {
            let data_type = value.data_type();
            let mut stored = Vec::new();
            encode_scalar(&value, &mut stored).unwrap();
            let mut pos = 0;
            if !readable_as_datum(&data_type) {
                assert!(read_datum(&data_type, &stored, &mut pos).is_err());
                continue;
            }
            let datum = read_datum(&data_type, &stored, &mut pos).unwrap();
            assert_eq!(pos, stored.len());
            let array: ArrayRef = value.to_array_of_size(1).unwrap();
            let Some(datum) = datum else {
                assert!(value.is_null());
                continue;
            };
            let encoder = ColumnEncoder::new(array.as_ref()).unwrap();
            let (mut text, mut expected_text) = (Vec::new(), Vec::new());
            datum.write_text(&ctx, &mut text);
            encoder.write_text(0, &ctx, &mut expected_text);
            assert_eq!(text, expected_text, "{value:?}");
            let (mut binary, mut expected_binary) = (Vec::new(), Vec::new());
            datum.write_binary(&mut binary);
            encoder.write_binary(0, &ctx, &mut expected_binary);
            assert_eq!(binary, expected_binary, "{value:?}");
        }
    }

    #[test]
    fn row_encoder_agrees_with_encode_array_value() {
        // Every type, as a column of value, NULL, value, sliced so that the
        // arrays start at an offset.
        let columns: Vec<ArrayRef> = samples()
            .into_iter()
            .map(|value| {
                let null = ScalarValue::try_from(value.data_type()).unwrap();
                let array =
                    ScalarValue::iter_to_array([null.clone(), value.clone(), null, value]).unwrap();
                array.slice(1, 3)
            })
            .collect();
        let encoder = RowEncoder::new(&columns);
        for row in 0..3 {
            let mut expected = Vec::new();
            for column in &columns {
                encode_array_value(column.as_ref(), row, &mut expected).unwrap();
            }
            let mut encoded = Vec::new();
            encoder.encode(row, &mut encoded).unwrap();
            assert_eq!(encoded, expected, "row {row}");
        }
    }

    #[test]
    fn truncated_records_are_errors() {
        let mut bytes = Vec::new();
        encode_scalar(&ScalarValue::Utf8(Some("abc".into())), &mut bytes).unwrap();
        bytes.pop();
        assert!(decode_value(&DataType::Utf8, &bytes, &mut 0).is_err());
    }
}

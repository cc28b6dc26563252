//! The online row format as the rest of the server sees it: encoders for
//! the refresh, which writes keys and rows, and readers for lookups, which
//! encode the keys they ask for and read the values they find. How values
//! are laid out in bytes stays in `codec`: nothing outside the online store
//! depends on it.

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use super::codec;
use crate::error::Result;
use crate::pgtypes::Datum;

pub use super::codec::RowEncoder;

/// Whether values of `data_type` can be stored online.
pub fn storable(data_type: &DataType) -> bool {
    codec::supported(data_type)
}

/// Whether a [`ValueReader`] reads values of `data_type` in place.
pub fn readable_as_datum(data_type: &DataType) -> bool {
    codec::readable_as_datum(data_type)
}

/// Keys in the stored form: from arrays (a refresh), from scalars (a
/// lookup) and from integers (a refresh's integer-keyed fast path), byte
/// for byte the same for the same value.
pub struct KeyEncoder;

impl KeyEncoder {
    /// Appends the value at `row` of `array` (of a [`storable`] type).
    pub fn array_value(array: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<()> {
        codec::encode_array_value(array, row, out)
    }

    /// Appends `value`, which must already have the key column's type.
    pub fn scalar(value: &ScalarValue, out: &mut Vec<u8>) -> Result<()> {
        codec::encode_scalar(value, out)
    }

    /// An integer key of `width` bytes (2, 4 or 8: smallint, integer,
    /// bigint), as [`Self::scalar`] encodes it; `key` must fit.
    pub fn integer(key: i64, width: usize) -> Vec<u8> {
        codec::encode_integer_key(key, width)
    }

    /// [`Self::integer`], appended to `out`.
    pub fn integer_into(key: i64, width: usize, out: &mut Vec<u8>) {
        codec::encode_integer_key_into(key, width, out)
    }
}

/// Reads encoded values (a key, or a stored row's values) one at a time,
/// in column order, where they lie.
pub struct ValueReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ValueReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// The next value, of `data_type` (one [`readable_as_datum`]): `None`
    /// for NULL.
    pub fn next_datum(&mut self, data_type: &DataType) -> Result<Option<Datum<'a>>> {
        codec::read_datum(data_type, self.bytes, &mut self.pos)
    }
}

/// Decodes stored rows into one array per column: `rows[i]` holds row i's
/// encoded values, `None` makes a row of NULLs.
pub fn decode_columns(types: &[DataType], rows: &[Option<&[u8]>]) -> Result<Vec<ArrayRef>> {
    codec::decode_columns(types, rows)
}

/// Where each value of an encoded row (of `types`) lies in `values`.
pub fn value_ranges(types: &[DataType], values: &[u8]) -> Result<Vec<std::ops::Range<usize>>> {
    let mut pos = 0;
    types
        .iter()
        .map(|data_type| {
            let start = pos;
            codec::decode_value(data_type, values, &mut pos)?;
            Ok(start..pos)
        })
        .collect()
}

//! Result rows on the wire: RowDescription from an Arrow schema, DataRow
//! messages from Arrow batches or from an online lookup's stored rows, in
//! text or binary per column.

use bytes::BytesMut;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use pgwire::messages::data::DataRow;

use crate::error::{Error, Result};
use crate::pgtypes::{ColumnEncoder, OutputContext, pg_type, type_size};
use crate::serving::LookupRows;

pub const TEXT: i16 = 0;
pub const BINARY: i16 = 1;

/// Expands Bind's result format codes (none: all text; one: all columns;
/// else one per column).
pub fn result_formats(codes: &[i16], columns: usize) -> Result<Vec<i16>> {
    let formats = match codes {
        [] => vec![TEXT; columns],
        [code] => vec![*code; columns],
        codes if codes.len() == columns => codes.to_vec(),
        codes => {
            return Err(Error::Protocol(format!(
                "bind message has {} result formats but query has {columns} columns",
                codes.len()
            )));
        }
    };
    if let Some(bad) = formats.iter().find(|f| **f != TEXT && **f != BINARY) {
        return Err(Error::Protocol(format!("unsupported format code: {bad}")));
    }
    Ok(formats)
}

/// Appends a RowDescription of `schema`'s columns in `formats` to `out`
/// (written directly: it is sent before every lookup's rows).
pub fn write_row_description(out: &mut BytesMut, schema: &Schema, formats: &[i16]) {
    let start = start_message(out, b'T');
    out.extend_from_slice(&(schema.fields().len() as i16).to_be_bytes());
    for (index, field) in schema.fields().iter().enumerate() {
        let ty = pg_type(field.data_type());
        out.extend_from_slice(field.name().as_bytes());
        out.extend_from_slice(&[0]);
        out.extend_from_slice(&0i32.to_be_bytes()); // table oid
        out.extend_from_slice(&0i16.to_be_bytes()); // column number
        out.extend_from_slice(&ty.oid().to_be_bytes());
        out.extend_from_slice(&type_size(&ty).to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
        out.extend_from_slice(&formats.get(index).copied().unwrap_or(TEXT).to_be_bytes());
    }
    finish_message(out, start);
}

/// Starts a backend message of type `tag` in `out`, its length left to
/// [`finish_message`]; returns where it starts.
fn start_message(out: &mut BytesMut, tag: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[tag, 0, 0, 0, 0]);
    start
}

/// Writes the length of the message started at `start`, now complete (the
/// length counts itself but not the type byte).
fn finish_message(out: &mut BytesMut, start: usize) {
    let length = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&length.to_be_bytes());
}

/// Encodes `batch` rows `from..to` as DataRow messages.
pub fn data_rows(
    batch: &RecordBatch,
    from: usize,
    to: usize,
    formats: &[i16],
    context: &OutputContext,
) -> Result<Vec<DataRow>> {
    let columns = batch.columns();
    let encoders = columns
        .iter()
        .map(|c| ColumnEncoder::new(c.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let mut buffer = BytesMut::with_capacity((to - from) * columns.len() * 12);
    let mut value = Vec::with_capacity(64);
    let mut rows = Vec::with_capacity(to - from);
    for row in from..to {
        for (index, (encoder, array)) in encoders.iter().zip(columns).enumerate() {
            if encoder.is_null(array.as_ref(), row) {
                buffer.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            value.clear();
            if formats.get(index).copied().unwrap_or(TEXT) == BINARY {
                encoder.write_binary(row, context, &mut value);
            } else {
                encoder.write_text(row, context, &mut value);
            }
            buffer.extend_from_slice(&(value.len() as i32).to_be_bytes());
            buffer.extend_from_slice(&value);
        }
        rows.push(DataRow::new(buffer.split(), columns.len() as i16));
    }
    Ok(rows)
}

/// Appends a lookup's rows to `out` as DataRow messages, encoded straight
/// from the stored rows. Returns how many rows were written.
pub fn write_lookup_rows(
    out: &mut BytesMut,
    rows: &LookupRows,
    formats: &[i16],
    context: &OutputContext,
) -> Result<usize> {
    let mut reader = rows.reader();
    // The values' writers append to a Vec: each value is written there,
    // then copied after its length.
    let mut value = Vec::with_capacity(64);
    let mut count = 0;
    while let Some(values) = reader.next_row()? {
        let start = start_message(out, b'D');
        out.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for (index, datum) in values.iter().enumerate() {
            let Some(datum) = datum else {
                out.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            };
            value.clear();
            if formats.get(index).copied().unwrap_or(TEXT) == BINARY {
                datum.write_binary(&mut value);
            } else {
                datum.write_text(context, &mut value);
            }
            out.extend_from_slice(&(value.len() as i32).to_be_bytes());
            out.extend_from_slice(&value);
        }
        finish_message(out, start);
        count += 1;
    }
    Ok(count)
}

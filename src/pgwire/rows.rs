//! Result rows on the wire: RowDescription from an Arrow schema, DataRow
//! messages from Arrow batches, in text or binary per column.

use bytes::BytesMut;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};

use crate::error::{Error, Result};
use crate::pgtypes::{ColumnEncoder, OutputContext, pg_type, type_size};

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

pub fn row_description(schema: &Schema, formats: &[i16]) -> RowDescription {
    let fields = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let ty = pg_type(field.data_type());
            FieldDescription::new(
                field.name().clone(),
                0,
                0,
                ty.oid(),
                type_size(&ty),
                -1,
                formats.get(index).copied().unwrap_or(TEXT),
            )
        })
        .collect();
    RowDescription::new(fields)
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

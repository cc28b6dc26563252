//! A streamed batch's rows in the online store's form: encoded key, event
//! time and values, offered to the view's stream with their write order.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};

use crate::error::Result;
use crate::features::materialize::RowShape;
use crate::online::{KeyEncoder, RowEncoder, StreamedRow, ViewStream};

/// Offers the rows of `batch` (a view's rows, in its declared types) from
/// the write with log sequence number `seq` to `stream`. Rows with a NULL
/// key or event time are not held online (an AS OF read skips them too).
/// Returns how many rows were offered.
pub fn offer_rows(
    stream: &ViewStream,
    shape: &RowShape,
    batch: &RecordBatch,
    seq: u64,
) -> Result<usize> {
    let times = cast(batch.column(shape.ts_index), &DataType::Int64)?;
    let times = times.as_primitive::<Int64Type>();
    let encoder = RowEncoder::new(batch.columns());
    // Keys and values of every row, encoded into two buffers.
    let mut keys = Vec::with_capacity(batch.num_rows() * 8);
    let mut values = Vec::with_capacity(batch.num_rows() * encoder.size_hint());
    let mut spans = Vec::with_capacity(batch.num_rows());
    'rows: for row in 0..batch.num_rows() {
        if times.is_null(row) {
            continue;
        }
        let key_start = keys.len();
        for &k in &shape.key_indices {
            let column = batch.column(k);
            if column.is_null(row) {
                keys.truncate(key_start);
                continue 'rows;
            }
            KeyEncoder::array_value(column.as_ref(), row, &mut keys)?;
        }
        let value_start = values.len();
        encoder.encode(row, &mut values)?;
        spans.push((
            key_start..keys.len(),
            value_start..values.len(),
            times.value(row),
            row as u32,
        ));
    }
    let offered = spans.len();
    stream.offer(
        spans
            .into_iter()
            .map(|(key, value, event_time, row)| StreamedRow {
                key: &keys[key],
                event_time,
                values: &values[value],
                order: (seq, row),
            }),
    );
    Ok(offered)
}

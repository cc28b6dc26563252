//! `COPY … TO STDOUT`: rows encoded in text, CSV or binary format, one
//! CopyData payload per row (as PostgreSQL sends them).

use bytes::{Bytes, BytesMut};
use datafusion::arrow::array::RecordBatch;
use featuredb_sql::copy::{CopyFormat, CopyOptions};

use super::format::{write_csv_field, write_text_field};
use crate::error::Result;
use crate::pgtypes::{ColumnEncoder, OutputContext};

const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

pub struct CopyEncoder {
    options: CopyOptions,
    context: OutputContext,
    column_names: Vec<String>,
}

impl CopyEncoder {
    pub fn new(options: CopyOptions, context: OutputContext, column_names: Vec<String>) -> Self {
        Self {
            options,
            context,
            column_names,
        }
    }

    /// What precedes the rows: the header line, or binary COPY's signature.
    pub fn preamble(&self) -> Option<Bytes> {
        match self.options.format {
            CopyFormat::Binary => Some(Bytes::from_static(BINARY_HEADER)),
            _ if self.options.header => {
                let mut line = Vec::new();
                for (i, name) in self.column_names.iter().enumerate() {
                    if i > 0 {
                        line.push(self.options.delimiter as u8);
                    }
                    match self.options.format {
                        CopyFormat::Csv => {
                            write_csv_field(&mut line, name.as_bytes(), &self.options, false)
                        }
                        _ => write_text_field(
                            &mut line,
                            name.as_bytes(),
                            self.options.delimiter as u8,
                        ),
                    }
                }
                line.push(b'\n');
                Some(Bytes::from(line))
            }
            _ => None,
        }
    }

    /// What follows the rows: binary COPY's trailer.
    pub fn trailer(&self) -> Option<Bytes> {
        (self.options.format == CopyFormat::Binary).then(|| Bytes::from_static(&[0xff, 0xff]))
    }

    /// Encodes every row of `batch`, one payload per row.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        let encoders = batch
            .columns()
            .iter()
            .map(|c| ColumnEncoder::new(c.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let delimiter = self.options.delimiter as u8;
        let mut buffer = BytesMut::new();
        let mut rows = Vec::with_capacity(batch.num_rows());
        let mut value = Vec::new();
        let mut line = Vec::new();
        for row in 0..batch.num_rows() {
            line.clear();
            if self.options.format == CopyFormat::Binary {
                line.extend_from_slice(&(batch.num_columns() as i16).to_be_bytes());
            }
            for (index, (encoder, array)) in encoders.iter().zip(batch.columns()).enumerate() {
                let null = encoder.is_null(array.as_ref(), row);
                if self.options.format == CopyFormat::Binary {
                    if null {
                        line.extend_from_slice(&(-1i32).to_be_bytes());
                    } else {
                        let at = line.len();
                        line.extend_from_slice(&0i32.to_be_bytes());
                        encoder.write_binary(row, &self.context, &mut line);
                        let length = (line.len() - at - 4) as i32;
                        line[at..at + 4].copy_from_slice(&length.to_be_bytes());
                    }
                    continue;
                }
                if index > 0 {
                    line.push(delimiter);
                }
                if null {
                    line.extend_from_slice(self.options.null.as_bytes());
                    continue;
                }
                value.clear();
                encoder.write_text(row, &self.context, &mut value);
                if self.options.format == CopyFormat::Csv {
                    let force = self.options.force_quote.contains(&self.column_names[index]);
                    write_csv_field(&mut line, &value, &self.options, force);
                } else {
                    write_text_field(&mut line, &value, delimiter);
                }
            }
            if self.options.format != CopyFormat::Binary {
                line.push(b'\n');
            }
            buffer.extend_from_slice(&line);
            rows.push(buffer.split().freeze());
        }
        Ok(rows)
    }
}

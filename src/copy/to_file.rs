//! `COPY (query) TO '/absolute/path'`: the rows written to a file on the
//! server, in Parquet (`FORMAT parquet`) or in COPY's own formats (text,
//! CSV, binary, as `TO STDOUT` would send them).
//!
//! The file appears whole or not at all: rows stream into a temporary file
//! beside the target, which is fsynced and renamed over it when the query
//! has finished; on an error or cancellation the temporary file is
//! removed. Nothing buffers the whole result.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use featuredb_sql::copy::CopyFormat;
use futures::StreamExt;

use super::CopyEncoder;
use crate::error::{Error, Result};

/// Where the rows go.
enum Sink {
    Parquet(Box<ArrowWriter<BufWriter<File>>>),
    Encoded(BufWriter<File>, CopyEncoder),
}

/// Removes the temporary file unless the copy completed.
struct Temporary(Option<PathBuf>);

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `stream` (columns named as in `schema`) to `path`; returns the
/// number of rows.
pub async fn write(
    path: &str,
    format: CopyFormat,
    encoder: CopyEncoder,
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
) -> Result<u64> {
    let target = Path::new(path);
    if !target.is_absolute() {
        return Err(Error::InvalidName(
            "relative path not allowed for COPY to file".to_string(),
        ));
    }
    let directory = target
        .parent()
        .ok_or_else(|| Error::InvalidParameterValue(format!("not a file path: {path}")))?;
    let name = target
        .file_name()
        .ok_or_else(|| Error::InvalidParameterValue(format!("not a file path: {path}")))?;
    let temporary_path = directory.join(format!(
        ".{}.featuredb-{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4()
    ));
    let io = |context: &str| {
        let context = format!("{context} \"{path}\"");
        move |e| Error::io(context, e)
    };
    let file = File::create(&temporary_path).map_err(io("could not open file"))?;
    let mut temporary = Temporary(Some(temporary_path.clone()));
    let mut sink = match format {
        CopyFormat::Parquet => {
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build();
            Sink::Parquet(Box::new(
                ArrowWriter::try_new(BufWriter::new(file), schema.clone(), Some(properties))
                    .map_err(|e| Error::internal(format!("parquet writer: {e}")))?,
            ))
        }
        _ => {
            let mut out = BufWriter::new(file);
            if let Some(preamble) = encoder.preamble() {
                out.write_all(&preamble)
                    .map_err(io("could not write to file"))?;
            }
            Sink::Encoded(out, encoder)
        }
    };
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::from_datafusion)?;
        rows += batch.num_rows() as u64;
        match &mut sink {
            Sink::Parquet(writer) => {
                // The query's own column names become PostgreSQL's.
                let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?;
                writer
                    .write(&batch)
                    .map_err(|e| Error::internal(format!("parquet writer: {e}")))?;
            }
            Sink::Encoded(out, encoder) => {
                for row in encoder.encode(&batch)? {
                    out.write_all(&row).map_err(io("could not write to file"))?;
                }
            }
        }
    }
    let file = match sink {
        Sink::Parquet(writer) => writer
            .into_inner()
            .map_err(|e| Error::internal(format!("parquet writer: {e}")))?,
        Sink::Encoded(mut out, encoder) => {
            if let Some(trailer) = encoder.trailer() {
                out.write_all(&trailer)
                    .map_err(io("could not write to file"))?;
            }
            out
        }
    };
    let file = file.into_inner().map_err(|e| {
        Error::io(
            format!("could not write to file \"{path}\""),
            e.into_error(),
        )
    })?;
    file.sync_all().map_err(io("could not fsync file"))?;
    std::fs::rename(&temporary_path, target).map_err(io("could not rename file"))?;
    temporary.0 = None;
    if let Ok(dir) = File::open(directory) {
        let _ = dir.sync_all();
    }
    Ok(rows)
}

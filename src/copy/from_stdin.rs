//! `COPY table FROM STDIN`: turning CopyData bytes into committed rows.
//!
//! Records are parsed on the connection's task into Arrow batches, which a
//! writer task encodes into Parquet data files concurrently (the two stages
//! overlap on separate cores). Nothing is visible until the final commit; a
//! bad record anywhere aborts the whole COPY, deletes the files written so
//! far and reports the line, as PostgreSQL does. A session's temporary
//! table takes the batches in memory instead, at the end.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableProvider};
use featuredb_catalog::{ColumnDef, ColumnType, TableSchemaDef};
use featuredb_sql::copy::{CopyFormat, CopyOptions};
use pgwire::api::Type;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::format::{Field, ReadOutcome, RecordReader};
use crate::error::{BadCopyDataKind, Error, Result};
use crate::offline::{DataFileWriter, TableHandle, WrittenFiles};
use crate::pgtypes::SessionTimeZone;
use crate::pgtypes::{ColumnParser, ValueError, parse_binary_param, pg_type};

/// Rows per Arrow batch handed to the writer.
const BATCH_ROWS: usize = 16 * 1024;
/// Bytes buffered before records are parsed.
const PARSE_THRESHOLD: usize = 256 * 1024;
/// PostgreSQL's binary COPY signature.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Where copied rows go.
pub enum CopyTarget {
    /// An Iceberg table.
    Table(Arc<TableHandle>),
    /// One of the session's temporary tables.
    Temporary {
        name: String,
        definition: TableSchemaDef,
        table: Arc<MemTable>,
    },
}

impl CopyTarget {
    fn name(&self) -> &str {
        match self {
            CopyTarget::Table(table) => &table.name.name,
            CopyTarget::Temporary { name, .. } => name,
        }
    }

    fn definition(&self) -> &TableSchemaDef {
        match self {
            CopyTarget::Table(table) => table.definition(),
            CopyTarget::Temporary { definition, .. } => definition,
        }
    }

    fn arrow_schema(&self) -> SchemaRef {
        match self {
            CopyTarget::Table(table) => table.arrow_schema(),
            CopyTarget::Temporary { table, .. } => table.schema(),
        }
    }

    /// Makes `batches` part of a temporary table, at once.
    async fn append_in_memory(table: &MemTable, batches: Vec<RecordBatch>) -> Result<()> {
        let partition = table
            .batches
            .first()
            .ok_or_else(|| Error::internal("temporary table without a partition"))?;
        partition.write().await.extend(batches);
        Ok(())
    }
}

/// What the writer task produces.
enum Sink {
    Files(Box<DataFileWriter>),
    Memory(Vec<RecordBatch>),
}

enum Written {
    Files(WrittenFiles),
    Memory(Vec<RecordBatch>),
}

enum WriterMessage {
    Batch(RecordBatch),
    Finish(oneshot::Sender<Result<Written>>),
}

pub struct CopyFromStdin {
    table: CopyTarget,
    /// Target columns in the order fields arrive.
    columns: Vec<ColumnDef>,
    /// For each table column, its position in `columns` (if copied).
    positions: Vec<Option<usize>>,
    options: CopyOptions,
    reader: RecordReader,
    parsers: Vec<ColumnParser>,
    binary_values: Vec<Vec<ScalarValue>>,
    buffer: Vec<u8>,
    header_pending: bool,
    binary_header_pending: bool,
    ended: bool,
    line: u64,
    rows: u64,
    rows_in_batch: usize,
    writer: mpsc::Sender<WriterMessage>,
    writer_task: Option<JoinHandle<Result<()>>>,
}

impl CopyFromStdin {
    pub async fn new(
        table: CopyTarget,
        column_names: &[String],
        options: CopyOptions,
        time_zone: &SessionTimeZone,
    ) -> Result<Self> {
        let definition = table.definition().clone();
        let columns: Vec<ColumnDef> = if column_names.is_empty() {
            definition.columns.clone()
        } else {
            let mut seen = std::collections::HashSet::new();
            column_names
                .iter()
                .map(|name| {
                    if !seen.insert(name) {
                        return Err(Error::DuplicateColumn(name.clone()));
                    }
                    definition
                        .column(name)
                        .cloned()
                        .ok_or_else(|| Error::UndefinedColumn {
                            table: table.name().to_string(),
                            column: name.clone(),
                        })
                })
                .collect::<Result<_>>()?
        };
        let positions = definition
            .columns
            .iter()
            .map(|c| columns.iter().position(|t| t.name == c.name))
            .collect::<Vec<_>>();
        // A NOT NULL column left out of the column list can only get NULL.
        if let Some(missing) = definition
            .columns
            .iter()
            .zip(&positions)
            .find(|(c, p)| p.is_none() && !c.nullable)
        {
            return Err(Error::NotNullViolation {
                table: table.name().to_string(),
                column: missing.0.name.clone(),
            });
        }
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let reader = RecordReader::new(&options, &names);
        let parsers = columns
            .iter()
            .map(|c| ColumnParser::new(&c.data_type.to_arrow(), time_zone, BATCH_ROWS))
            .collect();
        let binary_values = vec![Vec::new(); columns.len()];

        let writer = match &table {
            CopyTarget::Table(table) => {
                Sink::Files(Box::new(DataFileWriter::new(table.clone()).await?))
            }
            CopyTarget::Temporary { .. } => Sink::Memory(Vec::new()),
        };
        let (sender, receiver) = mpsc::channel(2);
        let writer_task = tokio::spawn(run_writer(writer, receiver));

        Ok(Self {
            header_pending: options.header,
            binary_header_pending: options.format == CopyFormat::Binary,
            table,
            columns,
            positions,
            options,
            reader,
            parsers,
            binary_values,
            buffer: Vec::new(),
            ended: false,
            line: 0,
            rows: 0,
            rows_in_batch: 0,
            writer: sender,
            writer_task: Some(writer_task),
        })
    }

    /// Number of columns each row carries (for CopyInResponse).
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    pub fn format(&self) -> CopyFormat {
        self.options.format
    }

    /// Takes one CopyData message.
    pub async fn push(&mut self, data: &[u8]) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= PARSE_THRESHOLD {
            self.parse_buffered(false).await?;
        }
        Ok(())
    }

    /// CopyDone: parses what is left, writes and commits. Returns the row
    /// count for the `COPY n` tag. A COPY small enough to fit one batch goes
    /// through the table's write-ahead log, like a small INSERT.
    pub async fn finish(mut self) -> Result<u64> {
        self.parse_buffered(true).await?;
        if self.rows == 0 {
            let batch = self.take_batch()?;
            let rows = batch.as_ref().map(|b| b.num_rows() as u64).unwrap_or(0);
            if let Some(batch) = batch {
                match &self.table {
                    CopyTarget::Table(table) => table.append_logged(batch).await?,
                    CopyTarget::Temporary { table, .. } => {
                        CopyTarget::append_in_memory(table, vec![batch]).await?
                    }
                }
            }
            // Dropping the unused writer deletes nothing: it wrote nothing.
            return Ok(rows);
        }
        self.flush_batch().await?;
        let (reply, result) = oneshot::channel();
        if self
            .writer
            .send(WriterMessage::Finish(reply))
            .await
            .is_err()
        {
            return Err(self.writer_failure().await);
        }
        let written = match result.await {
            Ok(written) => written?,
            Err(_) => return Err(self.writer_failure().await),
        };
        match (written, &self.table) {
            (Written::Files(files), _) => files.commit().await,
            (Written::Memory(batches), CopyTarget::Temporary { table, .. }) => {
                let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                CopyTarget::append_in_memory(table, batches).await?;
                Ok(rows)
            }
            (Written::Memory(_), CopyTarget::Table(_)) => {
                Err(Error::internal("COPY into a table buffered its rows"))
            }
        }
    }

    /// The writer task stopped early: its error explains why.
    async fn writer_failure(&mut self) -> Error {
        match self.writer_task.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => Error::internal("COPY writer stopped unexpectedly"),
                Err(e) => Error::internal(format!("COPY writer failed: {e}")),
            },
            None => Error::internal("COPY writer already failed"),
        }
    }

    async fn parse_buffered(&mut self, at_eof: bool) -> Result<()> {
        if self.options.format == CopyFormat::Binary {
            return self.parse_binary(at_eof).await;
        }
        let buffer = std::mem::take(&mut self.buffer);
        let mut pos = 0;
        let mut fields = Vec::with_capacity(self.columns.len());
        let result = loop {
            if self.ended || pos >= buffer.len() {
                break Ok(());
            }
            let outcome = match self.reader.read(&buffer, pos, at_eof, &mut fields) {
                Ok(outcome) => outcome,
                Err(e) => {
                    break Err(self.bad_data(BadCopyDataKind::Format, e.0, None, None));
                }
            };
            match outcome {
                ReadOutcome::Incomplete => break Ok(()),
                ReadOutcome::EndMarker(end) => {
                    self.line += end.lines as u64;
                    pos = end.next;
                    self.ended = true;
                }
                ReadOutcome::Record { end, raw } => {
                    self.line += end.lines as u64;
                    pos = end.next;
                    if self.header_pending {
                        self.header_pending = false;
                        continue;
                    }
                    if let Err(e) = self.append_record(&fields, raw) {
                        break Err(e);
                    }
                    if self.rows_in_batch >= BATCH_ROWS
                        && let Err(e) = self.flush_batch().await
                    {
                        break Err(e);
                    }
                }
            }
        };
        self.buffer = buffer;
        self.buffer.drain(..pos.min(self.buffer.len()));
        result
    }

    fn append_record(&mut self, fields: &[Field<'_>], raw: &[u8]) -> Result<()> {
        if fields.len() > self.columns.len() {
            return Err(self.bad_data(
                BadCopyDataKind::Format,
                "extra data after last expected column".to_string(),
                None,
                None,
            ));
        }
        if fields.len() < self.columns.len() {
            let column = self.columns[fields.len()].name.clone();
            return Err(self.bad_data(
                BadCopyDataKind::Format,
                format!("missing data for column \"{column}\""),
                None,
                None,
            ));
        }
        // One UTF-8 check per record: fields that are slices of a valid
        // record are valid too (they are split at ASCII bytes).
        let record_is_utf8 = std::str::from_utf8(raw).is_ok();
        for (index, field) in fields.iter().enumerate() {
            match field {
                Field::Null => {
                    if !self.columns[index].nullable {
                        let column = self.columns[index].name.clone();
                        return Err(self.bad_data(
                            BadCopyDataKind::NotNull,
                            format!(
                                "null value in column \"{column}\" of relation \"{}\" violates not-null constraint",
                                self.table.name()
                            ),
                            Some(index),
                            None,
                        ));
                    }
                    self.parsers[index].append_null();
                }
                Field::Value(bytes) => {
                    let checked = match bytes {
                        std::borrow::Cow::Borrowed(slice) if record_is_utf8 => {
                            Ok(borrowed_utf8(raw, slice))
                        }
                        _ => std::str::from_utf8(bytes),
                    };
                    let text = match checked {
                        Ok(text) => text,
                        Err(_) => {
                            return Err(self.bad_data(
                                BadCopyDataKind::Encoding,
                                "invalid byte sequence for encoding \"UTF8\"".to_string(),
                                Some(index),
                                None,
                            ));
                        }
                    };
                    if let ColumnType::Varchar {
                        max_len: Some(max_len),
                    } = self.columns[index].data_type
                        && text.len() > max_len as usize
                        && text.chars().count() > max_len as usize
                    {
                        return Err(self.bad_data(
                            BadCopyDataKind::TooLong,
                            format!("value too long for type character varying({max_len})"),
                            Some(index),
                            Some(text),
                        ));
                    }
                    if let Err(e) = self.parsers[index].append_text(text) {
                        let kind = match e {
                            ValueError::Syntax { .. } => BadCopyDataKind::Value,
                            ValueError::OutOfRange { .. } => BadCopyDataKind::OutOfRange,
                            ValueError::DateTime { .. } => BadCopyDataKind::DateTime,
                        };
                        return Err(self.bad_data(kind, e.message(), Some(index), Some(text)));
                    }
                }
            }
        }
        self.rows_in_batch += 1;
        Ok(())
    }

    fn bad_data(
        &self,
        kind: BadCopyDataKind,
        message: String,
        column: Option<usize>,
        value: Option<&str>,
    ) -> Error {
        let mut context = format!("COPY {}, line {}", self.table.name(), self.line);
        if let Some(column) = column {
            context.push_str(&format!(", column {}", self.columns[column].name));
            if let Some(value) = value {
                let shown: String = value.chars().take(64).collect();
                context.push_str(&format!(": \"{shown}\""));
            }
        }
        Error::BadCopyData {
            message,
            context,
            kind,
        }
    }

    async fn flush_batch(&mut self) -> Result<()> {
        let Some(batch) = self.take_batch()? else {
            return Ok(());
        };
        self.rows += batch.num_rows() as u64;
        if self.writer.send(WriterMessage::Batch(batch)).await.is_err() {
            return Err(self.writer_failure().await);
        }
        Ok(())
    }

    /// The rows parsed since the last batch, as a batch of the table.
    fn take_batch(&mut self) -> Result<Option<RecordBatch>> {
        let rows = if self.options.format == CopyFormat::Binary {
            self.binary_values.first().map(Vec::len).unwrap_or(0)
        } else {
            self.rows_in_batch
        };
        if rows == 0 {
            return Ok(None);
        }
        let copied: Vec<ArrayRef> = if self.options.format == CopyFormat::Binary {
            self.columns
                .iter()
                .zip(self.binary_values.iter_mut())
                .map(|(column, values)| {
                    let array = ScalarValue::iter_to_array(std::mem::take(values))?;
                    let target = column.data_type.to_arrow();
                    Ok(if array.data_type() == &target {
                        array
                    } else {
                        datafusion::arrow::compute::cast(&array, &target)?
                    })
                })
                .collect::<Result<_>>()?
        } else {
            self.parsers
                .iter_mut()
                .map(ColumnParser::finish)
                .collect::<Result<_>>()?
        };
        let schema = self.table.arrow_schema();
        let arrays: Vec<ArrayRef> = self
            .positions
            .iter()
            .zip(schema.fields())
            .map(|(position, field)| match position {
                Some(p) => copied[*p].clone(),
                None => new_null_array(field.data_type(), rows),
            })
            .collect();
        self.rows_in_batch = 0;
        Ok(Some(RecordBatch::try_new(schema, arrays)?))
    }

    /// PostgreSQL's binary COPY: signature, flags, header extension, then
    /// tuples of length-prefixed fields, ended by a -1 field count.
    async fn parse_binary(&mut self, at_eof: bool) -> Result<()> {
        let buffer = std::mem::take(&mut self.buffer);
        let mut pos = 0;
        let result: Result<()> = async {
            if self.binary_header_pending {
                if buffer.len() < BINARY_SIGNATURE.len() + 8 {
                    return if at_eof {
                        Err(self.bad_data(BadCopyDataKind::Format, "COPY file signature not recognized".into(), None, None))
                    } else {
                        Ok(())
                    };
                }
                if &buffer[..BINARY_SIGNATURE.len()] != BINARY_SIGNATURE {
                    return Err(self.bad_data(BadCopyDataKind::Format, "COPY file signature not recognized".into(), None, None));
                }
                let ext = i32::from_be_bytes(buffer[15..19].try_into().expect("4 bytes"));
                if ext < 0 {
                    return Err(self.bad_data(BadCopyDataKind::Format, "invalid COPY file header (missing length)".into(), None, None));
                }
                let header_end = 19 + ext as usize;
                if buffer.len() < header_end {
                    return Ok(());
                }
                pos = header_end;
                self.binary_header_pending = false;
            }
            let types: Vec<Type> = self.columns.iter().map(|c| pg_type(&c.data_type.to_arrow())).collect();
            loop {
                if self.ended || buffer.len() < pos + 2 {
                    break;
                }
                let count = i16::from_be_bytes([buffer[pos], buffer[pos + 1]]);
                if count == -1 {
                    self.ended = true;
                    pos += 2;
                    break;
                }
                // Check the whole tuple is buffered before consuming it.
                let mut cursor = pos + 2;
                let mut fields = Vec::with_capacity(count.max(0) as usize);
                let mut complete = true;
                for _ in 0..count.max(0) {
                    if buffer.len() < cursor + 4 {
                        complete = false;
                        break;
                    }
                    let length = i32::from_be_bytes(buffer[cursor..cursor + 4].try_into().expect("4 bytes"));
                    cursor += 4;
                    if length < 0 {
                        fields.push(None);
                    } else {
                        let end = cursor + length as usize;
                        if buffer.len() < end {
                            complete = false;
                            break;
                        }
                        fields.push(Some(cursor..end));
                        cursor = end;
                    }
                }
                if !complete {
                    break;
                }
                self.line += 1;
                if count as usize != self.columns.len() {
                    return Err(self.bad_data(
                        BadCopyDataKind::Format,
                        format!("row field count is {count}, expected {}", self.columns.len()),
                        None,
                        None,
                    ));
                }
                        for (index, field) in fields.into_iter().enumerate() {
                    let target = self.columns[index].data_type.to_arrow();
                    let value = match field {
                        None => {
                            if !self.columns[index].nullable {
                                return Err(self.bad_data(
                                    BadCopyDataKind::NotNull,
                                    format!(
                                        "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                                        self.columns[index].name, self.table.name()
                                    ),
                                    Some(index),
                                    None,
                                ));
                            }
                            ScalarValue::try_from(&target)?
                        }
                        Some(range) => parse_binary_param(&buffer[range], &types[index], &target)
                            .map_err(|e| {
                                let kind = match e {
                                    Error::DatetimeFieldOverflow(_) => BadCopyDataKind::DateTimeOverflow,
                                    _ => BadCopyDataKind::Value,
                                };
                                self.bad_data(kind, e.to_string(), Some(index), None)
                            })?,
                    };
                    self.binary_values[index].push(value);
                }
                pos = cursor;
                if self.binary_values[0].len() >= BATCH_ROWS {
                    self.flush_batch().await?;
                }
            }
            if at_eof && !self.ended && pos < buffer.len() {
                return Err(self.bad_data(BadCopyDataKind::Format, "unexpected end of binary COPY data".into(), None, None));
            }
            Ok(())
        }
        .await;
        self.buffer = buffer;
        self.buffer.drain(..pos.min(self.buffer.len()));
        result
    }
}

/// A field borrowed from a record already checked to be UTF-8.
fn borrowed_utf8<'a>(record: &[u8], field: &'a [u8]) -> &'a str {
    debug_assert!(std::str::from_utf8(record).is_ok());
    debug_assert!(std::str::from_utf8(field).is_ok());
    // SAFETY: `record` is valid UTF-8 and `field` is a sub-slice of it
    // whose ends are next to ASCII separators (delimiter, quote, newline)
    // or the record's ends, so it starts and ends on character boundaries.
    unsafe { std::str::from_utf8_unchecked(field) }
}

async fn run_writer(mut sink: Sink, mut receiver: mpsc::Receiver<WriterMessage>) -> Result<()> {
    while let Some(message) = receiver.recv().await {
        match (message, &mut sink) {
            (WriterMessage::Batch(batch), Sink::Files(writer)) => writer.write(batch).await?,
            (WriterMessage::Batch(batch), Sink::Memory(batches)) => batches.push(batch),
            (WriterMessage::Finish(reply), _) => {
                let written = match sink {
                    Sink::Files(writer) => writer.finish().await.map(Written::Files),
                    Sink::Memory(batches) => Ok(Written::Memory(batches)),
                };
                let _ = reply.send(written);
                return Ok(());
            }
        }
    }
    // The COPY was abandoned: dropping the writer deletes its files.
    Ok(())
}

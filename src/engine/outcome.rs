//! What executing a statement produces, for the serving layer to send.

use std::fmt;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use featuredb_sql::copy::CopyFormat;

use crate::copy::{CopyEncoder, CopyFromStdin};
use crate::serving::LookupRows;

pub enum Outcome {
    /// Rows, streamed as they are computed.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        /// Command tag name: `SELECT`, `EXPLAIN`, `SHOW`.
        tag: &'static str,
    },
    /// An online lookup's rows, read straight from the online store.
    Lookup(LookupRows),
    /// A statement without rows.
    Command(CommandTag),
    /// `COPY … FROM STDIN`: the client now sends the data.
    CopyIn(Box<CopyFromStdin>),
    /// `COPY … TO STDOUT`: rows to send as CopyData.
    CopyOut {
        encoder: CopyEncoder,
        format: CopyFormat,
        columns: usize,
        stream: SendableRecordBatchStream,
    },
    /// An empty query string.
    Empty,
}

/// A CommandComplete tag: `CREATE TABLE`, `INSERT 0 5`, `COPY 3`, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    pub command: &'static str,
    pub rows: Option<u64>,
}

impl CommandTag {
    pub fn new(command: &'static str) -> Self {
        Self {
            command,
            rows: None,
        }
    }

    pub fn with_rows(command: &'static str, rows: u64) -> Self {
        Self {
            command,
            rows: Some(rows),
        }
    }
}

impl fmt::Display for CommandTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.command, self.rows) {
            // INSERT's tag carries the (always 0) OID of the inserted row.
            ("INSERT", Some(rows)) => write!(f, "INSERT 0 {rows}"),
            (command, Some(rows)) => write!(f, "{command} {rows}"),
            (command, None) => f.write_str(command),
        }
    }
}

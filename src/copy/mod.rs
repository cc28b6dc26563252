//! COPY: PostgreSQL's bulk data formats (text, CSV, binary) in both
//! directions, and query results to a server file (those formats or Parquet).

pub mod format;
pub mod from_stdin;
pub mod to_file;
pub mod to_stdout;

pub use from_stdin::{CopyFromStdin, CopyTarget};
pub use to_stdout::CopyEncoder;

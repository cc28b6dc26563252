//! The bridge between Arrow values and PostgreSQL's type system: OIDs, and
//! the text and binary representations of values on the wire and in COPY.

pub mod datetime;
pub mod datum;
pub mod float;
pub mod input;
pub mod numeric;
pub mod oid;
pub mod output;
pub mod time_zone;

pub use datum::Datum;
pub use input::{ColumnParser, ValueError, parse_binary_param, parse_text_param};
pub use oid::{data_type_of_oid, pg_type, type_size};
pub use output::{ColumnEncoder, OutputContext};
pub use time_zone::SessionTimeZone;

//! The server's errors: every failure a client can see is one variant of
//! [`Error`] ([`variants`]), carrying the context a PostgreSQL user expects
//! in the message; [`sqlstate`] decides, in one place, what the client is
//! told of it ([`ErrorReport`]: SQLSTATE, message, detail, …), with
//! DataFusion's errors classified in [`datafusion`].

pub mod datafusion;
pub mod sqlstate;
pub mod variants;

pub use sqlstate::ErrorReport;
pub use variants::{BadCopyDataKind, Error, Result};

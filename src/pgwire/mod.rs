//! The PostgreSQL wire protocol: framing, the startup handshake, the simple
//! and extended query protocols, COPY, cancel, and the mapping of results and
//! errors to messages.

pub mod cancel;
pub mod codec;
pub mod connection;
pub mod copy;
pub mod errors;
pub mod extended;
pub mod portal;
pub mod rows;
pub mod simple;
pub mod stream;

pub use cancel::CancelRegistry;
pub use connection::{ServerContext, serve};
pub use stream::ClientStream;

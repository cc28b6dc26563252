//! The offline store: every table's full history in Apache Iceberg.

mod file_write;
pub mod observer;
pub mod provider;
pub mod schema;
pub mod storage;
pub mod store;
pub mod table;
pub mod truncate;
pub mod wal;
pub mod write_order;
pub mod writer;

pub use observer::{WriteObserver, WriteObservers};
pub use provider::IcebergTableProvider;
pub use store::{CATALOG_NAME, FlushPolicy, OfflineStore};
pub use table::TableHandle;
pub use writer::{DataFileWriter, WrittenFiles};

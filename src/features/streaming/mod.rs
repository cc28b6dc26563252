//! What a streaming feature view computes from each write: the view's
//! query reduced to row-by-row steps ([`RowPipeline`], checked when a view
//! is declared STREAMING) and its rows in the online store's form
//! ([`offer_rows`]). The stream engine (`src/stream/`) runs them as writes
//! are acknowledged.

mod pipeline;
mod rows;

pub use pipeline::RowPipeline;
pub use rows::offer_rows;

//! A generation's redb tables: the base and the delta, read newest first.

use std::sync::Arc;

use redb::TableDefinition;

use super::blocks::{self, BaseLayout, CachedBlock};
use super::delta::DeltaRuns;
use super::state::Materialization;
use super::store::storage;
use crate::error::{Error, Result};

pub(super) type RowsTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

pub(super) type RowsTableMut<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

/// A generation's tables that exist, read newest rows first: delta, then
/// base.
pub(super) struct RowsTables {
    pub(super) delta: Option<RowsTable>,
    /// What the delta holds.
    pub(super) runs: Arc<DeltaRuns>,
    pub(super) base: Option<RowsTable>,
    pub(super) layout: BaseLayout,
}

impl RowsTables {
    pub(super) fn open(read: &redb::ReadTransaction, state: &Materialization) -> Result<Self> {
        let open = |name: &str| {
            let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
            match read.open_table(definition) {
                Ok(table) => Ok(Some(table)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(storage("reading")(e)),
            }
        };
        Ok(Self {
            delta: open(&state.delta_table)?,
            runs: state.index.delta.clone(),
            base: open(&state.rows_table)?,
            layout: state.base_layout,
        })
    }

    /// The stored value of `key`, from the first table holding it, handed
    /// to `f`.
    pub(super) fn find<R>(&self, key: &[u8], f: impl Fn(&[u8]) -> Result<R>) -> Result<Option<R>> {
        if let Some(row) = self.find_in_delta(key, &f)? {
            return Ok(Some(row));
        }
        self.find_in_base(key, f)
    }

    /// The stored value of `key` in the base, handed to `f`.
    pub(super) fn find_in_base<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>> {
        match &self.base {
            Some(base) => blocks::find(base, self.layout, key, f),
            None => Ok(None),
        }
    }

    /// The base block whose first key is `first_key`, which the view's
    /// block index names: not finding it means the store is corrupt.
    pub(super) fn base_block(&self, first_key: &[u8]) -> Result<CachedBlock> {
        let stored = self
            .base
            .as_ref()
            .map(|base| base.get(first_key))
            .transpose()
            .map_err(storage("reading"))?
            .flatten()
            .ok_or_else(|| {
                Error::OnlineStore(
                    "corrupt online store: a block its index names is missing".into(),
                )
            })?;
        CachedBlock::parse(stored.value())
    }

    /// The stored value of `key` in the delta, handed to `f`.
    pub(super) fn find_in_delta<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>> {
        match &self.delta {
            Some(delta) => self.runs.hold().find(delta, key, f),
            None => Ok(None),
        }
    }
}

/// Deletes a generation's online rows (base and delta).
pub(super) fn delete_rows_tables(
    write: &redb::WriteTransaction,
    state: &Materialization,
) -> Result<()> {
    let per_key_delta = state.per_key_delta_table();
    for name in [&*state.rows_table, &*state.delta_table, &per_key_delta] {
        let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
        write.delete_table(definition).map_err(storage("writing"))?;
    }
    Ok(())
}

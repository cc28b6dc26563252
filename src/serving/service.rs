//! The lookup service: what every serving path asks for online rows.

use std::sync::Arc;

use featuredb_catalog::Registry;

use crate::online::OnlineStore;

/// Plans and answers online lookups from the registry and the online
/// store. It holds no session state: what depends on the caller (its names,
/// its planner for select-list expressions, its time zone) comes with each
/// call.
pub struct LookupService {
    pub(super) registry: Arc<Registry>,
    pub(super) online: Arc<OnlineStore>,
}

impl LookupService {
    pub fn new(registry: Arc<Registry>, online: Arc<OnlineStore>) -> Self {
        Self { registry, online }
    }

    /// Whether any view was ever refreshed: until one was, no query can be
    /// a lookup and callers skip the check.
    pub fn may_serve(&self) -> bool {
        self.online.has_materializations()
    }
}

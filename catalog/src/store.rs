//! Transactional persistence of the registry: one SQLite database
//! (`registry.db`), one row per object version, JSON definitions.
//!
//! A registry change (one DDL statement) is a [`RegistryTransaction`]: it
//! edits a copy of the state and records row changes; `commit` writes them
//! in one SQLite transaction (durable: rollback journal, synchronous FULL)
//! and only then publishes the new state. A statement that fails, or a
//! crash before the SQLite commit, leaves the registry as it was.

use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::names::QualifiedName;
use crate::registry::{Entity, FeatureService, FeatureView, ObjectKind, RegistryState, SqlView};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("registry is corrupt: {0}")]
    Corrupt(String),
}

pub struct Registry {
    pool: SqlitePool,
    state: RwLock<Arc<RegistryState>>,
    ddl: tokio::sync::Mutex<()>,
}

enum RowChange {
    Put {
        kind: ObjectKind,
        name: QualifiedName,
        version: u32,
        definition: String,
    },
    DeleteAll {
        kind: ObjectKind,
        name: QualifiedName,
    },
}

/// A registry change being prepared; holds the registry's DDL lock.
pub struct RegistryTransaction<'a> {
    registry: &'a Registry,
    _lock: tokio::sync::MutexGuard<'a, ()>,
    pub state: RegistryState,
    changes: Vec<RowChange>,
}

impl Registry {
    /// Opens (creating if needed) the registry at `path`.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS registry_objects (
                kind TEXT NOT NULL,
                schema_name TEXT NOT NULL,
                name TEXT NOT NULL,
                version INTEGER NOT NULL,
                definition TEXT NOT NULL,
                PRIMARY KEY (kind, schema_name, name, version)
            )",
        )
        .execute(&pool)
        .await?;
        let state = load(&pool).await?;
        Ok(Self {
            pool,
            state: RwLock::new(Arc::new(state)),
            ddl: tokio::sync::Mutex::new(()),
        })
    }

    /// The current state (cheap; a shared snapshot).
    pub fn snapshot(&self) -> Arc<RegistryState> {
        self.state.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Starts a change. Changes are serialised: the transaction holds the
    /// registry's DDL lock until committed or dropped.
    pub async fn begin(&self) -> RegistryTransaction<'_> {
        let lock = self.ddl.lock().await;
        RegistryTransaction {
            registry: self,
            _lock: lock,
            state: (*self.snapshot()).clone(),
            changes: Vec::new(),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, RegistryError> {
    serde_json::to_string(value).map_err(|e| RegistryError::Corrupt(e.to_string()))
}

impl<'a> RegistryTransaction<'a> {
    pub fn put_entity(&mut self, entity: Entity) -> Result<(), RegistryError> {
        self.changes.push(RowChange::DeleteAll {
            kind: ObjectKind::Entity,
            name: entity.name.clone(),
        });
        self.changes.push(RowChange::Put {
            kind: ObjectKind::Entity,
            name: entity.name.clone(),
            version: 1,
            definition: to_json(&entity)?,
        });
        self.state.entities.insert(entity.name.clone(), entity);
        Ok(())
    }

    /// Stores a view whose last version is new (earlier ones are kept).
    pub fn put_view(&mut self, view: FeatureView) -> Result<(), RegistryError> {
        let current = view.current();
        self.changes.push(RowChange::Put {
            kind: ObjectKind::FeatureView,
            name: view.name.clone(),
            version: current.version,
            definition: to_json(current)?,
        });
        self.state.views.insert(view.name.clone(), view);
        Ok(())
    }

    pub fn put_service(&mut self, service: FeatureService) -> Result<(), RegistryError> {
        let current = service.current();
        self.changes.push(RowChange::Put {
            kind: ObjectKind::FeatureService,
            name: service.name.clone(),
            version: current.version,
            definition: to_json(current)?,
        });
        self.state.services.insert(service.name.clone(), service);
        Ok(())
    }

    /// Stores a plain SQL view (replacing any earlier definition).
    pub fn put_sql_view(&mut self, view: SqlView) -> Result<(), RegistryError> {
        self.changes.push(RowChange::DeleteAll {
            kind: ObjectKind::View,
            name: view.name.clone(),
        });
        self.changes.push(RowChange::Put {
            kind: ObjectKind::View,
            name: view.name.clone(),
            version: 1,
            definition: to_json(&view)?,
        });
        self.state.sql_views.insert(view.name.clone(), view);
        Ok(())
    }

    pub fn remove(&mut self, kind: ObjectKind, name: &QualifiedName) {
        match kind {
            ObjectKind::Entity => {
                self.state.entities.remove(name);
            }
            ObjectKind::FeatureView => {
                self.state.views.remove(name);
            }
            ObjectKind::FeatureService => {
                self.state.services.remove(name);
            }
            ObjectKind::View => {
                self.state.sql_views.remove(name);
            }
            ObjectKind::Table => return,
        }
        self.changes.push(RowChange::DeleteAll {
            kind,
            name: name.clone(),
        });
    }

    /// Persists the changes atomically, then publishes the new state.
    pub async fn commit(self) -> Result<(), RegistryError> {
        self.commit_holding_lock().await.map(drop)
    }

    /// Commits like [`commit`](Self::commit) but keeps the registry's DDL
    /// lock until the returned guard is dropped, for DDL that must finish
    /// work outside the registry (dropping tables) before another registry
    /// change may see the result.
    pub async fn commit_holding_lock(self) -> Result<RegistryLock<'a>, RegistryError> {
        let mut transaction = self.registry.pool.begin().await?;
        for change in &self.changes {
            match change {
                RowChange::Put {
                    kind,
                    name,
                    version,
                    definition,
                } => {
                    sqlx::query(
                        "INSERT OR REPLACE INTO registry_objects (kind, schema_name, name, version, definition)
                         VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(kind.as_str())
                    .bind(&name.schema)
                    .bind(&name.name)
                    .bind(*version as i64)
                    .bind(definition)
                    .execute(&mut *transaction)
                    .await?;
                }
                RowChange::DeleteAll { kind, name } => {
                    sqlx::query(
                        "DELETE FROM registry_objects WHERE kind = ? AND schema_name = ? AND name = ?",
                    )
                    .bind(kind.as_str())
                    .bind(&name.schema)
                    .bind(&name.name)
                    .execute(&mut *transaction)
                    .await?;
                }
            }
        }
        transaction.commit().await?;
        let mut state = self
            .registry
            .state
            .write()
            .map_err(|_| RegistryError::Corrupt("registry lock poisoned".to_string()))?;
        *state = Arc::new(self.state);
        drop(state);
        Ok(RegistryLock { _lock: self._lock })
    }
}

/// Holds the registry's DDL lock after a commit.
pub struct RegistryLock<'a> {
    _lock: tokio::sync::MutexGuard<'a, ()>,
}

async fn load(pool: &SqlitePool) -> Result<RegistryState, RegistryError> {
    let rows = sqlx::query(
        "SELECT kind, schema_name, name, version, definition FROM registry_objects
         ORDER BY kind, schema_name, name, version",
    )
    .fetch_all(pool)
    .await?;
    let mut state = RegistryState::default();
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let name = QualifiedName::new(
            row.try_get::<String, _>("schema_name")?,
            row.try_get::<String, _>("name")?,
        );
        let definition: String = row.try_get("definition")?;
        let corrupt = |e: serde_json::Error| RegistryError::Corrupt(format!("{kind} {name}: {e}"));
        match kind.as_str() {
            "entity" => {
                let entity: Entity = serde_json::from_str(&definition).map_err(corrupt)?;
                state.entities.insert(name, entity);
            }
            "feature_view" => {
                let version = serde_json::from_str(&definition).map_err(corrupt)?;
                state
                    .views
                    .entry(name.clone())
                    .or_insert_with(|| FeatureView {
                        name,
                        versions: Vec::new(),
                    })
                    .versions
                    .push(version);
            }
            "view" => {
                let view: SqlView = serde_json::from_str(&definition).map_err(corrupt)?;
                state.sql_views.insert(name, view);
            }
            "feature_service" => {
                let version = serde_json::from_str(&definition).map_err(corrupt)?;
                state
                    .services
                    .entry(name.clone())
                    .or_insert_with(|| FeatureService {
                        name,
                        versions: Vec::new(),
                    })
                    .versions
                    .push(version);
            }
            other => {
                return Err(RegistryError::Corrupt(format!(
                    "unknown object kind {other}"
                )));
            }
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ColumnRole, FeatureViewVersion, KeyColumn, ViewColumn};
    use crate::types::ColumnType;

    fn view_version(version: u32) -> FeatureViewVersion {
        FeatureViewVersion {
            version,
            entity: None,
            keys: vec!["id".into()],
            timestamp: "ts".into(),
            ttl: Some("INTERVAL '1 day'".into()),
            online: false,
            streaming: false,
            owner: None,
            tags: None,
            description: None,
            query: "SELECT id, ts, x FROM t".into(),
            columns: vec![ViewColumn {
                name: "x".into(),
                data_type: "bigint".into(),
                column_type: Some(ColumnType::BigInt),
                role: ColumnRole::Feature,
            }],
            dependencies: vec![],
            created_at: "2024-01-01T00:00:00Z".into(),
            sql: String::new(),
            write_ordered_query: None,
            windowed_base: None,
        }
    }

    #[tokio::test]
    async fn changes_persist_atomically_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        {
            let registry = Registry::open(&path).await.unwrap();
            let mut txn = registry.begin().await;
            txn.put_entity(Entity {
                name: QualifiedName::new("public", "customer"),
                keys: vec![KeyColumn {
                    name: "id".into(),
                    data_type: ColumnType::BigInt,
                }],
                comment: None,
                created_at: String::new(),
                sql: String::new(),
            })
            .unwrap();
            let name = QualifiedName::new("public", "spend");
            txn.put_view(FeatureView {
                name: name.clone(),
                versions: vec![view_version(1)],
            })
            .unwrap();
            txn.commit().await.unwrap();

            let mut txn = registry.begin().await;
            let mut view = txn.state.views[&name].clone();
            view.versions.push(view_version(2));
            txn.put_view(view).unwrap();
            txn.commit().await.unwrap();

            // A dropped (uncommitted) transaction changes nothing.
            let mut txn = registry.begin().await;
            txn.remove(ObjectKind::FeatureView, &name);
            drop(txn);
            assert_eq!(registry.snapshot().views[&name].versions.len(), 2);
        }
        let registry = Registry::open(&path).await.unwrap();
        let state = registry.snapshot();
        assert_eq!(state.entities.len(), 1);
        let view = &state.views[&QualifiedName::new("public", "spend")];
        assert_eq!(view.versions.len(), 2);
        assert_eq!(view.current().version, 2);

        let mut txn = registry.begin().await;
        txn.remove(ObjectKind::FeatureView, &view.name);
        txn.commit().await.unwrap();
        drop(registry);
        let registry = Registry::open(&path).await.unwrap();
        assert!(registry.snapshot().views.is_empty());
    }
}

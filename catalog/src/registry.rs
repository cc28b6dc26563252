//! The feature registry's model: entities, feature views and feature
//! services, each view and service with every version of its definition.
//!
//! Invariants (checked by the engine before a change is committed):
//! - Names are unique per kind within a schema; feature views and services
//!   share the relation namespace with tables.
//! - Versions of an object start at 1 and grow by one per definition change;
//!   the last is the current one. Dropping an object drops its history.
//! - Dependencies (`Dependency`) always name existing objects; the
//!   dependency graph of feature views has no cycles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::QualifiedName;
use crate::types::ColumnType;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyColumn {
    pub name: String,
    pub data_type: ColumnType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    pub name: QualifiedName,
    pub keys: Vec<KeyColumn>,
    pub comment: Option<String>,
    pub created_at: String,
    /// The statement that created it, canonical form.
    pub sql: String,
}

/// What a column of a feature view is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    Key,
    Timestamp,
    Feature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewColumn {
    pub name: String,
    /// PostgreSQL's name for the column's type.
    pub data_type: String,
    /// The storable type, when the column has one.
    pub column_type: Option<ColumnType>,
    pub role: ColumnRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Table,
    Entity,
    FeatureView,
    FeatureService,
    /// A plain SQL view (`CREATE VIEW`).
    View,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Entity => "entity",
            ObjectKind::FeatureView => "feature_view",
            ObjectKind::FeatureService => "feature_service",
            ObjectKind::View => "view",
        }
    }

    /// Whether objects of this kind share the relation namespace (tables,
    /// views, feature views, services); entities have their own.
    pub fn is_relation(self) -> bool {
        self != ObjectKind::Entity
    }

    /// Whether a dependency recorded as `self` refers to an object of kind
    /// `other`. Definitions refer to relations by name, so a dependency on
    /// relation `x` refers to whatever relation is named `x` now (a table
    /// renamed away and a view renamed into its place, as dbt does).
    pub fn refers_to(self, other: ObjectKind) -> bool {
        self == other || (self.is_relation() && other.is_relation())
    }

    /// The kind as messages name it: "feature view".
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Entity => "entity",
            ObjectKind::FeatureView => "feature view",
            ObjectKind::FeatureService => "feature service",
            ObjectKind::View => "view",
        }
    }
}

/// An object a definition reads from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dependency {
    pub kind: ObjectKind,
    pub name: QualifiedName,
    /// The pinned version, for feature views read at a fixed version.
    pub version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureViewVersion {
    pub version: u32,
    /// The entity the view is keyed by, if declared with ENTITY.
    pub entity: Option<QualifiedName>,
    pub keys: Vec<String>,
    pub timestamp: String,
    /// The TTL as SQL (`INTERVAL '30 days'`), if any.
    pub ttl: Option<String>,
    pub online: bool,
    /// Kept current by the stream engine as rows are written (ONLINE
    /// STREAMING), rather than by REFRESH alone.
    #[serde(default)]
    pub streaming: bool,
    pub owner: Option<String>,
    pub tags: Option<String>,
    pub description: Option<String>,
    /// The defining query.
    pub query: String,
    pub columns: Vec<ViewColumn>,
    pub dependencies: Vec<Dependency>,
    pub created_at: String,
    /// The statement equivalent to this version, canonical form.
    pub sql: String,
    /// `query` reading its one table in write order, with the
    /// `featuredb_write_order` column added, when the query has that shape:
    /// ties on event time then go to the row written last.
    #[serde(default)]
    pub write_ordered_query: Option<String>,
    /// For a view with windowed features: the rows they aggregate (the
    /// query without its window functions), which is what refreshes and
    /// the stream engine materialize; the windows are computed when read.
    #[serde(default)]
    pub windowed_base: Option<WindowedBase>,
}

/// The row-level part of a windowed view: its query with each window
/// function replaced by its argument, that query's columns, and its
/// write-ordered variant (see [`FeatureViewVersion::write_ordered_query`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowedBase {
    pub query: String,
    pub columns: Vec<ViewColumn>,
    pub write_ordered_query: Option<String>,
}

impl FeatureViewVersion {
    /// The type of the event time column, if it has a storable one.
    pub fn timestamp_type(&self) -> Option<&ColumnType> {
        self.columns
            .iter()
            .find(|c| c.name == self.timestamp)
            .and_then(|c| c.column_type.as_ref())
    }

    /// What refreshes materialize of this version: itself, or for a
    /// windowed view its row-level base (same key, time, TTL).
    pub fn materialized_form(&self) -> std::borrow::Cow<'_, FeatureViewVersion> {
        match &self.windowed_base {
            None => std::borrow::Cow::Borrowed(self),
            Some(base) => std::borrow::Cow::Owned(FeatureViewVersion {
                query: base.query.clone(),
                columns: base.columns.clone(),
                write_ordered_query: base.write_ordered_query.clone(),
                windowed_base: None,
                ..self.clone()
            }),
        }
    }

    pub fn features(&self) -> impl Iterator<Item = &ViewColumn> {
        self.columns
            .iter()
            .filter(|c| c.role == ColumnRole::Feature)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureView {
    pub name: QualifiedName,
    pub versions: Vec<FeatureViewVersion>,
}

impl FeatureView {
    pub fn current(&self) -> &FeatureViewVersion {
        self.versions
            .last()
            .expect("a feature view has at least one version")
    }

    pub fn version(&self, version: u32) -> Option<&FeatureViewVersion> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// One feature a service serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFeature {
    pub view: QualifiedName,
    /// Pinned view version; `None` follows the view's current version.
    pub view_version: Option<u32>,
    pub feature: String,
    /// The column name in the service's output.
    pub output_name: String,
    pub data_type: String,
    pub column_type: Option<ColumnType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureServiceVersion {
    pub version: u32,
    /// The join key every view of the service shares.
    pub keys: Vec<KeyColumn>,
    pub features: Vec<ServiceFeature>,
    pub owner: Option<String>,
    pub tags: Option<String>,
    pub description: Option<String>,
    pub dependencies: Vec<Dependency>,
    pub created_at: String,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureService {
    pub name: QualifiedName,
    pub versions: Vec<FeatureServiceVersion>,
}

impl FeatureService {
    pub fn current(&self) -> &FeatureServiceVersion {
        self.versions
            .last()
            .expect("a feature service has at least one version")
    }

    pub fn version(&self, version: u32) -> Option<&FeatureServiceVersion> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// A plain SQL view: a stored query, expanded where it is read (as
/// PostgreSQL's views are). Feature views and services are read inside it
/// as of now, like anywhere else in a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlView {
    pub name: QualifiedName,
    /// The defining query, names qualified.
    pub query: String,
    /// Output columns: name and PostgreSQL type name, with the storable
    /// type when there is one.
    pub columns: Vec<ViewColumn>,
    pub dependencies: Vec<Dependency>,
    pub created_at: String,
    /// The statement equivalent to the view, canonical form.
    pub sql: String,
}

/// Everything the registry holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryState {
    pub entities: BTreeMap<QualifiedName, Entity>,
    pub views: BTreeMap<QualifiedName, FeatureView>,
    pub services: BTreeMap<QualifiedName, FeatureService>,
    pub sql_views: BTreeMap<QualifiedName, SqlView>,
}

impl RegistryState {
    /// Objects whose current definition depends on `name` (of `kind`;
    /// relations are matched by name, see [`ObjectKind::refers_to`]).
    pub fn dependents(
        &self,
        kind: ObjectKind,
        name: &QualifiedName,
    ) -> Vec<(ObjectKind, QualifiedName)> {
        let mut found = Vec::new();
        for view in self.views.values() {
            if view
                .current()
                .dependencies
                .iter()
                .any(|d| d.kind.refers_to(kind) && &d.name == name)
                || (kind == ObjectKind::Entity && view.current().entity.as_ref() == Some(name))
            {
                found.push((ObjectKind::FeatureView, view.name.clone()));
            }
        }
        for service in self.services.values() {
            if service
                .current()
                .dependencies
                .iter()
                .any(|d| d.kind.refers_to(kind) && &d.name == name)
            {
                found.push((ObjectKind::FeatureService, service.name.clone()));
            }
        }
        for view in self.sql_views.values() {
            if view
                .dependencies
                .iter()
                .any(|d| d.kind.refers_to(kind) && &d.name == name)
            {
                found.push((ObjectKind::View, view.name.clone()));
            }
        }
        found
    }

    /// Names of the relations the registry defines in `schema`: feature
    /// views, feature services and views (tables live in the offline store).
    pub fn relation_names_in<'a>(&'a self, schema: &'a str) -> impl Iterator<Item = &'a str> {
        self.views
            .keys()
            .chain(self.services.keys())
            .chain(self.sql_views.keys())
            .filter(move |n| n.schema == schema)
            .map(|n| n.name.as_str())
    }

    /// Whether any object lives in `schema`.
    pub fn objects_in_schema(&self, schema: &str) -> Vec<(ObjectKind, QualifiedName)> {
        self.entities
            .keys()
            .map(|n| (ObjectKind::Entity, n.clone()))
            .chain(
                self.views
                    .keys()
                    .map(|n| (ObjectKind::FeatureView, n.clone())),
            )
            .chain(
                self.services
                    .keys()
                    .map(|n| (ObjectKind::FeatureService, n.clone())),
            )
            .chain(self.sql_views.keys().map(|n| (ObjectKind::View, n.clone())))
            .filter(|(_, n)| n.schema == schema)
            .collect()
    }
}

/// The current time as the registry and the job history record it
/// (RFC 3339, UTC, milliseconds).
pub fn timestamp_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

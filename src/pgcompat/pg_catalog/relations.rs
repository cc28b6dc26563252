//! featuredb's objects as rows of PostgreSQL's catalog: schemas in
//! `pg_namespace`, tables (kind `r`) and feature views, services and the
//! registry's system tables (kind `v`) in `pg_class`, their columns with
//! real type OIDs and modifiers in `pg_attribute`, descriptions in
//! `pg_description`, definitions in `pg_views`.
//!
//! Object ids are derived from names (a hash into the range PostgreSQL
//! gives user objects), so they are the same in every session and after a
//! restart, and no state is kept to hand them out. `pg_catalog` and
//! `public` have PostgreSQL's own ids (11 and 2200), which some clients
//! assume.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::SchemaProvider;
use datafusion::error::Result as DFResult;
use featuredb_catalog::{ColumnType, REGISTRY_SCHEMA, Registry};
use pgwire::api::Type;

use crate::offline::OfflineStore;
use crate::pgcompat::settings::{SettingRow, SettingsView};
use crate::pgcompat::temp_tables::TempTables;
use crate::pgtypes::oid::{array_type_of, pg_type};

pub const PG_CATALOG_NAMESPACE_OID: i32 = 11;
pub const PUBLIC_NAMESPACE_OID: i32 = 2200;
/// `pg_class`'s own oid: the class of relation descriptions.
pub(super) const PG_CLASS_OID: i32 = 1259;
/// The bootstrap superuser every object is owned by.
pub(super) const OWNER_OID: i32 = 10;
/// PostgreSQL's first id for user objects.
const FIRST_NORMAL_OBJECT_ID: u64 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    /// A session's temporary table (`relpersistence = 't'`).
    TemporaryTable,
    View,
}

impl RelationKind {
    pub(super) fn relkind(self) -> &'static str {
        match self {
            RelationKind::Table | RelationKind::TemporaryTable => "r",
            RelationKind::View => "v",
        }
    }

    pub(super) fn relpersistence(self) -> &'static str {
        match self {
            RelationKind::TemporaryTable => "t",
            _ => "p",
        }
    }
}

/// A column as `pg_attribute` describes it.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub dimensions: i32,
    pub not_null: bool,
}

impl Attribute {
    fn of_column_type(name: &str, column_type: &ColumnType, not_null: bool) -> Self {
        let (type_oid, typmod, dimensions) = pg_column_type(column_type);
        Self {
            name: name.to_string(),
            type_oid,
            typmod,
            dimensions,
            not_null,
        }
    }

    fn of_arrow(name: &str, data_type: &DataType, not_null: bool) -> Self {
        let ty = pg_type(data_type);
        let dimensions = i32::from(matches!(ty.kind(), postgres_types::Kind::Array(_)));
        Self {
            name: name.to_string(),
            type_oid: ty.oid(),
            typmod: -1,
            dimensions,
            not_null,
        }
    }
}

/// A relation as `pg_class` describes it.
#[derive(Debug, Clone)]
pub struct Relation {
    pub oid: i32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    pub attributes: Vec<Attribute>,
    pub description: Option<String>,
    /// The defining query of a view.
    pub definition: Option<String>,
}

/// The type OID, type modifier and array dimensions of a declared column.
fn pg_column_type(column_type: &ColumnType) -> (u32, i32, i32) {
    match column_type {
        ColumnType::Varchar { max_len } => (
            Type::VARCHAR.oid(),
            max_len.map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX - 4) + 4),
            0,
        ),
        ColumnType::Numeric { precision, scale } => (
            Type::NUMERIC.oid(),
            ((i32::from(*precision) << 16) | (i32::from(*scale) & 0xffff)) + 4,
            0,
        ),
        ColumnType::Array(element) => {
            let (element_oid, typmod, dimensions) = pg_column_type(element);
            let array = Type::from_oid(element_oid)
                .map(|t| array_type_of(&t))
                .unwrap_or(Type::TEXT_ARRAY);
            (array.oid(), typmod, dimensions + 1)
        }
        other => (pg_type(&other.to_arrow()).oid(), -1, 0),
    }
}

/// One part of a dotted name: quoted parts keep their case.
fn identifier_part(part: &str) -> String {
    let part = part.trim();
    match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => part.to_lowercase(),
    }
}

/// PostgreSQL's ids of the catalog tables clients name in `::regclass`.
fn system_catalog_oid(name: &str) -> Option<i32> {
    Some(match name {
        "pg_type" => 1247,
        "pg_attribute" => 1249,
        "pg_proc" => 1255,
        "pg_class" => PG_CLASS_OID,
        "pg_database" => 1262,
        "pg_namespace" => 2615,
        "pg_constraint" => 2606,
        "pg_description" => 2609,
        "pg_index" => 2610,
        "pg_trigger" => 2620,
        "pg_rewrite" => 2618,
        "pg_attrdef" => 2604,
        "pg_am" => 2601,
        "pg_operator" => 2617,
        "pg_authid" => 1260,
        _ => return None,
    })
}

/// A stable object id for a name: FNV-1a into [16384, 2^31).
fn stable_oid(kind: &str, parts: &[&str]) -> i32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(kind)
        .chain(parts.iter().copied())
        .flat_map(|part| part.bytes().chain(std::iter::once(0)))
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let range = i32::MAX as u64 - FIRST_NORMAL_OBJECT_ID;
    (FIRST_NORMAL_OBJECT_ID + hash % range) as i32
}

pub fn namespace_oid(schema: &str) -> i32 {
    match schema {
        "pg_catalog" => PG_CATALOG_NAMESPACE_OID,
        "public" => PUBLIC_NAMESPACE_OID,
        other => stable_oid("namespace", &[other]),
    }
}

pub fn relation_oid(schema: &str, name: &str) -> i32 {
    stable_oid("relation", &[schema, name])
}

/// Reads featuredb's objects for the catalog tables.
#[derive(Clone)]
pub struct Relations {
    store: Arc<OfflineStore>,
    registry: Arc<Registry>,
    /// The registry's system tables (the `featuredb` schema), which the
    /// feature store provides.
    system_tables: Arc<dyn SchemaProvider>,
    /// User names sessions connected with since the server started.
    roles: Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>,
    /// The temporary tables of the session asking (none engine-wide).
    temp: Option<Arc<TempTables>>,
    /// The settings of the session asking (none engine-wide).
    settings: Option<SettingsView>,
}

impl std::fmt::Debug for Relations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Relations")
    }
}

impl Relations {
    pub fn new(
        store: Arc<OfflineStore>,
        registry: Arc<Registry>,
        system_tables: Arc<dyn SchemaProvider>,
    ) -> Self {
        Self {
            store,
            registry,
            system_tables,
            roles: Default::default(),
            temp: None,
            settings: None,
        }
    }

    /// The same relations as one session sees them: with its temporary
    /// tables and its settings.
    pub fn for_session(&self, temp: Arc<TempTables>, settings: SettingsView) -> Self {
        Self {
            temp: Some(temp),
            settings: Some(settings),
            ..self.clone()
        }
    }

    /// The session's settings, for `pg_settings`.
    pub fn settings(&self) -> Vec<SettingRow> {
        self.settings
            .as_ref()
            .map(|view| view.read().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The name of the session's temporary schema (listed once it holds a
    /// table).
    pub fn temp_schema(&self) -> Option<String> {
        self.temp.as_ref().map(|t| t.schema_name.clone())
    }

    /// The session's temporary tables, if it has any.
    fn temp(&self) -> Option<&Arc<TempTables>> {
        self.temp.as_ref().filter(|t| !t.is_empty())
    }

    /// Records a user name a session connected with (listed as a role).
    pub fn add_role(&self, name: &str) {
        let mut roles = self.roles.write().unwrap_or_else(|e| e.into_inner());
        if !roles.contains(name) {
            roles.insert(name.to_string());
        }
    }

    /// The roles `pg_roles` lists: the bootstrap superuser that owns every
    /// object (`postgres`, oid 10) and the user names sessions have
    /// connected with. featuredb has no access control yet, so each is a
    /// superuser that can log in.
    pub fn roles(&self) -> Vec<(i32, String)> {
        let connected = self.roles.read().unwrap_or_else(|e| e.into_inner());
        std::iter::once((OWNER_OID, "postgres".to_string()))
            .chain(
                connected
                    .iter()
                    .filter(|name| name.as_str() != "postgres")
                    .map(|name| (stable_oid("role", &[name]), name.clone())),
            )
            .collect()
    }

    /// Every schema, system schemas included, in name order.
    pub fn schemas(&self) -> Vec<String> {
        let mut names = self.store.schema_names();
        names.extend(self.temp().map(|t| t.schema_name.clone()));
        names.extend(
            [REGISTRY_SCHEMA, "pg_catalog", "information_schema"]
                .into_iter()
                .map(str::to_string),
        );
        names.sort();
        names.dedup();
        names
    }

    /// Whether `schema` exists (search paths may name schemas that do not).
    pub fn schema_exists(&self, schema: &str) -> bool {
        schema == REGISTRY_SCHEMA
            || self.store.schema_exists(schema)
            || self.temp().is_some_and(|t| t.is_temp_schema(schema))
    }

    /// The ids of the relations in `schema` (for `pg_table_is_visible`).
    pub fn relation_oids_in(&self, schema: &str) -> Vec<i32> {
        let schema_name = self
            .temp()
            .filter(|temp| temp.is_temp_schema(schema))
            .map_or(schema, |temp| temp.schema_name.as_str());
        self.relation_names_in(schema)
            .iter()
            .map(|name| relation_oid(schema_name, name))
            .collect()
    }

    /// The names of the relations in `schema`.
    pub fn relation_names_in(&self, schema: &str) -> Vec<String> {
        if let Some(temp) = self.temp()
            && temp.is_temp_schema(schema)
        {
            return temp.tables().into_iter().map(|(name, _)| name).collect();
        }
        let mut names = self.store.table_names(schema);
        if schema == REGISTRY_SCHEMA {
            names.extend(self.system_tables.table_names());
        }
        let registry = self.registry.snapshot();
        names.extend(registry.relation_names_in(schema).map(str::to_string));
        names
    }

    /// The ids of the relations an unqualified name can reach through
    /// `path` (schemas in search order): in each schema, those not hidden
    /// by a relation of the same name in an earlier one.
    pub fn visible_relation_oids(&self, path: &[String]) -> std::collections::HashSet<i32> {
        let mut seen = std::collections::HashSet::new();
        let mut visible = std::collections::HashSet::new();
        for schema in path.iter().filter(|schema| self.schema_exists(schema)) {
            for name in self.relation_names_in(schema) {
                if seen.insert(name.clone()) {
                    visible.insert(relation_oid(schema, &name));
                }
            }
        }
        visible
    }

    /// The id of the relation `name` (`schema.relation` or a name found on
    /// `search_path`), as `to_regclass` and `'name'::regclass` give it.
    /// `pg_catalog`'s own tables have PostgreSQL's ids.
    pub fn regclass(&self, name: &str, search_path: &[String]) -> Option<i32> {
        if let Ok(oid) = name.trim().parse::<i32>() {
            return Some(oid);
        }
        let parts: Vec<String> = name.split('.').map(identifier_part).collect();
        let (schema, relation) = match parts.as_slice() {
            [relation] => (None, relation.as_str()),
            [schema, relation] => (Some(schema.as_str()), relation.as_str()),
            _ => return None,
        };
        if schema.is_none_or(|s| s == "pg_catalog")
            && let Some(oid) = system_catalog_oid(relation)
        {
            return Some(oid);
        }
        let exists_in = |schema: &str| {
            self.relation_oids_in(schema)
                .contains(&relation_oid(schema, relation))
        };
        // Temporary tables come first, as pg_temp does on every path.
        let temp = self.temp().map(|t| t.schema_name.clone());
        match schema {
            Some(schema) => {
                let schema = match &temp {
                    Some(temp) if schema == "pg_temp" => temp.as_str(),
                    _ => schema,
                };
                exists_in(schema).then(|| relation_oid(schema, relation))
            }
            None => temp
                .iter()
                .chain(search_path.iter())
                .find(|schema| exists_in(schema))
                .map(|schema| relation_oid(schema, relation)),
        }
    }

    /// The feature view or service with id `oid`: its description and its
    /// definition (a view's query, a service's statement).
    fn registry_object(&self, oid: i64) -> Option<(Option<String>, String)> {
        let registry = self.registry.snapshot();
        let views = registry.views.iter().map(|(name, view)| {
            let current = view.current();
            (name, current.description.clone(), current.query.clone())
        });
        let services = registry.services.iter().map(|(name, service)| {
            let current = service.current();
            (name, current.description.clone(), current.sql.clone())
        });
        let sql_views = registry
            .sql_views
            .iter()
            .map(|(name, view)| (name, None, view.query.clone()));
        views
            .chain(services)
            .chain(sql_views)
            .find(|(name, _, _)| i64::from(relation_oid(&name.schema, &name.name)) == oid)
            .map(|(_, description, definition)| (description, definition))
    }

    /// The description of the feature view or service with id `oid`.
    pub fn description(&self, oid: i64) -> Option<String> {
        self.registry_object(oid)
            .and_then(|(description, _)| description)
    }

    /// The definition of the feature view or service with id `oid`.
    pub fn definition(&self, oid: i64) -> Option<String> {
        self.registry_object(oid).map(|(_, definition)| definition)
    }

    /// Every relation a client can query, with its columns.
    pub async fn relations(&self) -> DFResult<Vec<Relation>> {
        let mut relations = Vec::new();
        if let Some(temp) = self.temp() {
            for (name, table) in temp.tables() {
                relations.push(Relation {
                    oid: relation_oid(&temp.schema_name, &name),
                    schema: temp.schema_name.clone(),
                    name,
                    kind: RelationKind::TemporaryTable,
                    attributes: table
                        .definition
                        .columns
                        .iter()
                        .map(|c| Attribute::of_column_type(&c.name, &c.data_type, !c.nullable))
                        .collect(),
                    description: None,
                    definition: None,
                });
            }
        }
        for schema in self.store.schema_names() {
            for name in self.store.table_names(&schema) {
                let Some(table) = self.store.table(&schema, &name) else {
                    continue;
                };
                let attributes = table
                    .definition()
                    .columns
                    .iter()
                    .map(|c| Attribute::of_column_type(&c.name, &c.data_type, !c.nullable))
                    .collect();
                relations.push(Relation {
                    oid: relation_oid(&schema, &name),
                    schema: schema.clone(),
                    name,
                    kind: RelationKind::Table,
                    attributes,
                    description: None,
                    definition: None,
                });
            }
        }
        let registry = self.registry.snapshot();
        for (name, view) in &registry.views {
            let current = view.current();
            relations.push(Relation {
                oid: relation_oid(&name.schema, &name.name),
                schema: name.schema.clone(),
                name: name.name.clone(),
                kind: RelationKind::View,
                attributes: current
                    .columns
                    .iter()
                    .map(|c| match &c.column_type {
                        Some(t) => Attribute::of_column_type(&c.name, t, false),
                        None => Attribute::of_arrow(&c.name, &DataType::Utf8, false),
                    })
                    .collect(),
                description: current.description.clone(),
                definition: Some(current.query.clone()),
            });
        }
        for (name, service) in &registry.services {
            let current = service.current();
            let keys = current
                .keys
                .iter()
                .map(|k| Attribute::of_column_type(&k.name, &k.data_type, false));
            let features = current.features.iter().map(|f| match &f.column_type {
                Some(t) => Attribute::of_column_type(&f.output_name, t, false),
                None => Attribute::of_arrow(&f.output_name, &DataType::Utf8, false),
            });
            relations.push(Relation {
                oid: relation_oid(&name.schema, &name.name),
                schema: name.schema.clone(),
                name: name.name.clone(),
                kind: RelationKind::View,
                attributes: keys.chain(features).collect(),
                description: current.description.clone(),
                definition: Some(current.sql.clone()),
            });
        }
        for (name, view) in &registry.sql_views {
            relations.push(Relation {
                oid: relation_oid(&name.schema, &name.name),
                schema: name.schema.clone(),
                name: name.name.clone(),
                kind: RelationKind::View,
                attributes: view
                    .columns
                    .iter()
                    .map(|c| match &c.column_type {
                        Some(t) => Attribute::of_column_type(&c.name, t, false),
                        None => Attribute::of_arrow(&c.name, &DataType::Utf8, false),
                    })
                    .collect(),
                description: None,
                definition: Some(view.query.clone()),
            });
        }
        let system = &self.system_tables;
        for name in system.table_names() {
            let Some(table) = system.table(&name).await? else {
                continue;
            };
            let schema = table.schema();
            relations.push(Relation {
                oid: relation_oid(REGISTRY_SCHEMA, &name),
                schema: REGISTRY_SCHEMA.to_string(),
                name,
                kind: RelationKind::View,
                attributes: schema
                    .fields()
                    .iter()
                    .map(|f| Attribute::of_arrow(f.name(), f.data_type(), !f.is_nullable()))
                    .collect(),
                description: None,
                definition: None,
            });
        }
        Ok(relations)
    }
}

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

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int16Array, Int32Array, ListArray, RecordBatch,
    StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::SchemaProvider;
use datafusion::error::Result as DFResult;
use featuredb_catalog::{ColumnType, Registry};
use pgwire::api::Type;

use crate::engine::settings::{SettingRow, SettingsView};
use crate::engine::system_tables::{REGISTRY_SCHEMA, RegistrySchema};
use crate::engine::temp_tables::TempTables;
use crate::offline::OfflineStore;
use crate::online::OnlineStore;
use crate::pgtypes::oid::{array_type_of, pg_type};

pub const PG_CATALOG_NAMESPACE_OID: i32 = 11;
pub const PUBLIC_NAMESPACE_OID: i32 = 2200;
/// `pg_class`'s own oid: the class of relation descriptions.
const PG_CLASS_OID: i32 = 1259;
/// The bootstrap superuser every object is owned by.
const OWNER_OID: i32 = 10;
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
    fn relkind(self) -> &'static str {
        match self {
            RelationKind::Table | RelationKind::TemporaryTable => "r",
            RelationKind::View => "v",
        }
    }

    fn relpersistence(self) -> &'static str {
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
    online: Arc<OnlineStore>,
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
        online: Arc<OnlineStore>,
    ) -> Self {
        Self {
            store,
            registry,
            online,
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
            names.extend(
                RegistrySchema::new(self.registry.clone(), self.online.clone()).table_names(),
            );
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
        let system = RegistrySchema::new(self.registry.clone(), self.online.clone());
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

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn optional_strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn int32s(values: impl IntoIterator<Item = i32>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int32Array>())
}

fn repeat_i32(value: i32, rows: usize) -> ArrayRef {
    int32s(std::iter::repeat_n(value, rows))
}

fn repeat_bool(value: bool, rows: usize) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value; rows]))
}

fn repeat_str(value: &str, rows: usize) -> ArrayRef {
    strings(std::iter::repeat_n(value, rows))
}

/// A `text[]` column of NULLs.
fn null_text_array(name: &str, rows: usize) -> (Field, ArrayRef) {
    let array = ListArray::new_null(Arc::new(Field::new_list_field(DataType::Utf8, true)), rows);
    (
        field(name, array.data_type().clone(), true),
        Arc::new(array),
    )
}

fn null_strings(rows: usize) -> ArrayRef {
    optional_strings(std::iter::repeat_n(None, rows))
}

fn batch(fields: Vec<(Field, ArrayRef)>) -> DFResult<RecordBatch> {
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = fields.into_iter().unzip();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

pub fn pg_namespace(schemas: &[String]) -> DFResult<RecordBatch> {
    let rows = schemas.len();
    batch(vec![
        (
            field("oid", DataType::Int32, false),
            int32s(schemas.iter().map(|s| namespace_oid(s))),
        ),
        (
            field("nspname", DataType::Utf8, false),
            strings(schemas.iter().map(String::as_str)),
        ),
        (
            field("nspowner", DataType::Int32, false),
            repeat_i32(OWNER_OID, rows),
        ),
        (field("nspacl", DataType::Utf8, true), null_strings(rows)),
        (field("options", DataType::Utf8, true), null_strings(rows)),
    ])
}

pub fn pg_class(relations: &[Relation]) -> DFResult<RecordBatch> {
    let rows = relations.len();
    let int32 =
        |name: &str, value: i32| (field(name, DataType::Int32, false), repeat_i32(value, rows));
    let boolean = |name: &str, value: bool| {
        (
            field(name, DataType::Boolean, false),
            repeat_bool(value, rows),
        )
    };
    let reloptions =
        ListArray::new_null(Arc::new(Field::new_list_field(DataType::Utf8, true)), rows);
    batch(vec![
        (
            field("oid", DataType::Int32, false),
            int32s(relations.iter().map(|r| r.oid)),
        ),
        (
            field("relname", DataType::Utf8, false),
            strings(relations.iter().map(|r| r.name.as_str())),
        ),
        (
            field("relnamespace", DataType::Int32, false),
            int32s(relations.iter().map(|r| namespace_oid(&r.schema))),
        ),
        int32("reltype", 0),
        int32("reloftype", 0),
        int32("relowner", OWNER_OID),
        int32("relam", 0),
        (
            field("relfilenode", DataType::Int32, false),
            int32s(relations.iter().map(|r| r.oid)),
        ),
        int32("reltablespace", 0),
        int32("relpages", 0),
        (
            field("reltuples", DataType::Float64, false),
            Arc::new(Float64Array::from(vec![-1.0; rows])),
        ),
        int32("relallvisible", 0),
        int32("reltoastrelid", 0),
        boolean("relhasindex", false),
        boolean("relisshared", false),
        (
            field("relpersistence", DataType::Utf8, false),
            strings(relations.iter().map(|r| r.kind.relpersistence())),
        ),
        (
            field("relkind", DataType::Utf8, false),
            strings(relations.iter().map(|r| r.kind.relkind())),
        ),
        (
            field("relnatts", DataType::Int16, false),
            Arc::new(
                relations
                    .iter()
                    .map(|r| i16::try_from(r.attributes.len()).unwrap_or(i16::MAX))
                    .collect::<Int16Array>(),
            ),
        ),
        (
            field("relchecks", DataType::Int16, false),
            Arc::new(Int16Array::from(vec![0; rows])),
        ),
        boolean("relhasrules", false),
        boolean("relhastriggers", false),
        boolean("relhassubclass", false),
        boolean("relrowsecurity", false),
        boolean("relforcerowsecurity", false),
        boolean("relispopulated", true),
        (
            field("relreplident", DataType::Utf8, false),
            repeat_str("d", rows),
        ),
        boolean("relispartition", false),
        int32("relrewrite", 0),
        int32("relfrozenxid", 0),
        int32("relminmxid", 0),
        // aclitem[] in PostgreSQL; NULL (default privileges) here.
        (
            field("relacl", reloptions.data_type().clone(), true),
            Arc::new(ListArray::new_null(
                Arc::new(Field::new_list_field(DataType::Utf8, true)),
                rows,
            )),
        ),
        (
            field("reloptions", reloptions.data_type().clone(), true),
            Arc::new(reloptions),
        ),
        (
            field("relpartbound", DataType::Utf8, true),
            null_strings(rows),
        ),
    ])
}

pub fn pg_attribute(relations: &[Relation]) -> DFResult<RecordBatch> {
    let columns: Vec<(i32, i16, &Attribute)> = relations
        .iter()
        .flat_map(|r| {
            r.attributes
                .iter()
                .enumerate()
                .map(move |(i, a)| (r.oid, i16::try_from(i + 1).unwrap_or(i16::MAX), a))
        })
        .collect();
    let rows = columns.len();
    let int32 =
        |name: &str, value: i32| (field(name, DataType::Int32, false), repeat_i32(value, rows));
    let boolean = |name: &str, value: bool| {
        (
            field(name, DataType::Boolean, false),
            repeat_bool(value, rows),
        )
    };
    let type_size =
        |oid: u32| Type::from_oid(oid).map_or(-1, |t| crate::pgtypes::oid::type_size(&t));
    batch(vec![
        (
            field("attrelid", DataType::Int32, false),
            int32s(columns.iter().map(|c| c.0)),
        ),
        (
            field("attname", DataType::Utf8, false),
            strings(columns.iter().map(|c| c.2.name.as_str())),
        ),
        (
            field("atttypid", DataType::Int32, false),
            int32s(columns.iter().map(|c| c.2.type_oid as i32)),
        ),
        int32("attstattarget", -1),
        (
            field("attlen", DataType::Int16, false),
            Arc::new(
                columns
                    .iter()
                    .map(|c| type_size(c.2.type_oid))
                    .collect::<Int16Array>(),
            ),
        ),
        (
            field("attnum", DataType::Int16, false),
            Arc::new(columns.iter().map(|c| c.1).collect::<Int16Array>()),
        ),
        (
            field("attndims", DataType::Int32, false),
            int32s(columns.iter().map(|c| c.2.dimensions)),
        ),
        int32("attcacheoff", -1),
        (
            field("atttypmod", DataType::Int32, false),
            int32s(columns.iter().map(|c| c.2.typmod)),
        ),
        (
            field("attbyval", DataType::Boolean, false),
            Arc::new(
                columns
                    .iter()
                    .map(|c| Some((1..=8).contains(&type_size(c.2.type_oid))))
                    .collect::<BooleanArray>(),
            ),
        ),
        (
            field("attalign", DataType::Utf8, false),
            repeat_str("i", rows),
        ),
        (
            field("attstorage", DataType::Utf8, false),
            // PostgreSQL's typstorage: numeric "main", other
            // variable-length types "extended".
            strings(columns.iter().map(|c| match c.2.type_oid {
                oid if oid == Type::NUMERIC.oid() => "m",
                oid if type_size(oid) < 0 => "x",
                _ => "p",
            })),
        ),
        (
            field("attcompression", DataType::Utf8, true),
            null_strings(rows),
        ),
        (
            field("attnotnull", DataType::Boolean, false),
            Arc::new(
                columns
                    .iter()
                    .map(|c| Some(c.2.not_null))
                    .collect::<BooleanArray>(),
            ),
        ),
        boolean("atthasdef", false),
        boolean("atthasmissing", false),
        (
            field("attidentity", DataType::Utf8, false),
            repeat_str("", rows),
        ),
        (
            field("attgenerated", DataType::Utf8, false),
            repeat_str("", rows),
        ),
        boolean("attisdropped", false),
        boolean("attislocal", true),
        int32("attinhcount", 0),
        int32("attcollation", 0),
        // aclitem[] and text[] in PostgreSQL (psql's \dp aggregates them).
        null_text_array("attacl", rows),
        null_text_array("attoptions", rows),
        (
            field("attfdwoptions", DataType::Utf8, true),
            null_strings(rows),
        ),
        (
            field("attmissingval", DataType::Utf8, true),
            null_strings(rows),
        ),
    ])
}

/// Descriptions of feature views and services (`COMMENT`-like, from their
/// `description` option), in `pg_description`'s shape.
pub fn pg_description(relations: &[Relation], schema: &SchemaRef) -> DFResult<RecordBatch> {
    let described: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.description.is_some())
        .collect();
    let rows = described.len();
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            int32s(described.iter().map(|r| r.oid)),
            repeat_i32(PG_CLASS_OID, rows),
            repeat_i32(0, rows),
            strings(
                described
                    .iter()
                    .map(|r| r.description.as_deref().unwrap_or("")),
            ),
        ],
    )?)
}

pub fn pg_views(relations: &[Relation]) -> DFResult<RecordBatch> {
    let views: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.definition.is_some())
        .collect();
    batch(vec![
        (
            field("schemaname", DataType::Utf8, true),
            strings(views.iter().map(|r| r.schema.as_str())),
        ),
        (
            field("viewname", DataType::Utf8, true),
            strings(views.iter().map(|r| r.name.as_str())),
        ),
        (
            field("viewowner", DataType::Utf8, true),
            repeat_str("postgres", views.len()),
        ),
        (
            field("definition", DataType::Utf8, true),
            strings(views.iter().map(|r| r.definition.as_deref().unwrap_or(""))),
        ),
    ])
}

/// PostgreSQL 15's `pg_settings`, from the session's settings.
pub fn pg_settings(rows: &[SettingRow]) -> DFResult<RecordBatch> {
    let count = rows.len();
    let text = |name: &str, values: Vec<Option<&str>>| {
        (field(name, DataType::Utf8, true), optional_strings(values))
    };
    let enumvals = {
        let mut builder = datafusion::arrow::array::ListBuilder::new(
            datafusion::arrow::array::StringBuilder::new(),
        );
        for row in rows {
            match &row.enumvals {
                Some(values) => {
                    for value in values {
                        builder.values().append_value(value);
                    }
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        builder.finish()
    };
    batch(vec![
        text("name", rows.iter().map(|r| Some(r.name.as_str())).collect()),
        text(
            "setting",
            rows.iter().map(|r| Some(r.setting.as_str())).collect(),
        ),
        text("unit", rows.iter().map(|r| r.unit).collect()),
        text("category", vec![None; count]),
        text(
            "short_desc",
            rows.iter().map(|r| Some(r.short_desc.as_str())).collect(),
        ),
        text("extra_desc", vec![None; count]),
        text("context", rows.iter().map(|r| Some(r.context)).collect()),
        text("vartype", rows.iter().map(|r| Some(r.vartype)).collect()),
        text("source", rows.iter().map(|r| Some(r.source)).collect()),
        text(
            "min_val",
            rows.iter().map(|r| r.min_val.as_deref()).collect(),
        ),
        text(
            "max_val",
            rows.iter().map(|r| r.max_val.as_deref()).collect(),
        ),
        (
            field("enumvals", enumvals.data_type().clone(), true),
            Arc::new(enumvals),
        ),
        text(
            "boot_val",
            rows.iter().map(|r| Some(r.boot_val.as_str())).collect(),
        ),
        text(
            "reset_val",
            rows.iter().map(|r| Some(r.reset_val.as_str())).collect(),
        ),
        text("sourcefile", vec![None; count]),
        (
            field("sourceline", DataType::Int32, true),
            Arc::new(datafusion::arrow::array::Int32Array::new_null(count)),
        ),
        (
            field("pending_restart", DataType::Boolean, true),
            repeat_bool(false, count),
        ),
    ])
}

/// PostgreSQL 15's `pg_tables`: plain tables only (dbt tells tables from
/// views by which of `pg_tables` and `pg_views` lists a relation).
pub fn pg_tables(relations: &[Relation]) -> DFResult<RecordBatch> {
    let tables: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.kind != RelationKind::View)
        .collect();
    let rows = tables.len();
    let boolean = |name: &str| {
        (
            field(name, DataType::Boolean, true),
            repeat_bool(false, rows),
        )
    };
    batch(vec![
        (
            field("schemaname", DataType::Utf8, true),
            strings(tables.iter().map(|r| r.schema.as_str())),
        ),
        (
            field("tablename", DataType::Utf8, true),
            strings(tables.iter().map(|r| r.name.as_str())),
        ),
        (
            field("tableowner", DataType::Utf8, true),
            repeat_str("postgres", rows),
        ),
        (
            field("tablespace", DataType::Utf8, true),
            optional_strings(tables.iter().map(|_| None)),
        ),
        boolean("hasindexes"),
        boolean("hasrules"),
        boolean("hastriggers"),
        boolean("rowsecurity"),
    ])
}

pub fn pg_roles(roles: &[(i32, String)]) -> DFResult<RecordBatch> {
    let rows = roles.len();
    let boolean = |name: &str, value: bool| {
        (
            field(name, DataType::Boolean, true),
            repeat_bool(value, rows),
        )
    };
    batch(vec![
        (
            field("rolname", DataType::Utf8, true),
            strings(roles.iter().map(|(_, name)| name.as_str())),
        ),
        boolean("rolsuper", true),
        boolean("rolinherit", true),
        boolean("rolcreaterole", true),
        boolean("rolcreatedb", true),
        boolean("rolcanlogin", true),
        boolean("rolreplication", false),
        (
            field("rolconnlimit", DataType::Int32, true),
            repeat_i32(-1, rows),
        ),
        (
            field("rolpassword", DataType::Utf8, true),
            repeat_str("********", rows),
        ),
        (
            field(
                "rolvaliduntil",
                DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Microsecond,
                    Some("UTC".into()),
                ),
                true,
            ),
            Arc::new(
                datafusion::arrow::array::TimestampMicrosecondArray::new_null(rows)
                    .with_timezone("UTC"),
            ),
        ),
        boolean("rolbypassrls", true),
        (field("rolconfig", DataType::Utf8, true), null_strings(rows)),
        (
            field("oid", DataType::Int32, true),
            int32s(roles.iter().map(|(oid, _)| *oid)),
        ),
    ])
}

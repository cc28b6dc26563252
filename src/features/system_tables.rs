//! The registry as tables in the `featuredb` schema: `entities`,
//! `feature_views`, `features`, `feature_services`, `versions`, `lineage`;
//! and the materialization state: `materializations` (what each view's
//! last refresh applied) and `jobs` (every refresh).
//! Built from a snapshot of the registry each time a query reads them, so
//! they are always current and consistent with each other within a query.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DFResult};
pub use featuredb_catalog::REGISTRY_SCHEMA;
use featuredb_catalog::{ColumnRole, Dependency, ObjectKind, Registry, RegistryState};

use crate::jobs::{Job, JobRecords};
use crate::online::OnlineStore;

const TABLES: &[&str] = &[
    "entities",
    "feature_views",
    "features",
    "feature_services",
    "versions",
    "lineage",
    "materializations",
    "jobs",
    "online_cache",
    "streams",
];

pub struct RegistrySchema {
    registry: Arc<Registry>,
    online: Arc<OnlineStore>,
    jobs: Arc<JobRecords>,
}

impl RegistrySchema {
    pub fn new(registry: Arc<Registry>, online: Arc<OnlineStore>, jobs: Arc<JobRecords>) -> Self {
        Self {
            registry,
            online,
            jobs,
        }
    }
}

impl std::fmt::Debug for RegistrySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistrySchema")
    }
}

#[async_trait]
impl SchemaProvider for RegistrySchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let state = self.registry.snapshot();
        let batch = match name {
            "entities" => entities(&state),
            "feature_views" => feature_views(&state),
            "features" => features(&state),
            "feature_services" => feature_services(&state),
            "versions" => versions(&state),
            "lineage" => lineage(&state),
            "materializations" => materializations(&state, &self.online),
            "jobs" => {
                let jobs = self.jobs.all().map_err(|e| e.into_datafusion())?;
                jobs_table(&jobs)
            }
            "online_cache" => online_cache(&self.online),
            "streams" => streams(&state, &self.online),
            _ => return Ok(None),
        }
        .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?;
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

/// Columns of a registry table, all nullable text unless typed otherwise.
struct TableBuilder {
    fields: Vec<Field>,
    columns: Vec<ColumnBuilder>,
}

enum ColumnBuilder {
    Text(StringBuilder),
    Int(Int32Builder),
    BigInt(Int64Builder),
    Double(Float64Builder),
    Bool(BooleanBuilder),
    TextList(ListBuilder<StringBuilder>),
    Time(TimestampMicrosecondBuilder),
}

enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i32>),
    BigInt(Option<i64>),
    Double(Option<f64>),
    Bool(bool),
    TextList(Vec<&'a str>),
    /// An RFC 3339 time, stored as timestamptz.
    Time(&'a str),
}

impl TableBuilder {
    fn new(columns: &[(&str, DataType)]) -> Self {
        Self {
            fields: columns
                .iter()
                .map(|(name, data_type)| Field::new(*name, data_type.clone(), true))
                .collect(),
            columns: columns
                .iter()
                .map(|(_, data_type)| match data_type {
                    DataType::Int32 => ColumnBuilder::Int(Int32Builder::new()),
                    DataType::Int64 => ColumnBuilder::BigInt(Int64Builder::new()),
                    DataType::Float64 => ColumnBuilder::Double(Float64Builder::new()),
                    DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::new()),
                    DataType::Timestamp(_, _) => ColumnBuilder::Time(
                        TimestampMicrosecondBuilder::new().with_timezone("+00:00"),
                    ),
                    DataType::List(_) => {
                        ColumnBuilder::TextList(ListBuilder::new(StringBuilder::new()))
                    }
                    _ => ColumnBuilder::Text(StringBuilder::new()),
                })
                .collect(),
        }
    }

    fn row(&mut self, values: Vec<Value<'_>>) {
        for (builder, value) in self.columns.iter_mut().zip(values) {
            match (builder, value) {
                (ColumnBuilder::Text(b), Value::Text(v)) => b.append_option(v),
                (ColumnBuilder::Int(b), Value::Int(v)) => b.append_option(v),
                (ColumnBuilder::BigInt(b), Value::BigInt(v)) => b.append_option(v),
                (ColumnBuilder::Double(b), Value::Double(v)) => b.append_option(v),
                (ColumnBuilder::Bool(b), Value::Bool(v)) => b.append_value(v),
                (ColumnBuilder::Time(b), Value::Time(v)) => b.append_option(
                    chrono::DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.timestamp_micros()),
                ),
                (ColumnBuilder::TextList(b), Value::TextList(items)) => {
                    for item in items {
                        b.values().append_value(item);
                    }
                    b.append(true);
                }
                _ => unreachable!("registry table row does not match its columns"),
            }
        }
    }

    fn finish(self) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .into_iter()
            .map(|builder| -> ArrayRef {
                match builder {
                    ColumnBuilder::Text(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Int(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::BigInt(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Double(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::Time(mut b) => Arc::new(b.finish()),
                    ColumnBuilder::TextList(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let schema: SchemaRef = Arc::new(Schema::new(self.fields));
        RecordBatch::try_new(schema, arrays)
    }
}

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

type Built = Result<RecordBatch, datafusion::arrow::error::ArrowError>;

fn entities(state: &RegistryState) -> Built {
    let mut table = TableBuilder::new(&[
        ("schema_name", DataType::Utf8),
        ("name", DataType::Utf8),
        ("key_columns", text_list()),
        ("key_types", text_list()),
        ("comment", DataType::Utf8),
        ("created_at", timestamptz()),
        ("definition", DataType::Utf8),
    ]);
    for entity in state.entities.values() {
        let types: Vec<String> = entity
            .keys
            .iter()
            .map(|k| k.data_type.to_string())
            .collect();
        table.row(vec![
            Value::Text(Some(&entity.name.schema)),
            Value::Text(Some(&entity.name.name)),
            Value::TextList(entity.keys.iter().map(|k| k.name.as_str()).collect()),
            Value::TextList(types.iter().map(String::as_str).collect()),
            Value::Text(entity.comment.as_deref()),
            Value::Time(&entity.created_at),
            Value::Text(Some(&entity.sql)),
        ]);
    }
    table.finish()
}

fn feature_views(state: &RegistryState) -> Built {
    let mut table = TableBuilder::new(&[
        ("schema_name", DataType::Utf8),
        ("name", DataType::Utf8),
        ("version", DataType::Int32),
        ("entity", DataType::Utf8),
        ("key_columns", text_list()),
        ("timestamp_column", DataType::Utf8),
        ("ttl", DataType::Utf8),
        ("online", DataType::Boolean),
        ("streaming", DataType::Boolean),
        ("owner", DataType::Utf8),
        ("tags", DataType::Utf8),
        ("description", DataType::Utf8),
        ("query", DataType::Utf8),
        ("tie_break", DataType::Utf8),
        ("created_at", timestamptz()),
        ("definition", DataType::Utf8),
    ]);
    for view in state.views.values() {
        let current = view.current();
        let entity = current.entity.as_ref().map(|e| e.to_string());
        table.row(vec![
            Value::Text(Some(&view.name.schema)),
            Value::Text(Some(&view.name.name)),
            Value::Int(Some(current.version as i32)),
            Value::Text(entity.as_deref()),
            Value::TextList(current.keys.iter().map(String::as_str).collect()),
            Value::Text(Some(&current.timestamp)),
            Value::Text(current.ttl.as_deref()),
            Value::Bool(current.online),
            Value::Bool(current.streaming),
            Value::Text(current.owner.as_deref()),
            Value::Text(current.tags.as_deref()),
            Value::Text(current.description.as_deref()),
            Value::Text(Some(&current.query)),
            Value::Text(Some(if current.write_ordered_query.is_some() {
                "write_order"
            } else {
                "feature_values"
            })),
            Value::Time(&current.created_at),
            Value::Text(Some(&current.sql)),
        ]);
    }
    table.finish()
}

fn features(state: &RegistryState) -> Built {
    let mut table = TableBuilder::new(&[
        ("schema_name", DataType::Utf8),
        ("view_name", DataType::Utf8),
        ("version", DataType::Int32),
        ("is_current", DataType::Boolean),
        ("name", DataType::Utf8),
        ("data_type", DataType::Utf8),
        ("description", DataType::Utf8),
    ]);
    for view in state.views.values() {
        let current = view.current().version;
        for version in &view.versions {
            for column in version
                .columns
                .iter()
                .filter(|c| c.role == ColumnRole::Feature)
            {
                table.row(vec![
                    Value::Text(Some(&view.name.schema)),
                    Value::Text(Some(&view.name.name)),
                    Value::Int(Some(version.version as i32)),
                    Value::Bool(version.version == current),
                    Value::Text(Some(&column.name)),
                    Value::Text(Some(&column.data_type)),
                    Value::Text(version.description.as_deref()),
                ]);
            }
        }
    }
    table.finish()
}

fn feature_services(state: &RegistryState) -> Built {
    let mut table = TableBuilder::new(&[
        ("schema_name", DataType::Utf8),
        ("name", DataType::Utf8),
        ("version", DataType::Int32),
        ("key_columns", text_list()),
        ("features", text_list()),
        ("owner", DataType::Utf8),
        ("tags", DataType::Utf8),
        ("description", DataType::Utf8),
        ("created_at", timestamptz()),
        ("definition", DataType::Utf8),
    ]);
    for service in state.services.values() {
        let current = service.current();
        let features: Vec<String> = current
            .features
            .iter()
            .map(|f| format!("{}.{}", f.view.name, f.feature))
            .collect();
        table.row(vec![
            Value::Text(Some(&service.name.schema)),
            Value::Text(Some(&service.name.name)),
            Value::Int(Some(current.version as i32)),
            Value::TextList(current.keys.iter().map(|k| k.name.as_str()).collect()),
            Value::TextList(features.iter().map(String::as_str).collect()),
            Value::Text(current.owner.as_deref()),
            Value::Text(current.tags.as_deref()),
            Value::Text(current.description.as_deref()),
            Value::Time(&current.created_at),
            Value::Text(Some(&current.sql)),
        ]);
    }
    table.finish()
}

fn versions(state: &RegistryState) -> Built {
    let mut table = TableBuilder::new(&[
        ("kind", DataType::Utf8),
        ("schema_name", DataType::Utf8),
        ("name", DataType::Utf8),
        ("version", DataType::Int32),
        ("is_current", DataType::Boolean),
        ("created_at", timestamptz()),
        ("definition", DataType::Utf8),
    ]);
    for view in state.views.values() {
        for version in &view.versions {
            table.row(vec![
                Value::Text(Some(ObjectKind::FeatureView.as_str())),
                Value::Text(Some(&view.name.schema)),
                Value::Text(Some(&view.name.name)),
                Value::Int(Some(version.version as i32)),
                Value::Bool(version.version == view.current().version),
                Value::Time(&version.created_at),
                Value::Text(Some(&version.sql)),
            ]);
        }
    }
    for service in state.services.values() {
        for version in &service.versions {
            table.row(vec![
                Value::Text(Some(ObjectKind::FeatureService.as_str())),
                Value::Text(Some(&service.name.schema)),
                Value::Text(Some(&service.name.name)),
                Value::Int(Some(version.version as i32)),
                Value::Bool(version.version == service.current().version),
                Value::Time(&version.created_at),
                Value::Text(Some(&version.sql)),
            ]);
        }
    }
    table.finish()
}

/// Edges source → view → view → service, for current definitions.
fn lineage(state: &RegistryState) -> Built {
    let mut table = TableBuilder::new(&[
        ("source_kind", DataType::Utf8),
        ("source_schema", DataType::Utf8),
        ("source_name", DataType::Utf8),
        ("source_version", DataType::Int32),
        ("target_kind", DataType::Utf8),
        ("target_schema", DataType::Utf8),
        ("target_name", DataType::Utf8),
        ("target_version", DataType::Int32),
    ]);
    let mut edge = |source: &Dependency,
                    kind: ObjectKind,
                    name: &featuredb_catalog::QualifiedName,
                    version: u32| {
        let source_version = source.version.map(|v| v as i32).or_else(|| {
            (source.kind == ObjectKind::FeatureView)
                .then(|| {
                    state
                        .views
                        .get(&source.name)
                        .map(|v| v.current().version as i32)
                })
                .flatten()
        });
        table.row(vec![
            Value::Text(Some(source.kind.as_str())),
            Value::Text(Some(&source.name.schema)),
            Value::Text(Some(&source.name.name)),
            Value::Int(source_version),
            Value::Text(Some(kind.as_str())),
            Value::Text(Some(&name.schema)),
            Value::Text(Some(&name.name)),
            Value::Int(Some(version as i32)),
        ]);
    };
    for view in state.views.values() {
        let current = view.current();
        if let Some(entity) = &current.entity {
            let dependency = Dependency {
                kind: ObjectKind::Entity,
                name: entity.clone(),
                version: None,
            };
            edge(
                &dependency,
                ObjectKind::FeatureView,
                &view.name,
                current.version,
            );
        }
        for dependency in &current.dependencies {
            edge(
                dependency,
                ObjectKind::FeatureView,
                &view.name,
                current.version,
            );
        }
    }
    for service in state.services.values() {
        let current = service.current();
        for dependency in &current.dependencies {
            edge(
                dependency,
                ObjectKind::FeatureService,
                &service.name,
                current.version,
            );
        }
    }
    table.finish()
}

fn materializations(state: &RegistryState, online: &OnlineStore) -> Built {
    let mut table = TableBuilder::new(&[
        ("schema_name", DataType::Utf8),
        ("name", DataType::Utf8),
        ("version", DataType::Int32),
        ("current_version", DataType::Int32),
        ("generation", DataType::Int32),
        ("offline_table", DataType::Utf8),
        ("inputs", DataType::Utf8),
        ("online", DataType::Boolean),
        ("online_keys", DataType::Int64),
        ("refreshed_at", timestamptz()),
    ]);
    for view in state.views.values() {
        let Some(materialized) = online.materialization(&view.name) else {
            continue;
        };
        let inputs = serde_json::to_string(&materialized.inputs).unwrap_or_default();
        let offline_table = format!(
            "{}.{}",
            crate::online::MATERIALIZED_SCHEMA,
            materialized.offline_table
        );
        table.row(vec![
            Value::Text(Some(&view.name.schema)),
            Value::Text(Some(&view.name.name)),
            Value::Int(Some(materialized.version as i32)),
            Value::Int(Some(view.current().version as i32)),
            Value::Int(Some(materialized.generation as i32)),
            Value::Text(Some(&offline_table)),
            Value::Text(Some(&inputs)),
            Value::Bool(materialized.online),
            Value::BigInt(Some(materialized.online_keys as i64)),
            Value::Time(&materialized.refreshed_at),
        ]);
    }
    table.finish()
}

/// One row: how much of the online store's row cache is in use, and how
/// many of its entries are base blocks (the others are single rows).
fn online_cache(online: &OnlineStore) -> Built {
    let usage = online.cache_usage();
    let mut table = TableBuilder::new(&[
        ("capacity_bytes", DataType::Int64),
        ("used_bytes", DataType::Int64),
        ("entries", DataType::Int64),
        ("blocks", DataType::Int64),
    ]);
    table.row(vec![
        Value::BigInt(Some(usage.capacity_bytes as i64)),
        Value::BigInt(Some(usage.used_bytes as i64)),
        Value::BigInt(Some(usage.entries as i64)),
        Value::BigInt(Some(usage.blocks as i64)),
    ]);
    table.finish()
}

/// One row per streaming view: what its stream applied, what it holds
/// in memory until a refresh stores it, and how fresh it is.
fn streams(state: &RegistryState, online: &OnlineStore) -> Built {
    let mut table = TableBuilder::new(&[
        ("schema_name", DataType::Utf8),
        ("name", DataType::Utf8),
        ("source", DataType::Utf8),
        ("rows_applied", DataType::Int64),
        ("rows_in_memory", DataType::Int64),
        ("newest_event_time", DataType::Utf8),
        ("last_applied_at", timestamptz()),
        ("apply_lag_ms", DataType::Float64),
        ("stored_through_seq", DataType::Int64),
        ("last_stored_at", timestamptz()),
        ("storage_lag_ms", DataType::Float64),
        ("window_keys", DataType::Int64),
        ("window_rows", DataType::Int64),
        ("window_bytes", DataType::Int64),
        ("last_error", DataType::Utf8),
    ]);
    let mut reports = online.stream_reports();
    reports.sort_by(|a, b| a.view.cmp(&b.view));
    let now = chrono::Utc::now().timestamp_micros();
    let time = |micros: Option<i64>| {
        micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    for report in &reports {
        let status = &report.status;
        let applied_at = time(status.last_applied_at);
        let windows = online.window_usage(&report.view);
        let newest = status
            .newest_event_time
            .map(|t| event_time_text(state, &report.view, t));
        let stored_at = time(status.last_stored_at);
        // How long the oldest row in memory has waited to be stored.
        let storage_lag = (report.rows_pending > 0)
            .then(|| {
                status
                    .last_stored_at
                    .or(status.last_applied_at)
                    .map(|t| (now - t) as f64 / 1000.0)
            })
            .flatten()
            .or(Some(0.0));
        table.row(vec![
            Value::Text(Some(&report.view.schema)),
            Value::Text(Some(&report.view.name)),
            Value::Text(Some(&status.source)),
            Value::BigInt(Some(report.rows_applied as i64)),
            Value::BigInt(Some(report.rows_pending as i64)),
            Value::Text(newest.as_deref()),
            Value::Time(&applied_at),
            Value::Double(status.last_apply_micros.map(|m| m as f64 / 1000.0)),
            Value::BigInt(Some(status.stored_through as i64)),
            Value::Time(&stored_at),
            Value::Double(storage_lag),
            Value::BigInt(windows.map(|w| w.keys as i64)),
            Value::BigInt(windows.map(|w| w.rows as i64)),
            Value::BigInt(windows.map(|w| w.bytes as i64)),
            Value::Text(status.last_error.as_deref()),
        ]);
    }
    table.finish()
}

/// An event time as the online store holds it, in words: timestamps are
/// microseconds (shown in UTC), dates days since 1970, integers
/// themselves.
fn event_time_text(
    state: &RegistryState,
    view: &featuredb_catalog::QualifiedName,
    t: i64,
) -> String {
    use featuredb_catalog::ColumnType;
    let column_type = state
        .views
        .get(view)
        .and_then(|v| v.current().timestamp_type().cloned());
    match column_type {
        Some(ColumnType::Timestamp) => chrono::DateTime::from_timestamp_micros(t)
            .map(|d| d.naive_utc().to_string())
            .unwrap_or_default(),
        Some(ColumnType::TimestampTz) => chrono::DateTime::from_timestamp_micros(t)
            .map(|d| format!("{}+00", d.naive_utc()))
            .unwrap_or_default(),
        Some(ColumnType::Date) => chrono::NaiveDate::from_num_days_from_ce_opt(t as i32 + 719_163)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        _ => t.to_string(),
    }
}

fn jobs_table(jobs: &[Job]) -> Built {
    let mut table = TableBuilder::new(&[
        ("job_id", DataType::Int64),
        ("view_name", DataType::Utf8),
        ("view_version", DataType::Int32),
        ("kind", DataType::Utf8),
        ("status", DataType::Utf8),
        ("started_at", timestamptz()),
        ("finished_at", timestamptz()),
        ("rows_in", DataType::Int64),
        ("rows_out", DataType::Int64),
        ("online_keys", DataType::Int64),
        ("duration_ms", DataType::Float64),
        ("error", DataType::Utf8),
    ]);
    for job in jobs {
        table.row(vec![
            Value::BigInt(Some(job.id as i64)),
            Value::Text(Some(&job.view)),
            Value::Int(Some(job.version as i32)),
            Value::Text(Some(&job.kind)),
            Value::Text(Some(&job.status)),
            Value::Time(&job.started_at),
            Value::Time(job.finished_at.as_deref().unwrap_or("")),
            Value::BigInt(Some(job.rows_in as i64)),
            Value::BigInt(Some(job.rows_out as i64)),
            Value::BigInt(Some(job.online_keys as i64)),
            Value::Double(job.duration_ms),
            Value::Text(job.error.as_deref()),
        ]);
    }
    table.finish()
}

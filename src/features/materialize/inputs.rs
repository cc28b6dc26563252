//! What a refresh reads: the tables under a view (through the views it
//! reads), each fixed at an Iceberg snapshot by its sequence number, and
//! what the commits between two of them did.

use std::collections::{BTreeMap, BTreeSet};

use featuredb_catalog::{Dependency, FeatureViewVersion, ObjectKind, QualifiedName, RegistryState};

use crate::error::{Error, Result};
use crate::offline::TableHandle;

/// Snapshot summary property of a view's offline table: the input
/// sequence numbers its rows cover (JSON object `"schema.table@uuid": n`).
pub const REFRESH_INPUTS_PROPERTY: &str = "featuredb.refresh-inputs";

/// How a refresh names an input table: its name and its Iceberg table
/// UUID, so that a different table that later takes the name (a rename, a
/// drop and create) is a different input, refreshed in full.
pub(super) fn input_key(table: &TableHandle) -> Result<String> {
    Ok(format!(
        "{}@{}",
        table.name,
        table.current()?.metadata().uuid()
    ))
}

/// Whether every commit in `(after, through]` only appended rows: an
/// incremental refresh reads what those commits added, which is the whole
/// change only if nothing was removed (TRUNCATE commits a `delete`).
pub(super) fn only_appends(table: &TableHandle, after: i64, through: i64) -> bool {
    let Ok(current) = table.current() else {
        return false;
    };
    after <= through
        && current
            .metadata()
            .snapshots()
            .filter(|s| s.sequence_number() > after && s.sequence_number() <= through)
            .all(|s| s.summary().operation == iceberg::spec::Operation::Append)
}

/// The sequence number of a table's current snapshot (0: none yet).
pub(super) fn current_sequence(table: &TableHandle) -> Result<i64> {
    Ok(table
        .current()?
        .metadata()
        .current_snapshot()
        .map(|s| s.sequence_number())
        .unwrap_or(0))
}

/// Rows the input commits in `(after, through]` added, from the snapshot
/// summaries (for progress; 0 when unknown).
pub(super) fn added_rows(table: &TableHandle, after: i64, through: i64) -> u64 {
    let Ok(current) = table.current() else {
        return 0;
    };
    current
        .metadata()
        .snapshots()
        .filter(|s| s.sequence_number() > after && s.sequence_number() <= through)
        .filter_map(|s| s.summary().additional_properties.get("added-records"))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// Rows a table holds now, from its current snapshot's summary (for
/// progress; 0 when unknown).
pub(super) fn total_rows(table: &TableHandle) -> u64 {
    table
        .current()
        .ok()
        .and_then(|t| {
            t.metadata()
                .current_snapshot()
                .and_then(|s| s.summary().additional_properties.get("total-records"))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// The input sequence numbers the newest snapshot of a view's offline
/// table records.
pub(super) fn committed_inputs(table: &TableHandle) -> Result<Option<BTreeMap<String, i64>>> {
    let current = table.current()?;
    let Some(snapshot) = current.metadata().current_snapshot() else {
        return Ok(None);
    };
    Ok(snapshot
        .summary()
        .additional_properties
        .get(REFRESH_INPUTS_PROPERTY)
        .and_then(|text| serde_json::from_str(text).ok()))
}

/// Tables a view reads, through the feature views and plain views it
/// reads. Dependencies are followed by name to whatever relation has that
/// name now (see [`ObjectKind::refers_to`]).
pub(super) fn base_tables(
    registry: &RegistryState,
    view: &FeatureViewVersion,
    found: &mut BTreeSet<QualifiedName>,
    depth: usize,
) -> Result<()> {
    base_tables_of(registry, &view.dependencies, found, depth)
}

pub(super) fn base_tables_of(
    registry: &RegistryState,
    dependencies: &[Dependency],
    found: &mut BTreeSet<QualifiedName>,
    depth: usize,
) -> Result<()> {
    if depth > 32 {
        return Err(Error::FeatureNotSupported(
            "feature views are nested too deeply".into(),
        ));
    }
    for dependency in dependencies {
        if !dependency.kind.is_relation() {
            continue;
        }
        if let Some(inner) = registry.views.get(&dependency.name) {
            let version = match dependency.version {
                Some(v) => inner.version(v).unwrap_or(inner.current()),
                None => inner.current(),
            };
            base_tables(registry, version, found, depth + 1)?;
        } else if let Some(inner) = registry.sql_views.get(&dependency.name) {
            base_tables_of(registry, &inner.dependencies, found, depth + 1)?;
        } else if dependency.kind != ObjectKind::FeatureService {
            found.insert(dependency.name.clone());
        }
    }
    Ok(())
}

/// The views to refresh for `targets`: each once, every view after the
/// views it reads.
pub(super) fn refresh_order(
    registry: &RegistryState,
    targets: &[QualifiedName],
) -> Vec<QualifiedName> {
    fn visit(
        registry: &RegistryState,
        name: &QualifiedName,
        order: &mut Vec<QualifiedName>,
        visiting: &mut BTreeSet<QualifiedName>,
    ) {
        if order.contains(name) || !visiting.insert(name.clone()) {
            return;
        }
        if let Some(view) = registry.views.get(name) {
            let mut read = BTreeSet::new();
            feature_views_read(registry, &view.current().dependencies, &mut read, 0);
            for inner in &read {
                visit(registry, inner, order, visiting);
            }
        }
        order.push(name.clone());
    }
    /// Feature views read directly or through plain views.
    fn feature_views_read(
        registry: &RegistryState,
        dependencies: &[Dependency],
        read: &mut BTreeSet<QualifiedName>,
        depth: usize,
    ) {
        for dependency in dependencies {
            if registry.views.contains_key(&dependency.name) {
                read.insert(dependency.name.clone());
            } else if let Some(view) = registry.sql_views.get(&dependency.name)
                && depth < 32
            {
                feature_views_read(registry, &view.dependencies, read, depth + 1);
            }
        }
    }
    let mut order = Vec::new();
    let mut visiting = BTreeSet::new();
    for target in targets {
        visit(registry, target, &mut order, &mut visiting);
    }
    order
}

//! What depends on what in the registry: the closure of dependents a drop
//! takes with it, how it is described to the user, and the cycles a
//! definition may not create.

use std::collections::{BTreeSet, HashSet};

use featuredb_catalog::{
    Dependency, ObjectKind, QualifiedName, RegistryState, RegistryTransaction,
};

use super::context::invalid;
use crate::error::Result;
use crate::notice::Notice;

/// Removes `objects` in `txn`, with a "drop cascades to" notice for
/// each one the user did not name (`named`).
pub fn remove_registry_objects(
    txn: &mut RegistryTransaction<'_>,
    objects: &[(ObjectKind, QualifiedName)],
    named: &[(ObjectKind, QualifiedName)],
    notices: &mut Vec<Notice>,
) {
    for (kind, name) in objects {
        if !named.contains(&(*kind, name.clone())) {
            notices.push(Notice::informational(
                "00000",
                format!("drop cascades to {} {name}", kind.noun()),
            ));
        }
        txn.remove(*kind, name);
    }
}

/// What differs between two column lists, one line per column.
pub fn describe_column_changes(before: &[(String, String)], after: &[(String, String)]) -> String {
    let mut lines = Vec::new();
    for (name, old_type) in before {
        match after.iter().find(|(n, _)| n == name) {
            None => lines.push(format!("column {name} would disappear")),
            Some((_, new_type)) if new_type != old_type => lines.push(format!(
                "column {name} would change type from {old_type} to {new_type}"
            )),
            Some(_) => {}
        }
    }
    for (name, _) in after {
        if !before.iter().any(|(n, _)| n == name) {
            lines.push(format!("column {name} would appear"));
        }
    }
    if lines.is_empty() {
        lines.push("the column order would change".to_string());
    }
    lines.join("\n")
}

/// One line per object in `doomed` that is not a target, naming what it
/// directly depends on ("feature view a depends on table t"), as
/// PostgreSQL's DETAIL for 2BP01 does.
pub fn describe_dependents(
    state: &RegistryState,
    doomed: &[(ObjectKind, QualifiedName)],
    targets: &[(ObjectKind, QualifiedName)],
) -> String {
    doomed
        .iter()
        .filter(|object| !targets.contains(object))
        .map(|(kind, name)| {
            let on = doomed
                .iter()
                .find(|(parent_kind, parent)| {
                    state
                        .dependents(*parent_kind, parent)
                        .iter()
                        .any(|(k, n)| k == kind && n == name)
                })
                .map(|(parent_kind, parent)| format!(" depends on {} {parent}", parent_kind.noun()))
                .unwrap_or_default();
            format!("{} {name}{on}", kind.noun())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `targets` and everything that depends on them, transitively.
pub fn dependents_closure(
    state: &RegistryState,
    targets: &[(ObjectKind, QualifiedName)],
) -> Vec<(ObjectKind, QualifiedName)> {
    let mut result: Vec<(ObjectKind, QualifiedName)> = Vec::new();
    let mut pending: Vec<(ObjectKind, QualifiedName)> = targets.to_vec();
    while let Some(item) = pending.pop() {
        if result.contains(&item) {
            continue;
        }
        for dependent in state.dependents(item.0, &item.1) {
            pending.push(dependent);
        }
        result.push(item);
    }
    result
}

/// A feature view or view may not read itself, directly or through other
/// feature views and views.
pub fn check_no_cycle(
    state: &RegistryState,
    name: &QualifiedName,
    dependencies: &BTreeSet<Dependency>,
) -> Result<()> {
    let reads_views =
        |d: &&Dependency| matches!(d.kind, ObjectKind::FeatureView | ObjectKind::View);
    let mut pending: Vec<QualifiedName> = dependencies
        .iter()
        .filter(reads_views)
        .map(|d| d.name.clone())
        .collect();
    let mut seen = HashSet::new();
    while let Some(current) = pending.pop() {
        if &current == name {
            return Err(invalid(format!(
                "{name} would depend on itself (a dependency cycle)"
            )));
        }
        if !seen.insert(current.clone()) {
            continue;
        }
        if let Some(view) = state.views.get(&current) {
            for version in &view.versions {
                pending.extend(
                    version
                        .dependencies
                        .iter()
                        .filter(reads_views)
                        .map(|d| d.name.clone()),
                );
            }
        }
        if let Some(view) = state.sql_views.get(&current) {
            pending.extend(
                view.dependencies
                    .iter()
                    .filter(reads_views)
                    .map(|d| d.name.clone()),
            );
        }
    }
    Ok(())
}

//! The shape of `src/`, checked on every run: the top-level modules form a
//! DAG (no module names one that names it back through a `crate::` path,
//! doc links included, tests excluded), and no file holds more than 800
//! lines of code outside its tests. `docs/design.md` draws the layers this
//! keeps honest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_CODE_LINES: usize = 800;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to at the top of `src/` (`engine` for
/// `src/engine/planner.rs`, `config` for `src/config.rs`).
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

/// A file's text up to its first `#[cfg(test)]`.
fn before_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or_default()
}

/// Its lines of code: not blank, not comments.
fn code_lines(text: &str) -> Vec<&str> {
    before_tests(text)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .collect()
}

/// The top-level modules `text` names as `crate::<module>`.
fn imported_modules(text: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                modules.insert(name);
            }
        }
    }
    modules
}

/// A cycle through `start` in `edges`, if any (depth-first).
fn cycle_from(
    start: &str,
    edges: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    let current = path.last().cloned().unwrap_or_else(|| start.to_string());
    for next in edges.get(&current).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start.to_string());
            return Some(cycle);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(cycle) = cycle_from(start, edges, path) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn top_level_modules_form_a_dag_and_files_stay_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut too_long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let code = code_lines(&text);
        if code.len() > MAX_CODE_LINES {
            too_long.push(format!("{} ({} lines)", file.display(), code.len()));
        }
        let module = top_module(&src, file);
        for imported in imported_modules(before_tests(&text)) {
            if imported != module {
                edges.entry(module.clone()).or_default().insert(imported);
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "files over {MAX_CODE_LINES} lines of code: {too_long:?}"
    );
    for module in edges.keys() {
        let cycle = cycle_from(module, &edges, &mut vec![module.clone()]);
        assert!(
            cycle.is_none(),
            "modules import each other: {}",
            cycle.unwrap_or_default().join(" → ")
        );
    }
    // The map in docs/design.md: the engine sits above the stream engine
    // and the feature store, which never reach back up into it (nor the
    // feature store into the stream engine, serving or placement).
    let below = |upper: &str, lower: &str| {
        !edges
            .get(lower)
            .is_some_and(|imports| imports.contains(upper))
    };
    for (upper, lower) in [
        ("engine", "features"),
        ("serving", "features"),
        ("engine", "serving"),
        ("engine", "stream"),
        ("stream", "features"),
        ("stream", "online"),
        ("features", "jobs"),
        ("features", "pgcompat"),
        ("pgwire", "placement"),
        ("online", "pgtypes"),
    ] {
        assert!(below(upper, lower), "{lower} imports {upper}");
    }
}

#[test]
fn the_checks_see_imports_and_cycles() {
    let code = "use crate::online::OnlineStore;\nlet x = crate::jobs::now();";
    assert_eq!(
        imported_modules(code),
        BTreeSet::from(["online".to_string(), "jobs".to_string()])
    );
    let edges = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert!(cycle_from("a", &edges, &mut vec!["a".to_string()]).is_some());
    assert_eq!(
        code_lines("// comment\nfn a() {}\n\n#[cfg(test)]\nmod tests {}\n"),
        vec!["fn a() {}"]
    );
}

//! The module layering of `src/`: every `crate::` reference points from a higher layer to a
//! lower one, so there is no import cycle and a newcomer can read the code bottom up. Reads
//! the source text (non-test code), so it needs no build of anything else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first. A module may use only modules of lower layers.
const LAYERS: &[&[&str]] = &[
    // Leaves: the error shape and process plumbing.
    &["error", "lifecycle", "cli", "local_cluster"],
    // Pure readers of the two languages spoken: the wire protocol and SQL text.
    &["wire", "sql"],
    // Domain values and pure algorithms.
    &["config", "merge", "counters"],
    // Bottom services every stage reports to.
    &["metrics", "clients", "backend"],
    &["pool"],
    // Pure routing; it sees directory tables through a trait the control plane implements.
    &["router"],
    // The control plane (health checks, directory tables).
    &["control"],
    &["topology", "execute", "moves"],
    // Map edits that move stored rows: held, then moved online.
    &["reshard"],
    &["session"],
    &["admin"],
    &["frontend"],
    &["app"],
    &["demo"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level module a file belongs to (`src/router/plan.rs` → `router`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// Whether a file is test code (a `tests.rs` or anything under a `tests/` folder).
fn is_test_file(src: &Path, file: &Path) -> bool {
    let relative = file.strip_prefix(src).expect("under src");
    relative.components().any(|c| c.as_os_str() == "tests")
        || relative.file_name().is_some_and(|n| n == "tests.rs")
}

/// The top-level modules `code` names through `crate::…`, grouped imports included.
fn referenced(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() && name != "self" {
                    found.insert(name.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(&src) {
        let module = module_of(&src, &file);
        if matches!(module.as_str(), "lib" | "main") || is_test_file(&src, &file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        // Unit tests sit at the end of a file behind `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let uses = graph.entry(module.clone()).or_default();
        uses.extend(referenced(code).into_iter().filter(|m| *m != module));
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = (dependencies().into_iter())
        .flat_map(|(module, uses)| std::iter::once(module).chain(uses))
        .filter(|module| layer_of(module).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "place these modules in LAYERS: {unplaced:?}"
    );
}

#[test]
fn modules_use_only_lower_layers() {
    let mut upward = Vec::new();
    for (module, uses) in dependencies() {
        let (Some(from), uses) = (layer_of(&module), uses) else {
            continue;
        };
        for used in uses {
            if layer_of(&used).is_some_and(|to| to >= from) {
                upward.push(format!("{module} -> {used}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "references that do not point down (each is an import cycle in the making): {upward:#?}"
    );
}

#[test]
fn the_reader_finds_grouped_and_inline_references() {
    let code = "use crate::{config::Role, metrics};\nfn f() { crate::router::route(); }";
    let expected: BTreeSet<String> = ["config", "metrics", "router"].map(String::from).into();
    assert_eq!(referenced(code), expected);
}

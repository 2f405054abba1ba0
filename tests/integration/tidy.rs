//! Tidy checks: the dependency rule between crates, and that every module opens with a
//! `//!` doc saying what it owns.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn dependencies(crate_dir: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(workspace_root().join(crate_dir).join("Cargo.toml")).expect("manifest");
    let parsed: toml::Table = manifest.parse().expect("valid TOML");
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| parsed.get(*section).and_then(|value| value.as_table()))
        .flat_map(|table| table.keys().cloned())
        .collect()
}

#[test]
fn sandbox_and_policies_stay_free_of_io_frameworks_and_of_each_other() {
    let forbidden = ["axum", "sqlx", "tokio", "hyper", "tower", "tower-http", "reqwest"];
    for (crate_dir, sibling) in [("sandbox", "sluice-policies"), ("policies", "sluice-sandbox")] {
        let dependencies = dependencies(crate_dir);
        for name in forbidden.iter().chain([&sibling]) {
            assert!(!dependencies.iter().any(|dependency| dependency == name), "{crate_dir} must not depend on {name}");
        }
    }
    assert!(!dependencies("policies").iter().any(|dependency| dependency == "wasmtime"), "only sandbox links wasmtime");
    assert!(!dependencies("gateway").iter().any(|dependency| dependency == "wasmtime"), "only sandbox links wasmtime");
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|name| name != "target") {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_module_starts_with_a_module_doc() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["sandbox", "policies", "gateway", "tests", "examples/sdk", "examples/models"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let undocumented: Vec<_> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).expect("readable").trim_start().starts_with("//!"))
        .collect();
    assert!(undocumented.is_empty(), "modules without a //! doc: {undocumented:?}");
}

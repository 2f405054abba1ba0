//! Tidy checks: the layout's rules, checked on the source so they cannot drift. Which crate
//! may depend on which (directly, and for the regulator's verifier the whole tree in
//! `Cargo.lock`), that SQL stays in the store, that `policies` reads no clock or environment,
//! that the service layer knows neither HTTP nor clap, and that every module opens with a
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

/// The crates Sluice is built from, each with the workspace crates it may depend on.
const INTERNAL: &[(&str, &str, &[&str])] = &[
    ("sandbox", "sluice-sandbox", &[]),
    ("policies", "sluice-policies", &["sluice-audit"]),
    ("audit", "sluice-audit", &[]),
    ("vault", "sluice-vault", &["sluice-sandbox"]),
    ("gateway", "sluice-gateway", &["sluice-sandbox", "sluice-policies", "sluice-audit", "sluice-vault"]),
    ("cli", "sluice", &["sluice-sandbox", "sluice-policies", "sluice-audit", "sluice-vault", "sluice-gateway"]),
];

/// External crates each crate must not name directly.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "sandbox",
        &["axum", "sqlx", "tokio", "hyper", "tower", "tower-http", "reqwest", "opendp", "cedar-policy", "clap"],
    ),
    ("policies", &["axum", "sqlx", "tokio", "hyper", "tower", "tower-http", "reqwest", "wasmtime", "clap"]),
    ("vault", &["axum", "sqlx", "tokio", "hyper", "tower", "wasmtime", "opendp", "cedar-policy", "clap"]),
    ("gateway", &["wasmtime", "opendp", "cedar-policy", "clap", "indicatif", "tracing-subscriber"]),
];

#[test]
fn each_crate_depends_only_on_what_its_job_needs() {
    for (dir, _, allowed) in INTERNAL {
        for dependency in dependencies(dir) {
            let internal = INTERNAL.iter().any(|(_, name, _)| *name == dependency);
            assert!(!internal || allowed.contains(&dependency.as_str()), "{dir} must not depend on {dependency}");
        }
    }
    for (dir, forbidden) in FORBIDDEN {
        let dependencies = dependencies(dir);
        for name in *forbidden {
            assert!(!dependencies.iter().any(|dependency| dependency == name), "{dir} must not depend on {name}");
        }
    }
    // The verifier a regulator builds: exactly these, and nothing of the server.
    let mut audit = dependencies("audit");
    audit.sort();
    assert_eq!(audit, ["base64", "blake3", "hex", "ring", "serde", "serde_json"]);
}

/// Every package `package` pulls in, by name, following `Cargo.lock` (which lists normal,
/// build and dev dependencies together, so this over-approximates the build).
fn lockfile_closure(package: &str) -> std::collections::BTreeSet<String> {
    let lock: toml::Table =
        std::fs::read_to_string(workspace_root().join("Cargo.lock")).expect("Cargo.lock").parse().expect("valid TOML");
    let packages = lock["package"].as_array().expect("packages");
    let dependencies_of = |name: &str| -> Vec<String> {
        packages
            .iter()
            .filter(|entry| entry["name"].as_str() == Some(name))
            .flat_map(|entry| entry.get("dependencies").and_then(|value| value.as_array()).cloned().unwrap_or_default())
            .filter_map(|dependency| dependency.as_str().and_then(|text| text.split(' ').next()).map(str::to_owned))
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut queue = vec![package.to_owned()];
    while let Some(name) = queue.pop() {
        if seen.insert(name.clone()) {
            queue.extend(dependencies_of(&name));
        }
    }
    assert!(seen.len() > 1, "{package} not found in Cargo.lock");
    seen
}

#[test]
fn the_regulators_verifier_builds_without_the_server() {
    let closure = lockfile_closure("sluice-audit");
    for heavy in ["wasmtime", "opendp", "sqlx", "axum", "cedar-policy", "tokio", "sluice-sandbox", "sluice-policies"] {
        assert!(!closure.contains(heavy), "sluice-audit pulls in {heavy}: {closure:?}");
    }
    // The check itself works: the gateway's tree has all of them.
    let gateway = lockfile_closure("sluice-gateway");
    for heavy in ["wasmtime", "opendp", "sqlx", "axum", "cedar-policy"] {
        assert!(gateway.contains(heavy), "the closure walk missed {heavy}");
    }
}

/// Source lines of the `.rs` files under `dirs`, with the file each came from. Lines of
/// `//` comments are left out: a doc may name what the code must not do.
fn source_lines(dirs: &[&str]) -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in dirs {
        let path = root.join(dir);
        if path.is_file() {
            files.push(path);
        } else {
            rust_files(&path, &mut files);
        }
    }
    assert!(!files.is_empty(), "no sources under {dirs:?}");
    files
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            text.lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .map(|line| (path.clone(), line.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn offending(dirs: &[&str], needles: &[&str], except: &[&str]) -> Vec<String> {
    source_lines(dirs)
        .into_iter()
        .filter(|(path, _)| !except.iter().any(|allowed| path.ends_with(allowed)))
        .filter(|(_, line)| needles.iter().any(|needle| line.contains(needle)))
        .map(|(path, line)| format!("{}: {}", path.display(), line.trim()))
        .collect()
}

#[test]
fn sql_lives_only_in_the_store() {
    let sql = ["sqlx", "SELECT ", "INSERT INTO", "DELETE FROM", "UPDATE ", "BEGIN IMMEDIATE", "PRAGMA "];
    let found = offending(
        &["sandbox/src", "policies/src", "audit/src", "vault/src", "gateway/src", "cli/src"],
        &sql,
        &["gateway/src/store.rs"],
    );
    assert!(found.is_empty(), "SQL outside gateway/src/store.rs: {found:#?}");
}

/// Every refusal the gateway gives is decided in `sluice_policies` (the Cedar gate or a
/// pure check there): no handler builds its own denial.
#[test]
fn no_handler_builds_its_own_denial() {
    let found = offending(&["gateway/src", "cli/src"], &["Denial::new", "DenialReason::", "Denial { reason"], &[]);
    assert!(found.is_empty(), "denials are decided in policies, not built in the gateway: {found:#?}");
}

#[test]
fn policies_read_no_clock_and_no_environment() {
    let impure = [
        "std::env",
        "env::var",
        "env!(",
        "SystemTime",
        "Instant::now",
        "now_utc",
        "OffsetDateTime::now",
        "std::fs",
        "std::net",
    ];
    let found = offending(&["policies/src"], &impure, &[]);
    assert!(found.is_empty(), "policies must be given the time and the settings: {found:#?}");
}

#[test]
fn the_service_layer_knows_neither_http_nor_clap() {
    let transport = ["axum", "http::", "StatusCode", "hyper", "tower", "clap"];
    let service = ["gateway/src/service", "gateway/src/runner.rs", "gateway/src/parts.rs", "gateway/src/config.rs"];
    let mut found = offending(&service, &transport, &[]);
    found.extend(offending(
        &["gateway/src/store.rs", "gateway/src/error.rs", "gateway/src/datadir.rs"],
        &transport,
        &[],
    ));
    assert!(found.is_empty(), "the service is called by the API and the CLI, and knows neither: {found:#?}");
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
    for dir in ["sandbox", "policies", "audit", "vault", "gateway", "cli", "tests", "examples/sdk", "examples/models"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let undocumented: Vec<_> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).expect("readable").trim_start().starts_with("//!"))
        .collect();
    assert!(undocumented.is_empty(), "modules without a //! doc: {undocumented:?}");
}

//! `sluice new`: writes a model crate for a dataset schema that builds and passes
//! `sluice dev check` as it is, so an operator starts from something that works.
//!
//! It owns the templates: the model's source, its manifest, a README, and a copy of the
//! guest SDK (so the crate builds anywhere, with no path back into this repository). It
//! must not read data or touch a data directory: its only input is a schema.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sluice_sandbox::{ColumnType, is_input_or_output_name};

use sluice_vault::schema::{DatasetSchema, MAX_GRANTABLE_LEVEL};

/// The guest SDK's source, copied into every new model crate.
const SDK_SOURCE: &str = include_str!("../../examples/sdk/src/lib.rs");

/// Writes the crate `name` under `parent` for `schema`, and returns the files written.
pub fn new_model(parent: &Path, name: &str, schema: &DatasetSchema, schema_file: &str) -> anyhow::Result<Vec<PathBuf>> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && name.starts_with(|character: char| character.is_ascii_lowercase());
    anyhow::ensure!(valid_name, "the model name `{name}` must start with a-z and use only a-z, 0-9 and `-`");
    let root = parent.join(name);
    anyhow::ensure!(!root.exists(), "{} already exists; choose another name or remove it", root.display());
    let inputs: Vec<_> = schema
        .columns
        .iter()
        .filter(|column| column.classification <= MAX_GRANTABLE_LEVEL)
        // Only columns a manifest can name (the manifest's own rule).
        .filter(|column| is_input_or_output_name(&column.name))
        .collect();
    anyhow::ensure!(!inputs.is_empty(), "the schema has no column a model may read (all are level 4)");
    let measured = inputs
        .iter()
        .find(|column| matches!(column.column_type, ColumnType::F64 | ColumnType::I64) && column.lower.is_some());
    let files = [
        ("Cargo.toml", cargo_toml(name)),
        ("src/lib.rs", model_source(name, &inputs, measured)),
        ("manifest.toml", manifest(name, &inputs, measured)),
        ("README.md", readme(name, schema_file)),
        ("sluice-guest/Cargo.toml", SDK_CARGO_TOML.to_owned()),
        ("sluice-guest/src/lib.rs", SDK_SOURCE.to_owned()),
    ];
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = root.join(relative);
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory).with_context(|| format!("creating {}", directory.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

const SDK_CARGO_TOML: &str = r#"[package]
name = "sluice-guest"
description = "Write a Sluice model as a plain function from a row to its outputs"
version = "0.2.0"
edition = "2024"
license = "Apache-2.0"
publish = false
"#;

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
sluice-guest = {{ path = "sluice-guest" }}

# A workspace of its own, so the crate builds wherever it is copied.
[workspace]

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
# Keeps function names, so a review error can name the function at fault.
strip = "debuginfo"
"#
    )
}

fn type_name(column_type: ColumnType) -> &'static str {
    column_type.as_str()
}

fn model_source(
    name: &str,
    inputs: &[&sluice_vault::schema::ColumnSchema],
    measured: Option<&&sluice_vault::schema::ColumnSchema>,
) -> String {
    let function = name.replace('-', "_");
    let mut source = format!(
        "//! The `{name}` model: a pure function of one row. The host releases its outputs as\n\
         //! differentially private aggregates; it cannot see or keep any other row.\n\
         #![no_std]\n\nsluice_guest::model! {{\n    fn {function};\n    inputs {{\n"
    );
    for column in inputs {
        let _ = writeln!(source, "        {}: {},", column.name, type_name(column.column_type));
    }
    source.push_str("    }\n    outputs { rows");
    if let Some(column) = measured {
        let _ = write!(source, ", mean_{}", column.name);
    }
    source.push_str(" }\n}\n\n");
    let _ = writeln!(source, "fn {function}(row: &Inputs) -> Outputs {{");
    if let Some(column) = measured {
        let lower = column.lower.unwrap_or_default();
        let value = if column.column_type == ColumnType::I64 { "value as f64" } else { "value" };
        let _ = writeln!(source, "    // A null counts as the column's lower bound.");
        let _ = writeln!(source, "    let measured = row.{}.map_or({lower:?}, |value| {value});", column.name);
        let _ = writeln!(source, "    Outputs {{ rows: 1.0, mean_{}: measured }}", column.name);
    } else {
        source.push_str("    let _ = row;\n    Outputs { rows: 1.0 }\n");
    }
    source.push_str("}\n");
    source
}

fn manifest(
    name: &str,
    inputs: &[&sluice_vault::schema::ColumnSchema],
    measured: Option<&&sluice_vault::schema::ColumnSchema>,
) -> String {
    let mut text = format!(
        "abi_version = 2\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"A new Sluice model\"\n\
         # Fuel (about one unit per instruction) each row may use; it also sets when results become visible.\n\
         fuel_per_row = 2000\n\n# Columns the model reads; an authorisation must grant each of them.\ninputs = [\n"
    );
    for column in inputs {
        let _ = writeln!(text, "  {{ name = \"{}\", type = \"{}\" }},", column.name, type_name(column.column_type));
    }
    text.push_str("]\n\n[[outputs]]\nname = \"rows\"\nkind = \"count\"\nepsilon = 0.1\n");
    if let Some(column) = measured {
        let _ = write!(
            text,
            "\n[[outputs]]\nname = \"mean_{}\"\nkind = \"mean\"\nlower = {:?}\nupper = {:?}\nepsilon = 0.1\n",
            column.name,
            column.lower.unwrap_or_default(),
            column.upper.unwrap_or(column.lower.unwrap_or_default() + 1.0),
        );
    }
    text
}

fn readme(name: &str, schema_file: &str) -> String {
    let wasm = name.replace('-', "_");
    format!(
        "# {name}\n\nA Sluice model (ABI 2: a pure function of one row). Build and check it:\n\n```sh\n\
         rustup target add wasm32-unknown-unknown\n\
         cargo build --release --target wasm32-unknown-unknown\n\
         sluice dev check --model target/wasm32-unknown-unknown/release/{wasm}.wasm --manifest manifest.toml --schema {schema_file}\n\
         sluice dev run   --model target/wasm32-unknown-unknown/release/{wasm}.wasm --manifest manifest.toml --schema {schema_file}\n\
         ```\n\nEdit `src/lib.rs` and `manifest.toml` together: every input the model reads and every output it\n\
         writes must be in the manifest, by name. Keep per-row work in local variables (review refuses a\n\
         model that writes memory, a global or a table) and use `sluice_guest::math` for `exp`, `ln` and\n\
         the like. `sluice-guest/` is a copy of the guest SDK; its documentation is at the top of its\n\
         `src/lib.rs`, and the whole contract is `sandbox/ABI.md` in the Sluice repository.\n"
    )
}

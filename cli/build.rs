//! Builds the example models (the guest workspace in `examples/`) for
//! wasm32-unknown-unknown and embeds them, so `sluice demo` carries real models built
//! from the Rust source in this repository rather than opaque binaries.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MODELS: &[&str] = &["vehicle-risk", "enterprise-credit", "pollution-anomaly"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let examples = manifest_dir.join("../examples");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    for path in ["Cargo.toml", "Cargo.lock", "sdk", "models"] {
        println!("cargo:rerun-if-changed={}", examples.join(path).display());
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let guest_target = out_dir.join("guest-target");
    let mut command = Command::new(cargo);
    command
        .current_dir(&examples)
        .args(["build", "--release", "--offline", "--locked", "--target", "wasm32-unknown-unknown"])
        .arg("--target-dir")
        .arg(&guest_target)
        // Flags meant for the host build (coverage, sanitizers) must not reach the guest.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        // clippy runs the host build through a wrapper; the guest is linted on its own.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER");
    for model in MODELS {
        command.args(["-p", model]);
    }
    let status = command.status().expect("running cargo to build the example models");
    if !status.success() {
        panic!(
            "building the example models for wasm32-unknown-unknown failed (cargo's output is above); \
             if the target is missing, install it with `rustup target add wasm32-unknown-unknown`"
        );
    }
    for model in MODELS {
        let file = format!("{}.wasm", model.replace('-', "_"));
        let built = guest_target.join("wasm32-unknown-unknown/release").join(&file);
        std::fs::copy(&built, out_dir.join(&file))
            .unwrap_or_else(|error| panic!("copying {}: {error}", built.display()));
    }
}

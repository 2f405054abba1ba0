//! `sluice audit witness`: the regulator's witness, kept in a directory of its own (its
//! key, its name, the latest checkpoint it cosigned, and evidence of any fork).
//!
//! It owns the witness's files and its exit codes. It must not decide anything the audit
//! crate's `witness::add_checkpoint` does not; it never talks to a server (the request and
//! the cosignature travel by curl or any other means the regulator trusts).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use sluice_audit::witness::{ED25519_COSIGNATURE, WitnessRefusal};
use sluice_audit::{PublicKey, SigningKey};

const KEY_FILE: &str = "witness.key";
const NAME_FILE: &str = "name";
const KEPT_FILE: &str = "checkpoint";

/// Creates the witness's key and name in `state`; prints its vkey.
pub fn init(state: &Path, name: &str) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !name.is_empty() && !name.contains(char::is_whitespace) && !name.contains('+'),
        "a witness name has no spaces and no `+` (e.g. cac.zunyi.gov.cn/witness)"
    );
    anyhow::ensure!(!state.join(KEY_FILE).exists(), "{} already holds a witness", state.display());
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let pkcs8 = SigningKey::generate_pkcs8().map_err(anyhow::Error::msg)?;
    sluice_vault::keys::write_secret_file(&state.join(KEY_FILE), &pkcs8)?;
    std::fs::write(state.join(NAME_FILE), format!("{name}\n"))?;
    let key = SigningKey::from_pkcs8(&pkcs8).map_err(anyhow::Error::msg)?;
    println!("witness {name} created in {}", state.display());
    println!("vkey: {}", key.public_key().vkey(name, ED25519_COSIGNATURE));
    Ok(ExitCode::SUCCESS)
}

/// Checks and cosigns one `add-checkpoint` request.
pub fn add_checkpoint(state: &Path, log_key: &str, request: Option<&Path>) -> anyhow::Result<ExitCode> {
    let log_key = PublicKey::parse(log_key).map_err(|error| anyhow::anyhow!("--log-key: {error}"))?;
    let pkcs8 = std::fs::read(state.join(KEY_FILE))
        .with_context(|| format!("{} holds no witness (run `sluice audit witness init`)", state.display()))?;
    let key = SigningKey::from_pkcs8(&pkcs8).map_err(anyhow::Error::msg)?;
    let name = std::fs::read_to_string(state.join(NAME_FILE))?.trim().to_owned();
    let kept_path = state.join(KEPT_FILE);
    let kept = std::fs::read_to_string(&kept_path).ok();
    let request = match request {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading the request")?;
            text
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    match sluice_audit::witness::add_checkpoint(kept.as_deref(), &log_key, &request, &name, &key, now) {
        Ok((note, cosignature)) => {
            // The new view is kept before the cosignature is shown: a crash in between
            // leaves a witness that has moved on, never one that cosigned and forgot.
            let partial = state.join("checkpoint.partial");
            std::fs::write(&partial, &note)?;
            std::fs::rename(&partial, &kept_path)?;
            println!("{cosignature}");
            Ok(ExitCode::SUCCESS)
        }
        Err(WitnessRefusal::Fork { kept, presented, reason }) => {
            let evidence = state.join(format!("fork-{now}.txt"));
            std::fs::write(&evidence, format!("kept:\n{kept}\npresented:\n{presented}"))?;
            eprintln!("FORK: {reason}; both checkpoints, each signed by the log, are in {}", evidence.display());
            Ok(ExitCode::from(3))
        }
        Err(WitnessRefusal::Conflict { kept_size }) => {
            eprintln!("this witness keeps a checkpoint of {kept_size} entries: ask for ?old={kept_size}");
            Ok(ExitCode::from(4))
        }
        Err(WitnessRefusal::Invalid(reason)) => {
            eprintln!("refused: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

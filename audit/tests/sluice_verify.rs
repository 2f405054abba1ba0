//! The `sluice-verify` binary as a regulator runs it: a good export verifies (exit 0), a
//! tampered one or one signed by another key is refused (exit 1), and unusable arguments
//! are told apart from a refusal (exit 2).

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_audit::{Act, AuditEvent, AuditOutcome, LogWriter, SigningKey};

/// A small export of `entries` read events with one signed checkpoint at the end.
fn export(key: &SigningKey, entries: u64) -> String {
    let mut log = LogWriter::default();
    for _ in 0..entries {
        let mut event = AuditEvent::new(Act::CatalogueRead, "catalogue", AuditOutcome::Ok);
        event.actor_id = Some(2);
        event.role = "operator".into();
        log.append(event, "2026-11-30T12:00:00Z");
    }
    log.export(key)
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-verify-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn verify(arguments: &[&str], file: &Path) -> (i32, String, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_sluice-verify")).args(arguments).arg(file).output().expect("runs the binary");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8");
    (output.status.code().expect("exit code"), text(output.stdout), text(output.stderr))
}

#[test]
fn a_regulator_verifies_an_export_and_refuses_a_tampered_or_foreign_one() {
    let key = SigningKey::generate().expect("key");
    let public = key.public_key().to_string();
    let good = export(&key, 5);
    let path = scratch("good.jsonl", &good);

    let (code, out, _) = verify(&["export", "--public-key", &public], &path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 5 entries and 1 checkpoints verified"), "{out}");
    assert!(out.contains("(pinned)"), "{out}");

    // One entry's outcome rewritten after the fact.
    let tampered = good.replacen("\"outcome\":\"ok\"", "\"outcome\":\"denied\"", 1);
    assert_ne!(tampered, good);
    let (code, _, err) = verify(&["export", "--public-key", &public], &scratch("tampered.jsonl", &tampered));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not verify"), "{err}");

    // The whole log re-signed by someone else's key, checked against the pinned one.
    let forged = export(&SigningKey::generate().expect("key"), 5);
    let (code, _, err) = verify(&["export", "--public-key", &public], &scratch("forged.jsonl", &forged));
    assert_eq!(code, 1, "{err}");

    // No pinned key is not a default: the regulator must say which key, or say out loud
    // that the export's own key is trusted, which a re-signed forgery passes.
    let (code, _, err) = verify(&["export"], &path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--public-key"), "{err}");
    let (code, _, err) = verify(&["export", "--trust-embedded-key"], &scratch("forged-embedded.jsonl", &forged));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("WARNING: trusting the key inside the export"), "{err}");
    let (code, _, err) = verify(&["export", "--trust-embedded-key", "--public-key", &public], &path);
    assert_eq!(code, 2, "{err}");

    // Unusable input is exit 2, not a verdict.
    let (code, _, err) = verify(&["export", "--public-key", &public], &path.with_file_name("missing.jsonl"));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = verify(&["export", "--public-key", "not base64!"], &path);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = verify(&["receipt"], &path);
    assert_eq!(code, 2, "a receipt needs a pinned key: {err}");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

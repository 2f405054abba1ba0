//! The regulator's two offline checks as commands: verify an export file, verify a receipt
//! file. Both `sluice-verify` and `sluice audit verify` call these, so they print the same.
//!
//! It owns reading the files and reporting. It must not decide anything the verifier does
//! not: every check is `verify_export` or `verify_receipt`.

use std::io::Write;
use std::path::Path;

use crate::release::{RELEASE_DETAIL, check_release};
use crate::{KeyTrust, PublicKey, Receipt, verify_export, verify_receipt};

/// How a check ended: the files could not be used, or they were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    Refused,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("reading {}: {error}", path.display()))
}

/// Verifies the export at `export`, signed by the pinned `public_key` — or, only when
/// `trust_embedded_key` says so, by the key the export names (with a warning on `err`) —
/// extending the signed note in `trusted_checkpoint` when given, and with a checkpoint
/// cosigned by each witness in `witnesses` (C2SP vkeys). The summary goes to `out`, a
/// refusal to `err`.
pub fn verify_export_file(
    export: &Path,
    public_key: Option<&str>,
    trust_embedded_key: bool,
    trusted_checkpoint: Option<&Path>,
    witnesses: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Verdict, String> {
    let report = |error: std::io::Error| format!("writing the report: {error}");
    let pinned = match (public_key, trust_embedded_key) {
        (Some(key), false) => Some(PublicKey::parse(key).map_err(|error| format!("--public-key: {error}"))?),
        (None, true) => {
            writeln!(
                err,
                "WARNING: trusting the key inside the export. This shows only that the log is consistent with \
                 itself: whoever re-signs a rewritten log also controls that key. Pin the key with --public-key."
            )
            .map_err(report)?;
            None
        }
        (Some(_), true) => return Err("pass --public-key or --trust-embedded-key, not both".into()),
        (None, false) => {
            return Err("which key signs this log? Pass the key you pinned out of band with --public-key BASE64 \
                        (or, to check only that the export is consistent with itself, --trust-embedded-key)"
                .into());
        }
    };
    let witnesses = witnesses
        .iter()
        .map(|vkey| match PublicKey::parse_vkey(vkey) {
            Ok((name, crate::witness::ED25519_COSIGNATURE, key)) => Ok((name, key)),
            Ok((name, _, _)) => Err(format!("--witness {name}: not an Ed25519 cosigner's vkey (type 0x04)")),
            Err(error) => Err(format!("--witness: {error}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text = read(export)?;
    let trusted = trusted_checkpoint.map(read).transpose()?;
    let trust = pinned.as_ref().map_or(KeyTrust::Embedded, KeyTrust::Pinned);
    match verify_export(&text, trust, trusted.as_deref()) {
        Ok(summary) => {
            // Each required witness must have cosigned a checkpoint of this export.
            let mut witnessed = Vec::new();
            for (name, key) in &witnesses {
                let Some((size, time)) = crate::witness::witnessed(&text, name, key) else {
                    writeln!(err, "error: no checkpoint in the export carries a cosignature of witness {name}")
                        .map_err(report)?;
                    return Ok(Verdict::Refused);
                };
                witnessed.push((name, size, time));
            }
            writeln!(out, "ok: {} entries and {} checkpoints verified", summary.entries, summary.checkpoints)
                .map_err(report)?;
            writeln!(out, "merkle root: {}", summary.root_hex).map_err(report)?;
            let pinning = if summary.key_pinned { "pinned" } else { "taken from the export; pin it with --public-key" };
            writeln!(out, "signed by: {} ({pinning})", summary.public_key).map_err(report)?;
            if let Some(size) = summary.trusted_size {
                writeln!(out, "extends your trusted checkpoint of {size} entries").map_err(report)?;
            }
            for (name, size, time) in &witnessed {
                writeln!(
                    out,
                    "witness {name} cosigned the checkpoint of {size} entries (at POSIX time {time}); entries after \
                     it are not yet witnessed"
                )
                .map_err(report)?;
            }
            writeln!(
                out,
                "content rules hold: roles and organisations as created, a second administrator for every \
                 reviewer, operator and administrator, no review from the submitter's organisation, licences \
                 in their windows, every run by its authorisation's operator inside its window, with a model \
                 approved for that authorisation, within both budgets"
            )
            .map_err(report)?;
            writeln!(out, "denied: {}, failed: {}", summary.denied, summary.failed).map_err(report)?;
            for (action, count) in &summary.by_action {
                writeln!(out, "  {action:<24} {count}").map_err(report)?;
            }
            Ok(Verdict::Verified)
        }
        Err(error) => {
            writeln!(err, "error: audit export does not verify: {error}").map_err(report)?;
            Ok(Verdict::Refused)
        }
    }
}

/// Verifies a receipt (bare, or inside a whole run result) against `public_key`.
pub fn verify_receipt_file(
    path: &Path,
    public_key: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Verdict, String> {
    let text = read(path)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| format!("the receipt is not JSON: {error}"))?;
    // Accept a bare receipt or a whole run result holding one; a whole result's values are
    // checked against what its entry committed to.
    let (receipt_value, released) = if value.get("receipt").is_some() {
        let released =
            value.get("outputs").map(|outputs| (outputs.clone(), value.get("run_id").and_then(|id| id.as_i64())));
        (value["receipt"].clone(), released)
    } else {
        (value, None)
    };
    let receipt: Receipt =
        serde_json::from_value(receipt_value).map_err(|error| format!("the receipt's fields: {error}"))?;
    let key = PublicKey::parse(public_key).map_err(|error| format!("--public-key: {error}"))?;
    let report = |error: std::io::Error| format!("writing the report: {error}");
    let checked = verify_receipt(&receipt, &key).and_then(|entry| {
        if let Some((outputs, run_id)) = &released {
            check_release(&entry, outputs, *run_id)?;
        }
        Ok(entry)
    });
    match checked {
        Ok(entry) => {
            writeln!(
                out,
                "ok: entry {} ({} {}, {}) is in the log signed by {key}",
                entry.seq, entry.action, entry.object, entry.time
            )
            .map_err(report)?;
            let values = match (&released, entry.details.get(RELEASE_DETAIL.as_str())) {
                (Some(_), _) => "the released values are the ones the log recorded".to_owned(),
                (None, Some(digest)) => format!(
                    "it commits to released values with digest {digest} (pass the whole run result to check them)"
                ),
                (None, None) => "it commits to no released values".to_owned(),
            };
            writeln!(out, "{values}").map_err(report)?;
            Ok(Verdict::Verified)
        }
        Err(problem) => {
            writeln!(err, "error: the receipt does not verify: {problem}").map_err(report)?;
            Ok(Verdict::Refused)
        }
    }
}

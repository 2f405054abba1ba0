//! Offline verification of an audit export: what `sluice audit verify` runs, with no
//! server and no database.
//!
//! It owns the export format and every check on it. It must not trust anything in the
//! export it can recompute: leaf hashes, the root and sequence numbers are all recomputed,
//! and only the signature ties the result to Sluice's key. It never panics on any input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AuditEntry, AuditOutcome, Checkpoint, ENTRY_VERSION, leaf_hash, merkle_root};
use crate::keys::PublicKey;

pub const EXPORT_FORMAT: &str = "sluice-audit-export/1";

/// The first line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub origin: String,
    pub public_key: String,
}

/// The last line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTrailer {
    pub checkpoint: String,
}

/// The first problem found, with the 1-based line of the export it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct VerifyError {
    pub line: usize,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub entries: u64,
    pub root_hex: String,
    pub public_key: String,
    /// Whether the key was pinned by the caller rather than taken from the export.
    pub key_pinned: bool,
    pub denied: u64,
    pub failed: u64,
    pub by_action: BTreeMap<String, u64>,
}

fn fail(line: usize, problem: impl Into<String>) -> VerifyError {
    VerifyError { line, problem: problem.into() }
}

/// Verifies a whole export. With `pinned_key`, the export must be signed by that key.
pub fn verify_export(export: &str, pinned_key: Option<&PublicKey>) -> Result<VerifySummary, VerifyError> {
    let lines: Vec<&str> = export.lines().collect();
    if lines.len() < 2 {
        return Err(fail(lines.len().max(1), "an export needs a header line and a checkpoint line"));
    }
    let header: ExportHeader =
        serde_json::from_str(lines[0]).map_err(|error| fail(1, format!("header is not valid: {error}")))?;
    if header.format != EXPORT_FORMAT {
        return Err(fail(1, format!("format `{}` is not {EXPORT_FORMAT}", header.format)));
    }
    let exported_key = PublicKey::parse(&header.public_key).map_err(|error| fail(1, format!("{error:#}")))?;
    if pinned_key.is_some_and(|pinned| *pinned != exported_key) {
        return Err(fail(1, "the export names a different public key than the one you pinned"));
    }
    let key = pinned_key.unwrap_or(&exported_key);

    let entry_lines = &lines[1..lines.len() - 1];
    let mut leaves = Vec::with_capacity(entry_lines.len());
    let mut summary = VerifySummary {
        entries: 0,
        root_hex: String::new(),
        public_key: key.to_string(),
        key_pinned: pinned_key.is_some(),
        denied: 0,
        failed: 0,
        by_action: BTreeMap::new(),
    };
    for (index, text) in entry_lines.iter().enumerate() {
        let line = index + 2;
        let entry: AuditEntry =
            serde_json::from_str(text).map_err(|error| fail(line, format!("entry is not valid: {error}")))?;
        if entry.canonical() != *text {
            return Err(fail(line, "entry is not in canonical form (it was edited)"));
        }
        if entry.v != ENTRY_VERSION {
            return Err(fail(line, format!("entry version {} is not supported", entry.v)));
        }
        let expected_seq = index as u64 + 1;
        if entry.seq != expected_seq {
            return Err(fail(line, format!("sequence number {} where {expected_seq} was expected", entry.seq)));
        }
        let expected_prev = leaves.last().copied().unwrap_or([0u8; 32]);
        if entry.prev != hex::encode(expected_prev) {
            // The chain breaks here: either the entry before was altered after the next one
            // was logged, or this entry's link was. Name the earlier line; it is the first
            // that can be wrong.
            return Err(fail(
                (line - 1).max(2),
                format!("the hash chain breaks between this entry and the next (line {line}): one was altered"),
            ));
        }
        leaves.push(leaf_hash(text.as_bytes()));
        *summary.by_action.entry(entry.action.clone()).or_default() += 1;
        match entry.outcome {
            AuditOutcome::Denied => summary.denied += 1,
            AuditOutcome::Failed => summary.failed += 1,
            AuditOutcome::Ok => {}
        }
    }

    let trailer_line = lines.len();
    let trailer: ExportTrailer = serde_json::from_str(lines[trailer_line - 1])
        .map_err(|error| fail(trailer_line, format!("checkpoint line is not valid: {error}")))?;
    let checkpoint = Checkpoint::verify(&trailer.checkpoint, key).map_err(|problem| fail(trailer_line, problem))?;
    if checkpoint.origin != header.origin {
        return Err(fail(trailer_line, "checkpoint origin differs from the export's"));
    }
    if checkpoint.size != leaves.len() as u64 {
        return Err(fail(
            trailer_line,
            format!("checkpoint covers {} entries but the export has {}", checkpoint.size, leaves.len()),
        ));
    }
    let root = merkle_root(&leaves);
    if root != checkpoint.root {
        return Err(fail(trailer_line, "the recomputed Merkle root does not match the signed checkpoint"));
    }
    summary.entries = leaves.len() as u64;
    summary.root_hex = hex::encode(root);
    Ok(summary)
}

//! Offline verification of an audit export and of release receipts: what
//! `sluice audit verify` and `sluice audit verify-receipt` run, with no server and no
//! database.
//!
//! It owns the export format and every check on it. It must not trust anything in the
//! export it can recompute: leaf hashes, the hash chain, every checkpoint's root and the
//! sequence numbers are all recomputed, and only signatures tie the result to Sluice's key.
//! It never panics on any input.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;
use crate::merkle::{Hash, RootBuilder, verify_inclusion};
use crate::{AuditEntry, AuditOutcome, Checkpoint, ENTRY_VERSION, leaf_hash};

pub const EXPORT_FORMAT: &str = "sluice-audit-export/1";

/// The first line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub origin: String,
    pub public_key: String,
}

/// A checkpoint line of an export (after the entries).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportCheckpoint {
    pub checkpoint: String,
}

/// The first problem found, with the 1-based line of the export it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub line: usize,
    pub problem: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for VerifyError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub entries: u64,
    pub checkpoints: u64,
    pub root_hex: String,
    pub public_key: String,
    /// Whether the key was pinned by the caller rather than taken from the export.
    pub key_pinned: bool,
    /// The size of the caller's trusted checkpoint, when one was given and is consistent.
    pub trusted_size: Option<u64>,
    pub denied: u64,
    pub failed: u64,
    pub by_action: BTreeMap<String, u64>,
}

fn fail(line: usize, problem: impl Into<String>) -> VerifyError {
    VerifyError { line, problem: problem.into() }
}

/// Verifies a whole export. With `pinned_key`, the export must be signed by that key; with
/// `trusted_checkpoint` (a signed note the regulator kept from before), the export must
/// extend the log that checkpoint describes: a rolled-back or rewritten log is caught.
pub fn verify_export(
    export: &str,
    pinned_key: Option<&PublicKey>,
    trusted_checkpoint: Option<&str>,
) -> Result<VerifySummary, VerifyError> {
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

    // Entries come first, then one or more checkpoint lines.
    let first_checkpoint = lines.iter().position(|line| line.starts_with("{\"checkpoint\"")).unwrap_or(lines.len());
    let entry_lines = &lines[1..first_checkpoint.max(1)];
    let checkpoints = parse_checkpoints(&lines, first_checkpoint, &header, key)?;
    let trusted = trusted_checkpoint
        .map(|note| Checkpoint::verify(note, key).map_err(|problem| fail(1, format!("trusted checkpoint: {problem}"))))
        .transpose()?;

    let mut summary = VerifySummary {
        entries: entry_lines.len() as u64,
        checkpoints: checkpoints.len() as u64,
        root_hex: String::new(),
        public_key: key.to_string(),
        key_pinned: pinned_key.is_some(),
        trusted_size: trusted.as_ref().map(|checkpoint| checkpoint.size),
        denied: 0,
        failed: 0,
        by_action: BTreeMap::new(),
    };
    let mut builder = RootBuilder::default();
    let mut previous: Hash = [0; 32];
    let mut rules = ContentRules::default();
    let mut pending = checkpoints.iter().peekable();
    // A checkpoint that does not match is reported after the pass, unless an entry error
    // names the altered entry more precisely first (the chain usually does, one line on).
    let mut checkpoint_mismatch: Option<VerifyError> = None;
    for (index, text) in entry_lines.iter().enumerate() {
        let line = index + 2;
        let entry = check_entry(text, line, index as u64 + 1, &previous)?;
        rules.check(&entry).map_err(|problem| fail(line, problem))?;
        previous = leaf_hash(text.as_bytes());
        builder.push(previous);
        *summary.by_action.entry(entry.action.clone()).or_default() += 1;
        match entry.outcome {
            AuditOutcome::Denied => summary.denied += 1,
            AuditOutcome::Failed => summary.failed += 1,
            AuditOutcome::Ok => {}
        }
        if let Some(trusted) = &trusted
            && trusted.size == builder.size()
            && trusted.root != builder.root()
        {
            return Err(fail(line, "the log was rewritten: it no longer matches your trusted checkpoint at this size"));
        }
        while let Some((checkpoint_line, checkpoint)) = pending.peek() {
            if checkpoint.size != builder.size() {
                break;
            }
            if checkpoint.root != builder.root() && checkpoint_mismatch.is_none() {
                checkpoint_mismatch = Some(fail(
                    *checkpoint_line,
                    format!("the checkpoint at size {} does not match the entries", checkpoint.size),
                ));
            }
            pending.next();
        }
    }
    if let Some(mismatch) = checkpoint_mismatch {
        return Err(mismatch);
    }
    // Sizes are checked after the entries, so a missing entry is named where it is missing.
    let entries = entry_lines.len() as u64;
    if let Some(trusted) = &trusted
        && trusted.size > entries
    {
        return Err(fail(
            lines.len(),
            format!(
                "the log was rolled back: your trusted checkpoint covers {} entries, the export only {entries}",
                trusted.size
            ),
        ));
    }
    let (line, last) = checkpoints.last().expect("at least one checkpoint");
    if last.size != entries {
        return Err(fail(
            *line,
            format!("the last checkpoint covers {} entries but the export has {entries}", last.size),
        ));
    }
    summary.root_hex = hex::encode(builder.root());
    Ok(summary)
}

/// Parses and checks every checkpoint line: signature, origin, increasing sizes.
fn parse_checkpoints(
    lines: &[&str],
    first: usize,
    header: &ExportHeader,
    key: &PublicKey,
) -> Result<Vec<(usize, Checkpoint)>, VerifyError> {
    if first >= lines.len() {
        return Err(fail(lines.len(), "the export has no checkpoint"));
    }
    let mut checkpoints: Vec<(usize, Checkpoint)> = Vec::new();
    for (offset, text) in lines[first..].iter().enumerate() {
        let line = first + offset + 1;
        let parsed: ExportCheckpoint =
            serde_json::from_str(text).map_err(|error| fail(line, format!("checkpoint line is not valid: {error}")))?;
        let checkpoint = Checkpoint::verify(&parsed.checkpoint, key).map_err(|problem| fail(line, problem))?;
        if checkpoint.origin != header.origin {
            return Err(fail(line, "checkpoint origin differs from the export's"));
        }
        if checkpoints.last().is_some_and(|(_, last)| last.size >= checkpoint.size) {
            return Err(fail(line, "checkpoints must grow in size"));
        }
        checkpoints.push((line, checkpoint));
    }
    Ok(checkpoints)
}

fn check_entry(text: &str, line: usize, expected_seq: u64, previous: &Hash) -> Result<AuditEntry, VerifyError> {
    let entry: AuditEntry =
        serde_json::from_str(text).map_err(|error| fail(line, format!("entry is not valid: {error}")))?;
    if entry.canonical() != text {
        return Err(fail(line, "entry is not in canonical form (it was edited)"));
    }
    if entry.v != ENTRY_VERSION {
        return Err(fail(line, format!("entry version {} is not supported", entry.v)));
    }
    if entry.seq != expected_seq {
        return Err(fail(line, format!("sequence number {} where {expected_seq} was expected", entry.seq)));
    }
    if entry.prev != hex::encode(previous) {
        // Either the entry before was altered after this one was logged, or this entry's
        // link was. Name the earlier line; it is the first that can be wrong.
        return Err(fail(
            (line - 1).max(2),
            format!("the hash chain breaks between this entry and the next (line {line}): one was altered"),
        ));
    }
    Ok(entry)
}

/// What the log itself must show, whatever the server says: a run only under an
/// authorisation that was created and not revoked, only with a model digest a reviewer
/// approved and did not revoke, and never past the authorisation's budget.
#[derive(Debug, Default)]
struct ContentRules {
    /// Authorisation id → (total, spent) in millionths of ε.
    budgets: HashMap<String, (u64, u64)>,
    approved_digests: HashSet<String>,
    revoked_authorisations: HashSet<String>,
}

fn micro_epsilon(text: Option<&String>) -> Option<u64> {
    let value: f64 = text?.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * 1e6).round() as u64)
}

impl ContentRules {
    fn check(&mut self, entry: &AuditEntry) -> Result<(), String> {
        if entry.outcome != AuditOutcome::Ok {
            return Ok(());
        }
        match entry.action.as_str() {
            "authorisation.create" => {
                let id = entry.object.strip_prefix("authorisation:").unwrap_or_default().to_owned();
                let total = micro_epsilon(entry.details.get("epsilon_total"))
                    .ok_or("an authorisation without a valid epsilon_total")?;
                self.budgets.insert(id, (total, 0));
            }
            "authorisation.revoke" => {
                let id = entry.object.strip_prefix("authorisation:").unwrap_or_default().to_owned();
                self.revoked_authorisations.insert(id);
            }
            "model.revoke" => {
                if let Some(digest) = entry.details.get("digest") {
                    self.approved_digests.remove(digest);
                }
            }
            "model.review" if entry.details.get("decision").map(String::as_str) == Some("approve") => {
                if let Some(digest) = entry.details.get("digest") {
                    self.approved_digests.insert(digest.clone());
                }
            }
            "run.start" => {
                let id = entry.details.get("authorisation").ok_or("a run without an authorisation")?;
                let digest = entry.details.get("digest").ok_or("a run without a model digest")?;
                let charged =
                    micro_epsilon(entry.details.get("epsilon_charged")).ok_or("a run without a valid charge")?;
                if self.revoked_authorisations.contains(id.as_str()) {
                    return Err(format!("a run under authorisation {id} after it was revoked"));
                }
                if !self.approved_digests.contains(digest) {
                    return Err(format!(
                        "a run of model {}… that no reviewer approved",
                        &digest[..digest.len().min(16)]
                    ));
                }
                let Some((total, spent)) = self.budgets.get_mut(id.as_str()) else {
                    return Err(format!("a run under authorisation {id}, which the log never created"));
                };
                *spent += charged;
                if *spent > *total {
                    return Err(format!("authorisation {id} spent more than its budget"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Proof that a release was logged: its entry, a signed checkpoint, and the inclusion
/// proof of the entry in the tree that checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub seq: u64,
    pub entry: String,
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
}

/// Checks a receipt against `key`: the checkpoint's signature, and that the entry is leaf
/// `seq - 1` of the tree it signs. Returns the entry.
pub fn verify_receipt(receipt: &Receipt, key: &PublicKey) -> Result<AuditEntry, String> {
    let checkpoint = Checkpoint::verify(&receipt.checkpoint, key)?;
    let entry: AuditEntry =
        serde_json::from_str(&receipt.entry).map_err(|error| format!("entry is not valid: {error}"))?;
    if entry.canonical() != receipt.entry || entry.seq != receipt.seq || receipt.seq == 0 {
        return Err("the entry is not the canonical entry at that sequence number".into());
    }
    let proof: Vec<Hash> = receipt
        .inclusion_proof
        .iter()
        .map(|text| hex::decode(text).ok().and_then(|bytes| bytes.try_into().ok()))
        .collect::<Option<_>>()
        .ok_or("the inclusion proof is not a list of 32-byte hex hashes")?;
    verify_inclusion(&leaf_hash(receipt.entry.as_bytes()), receipt.seq - 1, checkpoint.size, &proof, &checkpoint.root)
        .map_err(|error| format!("the entry is not in the signed log: {error}"))?;
    Ok(entry)
}

//! Sluice's audit log and its offline verifier: entries, their canonical encoding, the
//! Merkle tree over them, signed checkpoints, release receipts, and the checks a regulator
//! runs on an export (the `sluice-verify` binary, and `sluice audit verify`).
//!
//! It owns what an entry says, how it is hashed and how a log is verified. It depends on
//! blake3, ring, serde and two encoders only, so a regulator builds the verifier without
//! the sandbox, the DP library, the database or the HTTP stack (the tidy test checks it).
//! It must not hold personal data, secrets or raw results: entries carry ids, roles,
//! actions, digests, ε and outcomes, and the constructors take no free-form data values.
//! Persistence is the gateway store's job, in the same transaction as the change an entry
//! records.

pub mod alerts;
mod checkpoint;
mod export;
pub mod keys;
pub mod merkle;
pub mod release;
#[cfg(test)]
mod spec;
pub mod tool;
mod verify;
pub mod vocabulary;
pub mod witness;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use checkpoint::{Checkpoint, signature_line};
pub use export::{LogWriter, export_text};
pub use keys::{PublicKey, SigningKey};
pub use merkle::{
    Hash, NeededSubtrees, ProofError, RootBuilder, SubtreeHashes, completed_subtrees, consistency_proof,
    consistency_proof_from, inclusion_proof, inclusion_proof_from, leaf_hash, merkle_root, range_root,
    verify_consistency, verify_inclusion,
};
pub use verify::{
    EXPORT_FORMAT, ExportCheckpoint, ExportHeader, KeyTrust, Receipt, VerifyError, VerifySummary, verify_export,
    verify_receipt,
};
pub use vocabulary::{Act, Detail};

/// Version of the canonical entry encoding.
pub const ENTRY_VERSION: u32 = 1;
/// The log's origin line in checkpoints.
pub const ORIGIN: &str = "sluice.audit/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// The action happened.
    Ok,
    /// The policy gate or authentication refused it.
    Denied,
    /// It was allowed but failed (a model trap, invalid input).
    Failed,
}

/// What to record, before the store gives it a sequence number and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub actor_id: Option<i64>,
    pub role: String,
    pub action: String,
    pub object: String,
    pub outcome: AuditOutcome,
    pub reason: String,
    pub request_id: String,
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    pub fn new(action: Act, object: impl Into<String>, outcome: AuditOutcome) -> Self {
        Self {
            actor_id: None,
            role: "anonymous".into(),
            action: action.as_str().into(),
            object: object.into(),
            outcome,
            reason: String::new(),
            request_id: String::new(),
            details: BTreeMap::new(),
        }
    }

    pub fn detail(mut self, key: Detail, value: impl ToString) -> Self {
        self.details.insert(key.as_str().into(), value.to_string());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
}

/// One log entry. Field order is the canonical order; `details` is sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub v: u32,
    pub seq: u64,
    /// Hex leaf hash of the previous entry (zeros for the first): a hash chain beside the
    /// Merkle tree, so a verifier can name the first altered entry, not just see that the
    /// root differs.
    pub prev: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: String,
    pub actor_id: Option<i64>,
    pub role: String,
    pub action: String,
    pub object: String,
    pub outcome: AuditOutcome,
    pub reason: String,
    pub details: BTreeMap<String, String>,
}

impl AuditEntry {
    pub fn from_event(event: AuditEvent, seq: u64, prev: [u8; 32], time: String) -> Self {
        Self {
            v: ENTRY_VERSION,
            seq,
            prev: hex::encode(prev),
            time,
            request_id: event.request_id,
            actor_id: event.actor_id,
            role: event.role,
            action: event.action,
            object: event.object,
            outcome: event.outcome,
            reason: event.reason,
            details: event.details,
        }
    }

    /// The canonical encoding: compact JSON, fields in declaration order, details sorted.
    /// The leaf hash covers exactly these bytes.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).expect("an entry of strings and integers always serialises")
    }
}

#[cfg(test)]
mod tests;

//! Writing the export format the verifier reads: a header naming the format, the origin
//! and the signing key, every entry's canonical line, then the signed checkpoints. The
//! gateway's export and every synthetic log (tests, benches) are written here, so there is
//! one writer for the one reader in `verify.rs`.
//!
//! It owns the layout of an export. It must not decide what is in one (the gateway picks
//! the entries and checkpoints) nor sign anything it was not asked to.

use crate::keys::{PublicKey, SigningKey};
use crate::merkle::{RootBuilder, leaf_hash};
use crate::verify::{EXPORT_FORMAT, ExportCheckpoint, ExportHeader};
use crate::{AuditEntry, AuditEvent, Checkpoint, ORIGIN};

/// An export of `entries` (canonical lines, in sequence order) and the signed checkpoint
/// notes `checkpoints`, for the log signed by `public_key`.
pub fn export_text<'a>(
    public_key: &PublicKey,
    entries: impl IntoIterator<Item = &'a str>,
    checkpoints: impl IntoIterator<Item = &'a str>,
) -> String {
    let header =
        ExportHeader { format: EXPORT_FORMAT.into(), origin: ORIGIN.into(), public_key: public_key.to_string() };
    let mut text = serde_json::to_string(&header).expect("a header of strings encodes");
    text.push('\n');
    for entry in entries {
        text.push_str(entry);
        text.push('\n');
    }
    for note in checkpoints {
        let line = ExportCheckpoint { checkpoint: note.to_owned() };
        text.push_str(&serde_json::to_string(&line).expect("a string encodes"));
        text.push('\n');
    }
    text
}

/// A log built in memory the way the gateway's store builds one (sequence numbers from 1,
/// each entry's `prev` the leaf hash of the one before, a Merkle tree over the leaves), for
/// tests, benches and tools that need a valid log without a database.
#[derive(Debug, Default)]
pub struct LogWriter {
    entries: Vec<String>,
    tree: RootBuilder,
    previous: [u8; 32],
    /// The time of the latest entry: the time its checkpoints carry.
    time: Option<String>,
}

impl LogWriter {
    /// Appends `event` at `time` (RFC 3339) and returns its canonical line.
    pub fn append(&mut self, event: AuditEvent, time: &str) -> &str {
        let seq = self.entries.len() as u64 + 1;
        let canonical = AuditEntry::from_event(event, seq, self.previous, time.into()).canonical();
        self.previous = leaf_hash(canonical.as_bytes());
        self.tree.push(self.previous);
        self.entries.push(canonical);
        self.time = Some(time.into());
        self.entries.last().expect("just pushed")
    }

    /// A checkpoint of everything appended so far, signed by `key`.
    pub fn checkpoint(&self, key: &SigningKey) -> String {
        Checkpoint { origin: ORIGIN.into(), size: self.tree.size(), root: self.tree.root(), time: self.time.clone() }
            .sign(key)
    }

    /// The export of everything appended so far, with one checkpoint over all of it.
    pub fn export(&self, key: &SigningKey) -> String {
        let checkpoint = self.checkpoint(key);
        export_text(&key.public_key(), self.entries.iter().map(String::as_str), [checkpoint.as_str()])
    }
}

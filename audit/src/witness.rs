//! Witnessing: a party outside the server (a regulator, on its own machine) keeps the
//! latest checkpoint it has seen, checks that each new one extends it by a consistency
//! proof, and cosigns it, in the shape of C2SP tlog-witness (the `add-checkpoint` request)
//! and tlog-cosignature (Ed25519, `cosignature/v1`).
//!
//! It owns the cosignature format, the witness's decision and its refusals: a rollback, a
//! fork (two different roots for one size, or a new tree the kept one is not a prefix of),
//! a bad proof or signature. It must not read or write files or speak HTTP; the CLI keeps
//! the witness's state and moves requests.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::checkpoint::{Checkpoint, key_id, signature_line};
use crate::keys::{PublicKey, SigningKey};
use crate::merkle::{Hash, verify_consistency};

/// The C2SP signed-note signature type of Ed25519 cosignatures.
pub const ED25519_COSIGNATURE: u8 = 0x04;

/// The message a cosignature signs: `cosignature/v1`, the time line, then the note body.
fn cosigned_message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// A cosignature line by witness `name` over `checkpoint` at `timestamp` (POSIX seconds):
/// `— name base64(key id ‖ timestamp (8 bytes, big-endian) ‖ Ed25519 signature)`.
pub fn cosign(checkpoint: &Checkpoint, name: &str, key: &SigningKey, timestamp: u64) -> String {
    let mut signature = key_id(name, ED25519_COSIGNATURE, &key.public_key()).to_vec();
    signature.extend_from_slice(&timestamp.to_be_bytes());
    signature.extend_from_slice(&key.sign(cosigned_message(&checkpoint.body(), timestamp).as_bytes()));
    format!("\u{2014} {name} {}", STANDARD.encode(signature))
}

/// The time (POSIX seconds) of witness `name`'s valid cosignature among `signature_lines`
/// over the checkpoint with note body `body`, if there is one.
pub fn cosigned_at(body: &str, signature_lines: &str, name: &str, key: &PublicKey) -> Option<u64> {
    let expected = key_id(name, ED25519_COSIGNATURE, key);
    signature_lines.lines().filter_map(signature_line).find_map(|(signer, signature)| {
        if signer != name || signature.len() != 4 + 8 + 64 || signature[..4] != expected {
            return None;
        }
        let timestamp = u64::from_be_bytes(signature[4..12].try_into().ok()?);
        (timestamp < 1 << 63 && key.verify(cosigned_message(body, timestamp).as_bytes(), &signature[12..]))
            .then_some(timestamp)
    })
}

/// Checks witness `name`'s cosignature on a whole note (checkpoint and signature lines);
/// returns the checkpoint and the time the witness cosigned it.
pub fn verify_cosigned(note: &str, name: &str, key: &PublicKey) -> Result<(Checkpoint, u64), String> {
    let (checkpoint, body, signatures) = Checkpoint::parse(note)?;
    let time = cosigned_at(&body, signatures, name, key).ok_or_else(|| {
        format!("no valid cosignature by witness `{name}` on the checkpoint of size {}", checkpoint.size)
    })?;
    Ok((checkpoint, time))
}

/// The largest checkpoint of an (already verified) export that witness `name` cosigned,
/// and when: (size, POSIX time).
pub fn witnessed(export: &str, name: &str, key: &PublicKey) -> Option<(u64, u64)> {
    // Checkpoint lines come after the entries; an entry line is never parsed as one.
    export
        .lines()
        .rev()
        .take_while(|line| line.starts_with(r#"{"checkpoint":"#))
        .filter_map(|line| serde_json::from_str::<crate::ExportCheckpoint>(line).ok())
        .filter_map(|line| verify_cosigned(&line.checkpoint, name, key).ok())
        .map(|(checkpoint, time)| (checkpoint.size, time))
        .max()
}

/// Why a witness refused a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessRefusal {
    /// The request's `old` size is not the size the witness keeps (tlog-witness answers
    /// 409 with the kept size): the caller asks again from that size.
    Conflict { kept_size: u64 },
    /// The log showed two histories: the same size with another root, or a new tree that
    /// the kept one is not a prefix of, or a smaller tree than one it already showed.
    Fork { kept: String, presented: String, reason: String },
    /// The request is malformed, or its checkpoint is not signed by the log's key.
    Invalid(String),
}

impl std::fmt::Display for WitnessRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WitnessRefusal::Conflict { kept_size } => {
                write!(f, "the witness keeps a checkpoint of size {kept_size}; ask from that size")
            }
            WitnessRefusal::Fork { reason, .. } => write!(f, "FORK: {reason}"),
            WitnessRefusal::Invalid(reason) => f.write_str(reason),
        }
    }
}

/// A tlog-witness `add-checkpoint` request body: `old <size>`, one base64 hash per line
/// of the consistency proof, an empty line, then the checkpoint note.
pub fn add_checkpoint_request(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut text = format!("old {old_size}\n");
    for hash in proof {
        text.push_str(&STANDARD.encode(hash));
        text.push('\n');
    }
    text.push('\n');
    text.push_str(note);
    text
}

/// A witness's decision on an `add-checkpoint` request, given the note it keeps (none
/// before its first) and the log's key: the checkpoint to keep next and the cosignature
/// line for it.
pub fn add_checkpoint(
    kept: Option<&str>,
    log_key: &PublicKey,
    request: &str,
    witness_name: &str,
    witness_key: &SigningKey,
    now: u64,
) -> Result<(String, String), WitnessRefusal> {
    let invalid = |reason: &str| WitnessRefusal::Invalid(reason.to_owned());
    let (head, note) = request.split_once("\n\n").ok_or_else(|| invalid("the request has no checkpoint"))?;
    let mut lines = head.lines();
    let old: u64 = lines
        .next()
        .and_then(|line| line.strip_prefix("old "))
        .and_then(|size| size.parse().ok())
        .ok_or_else(|| invalid("the request does not start with `old <size>`"))?;
    let proof: Vec<Hash> = lines
        .map(|line| STANDARD.decode(line).ok().and_then(|bytes| bytes.try_into().ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("a proof line is not a base64 hash of 32 bytes"))?;
    let new = Checkpoint::verify(note, log_key)
        .map_err(|error| WitnessRefusal::Invalid(format!("the checkpoint is not the log's: {error}")))?;
    let kept_checkpoint = kept.map(|kept| Checkpoint::verify(kept, log_key)).transpose().map_err(|error| {
        WitnessRefusal::Invalid(format!("the kept checkpoint does not verify with the log's key: {error}"))
    })?;
    let kept_size = kept_checkpoint.as_ref().map_or(0, |kept| kept.size);
    if old != kept_size {
        return Err(WitnessRefusal::Conflict { kept_size });
    }
    if let (Some(kept_note), Some(kept)) = (kept, &kept_checkpoint) {
        let fork =
            |reason: String| WitnessRefusal::Fork { kept: kept_note.to_owned(), presented: note.to_owned(), reason };
        if new.origin != kept.origin {
            return Err(invalid("the checkpoint is of another log (origin)"));
        }
        if new.size < kept.size {
            return Err(fork(format!("the log shows {} entries after showing {}", new.size, kept.size)));
        }
        if new.size == kept.size && new.root != kept.root {
            return Err(fork(format!("two different roots for size {}", new.size)));
        }
        if kept.size > 0 && verify_consistency(kept.size, new.size, &kept.root, &new.root, &proof).is_err() {
            return Err(fork(format!(
                "the tree of size {} does not extend the kept tree of size {}",
                new.size, kept.size
            )));
        }
        if let (Some(before), Some(after)) = (&kept.time, &new.time)
            && after < before
        {
            return Err(invalid("the checkpoint's time is before the kept one's"));
        }
    } else if !proof.is_empty() {
        return Err(invalid("a first checkpoint comes with no proof"));
    }
    let cosignature = cosign(&new, witness_name, witness_key, now);
    Ok((note.to_owned(), cosignature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, leaf_hash, merkle_root};

    fn note(leaves: &[Hash], key: &SigningKey, time: &str) -> String {
        Checkpoint {
            origin: crate::ORIGIN.into(),
            size: leaves.len() as u64,
            root: merkle_root(leaves),
            time: Some(time.into()),
        }
        .sign(key)
    }

    #[test]
    fn a_witness_cosigns_what_extends_its_view_and_reports_a_fork() {
        let log = SigningKey::generate().expect("key");
        let witness = SigningKey::generate().expect("key");
        let leaves: Vec<Hash> = (0..20u8).map(|i| leaf_hash(&[i])).collect();
        let first = note(&leaves[..5], &log, "2026-12-01T00:00:00Z");
        let request = add_checkpoint_request(0, &[], &first);
        let (kept, line) =
            add_checkpoint(None, &log.public_key(), &request, "regulator.example/w1", &witness, 1_800_000_000)
                .expect("first");
        let cosigned = format!("{kept}{line}\n");
        let (checkpoint, time) =
            verify_cosigned(&cosigned, "regulator.example/w1", &witness.public_key()).expect("cosigned");
        assert_eq!((checkpoint.size, time), (5, 1_800_000_000));
        // The log's own signature still verifies beside the cosignature.
        Checkpoint::verify(&cosigned, &log.public_key()).expect("log signature");
        assert!(verify_cosigned(&cosigned, "another/w2", &witness.public_key()).is_err());

        // Growth with a proof is cosigned; a stale `old` is a conflict.
        let second = note(&leaves[..12], &log, "2026-12-01T00:01:00Z");
        let proof = consistency_proof(&leaves[..12], 5);
        let request = add_checkpoint_request(5, &proof, &second);
        let (kept, _) = add_checkpoint(Some(&first), &log.public_key(), &request, "w", &witness, 1).expect("extends");
        assert_eq!(
            add_checkpoint(Some(&kept), &log.public_key(), &request, "w", &witness, 1),
            Err(WitnessRefusal::Conflict { kept_size: 12 })
        );

        // A rewritten history of the same size, or one that does not extend: a fork.
        let mut rewritten = leaves[..12].to_vec();
        rewritten[3] = leaf_hash(b"rewritten");
        let forked = note(&rewritten, &log, "2026-12-01T00:02:00Z");
        let request = add_checkpoint_request(12, &[], &forked);
        let refusal = add_checkpoint(Some(&kept), &log.public_key(), &request, "w", &witness, 1).expect_err("fork");
        assert!(matches!(&refusal, WitnessRefusal::Fork { reason, .. } if reason.contains("two different roots")));
        let mut longer = rewritten.clone();
        longer.extend_from_slice(&leaves[12..]);
        let forked = note(&longer, &log, "2026-12-01T00:02:00Z");
        let request = add_checkpoint_request(12, &consistency_proof(&longer, 12), &forked);
        let refusal = add_checkpoint(Some(&kept), &log.public_key(), &request, "w", &witness, 1).expect_err("fork");
        assert!(matches!(&refusal, WitnessRefusal::Fork { reason, .. } if reason.contains("does not extend")));

        // Not the log's key, or garbage: invalid, never a panic.
        let stranger = SigningKey::generate().expect("key");
        let request = add_checkpoint_request(12, &[], &note(&leaves[..12], &stranger, "2026-12-01T00:03:00Z"));
        assert!(matches!(
            add_checkpoint(Some(&kept), &log.public_key(), &request, "w", &witness, 1),
            Err(WitnessRefusal::Invalid(_))
        ));
        for garbage in ["", "old x\n\n", "old 12\n!!!\n\nnote", "\n\n\n"] {
            assert!(add_checkpoint(Some(&kept), &log.public_key(), garbage, "w", &witness, 1).is_err());
        }
    }
}

//! Signed checkpoints as C2SP tlog-checkpoint notes: origin, tree size, root and one
//! extension line with the time the log signed it, then a signature line, Ed25519 over the
//! body, named by the C2SP key id `SHA-256(origin ‖ 0x0A ‖ 0x01 ‖ key)[:4]`.
//!
//! It owns formatting, parsing and checking a checkpoint. It must not decide which key to
//! trust: the caller passes the key the regulator pinned, or the export's own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::keys::{PublicKey, SigningKey};

/// A tree head: how many entries, the Merkle root over them, and when the log signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    /// RFC 3339 UTC, as the extension line `time <time>`; none in a checkpoint without it.
    pub time: Option<String>,
}

/// The C2SP signed-note signature type of Ed25519 note signatures.
pub const ED25519_NOTE: u8 = 0x01;

/// The C2SP key id: `SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]`.
pub fn key_id(name: &str, signature_type: u8, key: &PublicKey) -> [u8; 4] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(name.as_bytes());
    context.update(&[0x0A, signature_type]);
    context.update(&key.0);
    let mut id = [0u8; 4];
    id.copy_from_slice(&context.finish().as_ref()[..4]);
    id
}

/// A signed-note signature line, `— <name> <base64>`, as (name, the decoded signature
/// field); none for any other line.
pub fn signature_line(line: &str) -> Option<(&str, Vec<u8>)> {
    let (name, signature) = line.strip_prefix("\u{2014} ")?.split_once(' ')?;
    Some((name, STANDARD.decode(signature).ok()?))
}

impl Checkpoint {
    /// The note body: origin, size, root and the time line, each ending in a newline.
    pub fn body(&self) -> String {
        let mut body = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        if let Some(time) = &self.time {
            body.push_str(&format!("time {time}\n"));
        }
        body
    }

    /// The signed note: body, a blank line, and `— origin base64(key id ‖ signature)`.
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let mut signature = key_id(&self.origin, ED25519_NOTE, &key.public_key()).to_vec();
        signature.extend_from_slice(&key.sign(body.as_bytes()));
        format!("{body}\n\u{2014} {} {}\n", self.origin, STANDARD.encode(signature))
    }

    /// Parses a note without checking any signature: the checkpoint, and the note body
    /// and signature lines as they are.
    pub fn parse(note: &str) -> Result<(Checkpoint, String, &str), String> {
        let (body, signatures) = note.split_once("\n\n").ok_or("checkpoint has no signature section")?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err("checkpoint body must start with origin, size and root".into());
        };
        let mut time = None;
        for extension in lines {
            match extension.strip_prefix("time ") {
                Some(text) if time.is_none() && !text.is_empty() && text.is_ascii() => time = Some(text.to_owned()),
                _ => return Err("a checkpoint's only extension line is one `time` line".into()),
            }
        }
        if origin.is_empty() || (size.len() > 1 && size.starts_with('0')) {
            return Err("checkpoint origin is empty or its size has a leading zero".into());
        }
        let size: u64 = size.parse().map_err(|_| "checkpoint size is not a number")?;
        let root: [u8; 32] = STANDARD
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or("checkpoint root is not 32 bytes of base64")?;
        Ok((Checkpoint { origin: origin.into(), size, root, time }, body, signatures))
    }

    /// Parses a signed note and checks the log's signature on it against `key`; other
    /// signature lines (a witness's cosignatures) are ignored, as C2SP requires.
    pub fn verify(note: &str, key: &PublicKey) -> Result<Checkpoint, String> {
        let (checkpoint, body, signatures) = Checkpoint::parse(note)?;
        let origin = checkpoint.origin.as_str();
        let expected_id = key_id(origin, ED25519_NOTE, key);
        let signed = signatures.lines().filter_map(signature_line).any(|(name, signature)| {
            name == origin
                && signature.len() == 68
                && signature[..4] == expected_id
                && key.verify(body.as_bytes(), &signature[4..])
        });
        if !signed {
            return Err("checkpoint signature does not verify with the given public key".into());
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_verify_and_tampering_fails() {
        let key = SigningKey::generate().expect("key");
        let checkpoint = Checkpoint {
            origin: "sluice.audit/v1".into(),
            size: 42,
            root: [7; 32],
            time: Some("2026-12-01T00:00:00Z".into()),
        };
        let note = checkpoint.sign(&key);
        assert_eq!(Checkpoint::verify(&note, &key.public_key()), Ok(checkpoint));
        assert!(Checkpoint::verify(&note.replace("\n42\n", "\n43\n"), &key.public_key()).is_err());
        let other = SigningKey::generate().expect("key");
        assert!(Checkpoint::verify(&note, &other.public_key()).is_err());
        assert!(Checkpoint::verify("garbage", &key.public_key()).is_err());
    }
}

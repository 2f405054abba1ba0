//! Signed checkpoints in the shape of a C2SP signed note: origin, tree size and root,
//! then a signature line, Ed25519 over the body.
//!
//! It owns formatting, parsing and checking a checkpoint. It must not decide which key to
//! trust: the caller passes the key the regulator pinned, or the export's own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::keys::{PublicKey, SigningKey};

/// A tree head: how many entries, and the Merkle root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
}

/// The 4-byte key id that names the signer in a signature line.
fn key_id(key: &PublicKey) -> [u8; 4] {
    let hash = blake3::Hasher::new_derive_key("sluice 2026 checkpoint key id v1").update(&key.0).finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(&hash.as_bytes()[..4]);
    id
}

impl Checkpoint {
    fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// The signed note: body, a blank line, and `— origin base64(key id ‖ signature)`.
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let mut signature = key_id(&key.public_key()).to_vec();
        signature.extend_from_slice(&key.sign(body.as_bytes()));
        format!("{body}\n\u{2014} {} {}\n", self.origin, STANDARD.encode(signature))
    }

    /// Parses a signed note and checks its signature against `key`.
    pub fn verify(note: &str, key: &PublicKey) -> Result<Checkpoint, String> {
        let (body, signatures) = note.split_once("\n\n").ok_or("checkpoint has no signature section")?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let (Some(origin), Some(size), Some(root), None) = (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err("checkpoint body must be exactly origin, size and root".into());
        };
        let size: u64 = size.parse().map_err(|_| "checkpoint size is not a number")?;
        let root: [u8; 32] = STANDARD
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or("checkpoint root is not 32 bytes of base64")?;
        let expected_id = key_id(key);
        let signed = signatures.lines().any(|line| {
            let Some(rest) = line.strip_prefix("\u{2014} ") else { return false };
            let Some((name, signature)) = rest.split_once(' ') else { return false };
            let Ok(signature) = STANDARD.decode(signature) else { return false };
            name == origin
                && signature.len() == 68
                && signature[..4] == expected_id
                && key.verify(body.as_bytes(), &signature[4..])
        });
        if !signed {
            return Err("checkpoint signature does not verify with the given public key".into());
        }
        Ok(Checkpoint { origin: origin.into(), size, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_verify_and_tampering_fails() {
        let key = SigningKey::generate().expect("key");
        let checkpoint = Checkpoint { origin: "sluice.audit/v1".into(), size: 42, root: [7; 32] };
        let note = checkpoint.sign(&key);
        assert_eq!(Checkpoint::verify(&note, &key.public_key()), Ok(checkpoint));
        assert!(Checkpoint::verify(&note.replace("\n42\n", "\n43\n"), &key.public_key()).is_err());
        let other = SigningKey::generate().expect("key");
        assert!(Checkpoint::verify(&note, &other.public_key()).is_err());
        assert!(Checkpoint::verify("garbage", &key.public_key()).is_err());
    }
}

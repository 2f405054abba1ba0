//! The audit signing key (Ed25519) and the public key regulators pin.
//!
//! It owns generating, parsing and using these keys. It must not read or write files (the
//! gateway stores the key with its other secrets) nor format private key bytes: the
//! signing key's `Debug` shows only its public half.

use std::fmt;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The Ed25519 key that signs audit checkpoints.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// A new key as PKCS#8 bytes, for the caller to store as a secret.
    pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map(|document| document.as_ref().to_vec())
            .map_err(|_| "generating the audit signing key failed".to_owned())
    }

    /// A key from its PKCS#8 bytes.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, String> {
        Ed25519KeyPair::from_pkcs8(bytes).map(Self).map_err(|_| "not an Ed25519 PKCS#8 key".to_owned())
    }

    /// The key whose RFC 8032 private key (seed) is `seed`: for published test vectors only;
    /// a real key comes from [`SigningKey::generate_pkcs8`].
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, String> {
        Ed25519KeyPair::from_seed_unchecked(seed).map(Self).map_err(|_| "not an Ed25519 seed".to_owned())
    }

    /// A fresh key held only in memory (tests and benchmarks).
    pub fn generate() -> Result<Self, String> {
        Self::from_pkcs8(&Self::generate_pkcs8()?)
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.0.sign(message).as_ref());
        signature
    }

    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(bytes)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public_key())
    }
}

/// An Ed25519 public key; `Display` is standard base64, the form regulators store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// A key as standard base64 of its 32 bytes, or as a C2SP vkey
    /// (`name+hex key id+base64(type ‖ key)`, see [`PublicKey::vkey`]) whose key id matches.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| "the public key must be 32 bytes".to_owned())?;
            return Ok(Self(bytes));
        }
        Self::parse_vkey(text).map(|(_, _, key)| key).map_err(|error| format!("the public key is {error}"))
    }

    /// A C2SP verifier key: its name, signature type and key, once its key id is checked.
    pub fn parse_vkey(text: &str) -> Result<(String, u8, Self), String> {
        // The name holds no `+` (signed-note); the base64 key material may.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("neither base64 of 32 bytes nor a vkey (name+keyid+base64)".into());
        };
        let material = base64::engine::general_purpose::STANDARD
            .decode(material)
            .map_err(|_| "a vkey whose key material is not base64".to_owned())?;
        let [signature_type, key @ ..] = material.as_slice() else {
            return Err("a vkey with no key material".into());
        };
        let key: [u8; 32] = key.try_into().map_err(|_| "a vkey whose Ed25519 key is not 32 bytes".to_owned())?;
        let key = Self(key);
        if name.is_empty() || hex::encode(crate::checkpoint::key_id(name, *signature_type, &key)) != id {
            return Err("a vkey whose key id does not match its name and key".into());
        }
        Ok((name.to_owned(), *signature_type, key))
    }

    /// The C2SP vkey naming this key as `name`'s signer of `signature_type` (0x01 for the
    /// log's Ed25519 note signatures, 0x04 for a witness's Ed25519 cosignatures).
    pub fn vkey(&self, name: &str, signature_type: u8) -> String {
        let mut material = vec![signature_type];
        material.extend_from_slice(&self.0);
        format!(
            "{name}+{}+{}",
            hex::encode(crate::checkpoint::key_id(name, signature_type, self)),
            base64::engine::general_purpose::STANDARD.encode(material)
        )
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0).verify(message, signature).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_refuse_garbage() {
        let pkcs8 = SigningKey::generate_pkcs8().expect("generate");
        let key = SigningKey::from_pkcs8(&pkcs8).expect("parse");
        let public = key.public_key();
        assert_eq!(PublicKey::parse(&public.to_string()), Ok(public));
        assert!(public.verify(b"message", &key.sign(b"message")));
        assert!(!public.verify(b"other", &key.sign(b"message")));
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
        assert!(PublicKey::parse("AAAA").is_err());
        let vkey = public.vkey("sluice.audit/v1", 0x01);
        assert_eq!(PublicKey::parse(&vkey), Ok(public));
        assert_eq!(PublicKey::parse_vkey(&vkey), Ok(("sluice.audit/v1".to_owned(), 0x01, public)));
        assert!(PublicKey::parse(&vkey.replace("sluice.audit/v1", "other.log")).is_err(), "a renamed vkey");
        assert!(!format!("{key:?}").contains(&hex::encode(&pkcs8)));
    }
}

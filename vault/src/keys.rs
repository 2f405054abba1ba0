//! Key material at rest: the master key that wraps data keys, data keys themselves, and
//! the private files secrets live in (the audit signing key's bytes too; the key type is
//! `sluice_audit::SigningKey`).
//!
//! It owns generating, storing (mode 0600), loading and wrapping keys. It must not log or
//! format key bytes: every key type has a redacting `Debug`, and key bytes are zeroized on
//! drop.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

/// Environment variable that may hold the master key (64 hex characters) instead of a file.
pub const MASTER_KEY_ENV: &str = "SLUICE_MASTER_KEY";

/// Fills `bytes` from the operating system's CSPRNG.
pub fn random_bytes(bytes: &mut [u8]) -> anyhow::Result<()> {
    SystemRandom::new().fill(bytes).map_err(|_| anyhow::anyhow!("the system random number generator failed"))
}

/// A 256-bit AES key, zeroized on drop.
#[derive(Clone)]
pub struct AeadKey(Zeroizing<[u8; 32]>);

impl AeadKey {
    pub fn generate() -> anyhow::Result<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut())?;
        Ok(Self(key))
    }

    /// A key from raw bytes (test vectors and benchmarks).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn from_hex(text: &str) -> anyhow::Result<Self> {
        let mut decoded =
            Zeroizing::new(hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("key is not hexadecimal"))?);
        if decoded.len() != 32 {
            bail!("key must be 32 bytes (64 hex characters), got {} bytes", decoded.len());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&decoded);
        decoded.zeroize();
        Ok(Self(key))
    }

    fn cipher(&self) -> LessSafeKey {
        // Cannot fail: the length is fixed at 32 bytes, AES-256's key size.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, self.0.as_ref()).expect("32-byte AES-256 key"))
    }

    /// Seals `plaintext` in place with `nonce`; the caller guarantees the nonce is unique
    /// under this key.
    pub fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], buffer: &mut Vec<u8>) -> anyhow::Result<()> {
        self.cipher()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buffer)
            .map_err(|_| anyhow::anyhow!("encryption failed"))
    }

    /// Opens `buffer` in place and truncates it to the plaintext; fails if a single bit
    /// of ciphertext, tag, nonce or associated data differs.
    pub fn open(&self, nonce: [u8; NONCE_LEN], aad: &[u8], buffer: &mut Vec<u8>) -> Result<(), AuthenticationFailed> {
        let plaintext_len = self
            .cipher()
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buffer)
            .map_err(|_| AuthenticationFailed)?
            .len();
        buffer.truncate(plaintext_len);
        Ok(())
    }

    /// Wraps `data_key` under this (master) key with a random nonce, bound to `context`.
    pub fn wrap(&self, data_key: &AeadKey, context: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut buffer = data_key.0.to_vec();
        self.seal(nonce, context, &mut buffer)?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&buffer);
        buffer.zeroize();
        Ok(wrapped)
    }

    pub fn unwrap_key(&self, wrapped: &[u8], context: &[u8]) -> Result<AeadKey, AuthenticationFailed> {
        if wrapped.len() != NONCE_LEN + 32 + AES_256_GCM.tag_len() {
            return Err(AuthenticationFailed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
        let mut buffer = Zeroizing::new(wrapped[NONCE_LEN..].to_vec());
        self.open(nonce, context, &mut buffer)?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&buffer);
        Ok(AeadKey(key))
    }

    /// A fingerprint that names the key without revealing it (keyed blake3, hex).
    pub fn fingerprint(&self) -> String {
        blake3::Hasher::new_derive_key("sluice 2026 master key fingerprint v1")
            .update(self.0.as_ref())
            .finalize()
            .to_hex()
            .to_string()
    }

    /// The key as the 64 hex characters a key file holds.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    /// The raw bytes, for keyed hashing inside the vault ([`crate::pseudonym`]).
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Test support: the raw bytes, to scan a data directory for leaked key material.
    pub fn expose_for_tests(&self) -> [u8; 32] {
        *self.0
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey(redacted)")
    }
}

/// Decryption or unwrapping failed authentication: wrong key, or tampered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: wrong key or tampered ciphertext")]
pub struct AuthenticationFailed;

/// Creates `path` with mode 0600 and writes `contents`; refuses to overwrite.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", path.display()))
}

/// Reads a secret file, refusing one that others can read.
pub fn read_secret_file(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mode = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!("{} is readable by other users (mode {:o}); run `chmod 600` on it", path.display(), mode & 0o777);
    }
    Ok(Zeroizing::new(fs::read(path).with_context(|| format!("reading {}", path.display()))?))
}

/// Reads a key file holding 64 hex characters.
pub fn read_key_file(path: &Path) -> anyhow::Result<AeadKey> {
    let bytes = read_secret_file(path)?;
    let text = std::str::from_utf8(&bytes).context("key file is not text")?;
    AeadKey::from_hex(text).with_context(|| format!("reading the key in {}", path.display()))
}

/// Loads the master key from `from_environment` (the text of [`MASTER_KEY_ENV`], which
/// the caller's configuration read) if given, else from `path`.
pub fn load_master_key(path: &Path, from_environment: Option<&str>) -> anyhow::Result<AeadKey> {
    if let Some(text) = from_environment {
        return AeadKey::from_hex(text).with_context(|| format!("reading the master key from ${MASTER_KEY_ENV}"));
    }
    read_key_file(path)
}

/// Creates a new master key file (0600).
pub fn create_master_key(path: &Path) -> anyhow::Result<()> {
    let key = AeadKey::generate()?;
    let text = Zeroizing::new(hex::encode(key.0.as_ref()) + "\n");
    write_secret_file(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_are_bound_to_their_context_and_master() {
        let master = AeadKey::generate().expect("key");
        let data = AeadKey::generate().expect("key");
        let wrapped = master.wrap(&data, b"dataset 1 version 1").expect("wrap");
        let unwrapped = master.unwrap_key(&wrapped, b"dataset 1 version 1").expect("unwrap");
        assert_eq!(unwrapped.expose_for_tests(), data.expose_for_tests());
        assert!(master.unwrap_key(&wrapped, b"dataset 2 version 1").is_err());
        assert!(AeadKey::generate().expect("key").unwrap_key(&wrapped, b"dataset 1 version 1").is_err());
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(master.unwrap_key(&flipped, b"dataset 1 version 1").is_err());
        assert_eq!(format!("{master:?}"), "AeadKey(redacted)");
    }

    /// Project Wycheproof's AES-GCM vectors against the implementation Sluice uses: every
    /// 256-bit key, 96-bit nonce, 128-bit tag case (the only parameters Sluice uses).
    #[test]
    fn wycheproof_aes_256_gcm_vectors() {
        use wycheproof::TestResult;
        let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).expect("vectors");
        let (mut valid, mut invalid) = (0, 0);
        for group in set.test_groups {
            if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
                continue;
            }
            for test in group.tests {
                let key = AeadKey::from_bytes(test.key.as_slice().try_into().expect("32-byte key"));
                let nonce: [u8; NONCE_LEN] = test.nonce.as_slice().try_into().expect("12-byte nonce");
                let mut sealed = [test.ct.as_slice(), test.tag.as_slice()].concat();
                let opened = key.open(nonce, &test.aad, &mut sealed);
                match test.result {
                    TestResult::Valid => {
                        assert_eq!(opened, Ok(()), "test {} must open", test.tc_id);
                        assert_eq!(sealed, test.pt.as_slice(), "test {} plaintext", test.tc_id);
                        let mut buffer = test.pt.to_vec();
                        key.seal(nonce, &test.aad, &mut buffer).expect("seal");
                        assert_eq!(
                            buffer,
                            [test.ct.as_slice(), test.tag.as_slice()].concat(),
                            "test {} ciphertext",
                            test.tc_id
                        );
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        assert!(opened.is_err(), "test {} must be refused", test.tc_id);
                        invalid += 1;
                    }
                    TestResult::Acceptable => {}
                }
            }
        }
        assert!(valid > 20 && invalid > 10, "only {valid} valid and {invalid} invalid vectors ran");
    }

    #[test]
    fn secret_files_are_private_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        create_master_key(&path).expect("create");
        assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        load_master_key(&path, None).expect("load");
        assert!(create_master_key(&path).is_err(), "must not overwrite");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = load_master_key(&path, None).expect_err("world-readable");
        assert!(error.to_string().contains("readable by other users"), "{error}");
    }
}

//! Pseudonyms of text identifiers: a unified social credit code (统一社会信用代码), a
//! resident identity number (公民身份号码) or another text key becomes, at ingest, the `i64`
//! a dataset's key column stores, under one secret per deployment so that two departments'
//! datasets carrying the same code join.
//!
//! It owns checking a code's format and check character, the keyed hash that turns it into a
//! pseudonym, and the secret's generation and (un)wrapping under the master key. It must not
//! store anything, touch the database, or put a code, a pseudonym or the secret into an error
//! or a `Debug` output: an error says which rule failed, never the value.
//!
//! Why keyed: identifiers have little entropy (a resident id is a region, a birth date and a
//! sequence number), so an unkeyed hash of one is reversed by enumeration. Under the secret
//! (held only wrapped by the master key) a pseudonym says nothing without the vault.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::keys::{AeadKey, AuthenticationFailed};

/// What the key column's CSV field holds; the schema's `pseudonym_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// A unified social credit code (GB 32100-2015): 18 characters of `0-9` and
    /// `A-H J-N P-R T U W-Y`, the last a check character.
    Uscc,
    /// A resident identity number (GB 11643-1999): 17 digits and a check character (`0-9` or `X`).
    ResidentId,
    /// Any other identifier: 1 to 128 bytes of text, taken exactly as written (trimmed).
    Text,
}

/// The 31 characters of a unified social credit code, in the order of their values.
const USCC_CHARACTERS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
const RESIDENT_ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_ID_CHECK: &[u8; 11] = b"10X98765432";
const MAX_TEXT_KEY_BYTES: usize = 128;

impl KeyFormat {
    /// The name a schema gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFormat::Uscc => "uscc",
            KeyFormat::ResidentId => "resident_id",
            KeyFormat::Text => "text",
        }
    }

    /// What the format is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            KeyFormat::Uscc => "unified social credit codes",
            KeyFormat::ResidentId => "resident identity numbers",
            KeyFormat::Text => "text keys",
        }
    }

    /// The code in the one spelling every department's copy of it shares (upper case, no
    /// surrounding space), or which rule it breaks.
    pub fn canonical(self, text: &str) -> Result<String, String> {
        let mut buffer = CodeBuffer::default();
        let bytes = self.canonical_in(text, &mut buffer)?;
        // Codes are ASCII, and a text key is a trimmed slice of `text`.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// [`KeyFormat::canonical`] written into `buffer` (which an ingest keeps for all its
    /// rows: no allocation per code), or which rule the code breaks.
    pub fn canonical_in<'a>(self, text: &str, buffer: &'a mut CodeBuffer) -> Result<&'a [u8], &'static str> {
        let bytes = text.trim().as_bytes();
        let out = &mut buffer.0;
        match self {
            KeyFormat::Uscc => {
                const NOT: &str =
                    "is not a unified social credit code (18 characters of 0-9 and A-Y without I, O, S, V, Z)";
                if bytes.len() != 18 {
                    return Err(NOT);
                }
                for (index, &byte) in bytes.iter().enumerate() {
                    let value = USCC_VALUES[usize::from(byte)];
                    if value == u8::MAX {
                        return Err(NOT);
                    }
                    out[index] = USCC_CHARACTERS[usize::from(value)];
                }
                if uscc_check_character(&out[..17]) != Some(out[17]) {
                    return Err("is not a unified social credit code (its check character is wrong)");
                }
                Ok(&out[..18])
            }
            KeyFormat::ResidentId => {
                if bytes.len() != 18
                    || !bytes[..17].iter().all(u8::is_ascii_digit)
                    || !(bytes[17].is_ascii_digit() || bytes[17].eq_ignore_ascii_case(&b'X'))
                {
                    return Err("is not a resident identity number (17 digits and a check character)");
                }
                out[..18].copy_from_slice(bytes);
                out[17] = out[17].to_ascii_uppercase();
                if resident_id_check_character(&out[..17]) != Some(out[17]) {
                    return Err("is not a resident identity number (its check character is wrong)");
                }
                Ok(&out[..18])
            }
            KeyFormat::Text if bytes.is_empty() || bytes.len() > MAX_TEXT_KEY_BYTES => {
                const _: () = assert!(MAX_TEXT_KEY_BYTES == 128, "the message below says 128");
                Err("is not a text key (1 to 128 bytes)")
            }
            KeyFormat::Text => {
                out[..bytes.len()].copy_from_slice(bytes);
                Ok(&out[..bytes.len()])
            }
        }
    }
}

/// Room for one code's canonical spelling (the longest is a text key), kept by its user
/// across codes and wiped when dropped.
pub struct CodeBuffer([u8; MAX_TEXT_KEY_BYTES]);

impl Default for CodeBuffer {
    fn default() -> Self {
        Self([0; MAX_TEXT_KEY_BYTES])
    }
}

impl fmt::Debug for CodeBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeBuffer(redacted)")
    }
}

impl Drop for CodeBuffer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Each byte's value in a unified social credit code (either case), or `u8::MAX`.
static USCC_VALUES: [u8; 256] = uscc_values();

const fn uscc_values() -> [u8; 256] {
    let mut table = [u8::MAX; 256];
    let mut index = 0;
    while index < USCC_CHARACTERS.len() {
        table[USCC_CHARACTERS[index] as usize] = index as u8;
        table[USCC_CHARACTERS[index].to_ascii_lowercase() as usize] = index as u8;
        index += 1;
    }
    table
}

/// The check character completing the first 17 characters of a unified social credit code
/// (for making example and dummy codes); `None` if a character is outside the code's alphabet.
pub fn uscc_check_character(first_17: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (&byte, weight) in first_17.iter().zip(USCC_WEIGHTS) {
        // Upper case only: a code is completed as it will be stored.
        let value = USCC_VALUES[usize::from(byte)];
        if value == u8::MAX || USCC_CHARACTERS[usize::from(value)] != byte {
            return None;
        }
        sum += u32::from(value) * weight;
    }
    (first_17.len() == 17).then(|| USCC_CHARACTERS[((31 - sum % 31) % 31) as usize])
}

/// The check character completing the first 17 digits of a resident identity number.
pub fn resident_id_check_character(first_17: &[u8]) -> Option<u8> {
    if first_17.len() != 17 || !first_17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 =
        first_17.iter().zip(RESIDENT_ID_WEIGHTS).map(|(digit, weight)| u32::from(digit - b'0') * weight).sum();
    Some(RESIDENT_ID_CHECK[(sum % 11) as usize])
}

/// The deployment's pseudonym secret. Generated once, kept only wrapped by the master key
/// (re-wrapped when it rotates, never replaced: a new secret would stop old and new
/// versions joining), zeroized on drop.
#[derive(Clone)]
pub struct PseudonymKey(AeadKey);

/// What a code becomes: the pseudonym the key column stores, and 32 more bits of the same
/// hash that let an ingest notice two different codes sharing a pseudonym.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pseudonym {
    pub value: i64,
    pub check: u32,
}

/// Binds a wrapped secret to what it is, so a wrapped data key cannot stand in for it.
const WRAP_CONTEXT: &[u8] = b"sluice 2026 key pseudonym secret v1";

impl PseudonymKey {
    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self(AeadKey::generate()?))
    }

    /// A fixed, public secret for dummy and test data only: pseudonyms under it protect nothing.
    pub fn for_dummy_data() -> Self {
        Self(AeadKey::from_bytes(*blake3::hash(b"sluice dummy data pseudonyms").as_bytes()))
    }

    pub fn wrap(&self, master: &AeadKey) -> anyhow::Result<Vec<u8>> {
        master.wrap(&self.0, WRAP_CONTEXT)
    }

    pub fn unwrap(master: &AeadKey, wrapped: &[u8]) -> Result<Self, AuthenticationFailed> {
        master.unwrap_key(wrapped, WRAP_CONTEXT).map(Self)
    }

    /// The pseudonym of a code already in its canonical spelling.
    pub fn pseudonym(&self, canonical: &str) -> Pseudonym {
        self.pseudonym_of(canonical.as_bytes())
    }

    /// [`PseudonymKey::pseudonym`] of a canonical spelling's bytes
    /// ([`KeyFormat::canonical_in`]).
    pub fn pseudonym_of(&self, canonical: &[u8]) -> Pseudonym {
        let mut hasher = blake3::Hasher::new_keyed(self.0.bytes());
        hasher.update(b"sluice 2026 key pseudonym v1\0").update(canonical);
        let hash = hasher.finalize();
        let bytes = hash.as_bytes();
        Pseudonym {
            value: i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            check: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
        }
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(redacted)")
    }
}

#[cfg(test)]
mod tests;

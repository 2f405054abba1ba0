//! Organisations as entities: ids and the one normal form of a name.
//!
//! Separation of duties compares [`OrganisationId`]s, never names; a name is normalised
//! once, when the organisation is created or renamed, so that two spellings of one
//! organisation (a trailing space, full-width letters, a different case) cannot become two
//! organisations. It owns the normal form only; it must not look anything up.

use unicode_normalization::UnicodeNormalization;

use crate::decision::{Denial, DenialReason};

/// An organisation's id, as the gateway's store assigned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct OrganisationId(pub i64);

impl From<OrganisationId> for i64 {
    fn from(id: OrganisationId) -> i64 {
        id.0
    }
}

impl From<i64> for OrganisationId {
    fn from(id: i64) -> Self {
        Self(id)
    }
}

impl std::fmt::Display for OrganisationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The longest organisation name accepted, in characters.
pub const MAX_ORGANISATION_NAME: usize = 200;

/// An organisation name as it is shown (trimmed, inner whitespace runs made one space,
/// NFC) and the key it is unique by (NFKC, so full-width letters and compatibility forms
/// fold to their plain form, then lower case). Refuses an empty name, a control
/// character, or one longer than [`MAX_ORGANISATION_NAME`].
pub fn normalise_organisation_name(name: &str) -> Result<(String, String), Denial> {
    let invalid = |message: &str| Denial::new(DenialReason::InvalidRequest, message);
    if name.chars().any(|c| c.is_control()) {
        return Err(invalid("an organisation name must not contain control characters"));
    }
    let shown: String = name.split_whitespace().collect::<Vec<_>>().join(" ").nfc().collect();
    if shown.is_empty() {
        return Err(invalid("an organisation needs a name"));
    }
    if shown.chars().count() > MAX_ORGANISATION_NAME {
        return Err(invalid("an organisation name is at most 200 characters"));
    }
    let folded: String = shown.nfkc().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((shown, folded.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_name_share_a_key() {
        let (_, key) = normalise_organisation_name("Qianbei Data Operations Co.").expect("valid");
        for spelling in [
            "Qianbei Data Operations Co. ",
            " qianbei  data   operations co.",
            "QIANBEI DATA OPERATIONS CO.",
            "Ｑｉａｎｂｅｉ Ｄａｔａ Ｏｐｅｒａｔｉｏｎｓ Ｃｏ．",
            "Qianbei\u{3000}Data Operations Co.",
        ] {
            assert_eq!(normalise_organisation_name(spelling).expect("valid").1, key, "{spelling:?}");
        }
        let (shown, _) = normalise_organisation_name("  Zunyi  Traffic Police ").expect("valid");
        assert_eq!(shown, "Zunyi Traffic Police");
        assert_ne!(normalise_organisation_name("Qianbei Data").expect("valid").1, key);
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "   ", "a\u{0}b", "line\nbreak"] {
            assert!(normalise_organisation_name(name).is_err(), "{name:?}");
        }
        assert!(normalise_organisation_name(&"x".repeat(201)).is_err());
        assert!(normalise_organisation_name(&"遵".repeat(200)).is_ok());
    }
}

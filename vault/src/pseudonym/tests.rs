//! Tests of code formats, check characters and keyed pseudonyms: the published examples
//! accepted, every single-character change refused, no value in any error, and pseudonyms
//! that depend on the secret and on nothing but the code.

use super::*;

/// Examples from the standards and from public registrations.
const USCC: [&str; 3] = ["91350100M000100Y43", "91110000802100433B", "911100001000069850"];
const RESIDENT_IDS: [&str; 2] = ["11010519491231002X", "440524188001010014"];

#[test]
fn published_codes_are_accepted_in_one_spelling() {
    for code in USCC {
        assert_eq!(KeyFormat::Uscc.canonical(code).as_deref(), Ok(code));
        assert_eq!(KeyFormat::Uscc.canonical(&format!(" {} ", code.to_ascii_lowercase())).as_deref(), Ok(code));
        assert_eq!(uscc_check_character(&code.as_bytes()[..17]), Some(code.as_bytes()[17]));
    }
    for code in RESIDENT_IDS {
        assert_eq!(KeyFormat::ResidentId.canonical(code).as_deref(), Ok(code));
        assert_eq!(KeyFormat::ResidentId.canonical(&code.to_ascii_lowercase()).as_deref(), Ok(code));
        assert_eq!(resident_id_check_character(&code.as_bytes()[..17]), Some(code.as_bytes()[17]));
    }
    assert_eq!(KeyFormat::Text.canonical("  ab-12 ").as_deref(), Ok("ab-12"));
}

#[test]
fn every_single_character_change_is_refused_without_echoing_the_code() {
    for (format, codes, alphabet) in [
        (KeyFormat::Uscc, &USCC[..], &USCC_CHARACTERS[..]),
        (KeyFormat::ResidentId, &RESIDENT_IDS[..], &b"0123456789X"[..]),
    ] {
        for code in codes {
            for position in 0..18 {
                for &replacement in alphabet {
                    let mut changed = code.as_bytes().to_vec();
                    if changed[position] == replacement {
                        continue;
                    }
                    changed[position] = replacement;
                    let changed = String::from_utf8(changed).expect("ascii");
                    let error = format.canonical(&changed).expect_err("a changed character breaks the check");
                    assert!(!error.contains(&changed) && !error.contains(&code[..6]), "{error}");
                }
            }
        }
    }
    for bad in ["", "9135010", "91350100M000100Y43X", "91350100I000100Y43", "9135010OM000100Y43", "９１３５"] {
        let error = KeyFormat::Uscc.canonical(bad).expect_err("malformed");
        assert!(error.starts_with("is not a unified social credit code"), "{error}");
    }
    for bad in ["", "1101051949123100", "1101051949123100XX", "X1010519491231002"] {
        assert!(KeyFormat::ResidentId.canonical(bad).is_err());
    }
    assert!(KeyFormat::Text.canonical("   ").is_err());
    assert!(KeyFormat::Text.canonical(&"k".repeat(129)).is_err());
}

#[test]
fn pseudonyms_depend_on_the_secret_and_the_code_alone() {
    let key = PseudonymKey::generate().expect("key");
    let other = PseudonymKey::generate().expect("key");
    let a = key.pseudonym(USCC[0]);
    assert_eq!(a, key.pseudonym(USCC[0]), "the same code gives the same pseudonym every time");
    assert_ne!(a.value, key.pseudonym(USCC[1]).value);
    assert_ne!(a.value, other.pseudonym(USCC[0]).value, "another deployment's secret gives another pseudonym");
    assert_ne!(a.value, PseudonymKey::for_dummy_data().pseudonym(USCC[0]).value);
    // 100,000 codes, 100,000 distinct pseudonyms.
    let mut seen = std::collections::HashSet::new();
    for n in 0..100_000u32 {
        assert!(seen.insert(key.pseudonym(&format!("K{n}")).value));
    }
}

#[test]
fn the_secret_survives_wrapping_only_under_its_master_key_and_never_prints() {
    let master = AeadKey::generate().expect("master");
    let key = PseudonymKey::generate().expect("key");
    let wrapped = key.wrap(&master).expect("wrap");
    let unwrapped = PseudonymKey::unwrap(&master, &wrapped).expect("unwrap");
    assert_eq!(unwrapped.pseudonym(USCC[2]), key.pseudonym(USCC[2]));
    assert!(PseudonymKey::unwrap(&AeadKey::generate().expect("other"), &wrapped).is_err());
    // A data key wrapped under the same master key is not accepted as the secret.
    let data_key = AeadKey::generate().expect("data key");
    let wrapped_data_key = master.wrap(&data_key, b"dataset 1 version 1").expect("wrap");
    assert!(PseudonymKey::unwrap(&master, &wrapped_data_key).is_err());
    let mut tampered = wrapped.clone();
    tampered[20] ^= 1;
    assert!(PseudonymKey::unwrap(&master, &tampered).is_err());
    assert_eq!(format!("{key:?}"), "PseudonymKey(redacted)");
}

/// Pseudonyms never change for a code once stored (two versions, or two departments'
/// datasets loaded years apart, must keep joining): pinned values under the public dummy
/// secret, computed outside Sluice with the reference BLAKE3 (keyed by the secret, over
/// the domain prefix and the canonical spelling), whatever the spelling ingested.
#[test]
fn pseudonyms_are_pinned_to_the_reference_hash_of_the_canonical_spelling() {
    let key = PseudonymKey::for_dummy_data();
    let mut buffer = CodeBuffer::default();
    for (format, spellings, value, check) in [
        (
            KeyFormat::Uscc,
            &["91520302MA6H7T3K2T", " 91520302ma6h7t3k2t\t"][..],
            -8_437_014_464_085_113_461_i64,
            784_333_518_u32,
        ),
        (
            KeyFormat::ResidentId,
            &["11010519491231002X", "11010519491231002x "][..],
            -7_859_036_866_087_128_793,
            2_435_023_153,
        ),
        (KeyFormat::Text, &["dummy-7", "  dummy-7"][..], 3_811_957_804_147_869_982, 1_011_065_100),
    ] {
        for spelling in spellings {
            let canonical = format.canonical_in(spelling, &mut buffer).expect("a valid code");
            assert_eq!(key.pseudonym_of(canonical), Pseudonym { value, check }, "{format:?} {spelling:?}");
            let owned = format.canonical(spelling).expect("a valid code");
            assert_eq!(key.pseudonym(&owned), Pseudonym { value, check });
        }
    }
    // The buffer holds the longest text key, and one byte more is refused.
    let longest = "k".repeat(128);
    assert_eq!(KeyFormat::Text.canonical_in(&longest, &mut buffer).expect("128 bytes").len(), 128);
    assert!(KeyFormat::Text.canonical_in(&format!("{longest}k"), &mut buffer).is_err());
}

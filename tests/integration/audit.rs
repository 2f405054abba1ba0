//! The regulator's side: an export verifies offline against a pinned key, and every
//! tampering tried here is caught and located.

use sluice_gateway::audit::verify_export;
use sluice_gateway::keys::PublicKey;

use crate::harness::World;

async fn exported_world() -> (World, String, PublicKey) {
    let world = World::new(200, 1.0).await;
    world.run().await.ok().expect("run");
    let _ = world.run_as(&world.regulator, world.authorisation_id, world.model_id).await; // a denial
    let export = world.export().await;
    let key = world.app.public_key();
    (world, export, key)
}

fn lines(export: &str) -> Vec<String> {
    export.lines().map(str::to_owned).collect()
}

fn join(lines: &[String]) -> String {
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn an_export_verifies_against_the_pinned_key() {
    let (world, export, key) = exported_world().await;
    let summary = verify_export(&export, Some(&key)).expect("verifies");
    let entries = world.app.store().audit_entries().await.expect("entries");
    assert_eq!(summary.entries as usize, entries.len());
    assert!(summary.key_pinned);
    assert_eq!(summary.denied, 1);
    assert_eq!(summary.by_action.get("run.release"), Some(&1));
    assert_eq!(summary.by_action.get("audit.export"), Some(&1), "the export records itself");
    for entry in &entries {
        for secret in [&world.operator, &world.regulator, &world.admin] {
            assert!(!entry.contains(secret.as_str()), "no token in the audit log");
        }
    }
}

#[tokio::test]
async fn every_tampering_is_caught_and_located() {
    let (_world, export, key) = exported_world().await;
    let original = lines(&export);
    let entry_count = original.len() - 2;
    let rejects = |text: String, what: &str| -> usize {
        match verify_export(&text, Some(&key)) {
            Ok(_) => panic!("{what} was accepted"),
            Err(error) => error.line,
        }
    };
    for index in 1..=entry_count {
        // One character of the entry changed.
        let mut edited = original.clone();
        edited[index] =
            edited[index].replacen("\"outcome\":\"", "\"outcome\":\"x", 1).replacen("\"v\":1", "\"v\":2", 1);
        assert_eq!(rejects(join(&edited), "an edited entry"), index + 1);
        // The entry deleted.
        let mut deleted = original.clone();
        deleted.remove(index);
        let line = rejects(join(&deleted), "a deleted entry");
        assert!(line == index + 1 || line == deleted.len(), "deletion located at {line}");
    }
    // A well-formed, canonical edit of one entry's outcome: located by the hash chain.
    for index in 1..entry_count {
        let mut recast = original.clone();
        let changed = recast[index].replacen("\"outcome\":\"ok\"", "\"outcome\":\"denied\"", 1);
        if changed == recast[index] {
            continue;
        }
        recast[index] = changed;
        assert_eq!(rejects(join(&recast), "a recast outcome"), index + 1);
    }
    // The last entry recast: nothing chains to it, so the signed root catches it.
    let mut recast_last = original.clone();
    recast_last[entry_count] = recast_last[entry_count].replacen("\"outcome\":\"ok\"", "\"outcome\":\"failed\"", 1);
    assert_eq!(rejects(join(&recast_last), "a recast last entry"), original.len());
    // Two entries swapped.
    let mut swapped = original.clone();
    swapped.swap(2, 3);
    assert_eq!(rejects(join(&swapped), "swapped entries"), 3);
    // An entry appended after signing.
    let mut extended = original.clone();
    extended.insert(entry_count + 1, original[entry_count].replace("\"seq\":", "\"seq\":1"));
    rejects(join(&extended), "an appended entry");
    // A forged key: the export names a different key than the regulator pinned.
    let forged_key = PublicKey([7; 32]);
    assert_eq!(verify_export(&export, Some(&forged_key)).expect_err("wrong key").line, 1);
    // The checkpoint's signature altered.
    let mut resigned = original.clone();
    let last = resigned.len() - 1;
    resigned[last] =
        resigned[last].replacen("\\n\\n\u{2014} sluice.audit/v1 ", "\\n\\n\u{2014} sluice.audit/v1 AAAA", 1);
    rejects(join(&resigned), "a broken signature");
}

/// The verifier must never panic, whatever it is fed.
#[test]
fn the_verifier_never_panics_on_arbitrary_input() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"{}[]\":,\n0123456789abcdefv seqtime\\\xe2\x80\x94";
    for _ in 0..3_000 {
        let length = (next() % 400) as usize;
        let bytes: Vec<u8> = (0..length).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
        let _ = verify_export(&String::from_utf8_lossy(&bytes), None);
    }
}

//! Verifier tests on synthetic logs signed with a throwaway key: content rules, and a
//! random single mutation anywhere in a 1,000-entry export is always detected and located.

use super::*;
use crate::keys::SigningKey;

fn signing_key() -> SigningKey {
    SigningKey::generate().expect("key")
}

/// An export of `events`, chained and checkpointed as the gateway would write it.
fn export(events: Vec<AuditEvent>, key: &SigningKey) -> String {
    let mut log = LogWriter::default();
    for event in events {
        log.append(event, "2026-06-01T00:00:00Z");
    }
    log.export(key)
}

fn event(action: &str, object: &str) -> AuditEvent {
    AuditEvent::new(action, object, AuditOutcome::Ok)
}

fn lawful_history() -> Vec<AuditEvent> {
    vec![
        event("authorisation.create", "authorisation:1").detail("epsilon_total", "1"),
        event("model.review", "model:1").detail("decision", "approve").detail("digest", "ab".repeat(32)),
        event("run.start", "run:1")
            .detail("authorisation", 1)
            .detail("digest", "ab".repeat(32))
            .detail("epsilon_charged", "0.5"),
        event("run.start", "run:2")
            .detail("authorisation", 1)
            .detail("digest", "ab".repeat(32))
            .detail("epsilon_charged", "0.5"),
    ]
}

#[test]
fn content_rules_name_the_first_unlawful_entry() {
    let key = signing_key();
    let public = key.public_key();
    verify_export(&export(lawful_history(), &key), Some(&public), None).expect("lawful");

    let mut overspent = lawful_history();
    overspent.push(overspent[2].clone());
    let error = verify_export(&export(overspent, &key), Some(&public), None).expect_err("overspent");
    assert_eq!(error.line, 6);
    assert!(error.problem.contains("more than its budget"), "{error}");

    let mut unapproved = lawful_history();
    unapproved[3] = unapproved[3].clone().detail("digest", "cd".repeat(32));
    let error = verify_export(&export(unapproved, &key), Some(&public), None).expect_err("unapproved");
    assert_eq!(error.line, 5);
    assert!(error.problem.contains("no reviewer approved"), "{error}");

    let mut unauthorised = lawful_history();
    unauthorised.remove(0);
    let error = verify_export(&export(unauthorised, &key), Some(&public), None).expect_err("unauthorised");
    assert_eq!(error.line, 3);
    assert!(error.problem.contains("never created"), "{error}");
}

#[test]
fn a_trusted_checkpoint_catches_rollback_and_rewrite() {
    let key = signing_key();
    let public = key.public_key();
    let history: Vec<AuditEvent> =
        (0..20).map(|index| event("catalogue.read", &format!("catalogue:{index}"))).collect();
    let full = export(history.clone(), &key);
    let kept = export(history[..12].to_vec(), &key);
    let kept_note: ExportCheckpoint =
        serde_json::from_str(kept.lines().last().expect("checkpoint line")).expect("checkpoint json");
    let summary = verify_export(&full, Some(&public), Some(&kept_note.checkpoint)).expect("extends");
    assert_eq!(summary.trusted_size, Some(12));

    let rolled_back = export(history[..8].to_vec(), &key);
    let error = verify_export(&rolled_back, Some(&public), Some(&kept_note.checkpoint)).expect_err("rolled back");
    assert!(error.problem.contains("rolled back"), "{error}");

    let mut rewritten = history.clone();
    rewritten[5] = event("catalogue.read", "catalogue:rewritten");
    let error =
        verify_export(&export(rewritten, &key), Some(&public), Some(&kept_note.checkpoint)).expect_err("rewritten");
    assert!(error.problem.contains("rewritten"), "{error}");
    assert_eq!(error.line, 13, "named at the trusted size");
}

/// A random single-bit flip, deletion, reorder or insertion anywhere in a 1,000-entry
/// export is always detected, and located at the entry it touched (or the one before, when
/// only the chain link of the next entry can show it).
#[test]
fn any_single_mutation_of_a_large_export_is_detected_and_located() {
    let key = signing_key();
    let public = key.public_key();
    let history: Vec<AuditEvent> = (0..1_000)
        .map(|index| event(["catalogue.read", "run.release", "budget.read"][index % 3], &format!("run:{index}")))
        .collect();
    let original: Vec<String> = export(history, &key).lines().map(str::to_owned).collect();
    let entries = 1..original.len() - 1;
    let mut state = 0xDEAD_BEEF_u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    for attempt in 0..600 {
        let mut lines = original.clone();
        let target = entries.start + next(entries.len());
        let expected = match attempt % 4 {
            0 => {
                let mut bytes = lines[target].clone().into_bytes();
                let position = next(bytes.len());
                bytes[position] ^= 1 << next(7);
                lines[target] = String::from_utf8_lossy(&bytes).into_owned();
                target + 1
            }
            1 => {
                lines.remove(target);
                target + 1
            }
            2 if target + 1 < entries.end => {
                lines.swap(target, target + 1);
                target + 1
            }
            _ => {
                let copy = lines[entries.start + next(entries.len())].clone();
                lines.insert(target, copy);
                target + 1
            }
        };
        let text = lines.join("\n") + "\n";
        if text == original.join("\n") + "\n" {
            continue; // a swap of two identical lines or a flip undone by lossy decoding
        }
        let error = verify_export(&text, Some(&public), None).expect_err("mutation detected");
        let last = lines.len();
        assert!(
            error.line == expected || error.line + 1 == expected || (error.line == last && expected >= last - 1),
            "attempt {attempt}: mutation at line {expected} reported at {}: {}",
            error.line,
            error.problem
        );
    }
}

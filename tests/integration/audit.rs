//! The regulator's side: an export verifies offline against a pinned key, and every
//! tampering tried here is caught and located.

use serde_json::{Value, json};
use sluice_audit::PublicKey;
use sluice_audit::{KeyTrust, verify_export};

use crate::harness::{World, expect_error};

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
    let summary = verify_export(&export, KeyTrust::Pinned(&key), None).expect("verifies");
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
    let entry_count = original.iter().filter(|line| !line.starts_with("{\"checkpoint\"")).count() - 1;
    let rejects = |text: String, what: &str| -> usize {
        match verify_export(&text, KeyTrust::Pinned(&key), None) {
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
    assert_eq!(verify_export(&export, KeyTrust::Pinned(&forged_key), None).expect_err("wrong key").line, 1);
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
        let _ = verify_export(&String::from_utf8_lossy(&bytes), KeyTrust::Embedded, None);
    }
}

/// Every release carries a receipt that verifies offline; a fetched result carries one too;
/// a receipt whose entry was changed does not verify.
#[tokio::test]
async fn releases_come_with_receipts_that_verify_offline() {
    use sluice_audit::{Receipt, verify_receipt};
    let world = World::new(200, 1.0).await;
    let run = world.run().await.ok().expect("run");
    let receipt: Receipt = serde_json::from_value(run["receipt"].clone()).expect("receipt");
    let key = world.app.public_key();
    let entry = verify_receipt(&receipt, &key).expect("verifies");
    assert_eq!((entry.action.as_str(), entry.object.clone()), ("run.release", format!("run:{}", run["run_id"])));

    let fetched = world.api.get(&format!("/v1/runs/{}", run["run_id"]), &world.operator).await.ok().expect("fetch");
    let later: Receipt = serde_json::from_value(fetched["receipt"].clone()).expect("receipt");
    verify_receipt(&later, &key).expect("a later receipt verifies too");

    let mut forged = receipt.clone();
    forged.entry = forged.entry.replace("\"outcome\":\"ok\"", "\"outcome\":\"failed\"");
    assert!(verify_receipt(&forged, &key).is_err(), "a changed entry is not in the signed log");
    let mut misplaced = receipt.clone();
    misplaced.seq -= 1;
    assert!(verify_receipt(&misplaced, &key).is_err());
    assert!(verify_receipt(&receipt, &PublicKey([9; 32])).is_err(), "another key");
}

/// The attack: an operator (or anyone passing a result on) edits a released value and
/// shows the result with its genuine receipt. The receipt's entry commits to the released
/// values, so the check names the edit; the regulator reads the same values in the log.
#[tokio::test]
async fn a_receipt_commits_to_the_released_values() {
    use sluice_audit::release::{RELEASE_DETAIL, VALUES_DETAIL, check_release, release_digest};
    use sluice_audit::tool::{Verdict, verify_receipt_file};
    use sluice_audit::{Receipt, verify_receipt};
    let world = World::new(500, 1.0).await;
    let run = world.run().await.ok().expect("run");
    let receipt: Receipt = serde_json::from_value(run["receipt"].clone()).expect("receipt");
    let entry = verify_receipt(&receipt, &world.app.public_key()).expect("verifies");
    let run_id = run["run_id"].as_i64();
    check_release(&entry, &run["outputs"], run_id).expect("the genuine values match");
    assert_eq!(entry.details[RELEASE_DETAIL.as_str()], release_digest(&run["outputs"]));
    let logged: Value = serde_json::from_str(&entry.details[VALUES_DETAIL.as_str()]).expect("values in the log");
    assert_eq!(logged, run["outputs"], "the regulator sees exactly what left");

    let mut edited = run.clone();
    let value = edited["outputs"][1]["value"].as_f64().expect("mean");
    edited["outputs"][1]["value"] = json!(value + 0.01);
    let refused = check_release(&entry, &edited["outputs"], run_id).expect_err("an edited value");
    assert!(refused.contains("differ from the ones the log recorded"), "{refused}");
    let mut widened = run.clone();
    widened["outputs"][0]["ci95_half_width"] = json!(0.0);
    assert!(check_release(&entry, &widened["outputs"], run_id).is_err(), "an edited interval");
    assert!(check_release(&entry, &run["outputs"], Some(999)).is_err(), "another run's receipt");

    // The same through the regulator's command, on files.
    let dir = tempfile::tempdir().expect("tempdir");
    let key = world.app.public_key().to_string();
    let check = |value: &Value| {
        let path = dir.path().join("run.json");
        std::fs::write(&path, value.to_string()).expect("write");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let verdict = verify_receipt_file(&path, &key, &mut out, &mut err).expect("usable");
        (verdict, String::from_utf8(out).expect("utf-8") + &String::from_utf8(err).expect("utf-8"))
    };
    let (verdict, text) = check(&run);
    assert_eq!(verdict, Verdict::Verified, "{text}");
    assert!(text.contains("the released values are the ones the log recorded"), "{text}");
    let (verdict, text) = check(&edited);
    assert_eq!(verdict, Verdict::Refused, "{text}");
}

/// Proofs served by the API check against the checkpoints it signs, and an export extends
/// a checkpoint the regulator kept from before.
#[tokio::test]
async fn served_proofs_verify_and_exports_extend_kept_checkpoints() {
    use sluice_audit::{Checkpoint, leaf_hash, verify_consistency, verify_inclusion};
    let world = World::new(100, 1.0).await;
    let kept = world.api.get("/v1/audit/checkpoint?fresh=true", &world.regulator).await.ok().expect("checkpoint");
    let kept_note = kept["checkpoint"].as_str().expect("note").to_owned();
    world.run().await.ok().expect("run");
    // Checkpoints on demand are one every five seconds, for all callers together.
    let refused = world.api.get("/v1/audit/checkpoint?fresh=true", &world.operator).await;
    expect_error(&refused, "rate_limited");
    world.clock.advance(time::Duration::seconds(5));
    let later = world.api.get("/v1/audit/checkpoint?fresh=true", &world.regulator).await.ok().expect("checkpoint");
    world.api.get("/v1/audit/checkpoint", &world.operator).await.ok().expect("the latest is always served");
    let key = world.app.public_key();
    let old = Checkpoint::verify(&kept_note, &key).expect("signed");
    let new = Checkpoint::verify(later["checkpoint"].as_str().expect("note"), &key).expect("signed");
    assert!(new.size > old.size);

    let hashes = |value: &serde_json::Value| -> Vec<[u8; 32]> {
        value["proof"]
            .as_array()
            .expect("proof")
            .iter()
            .map(|hash| hex::decode(hash.as_str().expect("hex")).expect("hex").try_into().expect("32 bytes"))
            .collect()
    };
    let path = format!("/v1/audit/proofs/consistency?from={}&to={}", old.size, new.size);
    let consistency = world.api.get(&path, &world.regulator).await.ok().expect("proof");
    verify_consistency(old.size, new.size, &old.root, &new.root, &hashes(&consistency)).expect("consistent");

    let entries = world.app.store().audit_entries().await.expect("entries");
    let seq = 3u64;
    let path = format!("/v1/audit/proofs/inclusion?seq={seq}&size={}", new.size);
    let inclusion = world.api.get(&path, &world.operator).await.ok().expect("proof");
    verify_inclusion(
        &leaf_hash(entries[seq as usize - 1].as_bytes()),
        seq - 1,
        new.size,
        &hashes(&inclusion),
        &new.root,
    )
    .expect("included");
    let bad = world.api.get(&format!("/v1/audit/proofs/inclusion?seq=0&size={}", new.size), &world.regulator).await;
    expect_error(&bad, "invalid_request");

    let export = world.export().await;
    let summary =
        verify_export(&export, KeyTrust::Pinned(&key), Some(&kept_note)).expect("extends the kept checkpoint");
    assert_eq!(summary.trusted_size, Some(old.size));
    assert!(summary.checkpoints >= 3, "{} checkpoints exported", summary.checkpoints);

    let search =
        world.api.get("/v1/audit/entries?action=run.start&outcome=ok", &world.regulator).await.ok().expect("search");
    assert_eq!(search["entries"].as_array().map(Vec::len), Some(1));
    expect_error(&world.api.get("/v1/audit/entries", &world.operator).await, "wrong_role");
}

/// A regulator's witness keeps the latest checkpoint, cosigns each one that extends it,
/// and the gateway stores and serves the cosignatures; the offline verifier can require
/// one. Cosignatures the gateway cannot verify, or from witnesses it does not know, are
/// refused.
#[tokio::test]
async fn a_witness_cosigns_checkpoints_the_gateway_serves_them_and_the_verifier_requires_one() {
    use sluice_audit::witness::{ED25519_COSIGNATURE, add_checkpoint, witnessed};
    let world = World::new(200, 2.0).await;
    let name = "cac.example/witness";
    let witness = sluice_audit::SigningKey::generate().expect("key");
    let vkey = witness.public_key().vkey(name, ED25519_COSIGNATURE);
    world.app.audit_log().add_witness(&vkey).expect("a witness's vkey");
    let log_key = world.app.public_key();

    let status = |caller: String| {
        let api = world.api.clone();
        async move {
            let report = api.get("/v1/audit/witnesses", &caller).await.ok().expect("witness status");
            let checkpoint = report["checkpoint_size"].as_u64().expect("checkpoint size");
            let ours =
                report["witnesses"].as_array().expect("witnesses").iter().find(|one| one["name"] == name).cloned();
            (checkpoint, ours.expect("the configured witness is listed"))
        }
    };
    let (_, before) = status(world.regulator.clone()).await;
    assert_eq!((before["accepted"].as_bool(), before["cosignatures"].as_u64()), (Some(true), Some(0)), "{before}");

    let request = world.api.get("/v1/audit/witness?old=0", &world.regulator).await;
    assert!(request.status.is_success(), "{}", request.text);
    let (kept, line) = add_checkpoint(None, &log_key, &request.text, name, &witness, 1_800_000_000).expect("cosigned");
    let size = sluice_audit::Checkpoint::verify(&kept, &log_key).expect("the log's").size;
    let post = |line: String, size: u64| {
        let api = world.api.clone();
        let regulator = world.regulator.clone();
        async move {
            api.post("/v1/audit/cosignatures", &regulator, &serde_json::json!({"size": size, "cosignature": line}))
                .await
        }
    };
    let stored = post(line.clone(), size).await;
    assert_eq!(stored.status.as_u16(), 201, "{}", stored.text);
    expect_error(&post(line.clone(), size).await, "conflict");
    expect_error(&post(line.replace(name, "someone.else/w"), size).await, "invalid_request");
    let forged = sluice_audit::SigningKey::generate().expect("key");
    let (_, forged_line) = add_checkpoint(None, &log_key, &request.text, name, &forged, 1).expect("cosigned");
    expect_error(&post(forged_line, size).await, "invalid_request");
    expect_error(&post(line.clone(), size + 1000).await, "not_found");
    let refused = world.api.get("/v1/audit/witness?old=0", &world.operator).await;
    expect_error(&refused, "wrong_role");

    // The witness is up to date with the checkpoint it cosigned (an operator may read the
    // status too: it is about the log, not about anyone's data).
    let (checkpoint, after) = status(world.operator.clone()).await;
    assert_eq!(after["cosignatures"].as_u64(), Some(1), "{after}");
    assert_eq!(after["latest_size"].as_u64(), Some(size), "{after}");
    assert_eq!(after["entries_behind"].as_u64(), Some(checkpoint - size), "{after}");

    // The checkpoint is served with its cosignature, and the log's signature still holds.
    let served = world.api.get("/v1/audit/checkpoint", &world.regulator).await.ok().expect("checkpoint");
    let note = served["checkpoint"].as_str().expect("note");
    assert!(note.contains(&line), "{note}");
    sluice_audit::Checkpoint::verify(note, &log_key).expect("the log's signature beside the cosignature");

    // The log grows; the witness moves on by a consistency proof from what it kept.
    world.run().await.ok().expect("run");
    let request = world.api.get(&format!("/v1/audit/witness?old={size}"), &world.regulator).await;
    let (next, line) = add_checkpoint(Some(&kept), &log_key, &request.text, name, &witness, 1_800_000_100)
        .expect("the new checkpoint extends the kept one");
    let next_size = sluice_audit::Checkpoint::verify(&next, &log_key).expect("the log's").size;
    assert!(next_size > size);
    // Until it cosigns, the status shows the witness behind the newest checkpoint.
    let (checkpoint, behind) = status(world.regulator.clone()).await;
    assert!(checkpoint >= next_size, "{checkpoint} < {next_size}");
    assert_eq!(behind["entries_behind"].as_u64(), Some(checkpoint - size), "{behind}");
    assert!(checkpoint > size, "the witness is behind by the entries since {size}");
    post(line, next_size).await.ok().expect("stored");
    let (checkpoint, caught_up) = status(world.regulator.clone()).await;
    assert_eq!(caught_up["cosignatures"].as_u64(), Some(2), "{caught_up}");
    assert_eq!(caught_up["entries_behind"].as_u64(), Some(checkpoint - next_size), "{caught_up}");
    // A witness that already moved on refuses a request from an older size.
    assert!(add_checkpoint(Some(&next), &log_key, &request.text, name, &witness, 1).is_err());

    let export = world.export().await;
    sluice_audit::verify_export(&export, sluice_audit::KeyTrust::Pinned(&log_key), None).expect("verifies");
    assert_eq!(witnessed(&export, name, &witness.public_key()), Some((next_size, 1_800_000_100)));
    assert_eq!(witnessed(&export, name, &forged.public_key()), None, "another key's cosignature is no witness");

    // The offline tool requires the witness when told to.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, &export).expect("write");
    let check = |witnesses: &[String]| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let verdict = sluice_audit::tool::verify_export_file(
            &path,
            Some(&log_key.to_string()),
            false,
            None,
            witnesses,
            &mut out,
            &mut err,
        )
        .expect("usable");
        (verdict, String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err))
    };
    let (verdict, report) = check(std::slice::from_ref(&vkey));
    assert_eq!(verdict, sluice_audit::tool::Verdict::Verified, "{report}");
    assert!(report.contains(&format!("cosigned the checkpoint of {next_size} entries")), "{report}");
    let stranger = sluice_audit::SigningKey::generate().expect("key").public_key().vkey(name, ED25519_COSIGNATURE);
    let (verdict, report) = check(&[stranger]);
    assert_eq!(verdict, sluice_audit::tool::Verdict::Refused, "{report}");
    assert!(report.contains("no checkpoint in the export carries a cosignature"), "{report}");
}

/// Proofs and checkpoints read the log's stored Merkle subtrees, not every leaf. Every
/// subtree the gateway wrote equals the root of its leaves; a log from before the subtrees
/// were kept (emptied here behind the append-only triggers) is filled in when the gateway
/// opens it, with the same hashes, and the proofs it serves still verify.
#[tokio::test]
async fn stored_subtrees_are_the_roots_of_their_leaves_and_an_old_log_is_filled_in() {
    use sluice_audit::{leaf_hash, merkle_root};
    let world = World::new(50, 3.0).await;
    for _ in 0..3 {
        world.run().await.ok().expect("run");
    }
    let entries = world.app.store().audit_entries().await.expect("entries");
    let leaves: Vec<[u8; 32]> = entries.iter().map(|entry| leaf_hash(entry.as_bytes())).collect();
    let pool = world.database.raw().await;
    let stored: Vec<(i64, i64, Vec<u8>)> =
        sqlx::query_as("SELECT level, idx, hash FROM audit_subtrees ORDER BY level, idx")
            .fetch_all(&pool)
            .await
            .expect("read");
    let expected: usize = (1..20).map(|level| leaves.len() >> level).sum();
    assert_eq!(stored.len(), expected, "one row per complete perfect subtree of {} leaves", leaves.len());
    for (level, index, hash) in &stored {
        let (start, end) = ((index << level) as usize, ((index + 1) << level) as usize);
        assert_eq!(hash.as_slice(), merkle_root(&leaves[start..end]).as_slice(), "subtree ({level}, {index})");
    }

    // A log written before the table existed: the subtrees go, the gateway reopens.
    let drop_trigger = if world.database.is_postgres() {
        "DROP TRIGGER audit_subtrees_append_only ON audit_subtrees"
    } else {
        "DROP TRIGGER audit_subtrees_no_delete"
    };
    sqlx::query(drop_trigger).execute(&pool).await.expect("drop trigger");
    sqlx::query("DELETE FROM audit_subtrees").execute(&pool).await.expect("empty");
    pool.close().await;
    let store = sluice_gateway::store::Store::open(&world.database.database, false).await.expect("reopened and filled");
    store.close().await;
    let pool = world.database.raw().await;
    let refilled: Vec<(i64, i64, Vec<u8>)> =
        sqlx::query_as("SELECT level, idx, hash FROM audit_subtrees ORDER BY level, idx")
            .fetch_all(&pool)
            .await
            .expect("read");
    assert_eq!(refilled, stored, "the filled-in subtrees are the ones written entry by entry");
    pool.close().await;

    // The running gateway's proofs over them still verify against its checkpoints.
    let checkpoint = world.api.get("/v1/audit/checkpoint?fresh=true", &world.regulator).await.ok().expect("checkpoint");
    let size = checkpoint["size"].as_u64().expect("size");
    let note =
        sluice_audit::Checkpoint::verify(checkpoint["checkpoint"].as_str().expect("note"), &world.app.public_key())
            .expect("signed");
    for seq in [1, size / 2, size] {
        let proof = world.api.get(&format!("/v1/audit/proofs/inclusion?seq={seq}&size={size}"), &world.regulator).await;
        let proof: Vec<[u8; 32]> = proof.ok().expect("proof")["proof"]
            .as_array()
            .expect("hashes")
            .iter()
            .map(|hash| hex::decode(hash.as_str().expect("hex")).expect("hex").try_into().expect("32 bytes"))
            .collect();
        let entries = world.app.store().audit_entries().await.expect("entries");
        let leaf = leaf_hash(entries[seq as usize - 1].as_bytes());
        sluice_audit::verify_inclusion(&leaf, seq - 1, size, &proof, &note.root).expect("the served proof verifies");
    }
}

//! Keeps `docs/audit-format.md` true: every test vector in it (a fenced block whose info
//! string is `text vector:NAME`) is recomputed here from the inputs the document states,
//! and the document's example export is verified with its example key.
//!
//! Tests only; it must not be the place a rule lives (those are in the modules it calls).

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::checkpoint::{ED25519_NOTE, key_id};
use crate::release::{canonical_json, release_digest};
use crate::witness::{ED25519_COSIGNATURE, cosign};
use crate::{
    Act, AuditEvent, AuditOutcome, Checkpoint, Detail, KeyTrust, LogWriter, ORIGIN, SigningKey, leaf_hash,
    verify_export,
};

const SPEC: &str = include_str!("../../docs/audit-format.md");

/// The log key's seed: RFC 8032 §7.1 TEST 1's secret key.
const LOG_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// The witness key's seed: RFC 8032 §7.1 TEST 2's secret key.
const WITNESS_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const WITNESS_NAME: &str = "cac.example/witness";
const WITNESS_TIME: u64 = 1_796_083_200;
const TIME: &str = "2026-12-01T00:00:00Z";

fn key(seed: &str) -> SigningKey {
    let seed: [u8; 32] = hex::decode(seed).expect("hex").try_into().expect("32 bytes");
    SigningKey::from_seed(&seed).expect("seed")
}

/// The example log: an administrator made at the host with a new organisation, a denied
/// authentication, and a second organisation.
fn example_events() -> Vec<AuditEvent> {
    let mut bootstrap = AuditEvent::new(Act::PrincipalBootstrap, "principal:1", AuditOutcome::Ok)
        .detail(Detail::Role, "admin")
        .detail(Detail::Organisation, 1)
        .detail(Detail::OrganisationName, "遵义市大数据发展管理局 \"Zunyi\"");
    bootstrap.actor_id = Some(1);
    bootstrap.role = "admin".into();
    let mut denied = AuditEvent::new(Act::Authenticate, "api", AuditOutcome::Denied).reason("unknown_token");
    denied.request_id = "5f1c2a9e0b7d4c13".into();
    let mut organisation = AuditEvent::new(Act::OrganisationCreate, "organisation:2", AuditOutcome::Ok)
        .detail(Detail::Name, "Qianbei Data Operations Co.");
    organisation.actor_id = Some(1);
    organisation.role = "admin".into();
    organisation.request_id = "a0c4e1f2d3b59687".into();
    vec![bootstrap, denied, organisation]
}

/// A release's outputs, as a run result shows them.
fn example_outputs() -> serde_json::Value {
    serde_json::json!([{"name": "high_risk_vehicles", "value": 1317.0, "ci95_half_width": 15.2}])
}

/// Every vector the document must show, by name.
fn vectors() -> BTreeMap<&'static str, String> {
    let log = key(LOG_SEED);
    let witness = key(WITNESS_SEED);
    let mut writer = LogWriter::default();
    let mut entries = Vec::new();
    for event in example_events() {
        entries.push(writer.append(event, TIME).to_owned());
    }
    let note = writer.checkpoint(&log);
    let checkpoint = Checkpoint::verify(&note, &log.public_key()).expect("the example checkpoint verifies");
    let export = writer.export(&log);
    let mut vectors = BTreeMap::new();
    vectors.insert("public-key", log.public_key().to_string());
    vectors.insert("log-vkey", log.public_key().vkey(ORIGIN, ED25519_NOTE));
    vectors.insert("log-key-id", hex::encode(key_id(ORIGIN, ED25519_NOTE, &log.public_key())));
    vectors.insert("entry-1", entries[0].clone());
    vectors.insert("entry-2", entries[1].clone());
    vectors.insert("entry-3", entries[2].clone());
    for (index, entry) in entries.iter().enumerate() {
        let name = ["leaf-1", "leaf-2", "leaf-3"][index];
        vectors.insert(name, hex::encode(leaf_hash(entry.as_bytes())));
    }
    vectors.insert("root-3", base64::engine::general_purpose::STANDARD.encode(checkpoint.root));
    vectors.insert("checkpoint", note.clone());
    vectors.insert("export", export);
    vectors.insert("release-values", canonical_json(&example_outputs()));
    vectors.insert("release-digest", release_digest(&example_outputs()));
    vectors.insert("witness-vkey", witness.public_key().vkey(WITNESS_NAME, ED25519_COSIGNATURE));
    vectors.insert("cosignature", cosign(&checkpoint, WITNESS_NAME, &witness, WITNESS_TIME));
    vectors
}

/// The spec's `text vector:NAME` blocks.
fn spec_blocks() -> BTreeMap<String, String> {
    let mut blocks = BTreeMap::new();
    let mut lines = SPEC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```text vector:") else { continue };
        let mut body = Vec::new();
        for line in lines.by_ref() {
            if line == "```" {
                break;
            }
            body.push(line);
        }
        let text = body.join("\n");
        // A note and an export end in a newline; the block shows the text without it.
        blocks.insert(name.trim().to_owned(), text);
    }
    blocks
}

#[test]
fn the_specification_s_vectors_are_what_the_code_computes() {
    let blocks = spec_blocks();
    let vectors = vectors();
    if std::env::var_os("SLUICE_PRINT_SPEC_VECTORS").is_some() {
        for (name, value) in &vectors {
            println!("```text vector:{name}\n{}\n```\n", value.trim_end_matches('\n'));
        }
    }
    for (name, value) in &vectors {
        let shown = blocks.get(*name).unwrap_or_else(|| panic!("docs/audit-format.md has no vector `{name}`"));
        assert_eq!(shown, value.trim_end_matches('\n'), "vector `{name}` in docs/audit-format.md");
    }
    for name in blocks.keys() {
        assert!(vectors.contains_key(name.as_str()), "docs/audit-format.md shows `{name}`, which nothing checks");
    }
}

/// The vocabulary section names every action and every detail key there is.
#[test]
fn the_specification_names_the_whole_vocabulary() {
    let vocabulary = &SPEC[SPEC.find("## 8. Vocabulary").expect("a vocabulary section")..];
    for act in Act::ALL {
        assert!(vocabulary.contains(&format!("`{act}`")), "docs/audit-format.md §8 does not name action `{act}`");
    }
    for detail in Detail::ALL {
        assert!(vocabulary.contains(&format!("`{detail}`")), "docs/audit-format.md §8 does not name detail `{detail}`");
    }
}

#[test]
fn the_specification_s_example_export_verifies_with_its_key() {
    let blocks = spec_blocks();
    let export = format!("{}\n", blocks["export"]);
    let key = crate::PublicKey::parse(&blocks["log-vkey"]).expect("the vkey parses");
    let summary = verify_export(&export, KeyTrust::Pinned(&key), None).expect("the spec's export verifies");
    assert_eq!(summary.entries, 3);
    let cosigned = format!("{}\n{}\n", blocks["checkpoint"], blocks["cosignature"]);
    let (name, _, witness) = crate::PublicKey::parse_vkey(&blocks["witness-vkey"]).expect("vkey");
    let (checkpoint, time) = crate::witness::verify_cosigned(&cosigned, &name, &witness).expect("cosigned");
    assert_eq!((checkpoint.size, time), (3, WITNESS_TIME));
}

//! The vault through the gateway: crypto-shredding leaves nothing readable on disk, key
//! rotation keeps data readable and survives interruption, partial uploads, dummy rows.

use std::path::Path;

use serde_json::json;
use sluice_gateway::service::{App, Clock};
use sluice_vault::keys::{AeadKey, read_key_file};
use sluice_vault::pseudonym::PseudonymKey;

use crate::harness::{World, expect_error};

/// Every file under `root`, recursively, with its bytes.
fn files(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push((path.clone(), std::fs::read(&path).expect("readable")));
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

async fn wrapped_keys(world: &World) -> Vec<Vec<u8>> {
    sqlx::query_scalar("SELECT wrapped_key FROM dataset_versions")
        .fetch_all(&world.database.raw().await)
        .await
        .expect("keys")
}

#[tokio::test]
async fn destroying_a_dataset_leaves_no_key_and_no_data_on_disk() {
    let world = World::new(200, 1.0).await;
    // A second version holding a canary value.
    let canary = 2_999_999.125f64;
    let mut csv = sluice::examples::vehicles_csv(50, 4);
    csv.push_str(&format!("renhuai,bus,3.5,true,1,0,{canary}\n"));
    world
        .api
        .put_csv(&format!("/v1/datasets/{}/data", world.dataset_id), &world.provider, csv.into_bytes())
        .await
        .ok()
        .expect("ingest");
    world.run().await.ok().expect("runs before destruction");

    let master = read_key_file(&world.data_dir().join("master.key")).expect("master key");
    let wrapped = wrapped_keys(&world).await;
    assert_eq!(wrapped.len(), 2);
    let data_keys: Vec<[u8; 32]> = wrapped
        .iter()
        .enumerate()
        .map(|(index, wrapped)| {
            let context = sluice_vault::chunks::ChunkContext {
                dataset_id: world.dataset_id,
                version: index as i64 + 1,
                schema_hash: [0; 32],
            };
            master.unwrap_key(wrapped, &context.key_context()).expect("unwraps").expose_for_tests()
        })
        .collect();
    for (path, bytes) in files(&world.data_dir()) {
        assert!(
            !contains(&bytes, &canary.to_le_bytes()) && !contains(&bytes, b"2999999.125"),
            "plaintext canary in {}",
            path.display()
        );
        for key in &data_keys {
            assert!(!contains(&bytes, key), "an unwrapped data key in {}", path.display());
        }
    }

    let other_provider = world.principal(json!({"name": "x", "role": "provider", "organisation": "Tax Bureau"})).await
        ["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let path = format!("/v1/datasets/{}", world.dataset_id);
    let foreign = world.api.delete(&path, &other_provider).await;
    expect_error(&foreign, "wrong_role");
    let destroyed = world.api.delete(&path, &world.provider).await;
    assert_eq!(destroyed.ok().expect("destroyed")["data_keys_deleted"], 2);
    // On either back end no stored key is left to unwrap (on PostgreSQL the files below
    // are the data directory's only: the database is the server's).
    assert!(wrapped_keys(&world).await.iter().all(Vec::is_empty), "a wrapped data key is still stored");

    for (path, bytes) in files(&world.data_dir()) {
        for key in &wrapped {
            assert!(!contains(&bytes, key), "a wrapped data key survives in {}", path.display());
        }
        for key in &data_keys {
            assert!(!contains(&bytes, key), "a data key in {}", path.display());
        }
        assert!(
            !path.starts_with(world.data_dir().join("blobs").join(format!("dataset-{}", world.dataset_id))),
            "chunks remain"
        );
    }
    let left = world.chunks().children_async(&format!("dataset-{}", world.dataset_id)).await.expect("list");
    assert!(left.is_empty(), "chunks remain in the object store: {left:?}");
    let message = expect_error(&world.run().await, "dataset_destroyed");
    assert!(message.contains("destroyed"), "{message}");
    let again =
        world.api.put_csv(&format!("/v1/datasets/{}/data", world.dataset_id), &world.provider, b"a\n".to_vec()).await;
    expect_error(&again, "conflict");
    let catalogue = world.api.get("/v1/catalogue", &world.regulator).await.ok().expect("catalogue");
    assert_eq!(catalogue["datasets"][0]["destroyed"], true);
    let entries = world.audit_entries("dataset.destroy").await;
    assert_eq!(entries.iter().filter(|entry| entry["outcome"] == "ok").count(), 1);
}

#[tokio::test]
async fn key_rotation_rewraps_every_data_key_and_keeps_data_readable() {
    let world = World::new(200, 2.0).await;
    let old_key = read_key_file(&world.data_dir().join("master.key")).expect("old key");
    let secret_before: String = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'key_pseudonym_secret'")
        .fetch_one(&world.database.raw().await)
        .await
        .expect("made when the gateway first opened");
    let before_rotation = PseudonymKey::unwrap(&old_key, &hex::decode(secret_before).expect("hex")).expect("opens");
    expect_error(&world.api.post("/v1/keys/rotate", &world.operator, &json!({})).await, "wrong_role");
    let rotated = world.api.post("/v1/keys/rotate", &world.admin, &json!({})).await.ok().expect("rotated");
    assert_eq!(rotated["data_keys_rewrapped"], 1);
    let new_key = read_key_file(&world.data_dir().join("master.key")).expect("new key");
    assert_ne!(old_key.fingerprint(), new_key.fingerprint());
    assert!(!world.data_dir().join("master.key.next").exists());

    let wrapped = &wrapped_keys(&world).await[0];
    let context = sluice_vault::chunks::ChunkContext { dataset_id: world.dataset_id, version: 1, schema_hash: [0; 32] };
    assert!(
        old_key.unwrap_key(wrapped, &context.key_context()).is_err(),
        "the old master key no longer opens anything"
    );
    new_key.unwrap_key(wrapped, &context.key_context()).expect("the new one does");
    // The key pseudonym secret is re-wrapped, not replaced: the same secret under the new key.
    let secret: String = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'key_pseudonym_secret'")
        .fetch_one(&world.database.raw().await)
        .await
        .expect("the secret is stored");
    let secret = hex::decode(secret).expect("hex");
    assert!(PseudonymKey::unwrap(&old_key, &secret).is_err(), "the old master key no longer opens the secret");
    let reopened = PseudonymKey::unwrap(&new_key, &secret).expect("the new one does");
    assert_eq!(
        reopened.pseudonym("91350100M000100Y43"),
        before_rotation.pseudonym("91350100M000100Y43"),
        "one code keeps one pseudonym across the rotation"
    );
    world.run().await.ok().expect("data still readable after rotation");
    assert_eq!(world.audit_entries("keys.rotate").await.iter().filter(|entry| entry["outcome"] == "ok").count(), 1);

    // Reopening with the old key file is refused with a clear error.
    let data_dir = world.data_dir();
    std::fs::write(data_dir.join("master.key.old"), format!("{}\n", old_key.to_hex().as_str())).expect("write");
    set_private(&data_dir.join("master.key.old"));
    let swapped = tempfile::tempdir().expect("tempdir");
    copy_dir(&data_dir, swapped.path());
    std::fs::copy(data_dir.join("master.key.old"), swapped.path().join("master.key")).expect("copy");
    let error = App::open(world.config_at(swapped.path()), Clock::System).await.expect_err("wrong key");
    assert!(format!("{error:#}").contains("does not match this data directory"), "{error:#}");

    // A rotation interrupted after its commit, before the new key file moved into place, is
    // finished on the next open; one interrupted before its commit is undone.
    let interrupted = tempfile::tempdir().expect("tempdir");
    copy_dir(&data_dir, interrupted.path());
    std::fs::rename(interrupted.path().join("master.key"), interrupted.path().join("master.key.next")).expect("rename");
    std::fs::copy(data_dir.join("master.key.old"), interrupted.path().join("master.key")).expect("copy");
    App::open(world.config_at(interrupted.path()), Clock::System).await.expect("finishes the rotation");
    assert_eq!(
        read_key_file(&interrupted.path().join("master.key")).expect("key").fingerprint(),
        new_key.fingerprint()
    );
    let stray = AeadKey::generate().expect("key");
    std::fs::write(interrupted.path().join("master.key.next"), format!("{}\n", stray.to_hex().as_str()))
        .expect("write");
    set_private(&interrupted.path().join("master.key.next"));
    App::open(world.config_at(interrupted.path()), Clock::System).await.expect("undoes the rotation");
    assert!(!interrupted.path().join("master.key.next").exists());
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn copy_dir(from: &Path, to: &Path) {
    for (path, bytes) in files(from) {
        let target = to.join(path.strip_prefix(from).expect("inside"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(&target, bytes).expect("write");
        set_private(&target);
    }
}

#[tokio::test]
async fn skip_invalid_stores_the_valid_rows_and_reports_the_rest() {
    let world = World::new(100, 1.0).await;
    let mut csv = sluice::examples::vehicles_csv(30, 5);
    csv.push_str("atlantis,suv,3.0,false,0,0,1000\n");
    csv.push_str("honghuagang,suv,3.0,maybe,0,0,1000\n");
    let path = format!("/v1/datasets/{}/data?skip_invalid=true", world.dataset_id);
    let summary = world.api.put_csv(&path, &world.provider, csv.into_bytes()).await.ok().expect("ingest");
    assert_eq!((summary["rows"].as_u64(), summary["skipped"].as_u64()), (Some(30), Some(2)));
    let examples = summary["skipped_examples"].as_array().expect("examples");
    assert_eq!(examples[0], "line 32, column `district` is not in the column's declared domain");
    assert!(!summary.to_string().contains("atlantis"), "values are never echoed");
    assert_eq!(summary["version"], 2);
}

#[tokio::test]
async fn dummy_rows_follow_the_schema_for_anyone_and_repeat_for_a_seed() {
    let world = World::new(50, 1.0).await;
    let path = format!("/v1/datasets/{}/dummy?rows=10&seed=3", world.dataset_id);
    let first = world.api.get(&path, &world.operator).await;
    assert!(first.status.is_success(), "{}", first.text);
    assert_eq!(first.text.lines().count(), 11);
    assert_eq!(world.api.get(&path, &world.operator).await.text, first.text);
    assert!(first.text.starts_with("district,vehicle_type,"));
}

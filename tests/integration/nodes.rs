//! Several gateway nodes on one database — PostgreSQL's deployment, and SQLite's when the
//! CLI runs beside `sluice serve`: one audit log with no gap and no fork, one budget that no
//! race overspends, and a node that starts or sweeps settles only the runs of dead nodes.

use std::sync::Arc;

use serde_json::json;
use sluice::client::InProcessClient;
use sluice_gateway::api::router;
use sluice_gateway::service::App;

use crate::harness::{World, expect_error};

/// Another node: a copy of the world's keys, its sealed chunks on storage shared with the
/// world (a symbolic link, standing for the shared file system or object store a platform
/// team gives every node), on the world's database.
async fn second_node(world: &World) -> (Arc<App>, InProcessClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&world.data_dir(), dir.path());
    std::os::unix::fs::symlink(world.data_dir().join("blobs"), dir.path().join("blobs")).expect("shared blobs");
    let app = App::open(world.config_at(dir.path()), world.clock.clone()).await.expect("the second node opens");
    app.gate().set_visibility_base(std::time::Duration::ZERO);
    let api = InProcessClient::new(router(app.clone()));
    (app, api, dir)
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).expect("mkdir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let name = entry.file_name().to_string_lossy().into_owned();
        // The database and the node leases are the first node's own.
        if name.starts_with("sluice.db") || name == "sluice-nodes" || name == "blobs" {
            continue;
        }
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Runs and principal creations race on two nodes against one budget: exactly the budget's
/// runs are charged, the ledger equals the charges in the log, every charged run ended
/// once, and the log both nodes appended to verifies (one sequence, one tree, checkpoints
/// sealed by either node).
#[tokio::test]
async fn two_nodes_share_one_log_and_one_budget() {
    // The vehicle-risk model spends 0.5 a run: a budget for 6 runs, 16 attempted.
    let world = World::new(200, 3.0).await;
    let (_node, second, _dir) = second_node(&world).await;
    let run_body = json!({"authorisation_id": world.authorisation_id, "model_id": world.model_id});
    let mut attempts = Vec::new();
    for index in 0..16 {
        let api = if index % 2 == 0 { world.api.clone() } else { second.clone() };
        let (operator, admin, body) = (world.operator.clone(), world.admin.clone(), run_body.clone());
        attempts.push(tokio::spawn(async move {
            let principal = json!({"name": format!("n{index}"), "role": "regulator", "organisation_id": 1});
            let (run, created) =
                tokio::join!(api.post("/v1/runs", &operator, &body), api.post("/v1/principals", &admin, &principal));
            assert!(created.status.is_success(), "{}", created.text);
            run
        }));
    }
    let mut charged = 0;
    for attempt in attempts {
        let run = attempt.await.expect("task");
        if run.status.is_success() {
            charged += 1;
        } else {
            expect_error(&run, "budget_exhausted");
        }
    }
    assert_eq!(charged, 6, "runs charged against a budget for 6");
    let starts = world.audit_entries("run.start").await;
    let ok_starts = starts.iter().filter(|entry| entry["outcome"] == "ok").count();
    assert_eq!(ok_starts, 6);
    assert_eq!(world.audit_entries("run.release").await.len(), 6, "every charged run ended once");
    let path = format!("/v1/authorisations/{}/budget", world.authorisation_id);
    let budget = second.get(&path, &world.regulator).await.ok().expect("budget");
    assert_eq!((budget["epsilon_spent"].as_f64(), budget["epsilon_remaining"].as_f64()), (Some(3.0), Some(0.0)));
    let created = world.audit_entries("principal.create").await;
    let raced = created.iter().filter(|entry| entry["outcome"] == "ok" && entry["details"]["role"] == "regulator");
    assert_eq!(raced.count(), 16 + 1, "every creation on either node is in the log (and the world's regulator)");
    // Both nodes serve the same log, and it verifies end to end.
    let first = world.export().await;
    let other = second.get("/v1/audit/export", &world.regulator).await.text;
    // Each export is audited itself, so the second node's has one entry more.
    let entries = |export: &str| -> Vec<String> {
        export.lines().filter(|line| line.contains(r#""seq":"#)).map(str::to_owned).collect()
    };
    let (first, other) = (entries(&first), entries(&other));
    assert_eq!(other.len(), first.len() + 1);
    assert!(other.starts_with(&first), "one log, whichever node serves it");
    world.assert_log_verifies().await;
}

/// A node that starts (or sweeps) leaves a run under way on a live node alone, and
/// settles it once that node is gone; a settled run cannot end a second time.
#[tokio::test]
async fn a_node_settles_only_the_runs_of_dead_nodes() {
    let world = World::new(50, 2.0).await;
    let run = world.run().await.ok().expect("run");
    let run_id = run["run_id"].as_i64().expect("id");
    // The first node is mid-run: charged and started, not finished.
    let raw = world.database.raw().await;
    sqlx::query("UPDATE runs SET state = 'running', result_json = NULL, finished_at = NULL WHERE id = $1")
        .bind(run_id)
        .execute(&raw)
        .await
        .expect("mid-run");
    let state = async || -> String {
        sqlx::query_scalar("SELECT state FROM runs WHERE id = $1").bind(run_id).fetch_one(&raw).await.expect("state")
    };

    let (second, _api, _dir) = second_node(&world).await;
    assert_eq!(state().await, "running", "a starting node must not cut off a live node's run");
    assert_eq!(second.settle_interrupted_runs().await.expect("sweep"), 0);
    assert_eq!(state().await, "running");

    // The first node dies (its lease goes with its store).
    world.app.store().close().await;
    assert_eq!(second.settle_interrupted_runs().await.expect("sweep"), 1);
    assert_eq!(state().await, "interrupted");
    let interrupted: Vec<_> = world_entries(&second, "run.release")
        .await
        .into_iter()
        .filter(|entry| entry["object"] == format!("run:{run_id}") && entry["reason"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1, "the settlement is in the log");
    // Had the first node lived on and finished, its outcome would not be stored twice.
    let mut tx = second.store().begin().await.expect("begin");
    let ended = sluice_gateway::store::Store::finish_run(&mut tx, run_id, "released", "ok", None, second.now())
        .await
        .expect("finish");
    assert!(!ended, "a settled run does not end again");
    drop(tx);
    assert_eq!(second.settle_interrupted_runs().await.expect("sweep"), 0, "settled once");
}

async fn world_entries(app: &App, action: &str) -> Vec<serde_json::Value> {
    app.store()
        .audit_entries()
        .await
        .expect("entries")
        .iter()
        .map(|text| serde_json::from_str::<serde_json::Value>(text).expect("json"))
        .filter(|entry| entry["action"] == action)
        .collect()
}

/// A node that starts does not sweep away an ingest another live node is writing to the
/// shared storage; version numbers are reserved across nodes, so the two never seal the
/// same version; once the writer is dead, the next node to start removes what it left.
#[tokio::test]
async fn a_node_sweeps_only_the_unfinished_ingests_of_dead_nodes() {
    use sluice_gateway::store::Store;
    let world = World::new(50, 1.0).await;
    // The first node is mid-ingest: version 2 reserved, chunks being staged.
    let mut tx = world.app.store().begin().await.expect("begin");
    let reserved = Store::reserve_version(&mut tx, world.dataset_id, world.app.store().node(), world.app.now())
        .await
        .expect("reserve");
    tx.commit().await.expect("commit");
    assert_eq!(reserved, 2);
    let staging = world.data_dir().join("blobs").join(format!("dataset-{}", world.dataset_id)).join("v2.partial");
    std::fs::create_dir_all(&staging).expect("mkdir");
    std::fs::write(staging.join("00000000.chunk"), b"sealed bytes").expect("write");

    let (_second, api, _dir) = second_node(&world).await;
    assert!(staging.exists(), "a starting node must not remove a live node's ingest");
    let path = format!("/v1/datasets/{}/data", world.dataset_id);
    let csv = sluice::examples::vehicles_csv(30, 3).into_bytes();
    let ingested = api.put_csv(&path, &world.provider, csv).await.ok().expect("ingest on the second node");
    assert_eq!(ingested["version"], 3, "the reserved number is not sealed twice");

    world.app.store().close().await;
    let (_third, third_api, _dir) = second_node(&world).await;
    assert!(!staging.exists(), "what the dead node left is removed");
    let csv = sluice::examples::vehicles_csv(30, 4).into_bytes();
    let ingested = third_api.put_csv(&path, &world.provider, csv).await.ok().expect("ingest on the third node");
    assert_eq!(ingested["version"], 4);
}

//! Several gateway nodes on one database — PostgreSQL's deployment, and SQLite's when the
//! CLI runs beside `sluice serve`: one audit log with no gap and no fork, one budget that no
//! race overspends, and a node that starts or sweeps settles only the runs of dead nodes.

use std::sync::Arc;

use serde_json::json;
use sluice::client::InProcessClient;
use sluice_gateway::api::router;
use sluice_gateway::service::App;

use crate::harness::{World, expect_error};

/// Another node: a copy of the world's keys, on the world's database and object store (the
/// world's `blobs/` directory, standing for the shared file system a platform team gives
/// every node, or the world's S3 prefix).
async fn second_node(world: &World) -> (Arc<App>, InProcessClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&world.data_dir(), dir.path());
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
    let ended = sluice_gateway::store::Store::finish_run(
        &mut tx,
        sluice_gateway::ids::RunId(run_id),
        sluice_gateway::store::RunState::Released,
        "ok",
        None,
        second.now(),
    )
    .await
    .expect("finish");
    assert!(!ended, "a settled run does not end again");
    tx.rollback().await.expect("rollback");
    assert_eq!(second.settle_interrupted_runs().await.expect("sweep"), 0, "settled once");
}

/// Runs are a queue in the database. Runs charged on a node with no free sandbox slot wait
/// `queued`; two other nodes' dispatchers claim them (`FOR UPDATE SKIP LOCKED` on
/// PostgreSQL) and execute each exactly once, from the stored charge alone; the requests on
/// the first node answer with those releases and their receipts.
#[tokio::test]
async fn queued_runs_are_claimed_by_other_nodes_and_run_once() {
    let world = World::new(200, 5.0).await;
    // Every sandbox slot of the first node is taken.
    let runner = world.app.runner();
    let mut taken = Vec::new();
    while runner.free_slots() > 0 {
        taken.push(runner.slot().await.expect("slot"));
    }
    let body = json!({"authorisation_id": world.authorisation_id, "model_id": world.model_id});
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let (api, operator, body) = (world.api.clone(), world.operator.clone(), body.clone());
            tokio::spawn(async move { api.post("/v1/runs", &operator, &body).await })
        })
        .collect();
    let raw = world.database.raw().await;
    let count = async |state: &str| -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE state = $1")
            .bind(state.to_owned())
            .fetch_one(&raw)
            .await
            .expect("count")
    };
    for _ in 0..600 {
        if count("queued").await == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(count("queued").await, 4, "charged, and waiting for a slot");

    let (second, _api, _dir) = second_node(&world).await;
    let (third, _api3, _dir3) = second_node(&world).await;
    let dispatchers = [second.spawn_run_dispatcher(), third.spawn_run_dispatcher()];
    let mut receipts = 0;
    for request in requests {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(120), request).await;
        let response = answer.expect("a queued run was claimed").expect("task").ok().expect("the run released");
        assert_eq!(response["state"], "released");
        assert!(response["outputs"].as_array().is_some_and(|outputs| !outputs.is_empty()));
        receipts += usize::from(response["receipt"].is_object());
    }
    assert_eq!(receipts, 4, "every answer carries its receipt");
    for dispatcher in dispatchers {
        dispatcher.abort();
    }
    drop(taken);
    assert_eq!(count("released").await, 4);
    let nodes: Vec<Option<i64>> =
        sqlx::query_scalar("SELECT node FROM runs ORDER BY id").fetch_all(&raw).await.expect("nodes");
    let others = [Some(second.store().node().0), Some(third.store().node().0)];
    assert!(nodes.iter().all(|node| others.contains(node)), "claimed by the other nodes: {nodes:?}");
    let releases = world.audit_entries("run.release").await;
    assert_eq!(releases.len(), 4, "each run ended once");
    assert!(releases.iter().all(|entry| entry["outcome"] == "ok"));
    let path = format!("/v1/authorisations/{}/budget", world.authorisation_id);
    let budget = world.api.get(&path, &world.regulator).await.ok().expect("budget");
    assert_eq!(budget["epsilon_spent"].as_f64(), Some(2.0), "charged once each");
    world.assert_log_verifies().await;
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
    use sluice_gateway::ids::DatasetId;
    use sluice_gateway::store::Store;
    let world = World::new(50, 1.0).await;
    // The first node is mid-ingest: version 2 reserved, chunks being written.
    let mut tx = world.app.store().begin().await.expect("begin");
    let reserved =
        Store::reserve_version(&mut tx, DatasetId(world.dataset_id), world.app.store().node(), world.app.now())
            .await
            .expect("reserve");
    tx.commit().await.expect("commit");
    assert_eq!(reserved, 2);
    let chunks = world.chunks();
    let writing = format!("dataset-{}/v2/00000000.chunk", world.dataset_id);
    chunks.put_async(&writing, b"sealed bytes".to_vec()).await.expect("put");

    let (_second, api, _dir) = second_node(&world).await;
    assert!(
        chunks.get_async(&writing).await.expect("get").is_some(),
        "a starting node must not remove a live node's ingest"
    );
    let path = format!("/v1/datasets/{}/data", world.dataset_id);
    let csv = sluice::examples::vehicles_csv(30, 3).into_bytes();
    let ingested = api.put_csv(&path, &world.provider, csv).await.ok().expect("ingest on the second node");
    assert_eq!(ingested["version"], 3, "the reserved number is not sealed twice");

    world.app.store().close().await;
    let (_third, third_api, _dir) = second_node(&world).await;
    assert!(chunks.get_async(&writing).await.expect("get").is_none(), "what the dead node left is removed");
    let csv = sluice::examples::vehicles_csv(30, 4).into_bytes();
    let ingested = third_api.put_csv(&path, &world.provider, csv).await.ok().expect("ingest on the third node");
    assert_eq!(ingested["version"], 4);
}

/// An insider who can write the database swaps a queued run's model bytes before another
/// node claims it: the claiming node recompiles only bytes that still hash to the reviewed
/// digest, so the run fails (its charge stands) and nothing is released.
#[tokio::test]
async fn a_queued_run_whose_model_bytes_changed_is_failed_not_run() {
    let world = World::new(100, 5.0).await;
    let runner = world.app.runner();
    let mut taken = Vec::new();
    while runner.free_slots() > 0 {
        taken.push(runner.slot().await.expect("slot"));
    }
    let body = json!({"authorisation_id": world.authorisation_id, "model_id": world.model_id});
    let (api, operator) = (world.api.clone(), world.operator.clone());
    let request = tokio::spawn(async move { api.post("/v1/runs", &operator, &body).await });
    let raw = world.database.raw().await;
    let queued = async || -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE state = 'queued'").fetch_one(&raw).await.expect("count")
    };
    for _ in 0..600 {
        if queued().await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(queued().await, 1, "charged and waiting for a slot");
    // The attack: the stored module gains a trailing custom section (still valid wasm).
    let mut module = sluice::examples::VEHICLE_RISK_WASM.to_vec();
    module.extend_from_slice(&[0, 4, 1, b'x', b'y', b'z']);
    sqlx::query("UPDATE models SET module = $1 WHERE id = $2")
        .bind(module)
        .bind(world.model_id)
        .execute(&raw)
        .await
        .expect("tamper");

    let (second, _api, _dir) = second_node(&world).await;
    let dispatcher = second.spawn_run_dispatcher();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(120), request).await;
    let response = answer.expect("the queued run was claimed").expect("task");
    expect_error(&response, "run_failed");
    dispatcher.abort();
    drop(taken);
    let releases = world.audit_entries("run.release").await;
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0]["outcome"], "failed", "nothing released from the swapped bytes");
    assert_eq!(releases[0]["reason"], "host_error");
    world.assert_log_verifies().await;
}

/// On PostgreSQL a node hears at once what another node's runs do (LISTEN/NOTIFY): the
/// charge announces the queued run and the release its end, each only once committed, and
/// for this deployment's schema only. On SQLite there is nothing to hear: nodes look.
#[tokio::test]
async fn nodes_hear_of_each_others_runs_on_postgresql() {
    use sluice_gateway::ids::RunId;
    use sluice_gateway::store::RunEvent;
    let world = World::new(50, 2.0).await;
    let (second, _api, _dir) = second_node(&world).await;
    let Some(mut events) = second.store().run_events().await.expect("listening") else {
        assert!(!world.database.is_postgres(), "PostgreSQL announces run events");
        return;
    };
    let run = world.run().await.ok().expect("run");
    let run_id = RunId(run["run_id"].as_i64().expect("id"));
    let heard = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let first = events.next().await.expect("event");
        let second = events.next().await.expect("event");
        [first, second]
    })
    .await
    .expect("both events heard");
    assert_eq!(heard, [Some((RunEvent::Queued, run_id)), Some((RunEvent::Ended, run_id))]);
}

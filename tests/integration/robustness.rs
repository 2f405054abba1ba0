//! Clients that misbehave: one that hangs up in the middle of a request must leave no
//! transaction open and no change half-done, and must not stop anyone else's requests.

use std::time::Duration;

use serde_json::json;

use crate::harness::{World, expect_error};

/// Hundreds of requests abandoned at every point of their life (the client hangs up after
/// a few microseconds to a few milliseconds): afterwards every write still works at once,
/// and every change that happened has its audit entry (nothing half-done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_request_wedges_nothing() {
    let world = World::new(20, 1.0).await;
    // Sixteen clients at a time contend for the write lock; each hangs up after a few
    // microseconds to a few milliseconds, wherever its request then is (waiting for
    // `BEGIN IMMEDIATE`, inside the transaction, committing).
    for round in 0..120u64 {
        let mut clients = Vec::new();
        for client in 0..16u64 {
            let api = world.api.clone();
            let admin = world.admin.clone();
            let index = round * 16 + client;
            clients.push(tokio::spawn(async move {
                let body = json!({ "name": format!("Abandoned {index}") });
                let patience = Duration::from_micros(index * 7919 % 4000);
                let _ = tokio::time::timeout(patience, api.post("/v1/organisations", &admin, &body)).await;
            }));
        }
        for client in clients {
            client.await.expect("client task");
        }
    }
    // Requests already under way finish on their own; the next write must not wait for a
    // lock an abandoned request left behind.
    let created = tokio::time::timeout(
        Duration::from_secs(20),
        world.api.post("/v1/organisations", &world.admin, &json!({"name": "After the storm"})),
    )
    .await
    .expect("a write after abandoned requests is not blocked");
    assert_eq!(created.status.as_u16(), 201, "{}", created.text);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let listed = world.api.get("/v1/organisations", &world.admin).await.ok().expect("organisations");
    let abandoned_rows = listed["organisations"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|organisation| organisation["name"].as_str().is_some_and(|name| name.starts_with("Abandoned")))
        .count();
    let export = world.export().await;
    let logged = export
        .lines()
        .filter(|line| line.contains(r#""action":"organisation.create""#) && line.contains(r#""outcome":"ok""#))
        .filter(|line| line.contains("Abandoned"))
        .count();
    assert_eq!(abandoned_rows, logged, "every organisation that exists has its audit entry, and no entry lacks one");
    world.assert_log_verifies().await;
}

/// Clients that hang up at random points of every kind of write — runs, ingests, principal
/// creation, application reviews — sixteen at a time: afterwards no run is left running,
/// each budget ledger equals the charges its log entries record, every version, principal,
/// review and run that exists has its audit entry (and no entry names one that does not),
/// the log verifies, and each kind of write works again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_during_any_write_leave_the_ledger_equal_to_the_log() {
    use sluice::examples::vehicles_csv;
    const ROUNDS: u64 = 20;
    const CLIENTS: u64 = 8;
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let world = std::sync::Arc::new(World::new(40, 8.0).await);
    // An application per review the storm will try, submitted and left for the bureau.
    let mut applications = Vec::new();
    for _ in 0..ROUNDS {
        applications.push(world.apply(1.0).await);
    }
    let applications = std::sync::Arc::new(applications);
    let regulators = crate::harness::organisation(&world.api, &world.admin, "Cyberspace Administration").await;
    // A fixed pseudo-random sequence (xorshift), so a failure can be replayed.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..ROUNDS {
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            let index = round * CLIENTS + client;
            // Hang up after 0 to 25 ms: before the request is read, waiting for the write
            // lock, inside the transaction, committing, or after the answer. The last
            // client of each round waits for its answer, so the storm has requests that
            // end both ways however slow the machine is.
            let random = Duration::from_micros(next() % 25_000);
            let patience = if client == CLIENTS - 1 { Duration::from_secs(120) } else { random };
            let world = world.clone();
            let applications = applications.clone();
            let cut = cut.clone();
            clients.push(tokio::spawn(async move {
                let api = &world.api;
                let request = async {
                    match index % 16 {
                        0 => {
                            let body = json!({"authorisation_id": world.authorisation_id, "model_id": world.model_id});
                            api.post("/v1/runs", &world.operator, &body).await
                        }
                        1..=4 => {
                            let path = format!("/v1/datasets/{}/data", world.dataset_id);
                            api.put_csv(&path, &world.provider, vehicles_csv(30, index).into_bytes()).await
                        }
                        5..=10 => {
                            let body = json!({"name": format!("Abandoned {index}"), "role": "regulator", "organisation_id": regulators});
                            api.post("/v1/principals", &world.admin, &body).await
                        }
                        _ => {
                            // A second review of one application is refused: a write too.
                            let application = applications[index as usize % applications.len()];
                            let path = format!("/v1/applications/{application}/reviews");
                            api.post(&path, &world.bureau, &json!({"approve": true})).await
                        }
                    }
                };
                if tokio::time::timeout(patience, request).await.is_err() {
                    cut.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        for client in clients {
            client.await.expect("client task");
        }
    }
    let cut = cut.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{cut} of {} requests were cut off", ROUNDS * CLIENTS);
    assert!(cut > 0 && cut < (ROUNDS * CLIENTS) as usize, "{cut} of the requests were cut off");

    // A request whose client hung up still runs to its end (the API detaches it): wait for
    // every one begun, then no run is left running.
    assert_eq!(world.app.in_flight().drained(Duration::from_secs(60)).await, Ok(()), "requests still under way");
    let pool = &world.database.raw().await;
    let running: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE state = 'running'").fetch_one(pool).await.expect("count");
    assert_eq!(running, 0, "runs left running once every request ended");

    // The ledgers equal the charges the log records.
    let starts = world.audit_entries("run.start").await;
    let charged: f64 = starts
        .iter()
        .filter(|entry| entry["outcome"] == "ok")
        .map(|entry| {
            entry["details"]["epsilon_charged"].as_str().and_then(|text| text.parse::<f64>().ok()).expect("charge")
        })
        .sum();
    let (authorisation_spent, dataset_spent): (i64, i64) = sqlx::query_as(
        "SELECT a.epsilon_spent, d.epsilon_spent FROM authorisations a JOIN datasets d ON d.id = $2 WHERE a.id = $1",
    )
    .bind(world.authorisation_id)
    .bind(world.dataset_id)
    .fetch_one(pool)
    .await
    .expect("ledgers");
    assert!((authorisation_spent as f64 / 1e6 - charged).abs() < 1e-9, "{authorisation_spent} vs {charged}");
    assert!((dataset_spent as f64 / 1e6 - charged).abs() < 1e-9, "{dataset_spent} vs {charged}");

    // Every object that exists has its entry, and every entry its object.
    let objects = |action: &'static str| {
        let world = world.clone();
        async move {
            let mut names: Vec<String> = world
                .audit_entries(action)
                .await
                .iter()
                .filter(|entry| entry["outcome"] == "ok")
                .map(|entry| entry["object"].as_str().expect("object").to_owned())
                .collect();
            names.sort();
            names
        }
    };
    let rows = |sql: &'static str, prefix: &'static str| async move {
        let ids: Vec<i64> = sqlx::query_scalar(sql).fetch_all(pool).await.expect(sql);
        let mut names: Vec<String> = ids.iter().map(|id| format!("{prefix}:{id}")).collect();
        names.sort();
        names
    };
    let runs = rows("SELECT id FROM runs", "run").await;
    assert_eq!(runs, objects("run.start").await, "every run row has its charge entry");
    let finished: Vec<String> = {
        let mut released: Vec<String> = world
            .audit_entries("run.release")
            .await
            .iter()
            .map(|entry| entry["object"].as_str().expect("object").to_owned())
            .collect();
        released.sort();
        released
    };
    assert_eq!(runs, finished, "every run ended once in the log");
    assert!(!runs.is_empty());
    let principals = rows("SELECT id FROM principals WHERE name LIKE 'Abandoned%'", "principal").await;
    let everyone = rows("SELECT id FROM principals", "principal").await;
    let created = objects("principal.create").await;
    for principal in &principals {
        assert!(created.contains(principal), "{principal} exists without its creation entry");
    }
    for principal in &created {
        assert!(everyone.contains(principal), "an entry names {principal}, which does not exist");
    }
    assert!(!principals.is_empty(), "some principal creations got through");
    let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dataset_versions WHERE dataset_id = $1")
        .bind(world.dataset_id)
        .fetch_one(pool)
        .await
        .expect("versions");
    assert_eq!(versions as usize, objects("dataset.ingest").await.len(), "every version has its ingest entry");
    assert!(versions > 1, "some ingests got through");
    let reviews: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM application_reviews").fetch_one(pool).await.expect("reviews");
    assert_eq!(reviews as usize, objects("application.review").await.len(), "every review has its entry");
    // The two reviews of the world's own application, and some of the storm's.
    assert!(reviews > 2, "some reviews got through");
    world.assert_log_verifies().await;

    // Each kind of write works again at once: nothing was left holding a lock.
    let again = |response: sluice::client::ApiResponse, what: &str| {
        assert!(response.status.is_success(), "{what} after the storm: {} {}", response.status, response.text);
    };
    let soon = Duration::from_secs(20);
    let run = tokio::time::timeout(soon, world.run()).await.expect("a run is not blocked");
    again(run, "a run");
    let path = format!("/v1/datasets/{}/data", world.dataset_id);
    let ingest =
        tokio::time::timeout(soon, world.api.put_csv(&path, &world.provider, vehicles_csv(30, 999).into_bytes()))
            .await
            .expect("an ingest is not blocked");
    again(ingest, "an ingest");
    let body = json!({"name": "After the storm", "role": "regulator", "organisation_id": regulators});
    let principal = tokio::time::timeout(soon, world.api.post("/v1/principals", &world.admin, &body))
        .await
        .expect("a principal creation is not blocked");
    again(principal, "a principal creation");
    let application = world.apply(1.0).await;
    let path = format!("/v1/applications/{application}/reviews");
    let review = tokio::time::timeout(soon, world.api.post(&path, &world.bureau, &json!({"approve": true})))
        .await
        .expect("a review is not blocked");
    again(review, "a review");
}

/// A kill between writing an ingest's chunks and committing its version leaves objects no
/// version row refers to (with an earlier release's local store, a staging directory too);
/// start-up removes them once their writer is dead, and the next ingest of that dataset
/// works (it used to fail with `Directory not empty` for good).
#[tokio::test]
async fn a_crash_in_the_middle_of_an_ingest_blocks_no_later_ingest() {
    use sluice::client::InProcessClient;
    use sluice::examples::vehicles_csv;
    use sluice_gateway::api::router;
    use sluice_gateway::service::App;
    let world = World::new(50, 1.0).await;
    let dataset = format!("dataset-{}", world.dataset_id);
    let chunks = world.chunks();
    // What the kill left: the next version's chunks, and a staging directory.
    for left in ["v2", "v3.partial"] {
        let key = format!("{dataset}/{left}/00000000.chunk");
        chunks.put_async(&key, b"sealed bytes nobody has a key for".to_vec()).await.expect("put");
    }
    world.app.store().close().await;

    let reopened = App::open(world.config(), world.clock.clone()).await.expect("reopens");
    let mut left = chunks.children_async(&dataset).await.expect("list");
    left.sort();
    assert_eq!(left, ["v1"], "start-up removes what no row names; an acknowledged version stays");
    let api = InProcessClient::new(router(reopened));
    let path = format!("/v1/datasets/{}/data", world.dataset_id);
    let ingested = api.put_csv(&path, &world.provider, vehicles_csv(30, 3).into_bytes()).await.ok().expect("ingest");
    assert_eq!(ingested["version"], 2);
}

/// A charged run cut off by a crash stays `running` no more: start-up settles it as
/// interrupted, logs a failed release, keeps the charge, and the operator is told why.
#[tokio::test]
async fn runs_cut_off_by_a_crash_are_settled_at_start_up() {
    use sluice::client::InProcessClient;
    use sluice_gateway::api::router;
    use sluice_gateway::service::App;
    let world = World::new(50, 1.0).await;
    let run = world.run().await.ok().expect("run");
    let run_id = run["run_id"].as_i64().expect("id");
    // The state a kill leaves mid-run: charged and started, never finished.
    sqlx::query("UPDATE runs SET state = 'running', result_json = NULL, finished_at = NULL WHERE id = $1")
        .bind(run_id)
        .execute(&world.database.raw().await)
        .await
        .expect("simulate the crash");
    world.app.store().close().await;

    let reopened = App::open(world.config(), world.clock.clone()).await.expect("reopens");
    let api = InProcessClient::new(router(reopened.clone()));
    let answer = api.get(&format!("/v1/runs/{run_id}"), &world.operator).await;
    let message = crate::harness::expect_error(&answer, "run_failed");
    assert!(message.contains("cut off by a restart"), "{message}");
    let budget = api
        .get(&format!("/v1/authorisations/{}/budget", world.authorisation_id), &world.operator)
        .await
        .ok()
        .expect("budget");
    assert_eq!(budget["epsilon_spent"].as_f64(), Some(0.5), "the charge stands");
    let export = api.get("/v1/audit/export", &world.regulator).await.text;
    assert!(
        export
            .lines()
            .any(|line| line.contains(&format!(r#""object":"run:{run_id}""#))
                && line.contains(r#""reason":"interrupted""#)),
        "the settling is in the log"
    );
    sluice_audit::verify_export(&export, sluice_audit::KeyTrust::Pinned(&reopened.public_key()), None)
        .expect("the log verifies");
    // A second start-up finds nothing left to settle.
    reopened.store().close().await;
    App::open(world.config(), world.clock.clone()).await.expect("reopens again");
}

/// A blocking reader fed by the test: an upload as slow as the test likes.
struct SlowUpload {
    receiver: std::sync::mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for SlowUpload {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let count = self.current.read(buffer)?;
            if count > 0 {
                return Ok(count);
            }
            match self.receiver.recv() {
                Ok(bytes) => self.current = std::io::Cursor::new(bytes),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// A slow upload holds up nobody else: while one provider's ingest is waiting for its
/// data, another provider destroys its own dataset and the admin rotates the master key.
/// The upload then finishes, its data key re-wrapped under the new master key, and a run
/// reads the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_blocks_no_destruction_and_no_key_rotation() {
    let world = World::new(50, 2.0).await;
    let tax = world.principal(json!({"name": "t", "role": "provider", "organisation": "Tax Bureau"})).await;
    let tax = tax["token"].as_str().expect("token").to_owned();
    let schema = sluice::examples::VEHICLES_SCHEMA.replacen("name = \"zunyi-vehicles\"", "name = \"tax-vehicles\"", 1);
    let other = world.api.post("/v1/datasets", &tax, &json!({"schema": schema, "epsilon_total": 1.0})).await;
    let other = other.ok().expect("another dataset")["id"].as_i64().expect("id");
    world
        .api
        .put_csv(&format!("/v1/datasets/{other}/data"), &tax, sluice::examples::vehicles_csv(20, 5).into_bytes())
        .await
        .ok()
        .expect("ingest");

    let csv = sluice::examples::vehicles_csv(60, 9);
    let (header, rows) = csv.split_once('\n').expect("a header");
    let (sender, receiver) = std::sync::mpsc::channel();
    sender.send(format!("{header}\n").into_bytes()).expect("send");
    let caller = world.app.authenticate(Some(&world.provider), "slow-upload").await.expect("provider");
    let app = world.app.clone();
    let dataset = sluice_gateway::ids::DatasetId(world.dataset_id);
    let upload = tokio::spawn(async move {
        let reader = SlowUpload { receiver, current: std::io::Cursor::new(Vec::new()) };
        app.ingest(&caller, dataset, reader, false, |_| {}).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!upload.is_finished(), "the upload waits for its data");

    let destroyed =
        tokio::time::timeout(Duration::from_secs(10), world.api.delete(&format!("/v1/datasets/{other}"), &tax))
            .await
            .expect("destruction does not wait for another dataset's upload");
    assert_eq!(destroyed.status.as_u16(), 200, "{}", destroyed.text);
    let rotated =
        tokio::time::timeout(Duration::from_secs(10), world.api.post("/v1/keys/rotate", &world.admin, &json!({})))
            .await
            .expect("rotation does not wait for an upload");
    assert_eq!(rotated.status.as_u16(), 200, "{}", rotated.text);

    sender.send(rows.as_bytes().to_vec()).expect("send the rows");
    drop(sender);
    let summary = upload.await.expect("task").expect("the upload commits after the rotation");
    assert_eq!(summary.version, 2);
    let run = world.run().await.ok().expect("a run reads the new version under the new master key");
    assert!(run["outputs"].as_array().is_some_and(|outputs| !outputs.is_empty()), "{run}");
    world.assert_log_verifies().await;
}

/// A principal cannot turn an expensive endpoint against everyone else: past its budget
/// (30 audit exports a minute here) it is refused with 429 `rate_limited`, the refusal is
/// recorded, another principal is unaffected, and the window slides.
#[tokio::test]
async fn a_flood_of_expensive_requests_is_limited_per_principal() {
    let world = World::new(20, 1.0).await;
    for _ in 0..30 {
        world.api.get("/v1/audit/export", &world.regulator).await.ok().expect("within the budget");
    }
    let refused = world.api.get("/v1/audit/export", &world.regulator).await;
    assert_eq!(refused.status.as_u16(), 429, "{}", refused.text);
    let message = expect_error(&refused, "rate_limited");
    assert!(message.contains("30 audit exports per minute"), "{message}");
    let other = world
        .principal(json!({"name": "second inspector", "role": "regulator", "organisation": "Flood Test Audit Bureau"}))
        .await;
    let other = other["token"].as_str().expect("token").to_owned();
    world.api.get("/v1/audit/export", &other).await.ok().expect("another principal has its own budget");
    world.clock.advance(time::Duration::seconds(61));
    world.api.get("/v1/audit/export", &world.regulator).await.ok().expect("the window slid");
    let denials = world.audit_entries("audit.export").await;
    assert!(denials.iter().any(|entry| entry["outcome"] == "denied" && entry["reason"] == "rate_limited"));
}

/// Readiness tells a load balancer the truth: ready while the node serves, not ready from
/// the moment a stop begins (while it still serves what is sent), and not ready when its
/// database does not answer; liveness stays `ok` throughout and neither needs a token.
#[tokio::test]
async fn readiness_turns_off_on_a_stop_and_when_the_database_is_gone() {
    let world = World::new(5, 1.0).await;
    let ready = world.api.get("/readyz", "").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json(), json!({ "ready": true }));

    world.app.in_flight().stop_begun();
    let stopping = world.api.get("/readyz", "").await;
    assert_eq!(stopping.status, 503, "{}", stopping.text);
    assert_eq!(stopping.json(), json!({ "ready": false, "reason": "stopping" }));
    // A stop that has begun still serves the requests sent during the grace period.
    world.api.get("/v1/catalogue", &world.operator).await.ok().expect("served while stopping");
    assert_eq!(world.api.get("/healthz", "").await.text, "ok");

    let world = World::new(5, 1.0).await;
    world.app.store().close().await;
    let gone = world.api.get("/readyz", "").await;
    assert_eq!(gone.status, 503, "{}", gone.text);
    assert_eq!(gone.json(), json!({ "ready": false, "reason": "database_unavailable" }));
    assert!(!gone.text.contains("closed") && !gone.text.contains("sqlite"), "no database detail: {}", gone.text);
    assert_eq!(world.api.get("/healthz", "").await.text, "ok");
}

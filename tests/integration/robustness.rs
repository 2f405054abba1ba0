//! Clients that misbehave: one that hangs up in the middle of a request must leave no
//! transaction open and no change half-done, and must not stop anyone else's requests.

use std::time::Duration;

use serde_json::json;

use crate::harness::World;

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

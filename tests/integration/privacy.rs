//! Privacy against a hostile operator with an approved model, through the HTTP API: what
//! the model does on one row — keep it, trap on it, burn time on it — never reaches the
//! operator except through the charged DP release.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::examples::{VEHICLE_RISK_MANIFEST, VEHICLES_SCHEMA, vehicles_csv};
use sluice_vault::schema::DatasetSchema;

use crate::harness::{RUN_VISIBILITY_STEP, World, approve_model, expect_error};

/// A hand-written vehicle model reading only the vehicle's age. With `trap_on` it traps on
/// rows whose age equals that value: the failure-as-a-bit attack.
fn age_model(trap_on: Option<f64>) -> Vec<u8> {
    let trap = trap_on
        .map(|target| format!("(if (f64.eq (local.get $age) (f64.const {target})) (then unreachable))"))
        .unwrap_or_default();
    wat::parse_str(format!(
        r#"(module
            (import "sluice" "emit" (func $emit (param i32 f64)))
            (func (export "sluice_row_v2(vehicle_age_years:f64,)->(high_risk_vehicles,mean_risk_score,expected_claims_cny,)")
                  (param $age f64) (param $present i64)
                {trap}
                (call $emit (i32.const 0) (select (f64.const 1) (f64.const 0) (f64.gt (local.get $age) (f64.const 10))))
                (call $emit (i32.const 1) (f64.div (f64.min (local.get $age) (f64.const 30)) (f64.const 30)))
                (call $emit (i32.const 2) (f64.const 100))))"#
    ))
    .expect("valid WAT")
}

/// The ages in the first `rows` rows of the test dataset.
fn real_ages(rows: usize) -> Vec<f64> {
    vehicles_csv(rows, 11).lines().skip(1).filter_map(|line| line.split(',').nth(2)?.parse().ok()).collect()
}

/// An age that occurs in the real rows but in none of the dummy rows review runs on, so
/// the hostile model passes review exactly as a real attacker's would.
fn target_age(rows: usize) -> f64 {
    let schema = DatasetSchema::from_toml(VEHICLES_SCHEMA).expect("schema");
    let dummy = sluice_vault::dummy::dummy_csv(&schema, 1_000, 0);
    let header: Vec<&str> = dummy.lines().next().expect("header").split(',').collect();
    let column = header.iter().position(|name| *name == "vehicle_age_years").expect("age column");
    let dummy_ages: Vec<f64> =
        dummy.lines().skip(1).filter_map(|line| line.split(',').nth(column)?.parse().ok()).collect();
    real_ages(rows).into_iter().find(|age| !dummy_ages.contains(age)).expect("an age only the real data has")
}

async fn approved(world: &World, module: &[u8]) -> i64 {
    let submitted = world.submit_model(module, VEHICLE_RISK_MANIFEST).await.ok().expect("submitted");
    let id = submitted["id"].as_i64().expect("id");
    world.api.post(&format!("/v1/models/{id}/reviews"), &world.bureau, &approve_model()).await.ok().expect("approved");
    id
}

/// The shape of a JSON value: its keys and value kinds, not its numbers. An inclusion
/// proof's length follows the log's size (public), so it counts as one shape.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.contains_key("inclusion_proof") => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), if key == "inclusion_proof" { Value::Null } else { shape(value) }))
                .collect(),
        ),
        Value::Object(map) => Value::Object(map.iter().map(|(key, value)| (key.clone(), shape(value))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Number(_) => Value::String("number".into()),
        Value::String(_) => Value::String("string".into()),
        other => other.clone(),
    }
}

fn visible_at(run: &Value) -> time::OffsetDateTime {
    sluice_gateway::store::parse_time(run["visible_at"].as_str().expect("visible_at")).expect("time")
}

#[tokio::test]
async fn an_operator_cannot_tell_a_model_that_traps_on_one_row_from_one_that_does_not() {
    const ROWS: usize = 300;
    let world = World::new(ROWS, 5.0).await;
    let target = target_age(ROWS);
    let honest = approved(&world, &age_model(None)).await;
    let hostile = approved(&world, &age_model(Some(target))).await;
    let base = Duration::from_millis(300);
    world.app.gate().set_visibility_base(base);

    let started = Instant::now();
    let honest_run = world.run_as(&world.operator, world.authorisation_id, honest).await;
    let honest_took = started.elapsed();
    let started = Instant::now();
    let hostile_run = world.run_as(&world.operator, world.authorisation_id, hostile).await;
    let hostile_took = started.elapsed();

    // Same status, same fields, same state: the failure is not a bit the operator reads.
    assert_eq!(honest_run.status, hostile_run.status);
    let (honest_run, hostile_run) = (honest_run.ok().expect("honest"), hostile_run.ok().expect("hostile"));
    assert_eq!(shape(&honest_run), shape(&hostile_run));
    assert_eq!(hostile_run["state"], "released");
    assert_eq!(honest_run["epsilon_charged"], hostile_run["epsilon_charged"]);
    // The visibility time was fixed before the data was read, from public facts only: the
    // two runs are due exactly the clock's step apart, whatever the models did.
    assert_eq!(visible_at(&hostile_run) - visible_at(&honest_run), RUN_VISIBILITY_STEP);
    assert!(honest_took >= base && hostile_took >= base, "{honest_took:?} {hostile_took:?}");
    // Neither the response nor its receipt mentions the failed rows.
    assert!(!hostile_run.to_string().contains("fallback"), "{hostile_run}");

    // Both runs were charged.
    let path = format!("/v1/authorisations/{}/budget", world.authorisation_id);
    let budget = world.api.get(&path, &world.operator).await.ok().expect("budget");
    assert_eq!(budget["epsilon_spent"].as_f64(), Some(1.0));

    // The audit log, which only regulators read, records how many rows fell back.
    let fallbacks = world.audit_entries("run.fallbacks").await;
    let expected = real_ages(ROWS).iter().filter(|age| **age == target).count();
    let count = |entry: &Value, key: &str| entry["details"][key].as_str().and_then(|text| text.parse::<usize>().ok());
    let counts: Vec<Option<usize>> = fallbacks.iter().map(|entry| count(entry, "fallback_rows")).collect();
    assert!(expected > 0);
    assert_eq!(counts, vec![Some(0), Some(expected)]);
    assert_eq!(count(&fallbacks[1], "trap"), Some(expected));
    // The receipt's entry names the fallback entry's leaf hash (its `prev`); a secret salt,
    // fresh for every entry, keeps the counts from being guessed against that hash.
    let salts: Vec<&str> = fallbacks.iter().map(|entry| entry["details"]["salt"].as_str().expect("salted")).collect();
    assert!(salts.iter().all(|salt| salt.len() == 32), "{salts:?}");
    assert_ne!(salts[0], salts[1]);
    let receipt_entry: Value =
        serde_json::from_str(hostile_run["receipt"]["entry"].as_str().expect("entry")).expect("json");
    assert_eq!(receipt_entry["action"], "run.release");
    assert!(!receipt_entry.to_string().contains("fallback"), "{receipt_entry}");
}

/// The published attack: a model that keeps the first row in a global and emits it for
/// every row. It is refused at upload, with the reason in the audit log.
#[tokio::test]
async fn a_model_that_keeps_a_row_in_a_global_is_refused_at_upload() {
    let world = World::new(50, 5.0).await;
    let keeper = wat::parse_str(
        r#"(module
            (import "sluice" "emit" (func $emit (param i32 f64)))
            (global $first (mut f64) (f64.const -1))
            (func (export "sluice_row_v2(vehicle_age_years:f64,)->(high_risk_vehicles,mean_risk_score,expected_claims_cny,)")
                  (param $age f64) (param i64)
                (if (f64.lt (global.get $first) (f64.const 0)) (then (global.set $first (local.get $age))))
                (call $emit (i32.const 0) (f64.const 0))
                (call $emit (i32.const 1) (global.get $first))
                (call $emit (i32.const 2) (f64.const 0))))"#,
    )
    .expect("wat");
    let message = expect_error(&world.submit_model(&keeper, VEHICLE_RISK_MANIFEST).await, "writes_global");
    assert!(message.contains("writes a global"), "{message}");
    let refused = world.audit_entries("model.submit").await;
    assert!(refused.iter().any(|entry| entry["reason"] == "writes_global"), "{refused:?}");
}

/// A model that fails on dummy rows cannot be approved: approved, it would silently release
/// defaults for every row it fails on.
#[tokio::test]
async fn a_model_whose_dummy_run_fails_cannot_be_approved() {
    let world = World::new(50, 5.0).await;
    let failing = wat::parse_str(
        r#"(module
            (import "sluice" "emit" (func $emit (param i32 f64)))
            (func (export "sluice_row_v2(vehicle_age_years:f64,)->(high_risk_vehicles,mean_risk_score,expected_claims_cny,)")
                  (param f64 i64) unreachable))"#,
    )
    .expect("wat");
    let submitted = world.submit_model(&failing, VEHICLE_RISK_MANIFEST).await.ok().expect("static review passes");
    assert_eq!(submitted["automated_results"]["dummy_run"]["outcome"], "failed");
    assert_eq!(submitted["automated_results"]["dummy_run"]["fallback_rows"]["trap"], 1_000);
    let id = submitted["id"].as_i64().expect("id");
    let review = world.api.post(&format!("/v1/models/{id}/reviews"), &world.bureau, &approve_model()).await;
    expect_error(&review, "dummy_run_failed");
}

/// The list of runs answers as each run would: an operator polling `GET /v1/runs` sees
/// `pending` until the visibility time, whatever happened (so it cannot time a run or read
/// its outcome early), and filtering by state filters what is shown, so `?state=released`
/// cannot reveal a run the answer still hides. Reviewers see stored states; an operator of
/// another organisation sees none of these runs; every page is audited.
#[tokio::test]
async fn listing_runs_reveals_nothing_their_answers_do_not() {
    let world = World::new(100, 5.0).await;
    // The clock is not moved: the run stays before its visibility time.
    let body = serde_json::json!({"authorisation_id": world.authorisation_id, "model_id": world.model_id});
    world.api.post("/v1/runs", &world.operator, &body).await.ok().expect("run");
    let run_id = world.audit_entries("run.start").await.last().expect("charged")["object"].clone();
    let list = |query: &'static str, token: String| {
        let api = world.api.clone();
        async move { api.get(&format!("/v1/runs{query}"), &token).await.ok().expect("list") }
    };
    let mine = list("", world.operator.clone()).await;
    let runs = mine["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(format!("run:{}", runs[0]["run_id"]), run_id.as_str().expect("object"));
    assert_eq!(runs[0]["state"], "pending", "released, but not yet visible: {mine}");
    assert!(mine.get("next_after").is_none(), "one page: {mine}");
    assert!(!mine.to_string().contains("outputs"), "a list carries no release: {mine}");
    let released = list("?state=released", world.operator.clone()).await;
    assert_eq!(released["runs"].as_array().map(Vec::len), Some(0), "the filter reveals nothing: {released}");
    let pending = list("?state=pending", world.operator.clone()).await;
    assert_eq!(pending["runs"].as_array().map(Vec::len), Some(1));

    // Reviewers see the stored state; an operator of another organisation sees nothing.
    let department = list("", world.department.clone()).await;
    let stored: Vec<&Value> = department["runs"].as_array().expect("runs").iter().map(|run| &run["state"]).collect();
    assert!(stored.iter().all(|state| *state != "pending"), "{department}");
    let other = list("", world.other_operator.clone()).await;
    assert_eq!(other["runs"].as_array().map(Vec::len), Some(0), "{other}");

    // Once visible, the operator sees it released.
    world.clock.advance(RUN_VISIBILITY_STEP);
    let later = list("?state=released", world.operator.clone()).await;
    assert_eq!(later["runs"].as_array().map(Vec::len), Some(1), "{later}");

    // Bad queries are refused in the JSON shape; every page answered was recorded.
    expect_error(&world.api.get("/v1/runs?limit=0", &world.operator).await, "invalid_request");
    expect_error(&world.api.get("/v1/runs?state=stolen", &world.operator).await, "invalid_request");
    expect_error(&world.api.get("/v1/runs?colour=red", &world.operator).await, "invalid_request");
    assert_eq!(world.audit_entries("run.list").await.len(), 6);
}

/// Pages follow a cursor: every run the caller may read appears once across the pages,
/// in id order.
#[tokio::test]
async fn runs_are_listed_a_page_at_a_time() {
    let world = World::new(50, 5.0).await;
    for _ in 0..5 {
        world.run().await.ok().expect("run");
    }
    let mut seen = Vec::new();
    let mut path = "/v1/runs?limit=2".to_owned();
    loop {
        let page = world.api.get(&path, &world.operator).await.ok().expect("page");
        let runs = page["runs"].as_array().expect("runs");
        assert!(runs.len() <= 2);
        seen.extend(runs.iter().map(|run| run["run_id"].as_i64().expect("id")));
        match page["next_after"].as_i64() {
            Some(after) => path = format!("/v1/runs?limit=2&after={after}"),
            None => break,
        }
    }
    let charged: Vec<i64> = world
        .audit_entries("run.start")
        .await
        .iter()
        .filter(|entry| entry["outcome"] == "ok")
        .map(|entry| entry["object"].as_str().expect("object")["run:".len()..].parse().expect("id"))
        .collect();
    assert_eq!(seen, charged);
    assert_eq!(seen.len(), 5, "budget 5.0 at 0.5 a run");
}

//! The vertical slice through the HTTP API: a release, the budget, and every denial the
//! foundation promises, each with a clear error and an audit entry.

use serde_json::json;
use sluice::examples::{VEHICLE_RISK_MANIFEST, VEHICLE_RISK_WASM};

use crate::harness::{World, expect_error, time};

#[tokio::test]
async fn a_run_releases_noisy_aggregates_and_charges_the_budget() {
    let world = World::new(3_000, 1.0).await;
    let first = world.run().await.ok().expect("first run");
    assert_eq!(first["rows"], 3_000);
    assert_eq!(first["epsilon_charged"], 0.5);
    assert_eq!(first["authorisation_epsilon_remaining"], 0.5);
    let outputs = first["outputs"].as_array().expect("outputs");
    let names: Vec<&str> = outputs.iter().map(|output| output["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["high_risk_vehicles", "mean_risk_score", "expected_claims_cny"]);
    for output in outputs {
        assert!(output["epsilon"].as_f64().expect("epsilon") <= 0.2 + 1e-12);
        assert!(output["ci95_half_width"].as_f64().expect("ci") > 0.0);
    }
    let mean = outputs[1]["value"].as_f64().expect("mean");
    assert!((0.0..=1.0).contains(&mean), "mean risk score {mean}");

    let run_id = first["run_id"].as_i64().expect("run id");
    let fetched = world.api.get(&format!("/v1/runs/{run_id}"), &world.operator).await.ok().expect("fetch");
    assert_eq!(fetched["outputs"], first["outputs"], "a fetched result is the stored release, not a new draw");
    let other = world.api.get(&format!("/v1/runs/{run_id}"), &world.other_operator).await;
    expect_error(&other, "authorisation_not_yours");
    // No reviewer has a part in a result that was not held (regulators read it in the log).
    for reviewer in [&world.bureau, &world.department] {
        expect_error(&world.api.get(&format!("/v1/runs/{run_id}"), reviewer).await, "wrong_reviewer");
    }

    world.run().await.ok().expect("second run");
    let budget = world
        .api
        .get(&format!("/v1/authorisations/{}/budget", world.authorisation_id), &world.regulator)
        .await
        .ok()
        .expect("budget");
    assert_eq!((budget["epsilon_spent"].as_f64(), budget["epsilon_remaining"].as_f64()), (Some(1.0), Some(0.0)));
    assert_eq!(budget["dataset_epsilon_spent"].as_f64(), Some(1.0));

    let refused = world.run().await;
    assert_eq!(refused.status.as_u16(), 403);
    let message = expect_error(&refused, "budget_exhausted");
    assert!(message.contains("only 0 of 1 remains"), "{message}");
    let denied: Vec<_> =
        world.audit_entries("run.start").await.into_iter().filter(|entry| entry["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["reason"], "budget_exhausted");
    world.assert_log_verifies().await;
}

/// Each denial the foundation lists: the clear error the caller gets and the audit reason.
#[tokio::test]
async fn denials_are_clear_and_audited() {
    let world = World::new(500, 1.0).await;
    let (authorisation, model) = (world.authorisation_id, world.model_id);

    let check = |response: sluice::client::ApiResponse, code: &'static str| {
        let message = expect_error(&response, code);
        assert!(!message.is_empty());
        code
    };
    let mut expected_reasons = Vec::new();
    expected_reasons.push(check(world.run_as(&world.regulator, authorisation, model).await, "wrong_role"));
    expected_reasons.push(check(world.run_as(&world.provider, authorisation, model).await, "wrong_role"));
    expected_reasons.push(check(world.run_as(&world.operator, 999, model).await, "authorisation_missing"));
    expected_reasons
        .push(check(world.run_as(&world.other_operator, authorisation, model).await, "authorisation_not_yours"));

    // An unapproved model: the same module with a manifest changed by one byte.
    let changed = VEHICLE_RISK_MANIFEST.replace("version = \"1.0.0\"", "version = \"1.0.1\"");
    let submitted = world.submit_model(VEHICLE_RISK_WASM, &changed).await.ok().expect("submitted");
    let unapproved = submitted["id"].as_i64().expect("id");
    expected_reasons.push(check(world.run_as(&world.operator, authorisation, unapproved).await, "model_not_approved"));

    let unauthenticated = world
        .api
        .post("/v1/runs", "sk_not-a-token", &json!({"authorisation_id": authorisation, "model_id": model}))
        .await;
    assert_eq!(unauthenticated.status.as_u16(), 401);
    expect_error(&unauthenticated, "unauthenticated");
    let authentication_failures = world.audit_entries("authenticate").await;
    assert_eq!(authentication_failures.len(), 1);
    assert_eq!(authentication_failures[0]["reason"], "unknown_token");
    assert!(!authentication_failures[0].to_string().contains("not-a-token"), "tokens never reach the audit log");

    // The authorisation's window closes after 90 days.
    world.clock.advance(time::Duration::days(91));
    expected_reasons.push(check(world.run().await, "authorisation_outside_window"));
    // The operator's licence ends after 200 days; then it can do nothing but read.
    world.clock.advance(time::Duration::days(110));
    expected_reasons.push(check(world.run().await, "licence_expired"));
    let own_budget = format!("/v1/authorisations/{}/budget", world.authorisation_id);
    expected_reasons.push(check(world.api.get(&own_budget, &world.operator).await, "licence_expired"));
    world.api.get("/v1/catalogue", &world.operator).await.ok().expect("catalogue stays readable");

    let audited: Vec<String> = world
        .app
        .store()
        .audit_entries()
        .await
        .expect("entries")
        .iter()
        .map(|text| serde_json::from_str::<serde_json::Value>(text).expect("json"))
        .filter(|entry| entry["outcome"] == "denied" && entry["action"] != "authenticate")
        .map(|entry| entry["reason"].as_str().expect("reason").to_owned())
        .collect();
    assert_eq!(audited, expected_reasons, "every denial is in the audit log, in order");
    world.assert_log_verifies().await;
}

#[tokio::test]
async fn approval_is_bound_to_the_exact_bytes() {
    let world = World::new(300, 2.0).await;
    world.run().await.ok().expect("approved model runs");
    // Someone with database access swaps one byte of the approved module.
    let mut module = VEHICLE_RISK_WASM.to_vec();
    let last = module.len() - 1;
    module[last] ^= 0x01;
    sqlx::query("UPDATE models SET module = $1 WHERE id = $2")
        .bind(module)
        .bind(world.model_id)
        .execute(&world.database.raw().await)
        .await
        .expect("tamper");
    let message = expect_error(&world.run().await, "model_digest_mismatch");
    assert!(message.contains("differ from the ones reviewed"), "{message}");
}

#[tokio::test]
async fn reviews_follow_the_procedure_and_nobody_reviews_their_own() {
    let world = World::new(100, 1.0).await;
    let application = world.apply(0.5).await;
    let path = format!("/v1/applications/{application}/reviews");
    expect_error(&world.api.post(&path, &world.department, &json!({"approve": true})).await, "wrong_reviewer");
    expect_error(&world.api.post(&path, &world.operator, &json!({"approve": true})).await, "wrong_role");
    let colleague = world.colleague_reviewer().await;
    expect_error(&world.api.post(&path, &colleague, &json!({"approve": true})).await, "self_review");
    world
        .api
        .post(&path, &world.bureau, &json!({"approve": false, "comment": "purpose unclear"}))
        .await
        .ok()
        .expect("rejected");
    expect_error(&world.api.post(&path, &world.department, &json!({"approve": true})).await, "not_pending");
    let view = world.api.get(&format!("/v1/applications/{application}"), &world.operator).await.ok().expect("view");
    assert_eq!((view["state"].as_str(), view["authorisation_id"].is_null()), (Some("rejected"), true));

    let model = world.model_id;
    expect_error(
        &world.api.post(&format!("/v1/models/{model}/reviews"), &colleague, &json!({"approve": true})).await,
        "self_review",
    );
    expect_error(
        &world.api.post(&format!("/v1/models/{model}/reviews"), &world.department, &json!({"approve": true})).await,
        "not_pending",
    );
    world.assert_log_verifies().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error_and_stores_nothing() {
    let world = World::new(100, 1.0).await;
    let path = format!("/v1/datasets/{}/data", world.dataset_id);
    let mut csv = sluice::examples::vehicles_csv(50, 3);
    csv.push_str("honghuagang,suv,99.0,false,0,0,1000\n");
    let response = world.api.put_csv(&path, &world.provider, csv.into_bytes()).await;
    let message = expect_error(&response, "invalid_request");
    assert!(message.contains("line 52") && message.contains("vehicle_age_years"), "{message}");
    let catalogue = world.api.get("/v1/catalogue", &world.provider).await.ok().expect("catalogue");
    assert_eq!(catalogue["datasets"][0]["versions"].as_array().map(Vec::len), Some(1), "nothing stored");

    let malformed = world.api.post("/v1/runs", &world.operator, &json!({"authorisation": 1})).await;
    expect_error(&malformed, "invalid_request");
    let bad_application = json!({"dataset_id": world.dataset_id, "purpose": "p", "use_scope": "s", "security_measures": "m",
        "columns": ["vehicle_age_years"], "valid_from": time(5), "valid_until": time(1), "epsilon": 1.0});
    let message =
        expect_error(&world.api.post("/v1/applications", &world.operator, &bad_application).await, "invalid_request");
    assert!(message.contains("before valid_until"), "{message}");
    let mut nan = bad_application.clone();
    nan["valid_from"] = json!(time(0));
    nan["epsilon"] = json!(-1.0);
    expect_error(&world.api.post("/v1/applications", &world.operator, &nan).await, "invalid_request");
    let garbage = world.submit_model(b"not wasm at all", VEHICLE_RISK_MANIFEST).await;
    expect_error(&garbage, "module_invalid");
}

/// 100 concurrent runs against a budget that allows exactly 10: exactly 10 release, 90 are
/// refused, and the ledger and the audit log agree to the last millionth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_runs_never_overspend_the_budget() {
    let world = std::sync::Arc::new(World::new(100, 5.0).await);
    let runs: Vec<_> = (0..100)
        .map(|_| {
            let world = world.clone();
            tokio::spawn(async move { world.run().await })
        })
        .collect();
    let mut released = 0;
    for run in runs {
        let response = run.await.expect("task");
        if response.status.is_success() {
            released += 1;
        } else {
            expect_error(&response, "budget_exhausted");
        }
    }
    assert_eq!(released, 10, "a budget of 5.0 allows exactly ten runs of 0.5");
    let path = format!("/v1/authorisations/{}/budget", world.authorisation_id);
    let budget = world.api.get(&path, &world.operator).await.ok().expect("budget");
    assert_eq!(budget["epsilon_spent"].as_f64(), Some(5.0));
    assert_eq!(budget["epsilon_remaining"].as_f64(), Some(0.0));
    assert_eq!(budget["dataset_epsilon_spent"].as_f64(), Some(5.0));
    let starts = world.audit_entries("run.start").await;
    assert_eq!(starts.iter().filter(|entry| entry["outcome"] == "ok").count(), 10);
    assert_eq!(starts.iter().filter(|entry| entry["reason"] == "budget_exhausted").count(), 90);
    assert_eq!(world.audit_entries("run.release").await.len(), 10);
}

#[tokio::test]
async fn the_database_refuses_to_edit_or_delete_audit_entries() {
    let world = World::new(50, 1.0).await;
    let pool = &world.database.raw().await;
    let update =
        sqlx::query("UPDATE audit_log SET entry = 'x' WHERE seq = 1").execute(pool).await.expect_err("refused");
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = sqlx::query("DELETE FROM audit_log").execute(pool).await.expect_err("refused");
    assert!(delete.to_string().contains("append-only"), "{delete}");
}

/// Bad privacy parameters are refused with a clear error before anything is charged.
#[tokio::test]
async fn bad_privacy_parameters_are_refused_without_a_charge() {
    let world = World::new(100, 1.0).await;
    let cases = [
        ("epsilon = 0.2", "epsilon = 0.0"),
        ("epsilon = 0.2", "epsilon = -0.5"),
        ("epsilon = 0.2", "epsilon = nan"),
        ("epsilon = 0.2", "epsilon = inf"),
        ("lower = 0.0\nupper = 1.0", "lower = 1.0\nupper = 0.0"),
        ("upper = 20000.0", "upper = inf"),
        ("kind = \"count\"", "kind = \"median\""),
    ];
    for (from, to) in cases {
        let manifest = VEHICLE_RISK_MANIFEST.replacen(from, to, 1);
        assert_ne!(manifest, VEHICLE_RISK_MANIFEST, "{to}");
        let message = expect_error(&world.submit_model(VEHICLE_RISK_WASM, &manifest).await, "manifest_invalid");
        assert!(!message.is_empty(), "{to}");
    }
    // A model whose run would spend more than the whole authorisation could never run: it
    // is refused at upload, not approved to fail every run after a charge.
    let greedy = VEHICLE_RISK_MANIFEST.replacen("epsilon = 0.1", "epsilon = 5.0", 1);
    let message = expect_error(&world.submit_model(VEHICLE_RISK_WASM, &greedy).await, "epsilon_above_budget");
    assert!(message.contains("5.4 per run"), "{message}");
    // The tiny-ε attack (many cheap observations of one failure bit): 1e-9 per output is
    // charged as one millionth each, under the floor of 0.05 a run.
    let tiny =
        VEHICLE_RISK_MANIFEST.replace("epsilon = 0.2", "epsilon = 1e-9").replace("epsilon = 0.1", "epsilon = 1e-9");
    expect_error(&world.submit_model(VEHICLE_RISK_WASM, &tiny).await, "epsilon_below_minimum");
    // Lowering the floor lets it upload; the run is refused when the floor is raised again,
    // before any charge.
    world.app.gate().set_min_epsilon_per_run(sluice_policies::Epsilon::from_units(1));
    let submitted = world.submit_model(VEHICLE_RISK_WASM, &tiny).await.ok().expect("submitted");
    let tiny_id = submitted["id"].as_i64().expect("id");
    world
        .api
        .post(&format!("/v1/models/{tiny_id}/reviews"), &world.bureau, &crate::harness::approve_model())
        .await
        .ok()
        .expect("approved");
    world.app.gate().set_min_epsilon_per_run(sluice_policies::DEFAULT_MIN_EPSILON_PER_RUN);
    expect_error(&world.run_as(&world.operator, world.authorisation_id, tiny_id).await, "epsilon_below_minimum");
    let path = format!("/v1/authorisations/{}/budget", world.authorisation_id);
    let budget = world.api.get(&path, &world.operator).await.ok().expect("budget");
    assert_eq!((budget["epsilon_spent"].as_f64(), budget["dataset_epsilon_spent"].as_f64()), (Some(0.0), Some(0.0)));
}

/// A histogram through the server: counts per declared bin, noisy, with bins under the
/// dataset's minimum group size suppressed and left out of the total.
#[tokio::test]
async fn histograms_are_released_per_declared_bin_with_small_bins_suppressed() {
    use sluice::examples::EXAMPLE_MODELS;
    let world = World::new(10, 1.0).await;
    let model = EXAMPLE_MODELS.iter().find(|model| model.name == "pollution-anomaly").expect("model");
    let dataset = world
        .api
        .post(
            "/v1/datasets",
            &world.provider,
            &json!({"schema": model.schema, "epsilon_total": 5.0, "min_group_size": 150}),
        )
        .await
        .ok()
        .expect("dataset")["id"]
        .as_i64()
        .expect("id");
    let dummy = world.api.get(&format!("/v1/datasets/{dataset}/dummy?rows=1000&seed=4"), &world.provider).await;
    world
        .api
        .put_csv(&format!("/v1/datasets/{dataset}/data"), &world.provider, dummy.text.into_bytes())
        .await
        .ok()
        .expect("ingest");
    let application = world
        .api
        .post("/v1/applications", &world.operator, &json!({
            "dataset_id": dataset, "purpose": "air quality screening", "use_scope": "aggregates", "security_measures": "sandbox",
            "columns": ["pm25_ugm3", "so2_ugm3", "industrial_zone"],
            "valid_from": time(0), "valid_until": time(30), "epsilon": 2.0,
        }))
        .await
        .ok()
        .expect("application")["id"]
        .as_i64()
        .expect("id");
    let authorisation = world.approve_application(application).await;
    let body = json!({"authorisation_id": authorisation, "module_base64": crate::harness::module_base64(model.wasm), "manifest": model.manifest});
    let model_id =
        world.api.post("/v1/models", &world.operator, &body).await.ok().expect("model")["id"].as_i64().expect("id");
    world
        .api
        .post(&format!("/v1/models/{model_id}/reviews"), &world.bureau, &crate::harness::approve_model())
        .await
        .ok()
        .expect("approved");
    let run = world.run_as(&world.operator, authorisation, model_id).await.ok().expect("run");

    let histogram = run["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|output| output["kind"] == "histogram")
        .expect("histogram");
    let bins = histogram["bins"].as_array().expect("bins");
    let labels: Vec<&str> = bins.iter().map(|bin| bin["label"].as_str().expect("label")).collect();
    assert_eq!(labels, ["excellent", "good", "light", "moderate", "heavy", "severe"]);
    // Uniform dummy PM2.5 over [0, 1000]: about 35 readings are excellent, far under the
    // threshold of 150 (noise of scale 8 would need to add 115); about 750 are severe.
    assert_eq!((bins[0]["suppressed"].as_bool(), bins[0]["count"].is_null()), (Some(true), true));
    let severe = bins[5]["count"].as_f64().expect("released");
    assert!((650.0..850.0).contains(&severe), "{severe}");
    let visible: f64 = bins.iter().filter_map(|bin| bin["count"].as_f64()).sum();
    assert_eq!(histogram["value"].as_f64(), Some(visible), "the total covers released bins only");
    world.assert_log_verifies().await;
}

/// The ledger is in the database: a restarted gateway sees every charge, and refuses a
/// run the budget no longer covers.
#[tokio::test]
async fn budgets_survive_a_restart() {
    use sluice::client::InProcessClient;
    use sluice_gateway::api::router;
    use sluice_gateway::service::App;
    let world = World::new(100, 1.0).await;
    world.run().await.ok().expect("first run");
    world.run().await.ok().expect("second run");
    world.app.store().close().await;

    let reopened = App::open(world.config(), world.clock.clone()).await.expect("reopens");
    let api = InProcessClient::new(router(reopened));
    let path = format!("/v1/authorisations/{}/budget", world.authorisation_id);
    let budget = api.get(&path, &world.operator).await.ok().expect("budget");
    assert_eq!((budget["epsilon_spent"].as_f64(), budget["dataset_epsilon_spent"].as_f64()), (Some(1.0), Some(1.0)));
    let refused = api
        .post(
            "/v1/runs",
            &world.operator,
            &json!({"authorisation_id": world.authorisation_id, "model_id": world.model_id}),
        )
        .await;
    expect_error(&refused, "budget_exhausted");
}

/// Revocation takes effect at once, also against runs racing it; the log proves no run
/// started under the authorisation after its revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_wins_against_racing_runs_and_the_log_shows_it() {
    let world = std::sync::Arc::new(World::new(100, 10.0).await);
    let path = format!("/v1/authorisations/{}/revoke", world.authorisation_id);
    expect_error(&world.api.post(&path, &world.operator, &json!({"reason": "mine"})).await, "wrong_role");
    let runs: Vec<_> = (0..20)
        .map(|_| {
            let world = world.clone();
            tokio::spawn(async move { world.run().await })
        })
        .collect();
    world.api.post(&path, &world.department, &json!({"reason": "purpose exceeded"})).await.ok().expect("revoked");
    for run in runs {
        let response = run.await.expect("task");
        if !response.status.is_success() {
            let code = response.error_code().expect("code");
            assert!(["authorisation_revoked", "run_failed"].contains(&code.as_str()), "{code}: {}", response.text);
        }
    }
    expect_error(&world.run().await, "authorisation_revoked");
    expect_error(&world.api.post(&path, &world.bureau, &json!({})).await, "not_pending");
    let export = world.export().await;
    sluice_audit::verify_export(&export, sluice_audit::KeyTrust::Pinned(&world.app.public_key()), None)
        .expect("no run started after the revocation");
    world.assert_log_verifies().await;
}

#[tokio::test]
async fn models_can_be_revoked_and_applications_withdrawn() {
    let world = World::new(100, 2.0).await;
    world.run().await.ok().expect("runs while approved");
    // The same bytes submitted again while the first copy is still approved: pending.
    let twin = world.submit_model(VEHICLE_RISK_WASM, VEHICLE_RISK_MANIFEST).await.ok().expect("a second copy")["id"]
        .as_i64()
        .expect("id");
    let path = format!("/v1/models/{}/revoke", world.model_id);
    expect_error(&world.api.post(&path, &world.operator, &json!({})).await, "wrong_role");
    let revoked =
        world.api.post(&path, &world.bureau, &json!({"reason": "found to leak"})).await.ok().expect("revoked");
    assert_eq!(revoked["state"], "revoked");
    expect_error(&world.run().await, "model_not_approved");
    // The attack: undo the revocation with a copy of the revoked bytes. Neither the pending
    // twin is approved nor a fresh upload accepted; a changed model needs its own review.
    let approve_twin =
        world.api.post(&format!("/v1/models/{twin}/reviews"), &world.bureau, &crate::harness::approve_model()).await;
    let message = expect_error(&approve_twin, "model_revoked");
    assert!(message.contains("revoked for this authorisation"), "{message}");
    expect_error(&world.submit_model(VEHICLE_RISK_WASM, VEHICLE_RISK_MANIFEST).await, "model_revoked");

    let application = world.apply(0.5).await;
    let withdraw = format!("/v1/applications/{application}/withdraw");
    expect_error(&world.api.post(&withdraw, &world.other_operator, &json!({})).await, "wrong_role");
    let view = world.api.post(&withdraw, &world.operator, &json!({})).await.ok().expect("withdrawn");
    assert_eq!(view["state"], "withdrawn");
    let review = format!("/v1/applications/{application}/reviews");
    expect_error(&world.api.post(&review, &world.bureau, &json!({"approve": true})).await, "not_pending");
    expect_error(&world.api.post(&withdraw, &world.operator, &json!({})).await, "not_pending");
    world.assert_log_verifies().await;
}

/// An authorisation allows a bounded number of runs an hour, whatever its budget.
#[tokio::test]
async fn runs_are_rate_limited_per_authorisation() {
    let world = World::new(100, 5.0).await;
    world.app.gate().set_max_runs_per_hour(3);
    for _ in 0..3 {
        world.run().await.ok().expect("within the rate");
    }
    let message = expect_error(&world.run().await, "rate_limited");
    assert!(message.contains("3 runs an hour"), "{message}");
    world.clock.advance(time::Duration::minutes(61));
    world.run().await.ok().expect("an hour later");
    let budget = world
        .api
        .get(&format!("/v1/authorisations/{}/budget", world.authorisation_id), &world.operator)
        .await
        .ok()
        .expect("budget");
    assert_eq!(budget["epsilon_spent"].as_f64(), Some(2.0), "a refused run is not charged");
}

/// Reviewers see the automated results first, and an approval must confirm the whole
/// seed 002 §23 checklist, which is recorded.
#[tokio::test]
async fn model_reviews_show_automated_results_and_record_the_checklist() {
    let world = World::new(100, 1.0).await;
    let changed = VEHICLE_RISK_MANIFEST.replace("version = \"1.0.0\"", "version = \"1.0.2\"");
    let submitted = world.submit_model(VEHICLE_RISK_WASM, &changed).await.ok().expect("submitted");
    assert_eq!(submitted["automated_results"]["dummy_run"]["outcome"], "passed");
    let id = submitted["id"].as_i64().expect("id");
    let view = world.api.get(&format!("/v1/models/{id}"), &world.bureau).await.ok().expect("view");
    assert_eq!(view["automated_results"]["static_review"], "passed");
    // A reviewer sees what the model declares, to check it against the application.
    assert_eq!(view["authorisation_id"], world.authorisation_id);
    assert_eq!(view["manifest"]["toml"], changed.as_str(), "the manifest as submitted");
    let inputs: Vec<&str> =
        view["manifest"]["inputs"].as_array().expect("inputs").iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(inputs, ["vehicle_age_years", "violations_12m", "accidents_5y", "insured_value_cny"]);
    let outputs = view["manifest"]["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 3);
    assert_eq!(outputs[1]["name"], "mean_risk_score");
    assert_eq!(outputs[1]["kind"], "mean");
    assert_eq!(outputs[1]["upper"], 1.0);
    assert_eq!(view["manifest"]["fuel_per_row"], 2000);
    expect_error(&world.api.get(&format!("/v1/models/{id}"), &world.other_operator).await, "wrong_role");

    let path = format!("/v1/models/{id}/reviews");
    let partial = json!({"approve": true, "checklist": {"usability": true, "consistency": true, "compliance": true, "security": false}});
    let message = expect_error(&world.api.post(&path, &world.bureau, &partial).await, "invalid_request");
    assert!(message.contains("whole checklist"), "{message}");
    expect_error(&world.api.post(&path, &world.bureau, &json!({"approve": true})).await, "invalid_request");
    world.api.post(&path, &world.bureau, &crate::harness::approve_model()).await.ok().expect("approved");
    let reviews = world.audit_entries("model.review").await;
    let last = reviews.last().expect("a review entry");
    assert!(last["details"]["checklist"].as_str().expect("checklist").contains("\"security\":true"));
}

/// Data product review: under an authorisation that holds outputs, a release reaches its
/// operator only after an outside reviewer releases it; a withheld one never does.
#[tokio::test]
async fn held_outputs_wait_for_data_product_review() {
    let world = World::new(200, 2.0).await;
    let application = world.apply(1.0).await;
    let review = format!("/v1/applications/{application}/reviews");
    world.api.post(&review, &world.bureau, &json!({"approve": true})).await.ok().expect("bureau");
    let approved = world
        .api
        .post(&review, &world.department, &json!({"approve": true, "hold_outputs": true}))
        .await
        .ok()
        .expect("department");
    let authorisation = approved["authorisation_id"].as_i64().expect("authorisation");
    let body = json!({"authorisation_id": authorisation, "module_base64": crate::harness::module_base64(VEHICLE_RISK_WASM), "manifest": VEHICLE_RISK_MANIFEST});
    let model =
        world.api.post("/v1/models", &world.operator, &body).await.ok().expect("model")["id"].as_i64().expect("id");
    world
        .api
        .post(&format!("/v1/models/{model}/reviews"), &world.bureau, &crate::harness::approve_model())
        .await
        .ok()
        .expect("approved");

    let held = world.run_as(&world.operator, authorisation, model).await.ok().expect("run");
    assert_eq!(held["state"], "held");
    assert_eq!(held["outputs"].as_array().map(Vec::len), Some(0), "nothing reaches the operator yet");
    assert!(held["receipt"].is_object(), "the release is logged all the same");
    let held_entry = held["receipt"]["entry"].as_str().expect("entry");
    assert!(!held_entry.contains("\"values\""), "a held result's values stay out of the operator's receipt");
    let run = held["run_id"].as_i64().expect("run id");
    let message = expect_error(&world.api.get(&format!("/v1/runs/{run}"), &world.operator).await, "conflict");
    assert!(message.contains("held for data product review"), "{message}");

    let colleague = world.colleague_reviewer().await;
    let path = format!("/v1/runs/{run}/review");
    expect_error(&world.api.post(&path, &colleague, &json!({"approve": true})).await, "self_review");
    expect_error(&world.api.post(&path, &world.operator, &json!({"approve": true})).await, "wrong_role");
    // The data bureau has no part in a held result: neither reading nor releasing it.
    expect_error(&world.api.post(&path, &world.bureau, &json!({"approve": true})).await, "wrong_reviewer");
    expect_error(&world.api.get(&format!("/v1/runs/{run}"), &world.bureau).await, "wrong_reviewer");
    let pending = world.api.get(&format!("/v1/runs/{run}"), &world.department).await.ok().expect("department reads");
    assert_eq!(pending["state"], "held");
    let released = world
        .api
        .post(&path, &world.department, &json!({"approve": true, "comment": "aggregates only"}))
        .await
        .ok()
        .expect("released");
    assert_eq!((released["state"].as_str(), released["outputs"].as_array().map(Vec::len)), (Some("released"), Some(3)));
    let fetched = world.api.get(&format!("/v1/runs/{run}"), &world.operator).await.ok().expect("now visible");
    assert_eq!(fetched["outputs"].as_array().map(Vec::len), Some(3));
    // Now the receipt proves the reviewer's release, which commits to the values.
    let receipt: sluice_audit::Receipt = serde_json::from_value(fetched["receipt"].clone()).expect("receipt");
    let entry = sluice_audit::verify_receipt(&receipt, &world.app.public_key()).expect("verifies");
    assert_eq!(entry.action, "result.review");
    sluice_audit::release::check_release(&entry, &fetched["outputs"], Some(run))
        .expect("commits to the released values");
    expect_error(&world.api.post(&path, &world.department, &json!({"approve": true})).await, "not_pending");

    let second =
        world.run_as(&world.operator, authorisation, model).await.ok().expect("run")["run_id"].as_i64().expect("id");
    world
        .api
        .post(&format!("/v1/runs/{second}/review"), &world.department, &json!({"approve": false}))
        .await
        .ok()
        .expect("withheld");
    let message = expect_error(&world.api.get(&format!("/v1/runs/{second}"), &world.operator).await, "conflict");
    assert!(message.contains("withheld"), "{message}");
    world.assert_log_verifies().await;
}

/// With a quorum of two, a model runs only after two independent approvals.
#[tokio::test]
async fn a_quorum_of_two_independent_reviewers_approves_a_model() {
    let world = World::new(100, 2.0).await;
    world.app.gate().set_model_review_quorum(2);
    let changed = VEHICLE_RISK_MANIFEST.replace("version = \"1.0.0\"", "version = \"1.0.3\"");
    let id = world.submit_model(VEHICLE_RISK_WASM, &changed).await.ok().expect("submitted")["id"].as_i64().expect("id");
    let path = format!("/v1/models/{id}/reviews");
    let first = world.api.post(&path, &world.bureau, &crate::harness::approve_model()).await.ok().expect("first");
    assert_eq!(first["state"], "submitted", "one approval of two");
    expect_error(&world.run_as(&world.operator, world.authorisation_id, id).await, "model_not_approved");
    expect_error(&world.api.post(&path, &world.bureau, &crate::harness::approve_model()).await, "wrong_reviewer");
    let second = world.api.post(&path, &world.department, &crate::harness::approve_model()).await.ok().expect("second");
    assert_eq!(second["state"], "approved");
    world.run_as(&world.operator, world.authorisation_id, id).await.ok().expect("runs after two approvals");
    world.assert_log_verifies().await;
}

/// Who may do what is a Cedar policy set: an administrator's stricter file takes effect,
/// and a broken one stops the gateway from opening with a clear error.
#[tokio::test]
async fn an_administrators_policy_file_applies_and_a_broken_one_refuses_to_start() {
    use sluice::client::InProcessClient;
    use sluice_gateway::api::router;
    use sluice_gateway::service::App;
    let world = World::new(50, 1.0).await;
    let policy_file = world.data_dir().join("policies.cedar");

    std::fs::write(&policy_file, "permit (principal, action, resource").expect("write");
    let error = App::open(world.config(), world.clock.clone()).await.expect_err("broken policies");
    assert!(format!("{error:#}").contains("policy file"), "{error:#}");
    std::fs::write(&policy_file, r#"permit (principal, action == Sluice::Action::"run.stat", resource);"#)
        .expect("write");
    let error = App::open(world.config(), world.clock.clone()).await.expect_err("invalid policies");
    assert!(format!("{error:#}").contains("does not validate"), "{error:#}");

    // Stricter: only regulators read the catalogue; nothing else is permitted at all.
    std::fs::write(&policy_file, r#"permit (principal, action == Sluice::Action::"catalogue.read", resource) when { principal.role == "regulator" };"#)
        .expect("write");
    let app = App::open(world.config(), world.clock.clone()).await.expect("valid policies");
    let api = InProcessClient::new(router(app));
    api.get("/v1/catalogue", &world.regulator).await.ok().expect("regulators may");
    expect_error(&api.get("/v1/catalogue", &world.operator).await, "wrong_role");
    let run = api
        .post(
            "/v1/runs",
            &world.operator,
            &json!({"authorisation_id": world.authorisation_id, "model_id": world.model_id}),
        )
        .await;
    expect_error(&run, "wrong_role");

    // Looser: the default set, and regulators read results directly.
    let looser = format!(
        "{}\npermit (principal, action == Sluice::Action::\"result.read\", resource) when {{ principal.role == \"regulator\" }};\n",
        sluice_policies::DEFAULT_POLICIES
    );
    std::fs::write(&policy_file, looser).expect("write");
    let app = App::open(world.config(), world.clock.clone()).await.expect("valid policies");
    let api = InProcessClient::new(router(app));
    let run = api
        .post(
            "/v1/runs",
            &world.operator,
            &json!({"authorisation_id": world.authorisation_id, "model_id": world.model_id}),
        )
        .await
        .ok()
        .expect("runs are as before");
    let result = format!("/v1/runs/{}", run["run_id"]);
    world.clock.advance(time::Duration::minutes(1));
    api.get(&result, &world.regulator).await.ok().expect("the looser policy lets a regulator read it");
    expect_error(&api.get(&result, &world.other_operator).await, "authorisation_not_yours");

    // Stricter, by a forbid with its own reason: reviewers of the data bureau only review
    // models. The department's reviewer is refused with the policy's code and message,
    // and the refusal is in the log under that code.
    let stricter = format!(
        "{}\n@reason(\"wrong_reviewer\")\n@message(\"in this province only the data bureau reviews models\")\n\
         forbid (principal, action == Sluice::Action::\"model.review\", resource)\n\
         when {{ principal.role == \"reviewer\" && principal.reviewer_kind != \"data_bureau\" }};\n",
        sluice_policies::DEFAULT_POLICIES
    );
    std::fs::write(&policy_file, stricter).expect("write");
    let app = App::open(world.config(), world.clock.clone()).await.expect("valid policies");
    let api = InProcessClient::new(router(app.clone()));
    let review = format!("/v1/models/{}/reviews", world.model_id);
    let refused = api.post(&review, &world.department, &json!({"approve": false})).await;
    let message = expect_error(&refused, "wrong_reviewer");
    assert_eq!(message, "in this province only the data bureau reviews models");
    let denials = app.store().audit_entries().await.expect("entries");
    assert!(
        denials.iter().any(|entry| entry.contains("\"model.review\"") && entry.contains("\"wrong_reviewer\"")),
        "the refusal is audited with the policy's reason"
    );
}

/// An application may start as a draft, which no reviewer sees until its applicant submits
/// it; a level-4 (core) column is never granted.
#[tokio::test]
async fn drafts_wait_for_their_applicant_and_core_columns_are_never_granted() {
    let world = World::new(50, 1.0).await;
    let mut body = json!({
        "dataset_id": world.dataset_id, "purpose": "p", "use_scope": "s", "security_measures": "m",
        "columns": ["accidents_5y"], "valid_from": time(0), "valid_until": time(30), "epsilon": 0.5, "draft": true,
    });
    let draft = world.api.post("/v1/applications", &world.operator, &body).await.ok().expect("draft");
    assert_eq!(draft["state"], "draft");
    let id = draft["id"].as_i64().expect("id");
    let review = format!("/v1/applications/{id}/reviews");
    expect_error(&world.api.post(&review, &world.bureau, &json!({"approve": true})).await, "not_pending");
    expect_error(
        &world.api.post(&format!("/v1/applications/{id}/submit"), &world.other_operator, &json!({})).await,
        "wrong_role",
    );
    let submitted = world
        .api
        .post(&format!("/v1/applications/{id}/submit"), &world.operator, &json!({}))
        .await
        .ok()
        .expect("submitted");
    assert_eq!(submitted["state"], "submitted");
    world.api.post(&review, &world.bureau, &json!({"approve": true})).await.ok().expect("reviewable now");

    // The tax bureau's enterprises schema has a level-4 column (the enterprise code).
    let model = sluice::examples::EXAMPLE_MODELS[1];
    let dataset = world
        .api
        .post("/v1/datasets", &world.provider, &json!({"schema": model.schema, "epsilon_total": 1.0}))
        .await
        .ok()
        .expect("dataset")["id"]
        .as_i64()
        .expect("id");
    body["dataset_id"] = json!(dataset);
    body["columns"] = json!(["industry", "enterprise_code"]);
    body["draft"] = json!(false);
    let message =
        expect_error(&world.api.post("/v1/applications", &world.operator, &body).await, "column_not_authorised");
    assert!(message.contains("level 4"), "{message}");
    world.assert_log_verifies().await;
}

/// The run path decides once, charges once and records once: each fact is read once per
/// run, so a run goes to the database a fixed, small number of times whatever its size.
/// (Before the layout step one run took about 22 round trips: the authorisation alone was
/// read three times.)
#[tokio::test]
async fn a_run_reads_each_fact_once() {
    let world = World::new(3_000, 10.0).await;
    world.run().await.ok().expect("warm-up run");
    let before = world.app.store().round_trips();
    world.run().await.ok().expect("run");
    let trips = world.app.store().round_trips() - before;
    // 1 the caller's token; 2 one snapshot of the facts the decision needs (authorisation,
    // model, submitter, dataset, version); 3 the charge transaction (what may have changed
    // since — revocation, both budgets, the rate — re-read under the write lock, then the
    // charge, the run row and the audit entry); 4 the claim of the queued run, which reads
    // the revocation as the run leaves the queue; 5 the finish transaction (outputs, the release entry, and the checkpoint
    // its receipt names, from the O(log n) stored subtrees of the log's size); 6 the
    // subtrees the inclusion proof needs. None of them grows with the log: the receipt
    // used to read every leaf, and then three more round trips for a fresh checkpoint.
    assert_eq!(trips, 6, "a run took {trips} round trips to the database");
}

/// Principals do not live for ever: a token expires, is replaced by its holder or by an
/// administrator (the old one stops working at once), can be revoked, and a principal can
/// be disabled. Each refusal is a 401 with its own code and an audit entry; a reviewer who
/// leaves keeps no access.
#[tokio::test]
async fn tokens_expire_rotate_and_are_revoked_and_principals_disabled() {
    let world = World::new(100, 1.0).await;
    world.app.gate().set_token_lifetime(time::Duration::days(1));
    let body = json!({"name": "auditor", "role": "regulator", "organisation": "Provincial Audit Office"});
    let created = world.principal(body).await;
    let id = created["id"].as_i64().expect("id");
    let first = created["token"].as_str().expect("token").to_owned();
    assert_eq!(created["expires_at"], time(1), "a token says when it stops working");
    world.api.get("/v1/catalogue", &first).await.ok().expect("a fresh token works");

    // Its holder replaces it: the old token is refused as revoked, not as unknown.
    let rotated = world.api.post("/v1/token/rotate", &first, &json!({})).await.ok().expect("rotated");
    let second = rotated["token"].as_str().expect("token").to_owned();
    assert_ne!(second, first);
    let refused = world.api.get("/v1/catalogue", &first).await;
    assert_eq!(refused.status.as_u16(), 401);
    let message = expect_error(&refused, "token_revoked");
    assert!(message.contains("revoked or replaced"), "{message}");
    world.api.get("/v1/catalogue", &second).await.ok().expect("the new token works");

    // An administrator issues a new one (the holder lost it); only an administrator may.
    let path = format!("/v1/principals/{id}/token");
    expect_error(&world.api.post(&path, &world.operator, &json!({})).await, "wrong_role");
    let issued = world.api.post(&path, &world.admin, &json!({})).await.ok().expect("issued");
    let third = issued["token"].as_str().expect("token").to_owned();
    expect_error(&world.api.get("/v1/catalogue", &second).await, "token_revoked");

    // Time passes: the token expires.
    world.clock.advance(time::Duration::days(2));
    let expired = world.api.get("/v1/catalogue", &third).await;
    assert_eq!(expired.status.as_u16(), 401);
    expect_error(&expired, "token_expired");

    // Revoked by an administrator: it stops at once, and nothing works until a new one.
    let fourth = world.api.post(&path, &world.admin, &json!({})).await.ok().expect("reissued")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    world.api.get("/v1/catalogue", &fourth).await.ok().expect("works again");
    world.api.delete(&path, &world.admin).await.ok().expect("revoked");
    expect_error(&world.api.get("/v1/catalogue", &fourth).await, "token_revoked");

    // A reviewer who leaves is disabled: every request refused, whatever token it holds.
    let reviewer = world.colleague_reviewer().await;
    world.api.get("/v1/catalogue", &reviewer).await.ok().expect("a reviewer reads the catalogue");
    let reviewer_id = world.app.authenticate(Some(&reviewer), "test").await.expect("caller").principal.id;
    let disable = format!("/v1/principals/{reviewer_id}/disable");
    expect_error(&world.api.post(&disable, &world.bureau, &json!({})).await, "wrong_role");
    world.api.post(&disable, &world.admin, &json!({"reason": "left the bureau"})).await.ok().expect("disabled");
    expect_error(&world.api.get("/v1/catalogue", &reviewer).await, "principal_disabled");
    expect_error(&world.api.post(&disable, &world.admin, &json!({})).await, "conflict");
    let admin_id = world.app.authenticate(Some(&world.admin), "test").await.expect("caller").principal.id;
    expect_error(
        &world.api.post(&format!("/v1/principals/{admin_id}/disable"), &world.admin, &json!({})).await,
        "wrong_role",
    );
    expect_error(&world.api.get("/v1/catalogue", "sk_never-issued").await, "unauthenticated");

    // Every refusal is in the log with its reason; every change with its actor.
    let denials: Vec<String> = world
        .audit_entries("authenticate")
        .await
        .iter()
        .map(|entry| entry["reason"].as_str().expect("reason").to_owned())
        .collect();
    for reason in ["token_revoked", "token_expired", "principal_disabled", "unknown_token"] {
        assert!(denials.iter().any(|found| found == reason), "{reason} not audited: {denials:?}");
    }
    for action in ["token.rotate", "principal.token.issue", "principal.token.revoke", "principal.disable"] {
        assert!(!world.audit_entries(action).await.is_empty(), "{action} not audited");
    }
    world.assert_log_verifies().await;
}

/// A list shows exactly what its caller could read one item at a time: for every role,
/// the ids in `GET /v1/models` and `GET /v1/applications` are the ids whose
/// `GET /v1/models/{id}` and `GET /v1/applications/{id}` answer 200. A reviewer's queue is
/// the list filtered to `submitted`, and an approved model leaves it.
#[tokio::test]
async fn lists_show_exactly_what_each_caller_may_read() {
    let world = World::new(100, 2.0).await;
    let changed = VEHICLE_RISK_MANIFEST.replace("version = \"1.0.0\"", "version = \"1.0.1\"");
    let waiting = world.submit_model(VEHICLE_RISK_WASM, &changed).await.ok().expect("submitted")["id"].clone();
    world.apply(0.5).await;
    let callers = [
        ("operator", &world.operator),
        ("other operator", &world.other_operator),
        ("provider", &world.provider),
        ("bureau", &world.bureau),
        ("department", &world.department),
        ("regulator", &world.regulator),
    ];
    for (collection, key) in [("models", "models"), ("applications", "applications")] {
        let listed_by_anyone = (1..=4).collect::<Vec<i64>>();
        for (who, token) in callers {
            let page = world.api.get(&format!("/v1/{collection}"), token).await;
            let page = page.ok().unwrap_or_else(|error| panic!("{who} lists {collection}: {error}"));
            let items = page[key].as_array().expect("items");
            let listed: Vec<i64> = items.iter().map(|item| item["id"].as_i64().expect("id")).collect();
            let mut readable = Vec::new();
            for id in &listed_by_anyone {
                if world.api.get(&format!("/v1/{collection}/{id}"), token).await.status == 200 {
                    readable.push(*id);
                }
            }
            assert_eq!(listed, readable, "{who}'s {collection}");
        }
    }
    let queue = world.api.get("/v1/models?state=submitted", &world.bureau).await.ok().expect("queue");
    let queued: Vec<&serde_json::Value> =
        queue["models"].as_array().expect("models").iter().map(|m| &m["id"]).collect();
    assert_eq!(queued, [&waiting], "the reviewer's queue");
    let path = format!("/v1/models/{waiting}/reviews");
    world.api.post(&path, &world.bureau, &crate::harness::approve_model()).await.ok().expect("approved");
    let queue = world.api.get("/v1/models?state=submitted", &world.bureau).await.ok().expect("queue");
    assert_eq!(queue["models"].as_array().map(Vec::len), Some(0), "{queue}");
    expect_error(&world.api.get("/v1/models?state=stolen", &world.bureau).await, "invalid_request");
    expect_error(&world.api.get("/v1/applications?limit=101", &world.bureau).await, "invalid_request");
    assert!(!world.audit_entries("model.list").await.is_empty());
    assert!(!world.audit_entries("application.list").await.is_empty());
}

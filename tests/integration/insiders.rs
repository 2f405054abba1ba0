//! The platform's own insiders, tried as the accountability issue tried them: an
//! administrator acting alone, organisation names spelled twice, reviewers of the wrong
//! organisation. Each attack is refused by the server, and the log it leaves verifies.

use serde_json::json;
use sluice_gateway::config::Config;

use crate::harness::{World, expect_error, organisation};

/// Two spellings of one organisation are one organisation: the trailing-space copy that
/// once let a colleague release a held run is refused, and a reviewer bound to the
/// operator's organisation id is refused whatever the organisation is called later.
#[tokio::test]
async fn organisations_are_ids_and_a_second_spelling_is_refused() {
    let world = World::new(100, 1.0).await;
    let qianbei = organisation(&world.api, &world.admin, "Qianbei Data").await;
    for copy in ["Qianbei Data ", "qianbei  data", "ＱＩＡＮＢＥＩ ＤＡＴＡ", "Qianbei\u{3000}Data"] {
        let refused = world.api.post("/v1/organisations", &world.admin, &json!({ "name": copy })).await;
        let message = expect_error(&refused, "conflict");
        assert!(message.contains(&format!("organisation {qianbei}")), "{message}");
    }
    for bad in ["", "   ", "a\nb"] {
        let refused = world.api.post("/v1/organisations", &world.admin, &json!({ "name": bad })).await;
        expect_error(&refused, "invalid_request");
    }
    // Only an administrator creates or renames organisations; anyone may list them.
    let refused = world.api.post("/v1/organisations", &world.operator, &json!({"name": "Shell Co."})).await;
    expect_error(&refused, "wrong_role");
    let listed = world.api.get("/v1/organisations", &world.operator).await.ok().expect("listed");
    assert!(listed["organisations"].as_array().expect("list").iter().any(|o| o["id"] == qianbei));

    // A principal names its organisation by an id that exists.
    let body = json!({"name": "x", "role": "regulator", "organisation_id": 999});
    expect_error(&world.api.post("/v1/principals", &world.admin, &body).await, "invalid_request");
    let body = json!({"name": "x", "role": "regulator", "organisation": "Qianbei Data"});
    expect_error(&world.api.post("/v1/principals", &world.admin, &body).await, "invalid_request");

    // Renaming the operator's organisation changes no separation of duties: a reviewer of
    // that organisation still cannot review its application.
    let colleague = world.colleague_reviewer().await;
    let renamed = world
        .api
        .patch(&format!("/v1/organisations/{qianbei}"), &world.admin, &json!({"name": "Qianbei Holdings"}))
        .await
        .ok()
        .expect("renamed");
    assert_eq!(renamed["name"], "Qianbei Holdings");
    let application = world.apply(1.0).await;
    let refused =
        world.api.post(&format!("/v1/applications/{application}/reviews"), &colleague, &json!({"approve": true})).await;
    expect_error(&refused, "self_review");
    let catalogue = world.api.get("/v1/catalogue", &world.operator).await.ok().expect("catalogue");
    assert_eq!(catalogue["datasets"][0]["authorisations"][0]["operator_organisation"], "Qianbei Holdings");
    world.assert_log_verifies().await;
}

/// An administrator alone cannot make a reviewer or a licensed operator that works: it
/// waits for a second administrator, its creator cannot approve it, and no token can be
/// issued around the rule. The audit entry records every fact of the new principal.
#[tokio::test]
async fn a_reviewer_or_licence_takes_a_second_administrator() {
    let world = World::new(100, 1.0).await;
    let bureau = organisation(&world.api, &world.admin, "Big Data Bureau").await;
    let body =
        json!({"name": "sock puppet", "role": "reviewer", "reviewer_kind": "data_bureau", "organisation_id": bureau});
    let created = world.api.post("/v1/principals", &world.admin, &body).await;
    assert_eq!(created.status.as_u16(), 202, "{}", created.text);
    let created = created.json();
    assert_eq!(created["state"], "pending_approval");
    assert!(created.get("token").is_none(), "no token before the second administrator");
    let id = created["id"].as_i64().expect("id");

    let approve = format!("/v1/principals/{id}/approve");
    expect_error(&world.api.post(&approve, &world.admin, &json!({})).await, "two_person_rule");
    expect_error(&world.api.post(&format!("/v1/principals/{id}/token"), &world.admin, &json!({})).await, "conflict");
    expect_error(&world.api.post(&approve, &world.operator, &json!({})).await, "wrong_role");
    let approved = world.api.post(&approve, &world.second_admin, &json!({})).await.ok().expect("approved");
    let token = approved["token"].as_str().expect("token");
    world.api.get("/v1/catalogue", token).await.ok().expect("the approved reviewer's token works");
    expect_error(&world.api.post(&approve, &world.second_admin, &json!({})).await, "conflict");

    // The log holds every fact: organisation, kind, approval; licences with their window.
    let export = world.export().await;
    let entry = |action: &str, object: &str| -> serde_json::Value {
        export
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|entry| entry["action"] == action && entry["object"] == object && entry["outcome"] == "ok")
            .unwrap_or_else(|| panic!("no {action} of {object}"))
    };
    let creation = entry("principal.create", &format!("principal:{id}"));
    assert_eq!(creation["details"]["organisation"], bureau.to_string());
    assert_eq!(creation["details"]["reviewer_kind"], "data_bureau");
    assert_eq!(creation["details"]["approval"], "pending");
    let approval = entry("principal.approve", &format!("principal:{id}"));
    assert_eq!(approval["details"]["created_by"], creation["actor_id"].to_string());
    let operators: Vec<_> = export
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["action"] == "principal.create" && entry["details"]["role"] == "operator")
        .collect();
    assert!(!operators.is_empty());
    for operator in operators {
        assert_eq!(operator["details"]["licence"], "ZY-1");
        assert!(operator["details"]["licence_valid_until"].is_string());
    }
    assert!(export.contains(r#""reason":"two_person_rule""#), "the refused self-approval is audited");
    world.assert_log_verifies().await;
}

/// With the rule turned off (a gateway's choice), principals work at once, and the
/// regulator's verifier says that it was off.
#[tokio::test]
async fn without_the_rule_the_verifier_names_the_lone_administrator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = crate::harness::test_database(&dir.path().join("data")).await;
    let mut config = Config::new(dir.path().join("data"));
    config.database = database.database.clone();
    config.objects = database.objects.clone();
    config.two_person_rule = false;
    config.data_dir.init(true, &config.database, &config.objects).await.expect("init");
    let app = sluice_gateway::service::App::open(config, sluice_gateway::service::Clock::System).await.expect("open");
    let admin = app.bootstrap_admin("admin", "platform").await.expect("admin").token;
    let api = sluice::client::InProcessClient::new(sluice_gateway::api::router(app.clone()));
    let bureau = organisation(&api, &admin, "Big Data Bureau").await;
    let body = json!({"name": "r", "role": "reviewer", "reviewer_kind": "data_bureau", "organisation_id": bureau});
    let created = api.post("/v1/principals", &admin, &body).await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text);
    assert!(created.json()["token"].is_string());
    let body = json!({"name": "g", "role": "regulator", "organisation_id": bureau});
    let regulator = api.post("/v1/principals", &admin, &body).await.ok().expect("regulator")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let export = api.get("/v1/audit/export", &regulator).await.text;
    let error = sluice_audit::verify_export(&export, sluice_audit::KeyTrust::Pinned(&app.public_key()), None)
        .expect_err("the regulator's rules want a second administrator");
    assert!(error.problem.contains("created without a second administrator's approval"), "{error}");
}

/// Invalid requests leave a trace too: malformed bodies, unknown routes, wrong methods,
/// unparsable ids and oversized bodies are each answered in the API's JSON error shape and
/// recorded as `request.invalid` with their code (and the caller, when it authenticated).
#[tokio::test]
async fn invalid_requests_are_answered_in_json_and_audited() {
    use sluice::client::Method;
    let world = World::new(50, 1.0).await;
    let cases: Vec<(Method, &str, Vec<u8>, u16, &str)> = vec![
        (Method::POST, "/v1/principals", b"{not json".to_vec(), 400, "invalid_request"),
        (Method::GET, "/v1/no-such-thing", Vec::new(), 404, "not_found"),
        (Method::DELETE, "/v1/catalogue", Vec::new(), 405, "method_not_allowed"),
        (Method::GET, "/v1/runs/not-a-number", Vec::new(), 400, "invalid_request"),
        (Method::POST, "/v1/organisations", vec![b' '; (16 << 20) + 1], 413, "payload_too_large"),
    ];
    for (method, path, body, status, code) in cases {
        let response = world.api.send(method.clone(), path, Some(&world.admin), "application/json", body).await;
        assert_eq!(response.status.as_u16(), status, "{method} {path}: {}", response.text);
        assert_eq!(response.error_code().as_deref(), Some(code), "{method} {path}: {}", response.text);
        assert!(response.json()["request_id"].is_string(), "{}", response.text);
    }
    let found = world.api.get("/v1/audit/entries?action=request.invalid", &world.regulator).await.ok().expect("search");
    let entries = found["entries"].as_array().expect("entries");
    let reasons: Vec<&str> = entries.iter().filter_map(|entry| entry["reason"].as_str()).collect();
    for code in ["invalid_request", "not_found", "method_not_allowed", "payload_too_large"] {
        assert!(reasons.contains(&code), "no request.invalid with {code}: {reasons:?}");
    }
    let malformed = entries.iter().find(|entry| entry["object"] == "POST /v1/principals").expect("the malformed body");
    assert_eq!(malformed["outcome"], "denied");
    assert!(malformed["actor_id"].is_i64(), "the authenticated caller is named: {malformed}");
    world.assert_log_verifies().await;
}

/// Applications and models are read through the gate: by their submitter and by reviewers
/// outside its organisation, each read audited; a reviewer of the submitting organisation
/// and another operator are refused, and the refusal is audited too.
#[tokio::test]
async fn applications_and_models_are_read_through_the_gate_and_audited() {
    let world = World::new(50, 1.0).await;
    let colleague = world.colleague_reviewer().await;
    for path in [format!("/v1/applications/{}", world.application_id), format!("/v1/models/{}", world.model_id)] {
        world.api.get(&path, &world.operator).await.ok().expect("the submitter reads it");
        world.api.get(&path, &world.bureau).await.ok().expect("an outside reviewer reads it");
        expect_error(&world.api.get(&path, &colleague).await, "self_review");
        expect_error(&world.api.get(&path, &world.other_operator).await, "wrong_role");
        expect_error(&world.api.get(&path, &world.regulator).await, "wrong_role");
    }
    for action in ["application.read", "model.read"] {
        let found =
            world.api.get(&format!("/v1/audit/entries?action={action}"), &world.regulator).await.ok().expect("search");
        let outcomes: Vec<&str> =
            found["entries"].as_array().expect("entries").iter().filter_map(|e| e["outcome"].as_str()).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == "ok").count(), 2, "{action}: {outcomes:?}");
        assert_eq!(outcomes.iter().filter(|o| **o == "denied").count(), 3, "{action}: {outcomes:?}");
    }
    world.assert_log_verifies().await;
}

/// An administrator lists every account, and its approval queue is `?pending=true`; anyone
/// else lists only its own account. No list carries a token or a token's hash.
#[tokio::test]
async fn accounts_are_listed_to_administrators_and_each_to_itself() {
    let world = World::new(50, 1.0).await;
    let bureau = organisation(&world.api, &world.admin, "Big Data Bureau").await;
    let body =
        json!({"name": "waiting", "role": "reviewer", "reviewer_kind": "data_bureau", "organisation_id": bureau});
    let waiting = world.api.post("/v1/principals", &world.admin, &body).await.json()["id"].clone();

    let all = world.api.get("/v1/principals", &world.admin).await.ok().expect("list");
    let principals = all["principals"].as_array().expect("principals");
    assert!(principals.len() >= 8, "the world's principals and the waiting one: {all}");
    let text = all.to_string();
    for token in [&world.admin, &world.operator, &world.bureau, &world.regulator] {
        assert!(!text.contains(token.as_str()), "a token in a list");
    }
    assert!(!text.contains("hash"), "{text}");
    let queue = world.api.get("/v1/principals?pending=true", &world.admin).await.ok().expect("queue");
    let queued: Vec<&serde_json::Value> =
        queue["principals"].as_array().expect("queue").iter().map(|p| &p["id"]).collect();
    assert_eq!(queued, [&waiting]);
    let operators = world.api.get("/v1/principals?role=operator", &world.second_admin).await.ok().expect("operators");
    assert!(operators["principals"].as_array().expect("operators").iter().all(|p| p["role"] == "operator"));
    assert_eq!(operators["principals"].as_array().map(Vec::len), Some(2), "{operators}");

    for token in [&world.operator, &world.provider, &world.department, &world.regulator] {
        let own = world.api.get("/v1/principals", token).await.ok().expect("own");
        assert_eq!(own["principals"].as_array().map(Vec::len), Some(1), "only itself: {own}");
    }
    let operator = world.api.get("/v1/principals", &world.operator).await.ok().expect("own");
    assert_eq!(operator["principals"][0]["licence_number"], "ZY-1");
    expect_error(&world.api.get("/v1/principals?role=root", &world.admin).await, "invalid_request");
    assert_eq!(world.audit_entries("principal.list").await.len(), 8, "one entry per page answered");
}

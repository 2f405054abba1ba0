//! Usage figures and alerts: what each role may see of them, that they count what
//! happened, that alerts are recorded in the log once and can be computed again from an
//! export by a regulator, and that they come as CSV.

use serde_json::json;
use sluice::examples::VEHICLE_RISK_MANIFEST;
use sluice_audit::AuditEntry;
use sluice_audit::alerts::{AlertRules, detect, recorded};

use crate::harness::{World, module_base64, padded_module};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_runs_rows_epsilon_and_reviews_per_scenario_and_month_for_those_who_may_see_it() {
    let world = World::new(200, 10.0).await;
    world.run().await.ok().expect("first run");
    world.run().await.ok().expect("second run");
    let month = crate::harness::time(0)[..7].to_owned();

    for token in [&world.operator, &world.regulator, &world.provider] {
        let usage = world.api.get("/v1/usage", token).await.ok().expect("usage");
        let rows = usage["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 1, "{usage}");
        let row = &rows[0];
        assert_eq!(row["month"], month.as_str());
        assert_eq!(row["authorisation_id"], world.authorisation_id);
        assert_eq!((row["runs"].as_i64(), row["runs_released"].as_i64()), (Some(2), Some(2)));
        assert_eq!(row["rows_processed"], 400, "two runs over 200 rows");
        assert_eq!(row["epsilon_spent"], 1.0);
        assert_eq!((row["models_submitted"].as_i64(), row["models_reviewed"].as_i64()), (Some(1), Some(1)));
        assert_eq!(row["review_turnaround_hours_mean"], 0.0, "reviewed at the moment of submission (a still clock)");
        assert_eq!(row["operator_organisation"], "Qianbei Data");
        assert_eq!(row["provider_organisation"], "Traffic Police");
    }
    // Another operator sees nothing of this scenario; months outside the range nothing either.
    let other = world.api.get("/v1/usage", &world.other_operator).await.ok().expect("usage");
    assert_eq!(other["rows"], json!([]));
    let later = world.api.get("/v1/usage?from=2099-01", &world.regulator).await.ok().expect("usage");
    assert_eq!(later["rows"], json!([]));
    let bad = world.api.get("/v1/usage?from=2026-13", &world.regulator).await;
    assert_eq!((bad.status.as_u16(), bad.error_code().as_deref()), (400, Some("invalid_request")));

    // CSV: a header and one line, the purpose quoted as CSV needs.
    let csv = world.api.get("/v1/usage.csv", &world.provider).await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.text);
    assert!(lines[0].starts_with("month,authorisation_id,purpose,"));
    assert!(
        lines[1].starts_with(&format!("{month},{},vehicle risk,Qianbei Data,", world.authorisation_id)),
        "{}",
        lines[1]
    );
    assert!(!world.audit_entries("usage.read").await.is_empty(), "reading usage is audited");
}

fn entries(export: &str) -> Vec<AuditEntry> {
    export.lines().filter_map(|line| serde_json::from_str::<AuditEntry>(line).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_computed_from_the_log_recorded_once_and_found_again_in_an_export() {
    let world = World::new(200, 10.0).await;

    // An operator probing another's scenario: twelve denials in a minute.
    for _ in 0..12 {
        let refused = world.run_as(&world.other_operator, world.authorisation_id, world.model_id).await;
        assert_eq!(refused.status, 403);
    }
    // A model rejected, then another submitted under the same authorisation.
    let world = &world;
    let submit = |padding| {
        let body = json!({
            "authorisation_id": world.authorisation_id,
            "module_base64": module_base64(&padded_module(padding)),
            "manifest": VEHICLE_RISK_MANIFEST,
        });
        async move { world.api.post("/v1/models", &world.operator, &body).await.ok().expect("model")["id"].clone() }
    };
    let rejected = submit(16).await;
    world
        .api
        .post(&format!("/v1/models/{rejected}/reviews"), &world.bureau, &json!({"approve": false, "comment": "no"}))
        .await
        .ok()
        .expect("rejected");
    submit(32).await;

    // Only regulators read alerts.
    let refused = world.api.get("/v1/alerts", &world.operator).await;
    assert_eq!(refused.status, 403);
    let alerts = world.api.get("/v1/alerts", &world.regulator).await.ok().expect("alerts");
    let list = alerts["alerts"].as_array().expect("alerts");
    let kinds: Vec<&str> = list.iter().filter_map(|alert| alert["kind"].as_str()).collect();
    assert!(kinds.contains(&"denial_burst"), "{alerts}");
    assert!(kinds.contains(&"resubmission_after_rejection"), "{alerts}");
    let burst = list.iter().find(|alert| alert["kind"] == "denial_burst").expect("burst");
    assert_eq!(burst["count"], 10);
    assert!(burst["subject"].as_str().expect("subject").starts_with("principal:"));

    // Asking again records nothing new: each alert is in the log once.
    let again = world.api.get("/v1/alerts", &world.regulator).await.ok().expect("alerts");
    assert_eq!(again["alerts"].as_array().map(Vec::len), Some(list.len()));
    assert_eq!(world.audit_entries("alert.raise").await.len(), list.len());

    // A regulator computes the same alerts from the export alone.
    let export = world.export().await;
    let entries = entries(&export);
    let found = detect(&entries, &AlertRules::default());
    let logged = recorded(&entries);
    assert_eq!(found.len(), logged.len());
    for alert in &found {
        assert!(logged.contains_key(&alert.key()), "{alert:?} was not recorded");
    }

    let csv = world.api.get("/v1/alerts.csv", &world.regulator).await;
    assert_eq!(csv.status, 200);
    assert!(csv.text.starts_with("seq,time,kind,subject,count,from_seq,to_seq\n"));
    assert!(csv.text.contains(",denial_burst,principal:"), "{}", csv.text);
    world.assert_log_verifies().await;
}

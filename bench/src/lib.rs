//! The benchmark's shared part: the scenario set up through the API (organisations,
//! principals under the two-person rule, the vehicles dataset, an application with both
//! reviews, the reference model and its review), used by `sluice-bench` and by the
//! criterion bench of a run's fixed cost (`benches/run.rs`).
//!
//! It must not be used outside benchmarks: its principals and budgets are made for
//! measuring, with no care for a real platform's limits.

use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use sluice::client::InProcessClient;
use sluice::examples::{VEHICLE_RISK_WASM, VEHICLES_SCHEMA};
use sluice_gateway::ids::{AuthorisationId, DatasetId, ModelId};
use sluice_gateway::service::App;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The reference job's manifest: the vehicle-risk model grouped by district, ε = 1.
pub const REFERENCE_MANIFEST: &str = include_str!("../reference.manifest.toml");

pub fn time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The scenario, set up through the API: the tokens and ids the measured steps need.
pub struct Scenario {
    pub provider: String,
    pub operator: String,
    pub bureau: String,
    pub department: String,
    pub dataset_id: DatasetId,
    /// The inclusive-finance scenario's two departments: the tax bureau's provider and
    /// reviewer, then the social-insurance bureau's.
    pub tax_provider: String,
    pub tax_reviewer: String,
    pub insurance_provider: String,
    pub insurance_reviewer: String,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens stay out of any output.
        f.debug_struct("Scenario").field("dataset_id", &self.dataset_id).finish_non_exhaustive()
    }
}

/// The provider, operator, bureau reviewer and department reviewer, each in its
/// organisation, then the two departments of the joined scenario (a provider and a
/// reviewer each), created by one administrator and approved by another.
async fn principals(app: &Arc<App>, api: &InProcessClient) -> anyhow::Result<Vec<String>> {
    let admin = app.bootstrap_admin("bench admin", "Bench Platform").await?.token;
    let second = app.add_host_admin("bench second admin", "Bench Platform").await?.token;
    let now = OffsetDateTime::now_utc();
    let mut tokens = Vec::new();
    for (name, body) in [
        ("Bench Traffic Police", json!({"name": "provider", "role": "provider"})),
        (
            "Bench Operator Co.",
            json!({"name": "operator", "role": "operator", "licence": {"number": "BENCH-1",
                "valid_from": time(now - time::Duration::days(1)), "valid_until": time(now + time::Duration::days(30))}}),
        ),
        ("Bench Data Bureau", json!({"name": "bureau", "role": "reviewer", "reviewer_kind": "data_bureau"})),
        (
            "Bench Traffic Police",
            json!({"name": "department", "role": "reviewer", "reviewer_kind": "providing_department"}),
        ),
        ("Bench Tax Bureau", json!({"name": "tax provider", "role": "provider"})),
        (
            "Bench Tax Bureau",
            json!({"name": "tax reviewer", "role": "reviewer", "reviewer_kind": "providing_department"}),
        ),
        ("Bench Social Insurance Bureau", json!({"name": "si provider", "role": "provider"})),
        (
            "Bench Social Insurance Bureau",
            json!({"name": "si reviewer", "role": "reviewer", "reviewer_kind": "providing_department"}),
        ),
    ] {
        let organisations = api.get("/v1/organisations", &admin).await.ok()?;
        let existing = organisations["organisations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|organisation| organisation["name"] == name)
            .and_then(|organisation| organisation["id"].as_i64());
        let organisation = match existing {
            Some(id) => id,
            None => api.post("/v1/organisations", &admin, &json!({"name": name})).await.ok()?["id"]
                .as_i64()
                .context("organisation id")?,
        };
        let mut body = body;
        body["organisation_id"] = json!(organisation);
        let mut created = api.post("/v1/principals", &admin, &body).await.ok()?;
        if created["state"] == "pending_approval" {
            let id = created["id"].as_i64().context("principal id")?;
            created = api.post(&format!("/v1/principals/{id}/approve"), &second, &json!({})).await.ok()?;
        }
        tokens.push(created["token"].as_str().context("token")?.to_owned());
    }
    Ok(tokens)
}

pub async fn scenario(app: &Arc<App>, api: &InProcessClient) -> anyhow::Result<Scenario> {
    let tokens = principals(app, api).await?;
    let [provider, operator, bureau, department, tax_provider, tax_reviewer, insurance_provider, insurance_reviewer] =
        <[String; 8]>::try_from(tokens).map_err(|_| anyhow::anyhow!("eight principals"))?;
    let dataset =
        api.post("/v1/datasets", &provider, &json!({"schema": VEHICLES_SCHEMA, "epsilon_total": 1000.0})).await.ok()?;
    let dataset_id = DatasetId(dataset["id"].as_i64().context("dataset id")?);
    Ok(Scenario {
        provider,
        operator,
        bureau,
        department,
        dataset_id,
        tax_provider,
        tax_reviewer,
        insurance_provider,
        insurance_reviewer,
    })
}

/// The application, both reviews, the model and its review: the authorisation and model.
pub async fn approve_model(
    api: &InProcessClient,
    scenario: &Scenario,
    manifest: &str,
) -> anyhow::Result<(AuthorisationId, ModelId)> {
    let now = OffsetDateTime::now_utc();
    let application = api
        .post(
            "/v1/applications",
            &scenario.operator,
            &json!({
                "dataset_id": scenario.dataset_id, "purpose": "benchmark", "use_scope": "benchmark",
                "security_measures": "sandbox", "epsilon": 1000.0,
                "columns": ["vehicle_age_years", "violations_12m", "accidents_5y", "insured_value_cny", "district"],
                "valid_from": time(now - time::Duration::hours(1)), "valid_until": time(now + time::Duration::days(1)),
            }),
        )
        .await
        .ok()?;
    let reviews = format!("/v1/applications/{}/reviews", application["id"]);
    api.post(&reviews, &scenario.bureau, &json!({"approve": true})).await.ok()?;
    let approved = api.post(&reviews, &scenario.department, &json!({"approve": true})).await.ok()?;
    let authorisation_id = AuthorisationId(approved["authorisation_id"].as_i64().context("authorisation id")?);
    let model = sluice::demo::submit_approved_model(
        api,
        &scenario.operator,
        &scenario.bureau,
        authorisation_id.0,
        VEHICLE_RISK_WASM,
        manifest,
    )
    .await?;
    let model_id = ModelId(model);
    Ok((authorisation_id, model_id))
}

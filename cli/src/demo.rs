//! `sluice demo`: the whole lifecycle, end to end, against a fresh data directory with an
//! embedded SQLite, driven through the real HTTP API in process.
//!
//! It owns the narration only; every step is a real API call, and the run's numbers come
//! from the real model over the real encrypted data. It must not call the service layer
//! directly or print anything the API did not return.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::client::InProcessClient;
use crate::examples::{
    ENTERPRISE_TAX_SCHEMA, EXAMPLE_MODELS, SOCIAL_INSURANCE_SCHEMA, VEHICLE_RISK_MANIFEST, VEHICLE_RISK_WASM,
    VEHICLES_ROWS, VEHICLES_SCHEMA, VEHICLES_SEED, enterprise_csvs, vehicles_csv,
};
use sluice_audit::verify_export;
use sluice_gateway::api::router;
use sluice_gateway::config::Config;
use sluice_gateway::service::{App, Clock};
use sluice_gateway::store::format_time;

/// What the demo proved, for callers (and tests) that want more than the narration.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub released_runs: u64,
    pub audit_entries: u64,
    pub denied: u64,
    pub root_hex: String,
}

struct Narrator<'a, W: Write> {
    out: &'a mut W,
    step: u32,
}

impl<W: Write> Narrator<'_, W> {
    fn step(&mut self, title: &str) -> anyhow::Result<()> {
        self.step += 1;
        writeln!(self.out, "\n{}. {title}", self.step)?;
        Ok(())
    }

    fn say(&mut self, line: impl AsRef<str>) -> anyhow::Result<()> {
        writeln!(self.out, "   {}", line.as_ref())?;
        Ok(())
    }
}

fn expect_denial(response: crate::client::ApiResponse, code: &str) -> anyhow::Result<String> {
    if response.error_code().as_deref() != Some(code) {
        bail!("expected a `{code}` denial, got HTTP {}: {}", response.status, response.text);
    }
    Ok(response.json()["error"]["message"].as_str().unwrap_or_default().to_owned())
}

/// Runs the demo in `dir` (which must not be initialised yet), narrating to `out`.
pub async fn run_demo(dir: &Path, out: &mut impl Write) -> anyhow::Result<DemoSummary> {
    let mut say = Narrator { out, step: 0 };
    writeln!(say.out, "Sluice demo: a licensed operator assesses vehicle risk for the car-owner service")?;
    writeln!(say.out, "(seed 002, item 11) without ever seeing a vehicle record.")?;

    say.step("Initialise a data directory")?;
    // The demo uses the defaults, whatever the environment says, so it always tells the
    // same story.
    let mut config = Config::new(dir);
    // The regulator's witness runs on the regulator's own machine; the gateway is told
    // which witness's cosignatures to accept (its vkey), nothing more.
    let witness_name = "cac.zunyi.example/witness";
    let witness = sluice_audit::SigningKey::generate().map_err(anyhow::Error::msg)?;
    let witness_vkey = witness.public_key().vkey(witness_name, sluice_audit::witness::ED25519_COSIGNATURE);
    config.witnesses = vec![witness_vkey.clone()];
    config.data_dir.init(true, &config.database, &config.objects).await?;
    let app = App::open(config, Clock::System).await?;
    let admin = app.bootstrap_admin("platform admin", "Zunyi Big Data Platform").await?.token;
    let second_admin = app.add_host_admin("platform duty officer", "Zunyi Big Data Platform").await?.token;
    let api = InProcessClient::new(router(app.clone()));
    say.say(format!("{}: SQLite database, master key (0600), audit signing key (0600)", dir.display()))?;
    say.say("two administrators created at the host: one creates accounts, the other approves them")?;

    say.step("The admin creates the organisations, then the principals, each with its own API token")?;
    let mut organisations = std::collections::BTreeMap::new();
    for name in [
        "Zunyi Traffic Police Detachment",
        "Qianbei Data Operations Co.",
        "Zunyi Big Data Development Administration",
        "Zunyi Cyberspace Administration",
        "Zunyi Tax Bureau",
        "Zunyi Social Insurance Bureau",
    ] {
        let created = api.post("/v1/organisations", &admin, &json!({ "name": name })).await.ok()?;
        organisations.insert(name, created["id"].as_i64().context("organisation id")?);
    }
    let copy = api.post("/v1/organisations", &admin, &json!({"name": "qianbei data operations co. "})).await;
    if copy.status.as_u16() != 409 {
        bail!("a second spelling of an organisation was not refused: HTTP {}: {}", copy.status, copy.text);
    }
    say.say(format!(
        "{} organisations, each an id; a second spelling (`qianbei data operations co. `) is refused",
        organisations.len()
    ))?;
    let now = OffsetDateTime::now_utc();
    let create = |mut body: Value, organisation: &str| {
        let api = api.clone();
        let admin = admin.clone();
        let second_admin = second_admin.clone();
        body["organisation_id"] = json!(organisations[organisation]);
        async move {
            let created = api.post("/v1/principals", &admin, &body).await.ok()?;
            if created["state"] == "pending_approval" {
                // The two-person rule: reviewers and licences take a second administrator.
                let id = created["id"].as_i64().context("principal id")?;
                return api.post(&format!("/v1/principals/{id}/approve"), &second_admin, &json!({})).await.ok();
            }
            Ok(created)
        }
    };
    let provider =
        create(json!({"name": "traffic data office", "role": "provider"}), "Zunyi Traffic Police Detachment").await?;
    let licence = json!({"number": "ZY-SJYY-2026-017", "valid_from": format_time(now - time::Duration::days(30)), "valid_until": format_time(now + time::Duration::days(365))});
    let operator = create(
        json!({"name": "risk analytics team", "role": "operator", "licence": licence}),
        "Qianbei Data Operations Co.",
    )
    .await?;
    let bureau = create(
        json!({"name": "demand review desk", "role": "reviewer", "reviewer_kind": "data_bureau"}),
        "Zunyi Big Data Development Administration",
    )
    .await?;
    let department = create(
        json!({"name": "data release officer", "role": "reviewer", "reviewer_kind": "providing_department"}),
        "Zunyi Traffic Police Detachment",
    )
    .await?;
    let regulator =
        create(json!({"name": "audit inspector", "role": "regulator"}), "Zunyi Cyberspace Administration").await?;
    let token = |principal: &Value| principal["token"].as_str().unwrap_or_default().to_owned();
    let (provider, operator, bureau, department, regulator) =
        (token(&provider), token(&operator), token(&bureau), token(&department), token(&regulator));
    say.say("provider: Zunyi Traffic Police Detachment (government department)")?;
    say.say("operator: Qianbei Data Operations Co., licence ZY-SJYY-2026-017")?;
    say.say("reviewers: the Big Data Development Administration (data bureau) and the detachment")?;
    say.say("regulator: Zunyi Cyberspace Administration")?;
    say.say("the reviewers and the licensed operator got their tokens only when the second admin approved")?;

    say.step("The provider registers the vehicles dataset and ingests it, encrypted")?;
    let dataset =
        api.post("/v1/datasets", &provider, &json!({"schema": VEHICLES_SCHEMA, "epsilon_total": 10.0})).await.ok()?;
    let dataset_id = dataset["id"].as_i64().context("dataset id")?;
    let csv = vehicles_csv(VEHICLES_ROWS, VEHICLES_SEED);
    let csv_bytes = csv.len();
    let ingest = api.put_csv(&format!("/v1/datasets/{dataset_id}/data"), &provider, csv.into_bytes()).await.ok()?;
    say.say(format!(
        "{} rows ({:.1} MB of CSV) sealed into {} AES-256-GCM chunks under a fresh data key",
        ingest["rows"],
        csv_bytes as f64 / 1e6,
        ingest["chunks"]
    ))?;
    say.say("the data key is stored only wrapped by the master key; no plaintext was written")?;
    let catalogue = api.get("/v1/catalogue", &operator).await.ok()?;
    let columns = catalogue["datasets"][0]["columns"].as_array().map_or(0, Vec::len);
    say.say(format!("the operator can read the catalogue: {columns} columns with their classification, never rows"))?;

    say.step("One scenario, one application: the operator applies")?;
    let application = api
        .post(
            "/v1/applications",
            &operator,
            &json!({
                "dataset_id": dataset_id,
                "purpose": "vehicle risk assessment for motor insurance pricing",
                "use_scope": "aggregate risk indicators for the Zunyi market only",
                "security_measures": "sandboxed model, DP outputs only, no row-level export",
                "columns": ["vehicle_age_years", "violations_12m", "accidents_5y", "insured_value_cny"],
                "valid_from": format_time(now - time::Duration::hours(1)),
                "valid_until": format_time(now + time::Duration::days(90)),
                "epsilon": 1.0,
            }),
        )
        .await
        .ok()?;
    let application_id = application["id"].as_i64().context("application id")?;
    say.say(format!("application {application_id}: four columns, 90 days, privacy budget epsilon = 1.0"))?;
    let early =
        api.post(&format!("/v1/applications/{application_id}/reviews"), &department, &json!({"approve": true})).await;
    say.say(format!("the department cannot review first: {}", expect_denial(early, "wrong_reviewer")?))?;

    say.step("One demand, one review: the data bureau, then the providing department, approve")?;
    api.post(
        &format!("/v1/applications/{application_id}/reviews"),
        &bureau,
        &json!({"approve": true, "comment": "operator qualified; purpose legitimate"}),
    )
    .await
    .ok()?;
    let approved = api
        .post(
            &format!("/v1/applications/{application_id}/reviews"),
            &department,
            &json!({"approve": true, "comment": "columns within level 3; aggregate use only"}),
        )
        .await
        .ok()?;
    let authorisation_id = approved["authorisation_id"].as_i64().context("authorisation id")?;
    say.say(format!("one scenario, one authorisation: authorisation {authorisation_id} created"))?;

    say.step("One model, one review: the operator uploads the vehicle-risk model")?;
    let model = api
        .post(
            "/v1/models",
            &operator,
            &json!({
                "authorisation_id": authorisation_id,
                "module_base64": base64::engine::general_purpose::STANDARD.encode(VEHICLE_RISK_WASM),
                "manifest": VEHICLE_RISK_MANIFEST,
            }),
        )
        .await
        .ok()?;
    let model_id = model["id"].as_i64().context("model id")?;
    let digest = model["digest"].as_str().unwrap_or_default().to_owned();
    say.say(format!(
        "{} bytes of WebAssembly passed static review; digest {}…",
        VEHICLE_RISK_WASM.len(),
        &digest[..16]
    ))?;
    let early_run =
        api.post("/v1/runs", &operator, &json!({"authorisation_id": authorisation_id, "model_id": model_id})).await;
    say.say(format!("running before review is refused: {}", expect_denial(early_run, "model_not_approved")?))?;
    let self_review = api.post(&format!("/v1/models/{model_id}/reviews"), &operator, &json!({"approve": true})).await;
    say.say(format!("the operator cannot approve its own model: {}", expect_denial(self_review, "wrong_role")?))?;
    api.post(
        &format!("/v1/models/{model_id}/reviews"),
        &bureau,
        &json!({
            "approve": true,
            "comment": "dummy run passed; reads four granted columns; outputs are aggregates only",
            "checklist": {"usability": true, "consistency": true, "compliance": true, "security": true},
        }),
    )
    .await
    .ok()?;
    say.say("a reviewer saw the automated results (static review, a run on 1,000 dummy rows), confirmed")?;
    say.say("usability, consistency, compliance and security, and approved; the approval is bound to that digest")?;

    // The regulator keeps a checkpoint now, to check later that the log only grew.
    let kept = api.get("/v1/audit/checkpoint?fresh=true", &regulator).await.ok()?;
    let kept_checkpoint = kept["checkpoint"].as_str().unwrap_or_default().to_owned();

    say.step("The operator runs the model in the sandbox")?;
    let regulator_run =
        api.post("/v1/runs", &regulator, &json!({"authorisation_id": authorisation_id, "model_id": model_id})).await;
    say.say(format!("a regulator cannot run models: {}", expect_denial(regulator_run, "wrong_role")?))?;
    let mut released_runs = 0;
    let mut last_run_id = 0;
    for attempt in 1..=2 {
        let run = api
            .post("/v1/runs", &operator, &json!({"authorisation_id": authorisation_id, "model_id": model_id}))
            .await
            .ok()?;
        released_runs += 1;
        last_run_id = run["run_id"].as_i64().context("run id")?;
        say.say(format!(
            "run {attempt}: {} rows, each through a pure row function (no state crosses rows); epsilon charged {}, remaining {}",
            run["rows"], run["epsilon_charged"], run["authorisation_epsilon_remaining"]
        ))?;
        if attempt == 1 {
            say.say(format!(
                "   visible at {}, a time fixed before any data was read, so its timing says nothing about the data",
                run["visible_at"].as_str().unwrap_or_default()
            ))?;
        }
        for output in run["outputs"].as_array().into_iter().flatten() {
            let half_width = output["ci95_half_width"].as_f64().unwrap_or_default();
            // Show the digits the noise leaves meaningful, and whole numbers for counts.
            let decimals =
                if output["kind"] == "count" { 0 } else { (2.0 - half_width.log10().floor()).clamp(0.0, 8.0) as usize };
            say.say(format!(
                "   {:<20} {:>16.decimals$} ± {half_width:.decimals$} (95%; Laplace noise by opendp, epsilon {:.2})",
                output["name"].as_str().unwrap_or_default(),
                output["value"].as_f64().unwrap_or_default(),
                output["epsilon"].as_f64().unwrap_or_default(),
            ))?;
        }
    }
    let exhausted =
        api.post("/v1/runs", &operator, &json!({"authorisation_id": authorisation_id, "model_id": model_id})).await;
    say.say(format!("a third run is refused: {}", expect_denial(exhausted, "budget_exhausted")?))?;

    released_runs += inclusive_finance(&mut say, &api, &create, &operator, &bureau).await?;

    say.step("The operator fetches a result again, with its receipt")?;
    let fetched = api.get(&format!("/v1/runs/{last_run_id}"), &operator).await.ok()?;
    say.say(format!(
        "run {last_run_id}: {} noisy aggregates, epsilon remaining {}",
        fetched["outputs"].as_array().map_or(0, Vec::len),
        fetched["authorisation_epsilon_remaining"]
    ))?;
    let key =
        api.send(axum::http::Method::GET, "/v1/audit/public-key", None, "application/json", Vec::new()).await.ok()?;
    let pinned =
        sluice_audit::PublicKey::parse(key["public_key"].as_str().unwrap_or_default()).map_err(anyhow::Error::msg)?;
    let receipt: sluice_audit::Receipt =
        serde_json::from_value(fetched["receipt"].clone()).context("the result carries a receipt")?;
    let entry =
        sluice_audit::verify_receipt(&receipt, &pinned).map_err(|problem| anyhow::anyhow!("receipt: {problem}"))?;
    say.say(format!(
        "its receipt verifies offline: entry {} ({}) is in the log, by an inclusion proof to a signed checkpoint",
        entry.seq, entry.action
    ))?;

    say.step("The regulator's witness cosigns the log's latest checkpoint")?;
    let request = api.get("/v1/audit/witness?old=0", &regulator).await;
    if !request.status.is_success() {
        bail!("the witness request failed: HTTP {} {}", request.status, request.text);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let (witnessed, cosignature) =
        sluice_audit::witness::add_checkpoint(None, &pinned, &request.text, witness_name, &witness, now)
            .map_err(|refusal| anyhow::anyhow!("the witness refused: {refusal}"))?;
    let witnessed = sluice_audit::Checkpoint::verify(&witnessed, &pinned).map_err(anyhow::Error::msg)?;
    api.post("/v1/audit/cosignatures", &regulator, &json!({"size": witnessed.size, "cosignature": cosignature}))
        .await
        .ok()?;
    say.say(format!(
        "the witness checked the checkpoint of {} entries (signed {}) and cosigned it; the gateway now serves it with the cosignature",
        witnessed.size,
        witnessed.time.as_deref().unwrap_or("at an unknown time")
    ))?;
    say.say("whoever runs the server can no longer rewrite those entries without the witness seeing two histories")?;

    say.step("The regulator exports the audit log and verifies it offline")?;
    let export = api.get("/v1/audit/export", &regulator).await;
    if !export.status.is_success() {
        bail!("audit export failed: HTTP {} {}", export.status, export.text);
    }
    let export_path = dir.join("audit-export.jsonl");
    std::fs::write(&export_path, &export.text).with_context(|| format!("writing {}", export_path.display()))?;
    // What the regulator keeps beside the export: the key pinned out of band and the
    // checkpoint kept earlier (`sluice audit verify` takes both).
    let pinned_path = dir.join("public-key.txt");
    std::fs::write(&pinned_path, format!("{pinned}\n"))
        .with_context(|| format!("writing {}", pinned_path.display()))?;
    let witness_path = dir.join("witness-vkey.txt");
    std::fs::write(&witness_path, format!("{witness_vkey}\n"))
        .with_context(|| format!("writing {}", witness_path.display()))?;
    let kept_path = dir.join("kept-checkpoint.txt");
    std::fs::write(&kept_path, &kept_checkpoint).with_context(|| format!("writing {}", kept_path.display()))?;
    let summary = verify_export(&export.text, sluice_audit::KeyTrust::Pinned(&pinned), Some(&kept_checkpoint))
        .map_err(|error| anyhow::anyhow!("audit verification failed: {error}"))?;
    say.say(format!("export written to {} (`sluice audit verify` checks it with no server)", export_path.display()))?;
    say.say(format!(
        "verified: {} entries, {} signed checkpoints, Merkle root {}…, all signed by the pinned Ed25519 key",
        summary.entries,
        summary.checkpoints,
        &summary.root_hex[..16]
    ))?;
    say.say(format!(
        "it extends the checkpoint the regulator kept at {} entries: nothing was rolled back or rewritten",
        summary.trusted_size.unwrap_or_default()
    ))?;
    let (cosigned_size, _) = sluice_audit::witness::witnessed(&export.text, witness_name, &witness.public_key())
        .context("the export carries no cosignature of the regulator's witness")?;
    say.say(format!("the witness's cosignature covers the first {cosigned_size} entries"))?;
    say.say(
        "roles and organisations as created, a second administrator for every reviewer and licence, no review from \
         one's own organisation; every run by its authorisation's operator, inside its window, with a model \
         approved for that authorisation, within both budgets",
    )?;
    say.say(format!("{} denials and {} failures recorded; by action:", summary.denied, summary.failed))?;
    for (action, count) in &summary.by_action {
        say.say(format!("   {action:<22} {count}"))?;
    }
    app.store().close().await;
    writeln!(say.out, "\nDone: data usable, not visible. Every step above is in the verified audit log.")?;
    Ok(DemoSummary {
        released_runs,
        audit_entries: summary.entries,
        denied: summary.denied,
        root_hex: summary.root_hex,
    })
}

/// Enterprises the inclusive-finance step's tax bureau holds.
const ENTERPRISES: usize = 5_000;

/// Seed 002 item 16 (inclusive finance) over two departments' data: the tax bureau's and
/// the social-insurance bureau's records of the same enterprises, joined inside Sluice on
/// the enterprise code. Both departments approve the one application; the run charges both
/// datasets. Returns the runs released.
async fn inclusive_finance<W, F, Fut>(
    say: &mut Narrator<'_, W>,
    api: &InProcessClient,
    create: &F,
    operator: &str,
    bureau: &str,
) -> anyhow::Result<u64>
where
    W: Write,
    F: Fn(Value, &str) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    say.step("Inclusive finance: one scenario over two departments' data, joined inside Sluice")?;
    let token = |principal: Value| principal["token"].as_str().unwrap_or_default().to_owned();
    let tax = token(create(json!({"name": "tax data office", "role": "provider"}), "Zunyi Tax Bureau").await?);
    let insurance = token(
        create(json!({"name": "social insurance data office", "role": "provider"}), "Zunyi Social Insurance Bureau")
            .await?,
    );
    let tax_reviewer = token(
        create(
            json!({"name": "tax data release officer", "role": "reviewer", "reviewer_kind": "providing_department"}),
            "Zunyi Tax Bureau",
        )
        .await?,
    );
    let insurance_reviewer = token(
        create(
            json!({"name": "social insurance release officer", "role": "reviewer", "reviewer_kind": "providing_department"}),
            "Zunyi Social Insurance Bureau",
        )
        .await?,
    );
    let (tax_csv, insurance_csv) = enterprise_csvs(ENTERPRISES, 2026);
    let mut datasets = Vec::new();
    for (provider, schema, csv) in
        [(&tax, ENTERPRISE_TAX_SCHEMA, tax_csv), (&insurance, SOCIAL_INSURANCE_SCHEMA, insurance_csv)]
    {
        let dataset =
            api.post("/v1/datasets", provider, &json!({"schema": schema, "epsilon_total": 5.0})).await.ok()?;
        let id = dataset["id"].as_i64().context("dataset id")?;
        let ingest = api.put_csv(&format!("/v1/datasets/{id}/data"), provider, csv.into_bytes()).await.ok()?;
        datasets.push((id, ingest["rows"].as_i64().unwrap_or_default()));
    }
    let ((tax_dataset, tax_rows), (insurance_dataset, insurance_rows)) = (datasets[0], datasets[1]);
    say.say(format!(
        "the tax bureau loads {tax_rows} enterprises, the social-insurance bureau {insurance_rows} accounts, each keyed"
    ))?;
    say.say(
        "by the unified social credit code, a level-4 column neither department grants and no model ever sees: ingest",
    )?;
    say.say("checks each code and stores only its pseudonym under the deployment's secret, the same in both datasets")?;
    let application = api
        .post(
            "/v1/applications",
            operator,
            &json!({
                "dataset_id": tax_dataset,
                "purpose": "SME credit profiles for inclusive-finance lending",
                "use_scope": "aggregate indicators per industry",
                "security_measures": "sandboxed model, DP outputs only",
                "columns": ["industry", "years_operating", "annual_tax_paid_cny", "tax_violation"],
                "join": {"dataset_id": insurance_dataset, "columns": ["employees", "social_insurance_arrears_months"]},
                "valid_from": format_time(OffsetDateTime::now_utc() - time::Duration::hours(1)),
                "valid_until": format_time(OffsetDateTime::now_utc() + time::Duration::days(90)),
                "epsilon": 1.6,
            }),
        )
        .await
        .ok()?;
    let id = application["id"].as_i64().context("application id")?;
    let review = |token: &str| {
        let (api, token) = (api.clone(), token.to_owned());
        async move { api.post(&format!("/v1/applications/{id}/reviews"), &token, &json!({"approve": true})).await.ok() }
    };
    review(bureau).await?;
    let first = review(&tax_reviewer).await?;
    say.say(format!(
        "application {id} joins the two datasets; the data bureau approved, then the tax bureau: still {}",
        first["state"].as_str().unwrap_or_default()
    ))?;
    let approved = review(&insurance_reviewer).await?;
    let authorisation = approved["authorisation_id"].as_i64().context("authorisation id")?;
    say.say(format!("the social-insurance bureau approved last: authorisation {authorisation}, revocable by either"))?;
    let model = EXAMPLE_MODELS.iter().find(|model| model.name == "enterprise-credit").context("example model")?;
    let model_id = submit_approved_model(api, operator, bureau, authorisation, model.wasm, model.manifest).await?;
    let run =
        api.post("/v1/runs", operator, &json!({"authorisation_id": authorisation, "model_id": model_id})).await.ok()?;
    say.say(format!(
        "the enterprise-credit model ran on {} joined rows (one per enterprise of the tax bureau; the key removed",
        run["rows"]
    ))?;
    say.say("before the sandbox); epsilon 0.8 charged to the scenario and to both departments' datasets:")?;
    for output in run["outputs"].as_array().into_iter().flatten() {
        let groups = output["groups"].as_array().map_or(0, Vec::len);
        say.say(format!(
            "   {:<30} per industry ({groups} groups, small ones suppressed), epsilon {:.2}",
            output["name"].as_str().unwrap_or_default(),
            output["epsilon"].as_f64().unwrap_or_default()
        ))?;
    }
    let budget = api.get(&format!("/v1/authorisations/{authorisation}/budget"), operator).await.ok()?;
    say.say(format!(
        "lifetime budgets spent: tax bureau {}, social-insurance bureau {}",
        budget["dataset_epsilon_spent"], budget["joined_datasets"][0]["epsilon_spent"]
    ))?;
    Ok(1)
}

/// Submits `wasm` with `manifest` as `operator` under `authorisation`, and has `reviewer`
/// approve it with the whole seed 002 §23 checklist confirmed: the model's id.
pub async fn submit_approved_model(
    api: &InProcessClient,
    operator: &str,
    reviewer: &str,
    authorisation: i64,
    wasm: &[u8],
    manifest: &str,
) -> anyhow::Result<i64> {
    let body = json!({
        "authorisation_id": authorisation,
        "module_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
        "manifest": manifest,
    });
    let model_id = api.post("/v1/models", operator, &body).await.ok()?["id"].as_i64().context("model id")?;
    let checklist = json!({"usability": true, "consistency": true, "compliance": true, "security": true});
    api.post(&format!("/v1/models/{model_id}/reviews"), reviewer, &json!({"approve": true, "checklist": checklist}))
        .await
        .ok()?;
    Ok(model_id)
}

//! One scenario over several departments' data (issue 16): the tax bureau's, the
//! social-insurance bureau's and the market regulation bureau's records of the same
//! enterprises, joined inside the host on the enterprise code. Attacked from the positions that matter: an operator trying to run
//! with one department's approval missing, or after either revoked; a department
//! reviewing twice or a third department reviewing at all; a hostile approved model trying
//! to learn whether one enterprise has an account at the other department; and a scan for
//! a canary enterprise code everywhere a key could leak (responses, errors, dummy data,
//! automated review results, the audit export).

use serde_json::{Value, json};

use crate::harness::{World, approve_model, expect_error, module_base64, time};
use sluice::examples::{
    ENTERPRISE_TAX_SCHEMA, EXAMPLE_MODELS, MARKET_REGULATION_SCHEMA, SOCIAL_INSURANCE_SCHEMA, enterprise_csvs,
    market_regulation_csv,
};

/// A well-formed unified social credit code no generator makes (the generator's codes are
/// all 91520300…): if it appears anywhere outside the vault, in any spelling, a key leaked.
const CANARY_CODE: &str = "91520302MA6H7T3K2T";
/// The tax paid the canary enterprise declares: a value a hostile model can single out.
const CANARY_TAX: f64 = 4_321_987.0;
const ENTERPRISES: usize = 600;

/// The two departments, their datasets and data, on top of a [`World`] (whose bureau,
/// operator and regulator take part; its traffic police provide nothing here).
struct Fusion {
    world: World,
    tax_reviewer: String,
    insurance_reviewer: String,
    tax_provider: String,
    insurance_provider: String,
    tax_dataset: i64,
    insurance_dataset: i64,
    /// Every response body the test saw, to scan for the canary code.
    seen: std::sync::Mutex<Vec<String>>,
}

impl Fusion {
    async fn new() -> Fusion {
        let world = World::new(200, 1.0).await;
        let token = |principal: Value| principal["token"].as_str().expect("token").to_owned();
        let tax_provider =
            token(world.principal(json!({"name": "tax data", "role": "provider", "organisation": "Tax Bureau"})).await);
        let insurance_provider = token(
            world
                .principal(json!({"name": "si data", "role": "provider", "organisation": "Social Insurance Bureau"}))
                .await,
        );
        let tax_reviewer = token(world.principal(json!({"name": "tax review", "role": "reviewer", "reviewer_kind": "providing_department", "organisation": "Tax Bureau"})).await);
        let insurance_reviewer = token(world.principal(json!({"name": "si review", "role": "reviewer", "reviewer_kind": "providing_department", "organisation": "Social Insurance Bureau"})).await);
        let register = |token: String, schema: &'static str| {
            let api = world.api.clone();
            async move {
                api.post("/v1/datasets", &token, &json!({"schema": schema, "epsilon_total": 5.0}))
                    .await
                    .ok()
                    .expect("dataset")["id"]
                    .as_i64()
                    .expect("id")
            }
        };
        let tax_dataset = register(tax_provider.clone(), ENTERPRISE_TAX_SCHEMA).await;
        let insurance_dataset = register(insurance_provider.clone(), SOCIAL_INSURANCE_SCHEMA).await;
        let fusion = Fusion {
            world,
            tax_reviewer,
            insurance_reviewer,
            tax_provider,
            insurance_provider,
            tax_dataset,
            insurance_dataset,
            seen: std::sync::Mutex::new(Vec::new()),
        };
        let (tax, insurance) = fusion.data(true);
        fusion.ingest(&fusion.tax_provider, fusion.tax_dataset, tax).await;
        fusion.ingest(&fusion.insurance_provider, fusion.insurance_dataset, insurance).await;
        fusion
    }

    /// The two departments' CSVs, with the canary enterprise in the tax bureau's and, if
    /// `canary_insured`, with an account at the social-insurance bureau.
    fn data(&self, canary_insured: bool) -> (String, String) {
        let (mut tax, mut insurance) = enterprise_csvs(ENTERPRISES, 16);
        tax.push_str(&format!("{CANARY_CODE},liquor,12.0,{CANARY_TAX},false\n"));
        if canary_insured {
            insurance.push_str(&format!("{CANARY_CODE},40,0\n"));
        }
        (tax, insurance)
    }

    async fn ingest(&self, provider: &str, dataset: i64, csv: String) -> Value {
        let response =
            self.world.api.put_csv(&format!("/v1/datasets/{dataset}/data"), provider, csv.into_bytes()).await;
        self.saw(&response.text);
        response.ok().expect("ingest")
    }

    fn saw(&self, text: &str) {
        self.seen.lock().expect("lock").push(text.to_owned());
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> sluice::client::ApiResponse {
        let response = self.world.api.post(path, token, body).await;
        self.saw(&response.text);
        response
    }

    async fn get(&self, path: &str, token: &str) -> sluice::client::ApiResponse {
        let response = self.world.api.get(path, token).await;
        self.saw(&response.text);
        response
    }

    /// The operator applies for the enterprise-credit scenario over both datasets.
    async fn apply(&self, epsilon: f64) -> i64 {
        let body = json!({
            "dataset_id": self.tax_dataset,
            "purpose": "SME credit profile for inclusive finance",
            "use_scope": "aggregates per industry",
            "security_measures": "sandbox, DP only",
            "columns": ["industry", "years_operating", "annual_tax_paid_cny", "tax_violation"],
            "join": {"dataset_id": self.insurance_dataset, "columns": ["employees", "social_insurance_arrears_months"]},
            "valid_from": time(0),
            "valid_until": time(90),
            "epsilon": epsilon,
        });
        let application = self.post("/v1/applications", &self.world.operator, &body).await.ok().expect("application");
        assert_eq!(application["joins"][0]["dataset_id"], self.insurance_dataset);
        application["id"].as_i64().expect("id")
    }

    async fn review(&self, id: i64, token: &str, approve: bool) -> sluice::client::ApiResponse {
        self.post(&format!("/v1/applications/{id}/reviews"), token, &json!({"approve": approve})).await
    }

    /// The bureau, then both departments, approve: the authorisation.
    async fn approved(&self, epsilon: f64) -> i64 {
        let id = self.apply(epsilon).await;
        self.review(id, &self.world.bureau, true).await.ok().expect("bureau");
        self.review(id, &self.tax_reviewer, true).await.ok().expect("tax bureau");
        self.review(id, &self.insurance_reviewer, true).await.ok().expect("social insurance")["authorisation_id"]
            .as_i64()
            .expect("authorised")
    }

    /// Submits `module` with `manifest` under `authorisation` and has the bureau approve it.
    async fn approved_model(&self, authorisation: i64, module: &[u8], manifest: &str) -> i64 {
        let body =
            json!({"authorisation_id": authorisation, "module_base64": module_base64(module), "manifest": manifest});
        let model = self.post("/v1/models", &self.world.operator, &body).await.ok().expect("model submitted");
        let id = model["id"].as_i64().expect("id");
        self.post(&format!("/v1/models/{id}/reviews"), &self.world.bureau, &approve_model())
            .await
            .ok()
            .expect("approved");
        let view = self.get(&format!("/v1/models/{id}"), &self.world.operator).await.ok().expect("model view");
        assert_eq!(view["automated_results"]["dummy_run"]["outcome"], "passed", "{view}");
        id
    }

    async fn run(&self, authorisation: i64, model: i64) -> sluice::client::ApiResponse {
        let response = self.world.run_as(&self.world.operator, authorisation, model).await;
        self.saw(&response.text);
        response
    }

    async fn dataset_spent(&self, dataset: i64) -> f64 {
        let catalogue = self.get("/v1/catalogue", &self.world.regulator).await.ok().expect("catalogue");
        let entry = catalogue["datasets"]
            .as_array()
            .expect("datasets")
            .iter()
            .find(|entry| entry["id"] == dataset)
            .cloned()
            .expect("listed");
        entry["epsilon_spent"].as_f64().expect("spent")
    }
}

fn enterprise_credit() -> sluice::examples::ExampleModel {
    EXAMPLE_MODELS.into_iter().find(|model| model.name == "enterprise-credit").expect("example")
}

#[tokio::test]
async fn a_scenario_over_two_departments_data_needs_both_approvals_charges_both_and_stops_at_either_revocation() {
    let fusion = Fusion::new().await;
    let world = &fusion.world;
    let id = fusion.apply(2.0).await;
    fusion.review(id, &world.bureau, true).await.ok().expect("bureau first");
    // A department whose data the scenario does not use does not review it.
    let message = expect_error(&fusion.review(id, &world.department, true).await, "wrong_reviewer");
    assert!(message.contains("provides the data"), "{message}");
    // The tax bureau approves its part: the application waits for the other department.
    let part = fusion.review(id, &fusion.tax_reviewer, true).await.ok().expect("tax bureau");
    assert_eq!(part["state"], "bureau_approved");
    assert!(part["authorisation_id"].is_null(), "{part}");
    // ... and cannot approve twice for both.
    expect_error(&fusion.review(id, &fusion.tax_reviewer, true).await, "wrong_reviewer");
    let whole = fusion.review(id, &fusion.insurance_reviewer, true).await.ok().expect("social insurance");
    assert_eq!(whole["state"], "approved");
    let authorisation = whole["authorisation_id"].as_i64().expect("authorisation");

    // The example model reads columns of both datasets by name.
    let model = enterprise_credit();
    let model_id = fusion.approved_model(authorisation, model.wasm, model.manifest).await;
    let run = fusion.run(authorisation, model_id).await.ok().expect("joined run");
    // Every enterprise of the tax bureau is one joined row: the count is the tax bureau's,
    // a public fact, never how many matched.
    assert_eq!(run["rows"], ENTERPRISES as i64 + 1);
    assert_eq!(run["outputs"].as_array().expect("outputs").len(), 3);
    assert_eq!(run["outputs"][0]["groups"].as_array().expect("per industry").len(), 9);
    // Both datasets' lifetime budgets are charged for the run (0.8 by the manifest).
    assert!((fusion.dataset_spent(fusion.tax_dataset).await - 0.8).abs() < 1e-9);
    assert!((fusion.dataset_spent(fusion.insurance_dataset).await - 0.8).abs() < 1e-9);
    let budget = fusion
        .get(&format!("/v1/authorisations/{authorisation}/budget"), &fusion.insurance_provider)
        .await
        .ok()
        .expect("either department's provider reads the budget");
    assert_eq!(budget["joined_datasets"][0]["dataset_id"], fusion.insurance_dataset);
    let joined_spent = budget["joined_datasets"][0]["epsilon_spent"].as_f64().expect("joined");
    assert!((joined_spent - 0.8).abs() < 1e-9, "{budget}");
    // Usage has a row for each dataset the scenario read: the same run and ε in both, each
    // dataset's own rows processed; asked for by the joined dataset, its row is there.
    let usage = fusion.get("/v1/usage", &world.regulator).await.ok().expect("usage");
    let rows: Vec<&Value> =
        usage["rows"].as_array().expect("rows").iter().filter(|row| row["authorisation_id"] == authorisation).collect();
    assert_eq!(rows.len(), 2, "{usage}");
    let insurance_rows = fusion.data(true).1.lines().count() as i64 - 1;
    for (row, dataset, other, processed, joined_side) in [
        (rows[0], fusion.tax_dataset, fusion.insurance_dataset, ENTERPRISES as i64 + 1, false),
        (rows[1], fusion.insurance_dataset, fusion.tax_dataset, insurance_rows, true),
    ] {
        assert_eq!((row["dataset_id"].as_i64(), row["other_dataset_ids"][0].as_i64()), (Some(dataset), Some(other)));
        assert_eq!((row["runs"].as_i64(), row["rows_processed"].as_i64()), (Some(1), Some(processed)), "{row}");
        assert_eq!(row["joined_side"], joined_side);
        assert!((row["epsilon_spent"].as_f64().expect("ε") - 0.8).abs() < 1e-9);
    }
    let by_dataset = fusion
        .get(&format!("/v1/usage?dataset_id={}", fusion.insurance_dataset), &fusion.insurance_provider)
        .await
        .ok()
        .expect("usage of the social-insurance dataset");
    assert_eq!(by_dataset["rows"].as_array().expect("rows").len(), 1, "{by_dataset}");
    assert_eq!(by_dataset["rows"][0]["joined_side"], true);

    // Revocation by the social-insurance bureau alone stops it.
    fusion
        .post(
            &format!("/v1/authorisations/{authorisation}/revoke"),
            &fusion.insurance_reviewer,
            &json!({"reason": "t"}),
        )
        .await
        .ok()
        .expect("revoked by the second department");
    expect_error(&fusion.run(authorisation, model_id).await, "authorisation_revoked");

    // A second scenario, revoked by the tax bureau alone.
    let second = fusion.approved(1.0).await;
    let second_model = fusion.approved_model(second, model.wasm, model.manifest).await;
    fusion.run(second, second_model).await.ok().expect("runs before the revocation");
    fusion
        .post(&format!("/v1/authorisations/{second}/revoke"), &fusion.tax_reviewer, &json!({"reason": "t"}))
        .await
        .ok()
        .expect("revoked by the first department");
    expect_error(&fusion.run(second, second_model).await, "authorisation_revoked");
    // A department that provides nothing to it cannot revoke it.
    let third = fusion.approved(0.8).await;
    let refused =
        fusion.post(&format!("/v1/authorisations/{third}/revoke"), &world.department, &json!({"reason": "t"})).await;
    expect_error(&refused, "wrong_role");

    // Either department's rejection rejects the application.
    let rejected = fusion.apply(0.8).await;
    fusion.review(rejected, &world.bureau, true).await.ok().expect("bureau");
    let outcome = fusion.review(rejected, &fusion.insurance_reviewer, false).await.ok().expect("rejected");
    assert_eq!(outcome["state"], "rejected");
    expect_error(&fusion.review(rejected, &fusion.tax_reviewer, true).await, "not_pending");

    // Joins that would make the joined row count depend on the other department, or that
    // name a column twice, are refused at application.
    let mut body = json!({
        "dataset_id": fusion.tax_dataset, "purpose": "p", "use_scope": "u", "security_measures": "s",
        "columns": ["industry"], "valid_from": time(0), "valid_until": time(90), "epsilon": 0.5,
        "join": {"dataset_id": world.dataset_id, "columns": ["district"]},
    });
    let message = expect_error(&fusion.post("/v1/applications", &world.operator, &body).await, "invalid_request");
    assert!(message.contains("person_id"), "the vehicles dataset has no key to join on: {message}");
    body["join"] = json!({"dataset_id": fusion.tax_dataset, "columns": ["industry"]});
    let message = expect_error(&fusion.post("/v1/applications", &world.operator, &body).await, "invalid_request");
    assert!(message.contains("not its own"), "{message}");
    body["join"] = json!({"dataset_id": fusion.insurance_dataset, "columns": ["enterprise_code"]});
    let message = expect_error(&fusion.post("/v1/applications", &world.operator, &body).await, "column_not_authorised");
    assert!(message.contains("level 4"), "the key is never granted: {message}");

    // The regulator's offline verification replays the two-department procedure and both
    // datasets' budgets.
    world.assert_log_verifies().await;
    let starts = world.audit_entries("run.start").await;
    // Details are strings.
    let joined = fusion.insurance_dataset.to_string();
    let joined_starts: Vec<&Value> =
        starts.iter().filter(|entry| entry["details"]["joined_dataset"] == joined.as_str()).collect();
    assert_eq!(joined_starts.len(), 2, "each joined run names the joined dataset and its version");
    assert!(joined_starts.iter().all(|entry| entry["details"]["joined_dataset_version"] == "1"));
}

/// A hostile model, approved, tries to learn whether one enterprise (which it can single
/// out by a value on the tax bureau's side) has an account at the social-insurance bureau:
/// it traps on that row when the joined columns are null. The run succeeds either way, with
/// the same row count and the same shape; what differs is only noisy, charged values.
#[tokio::test]
async fn a_hostile_model_cannot_tell_whether_an_enterprise_is_on_the_other_side() {
    let fusion = Fusion::new().await;
    let authorisation = fusion.approved(4.0).await;
    let manifest = r#"
abi_version = 2
name = "probe-join"
version = "1"
inputs = [{ name = "annual_tax_paid_cny", type = "f64" }, { name = "employees", type = "i64" }]
outputs = [{ name = "insured", kind = "count", epsilon = 1.0 }]
"#;
    // insured = 1 when employees is present; on the canary's row, trap when it is not.
    let module = wat::parse_str(format!(
        r#"(module
            (import "sluice" "emit" (func $emit (param i32 f64)))
            (func (export "sluice_row_v2(annual_tax_paid_cny:f64,employees:i64,)->(insured,)")
                (param $tax f64) (param $employees i64) (param $present i64)
                (if (i32.and
                        (f64.eq (local.get $tax) (f64.const {CANARY_TAX}))
                        (i64.eqz (i64.and (local.get $present) (i64.const 2))))
                    (then unreachable))
                (call $emit (i32.const 0)
                    (f64.convert_i64_u (i64.shr_u (i64.and (local.get $present) (i64.const 2)) (i64.const 1))))))"#
    ))
    .expect("valid WAT");
    let model = fusion.approved_model(authorisation, &module, manifest).await;
    let with_account = fusion.run(authorisation, model).await.ok().expect("runs with the account");
    // The social-insurance bureau loads a version without the canary's account.
    let (_, without) = fusion.data(false);
    fusion.ingest(&fusion.insurance_provider, fusion.insurance_dataset, without).await;
    let without_account = fusion.run(authorisation, model).await.ok().expect("runs without the account");
    // Same rows (the tax bureau's), same outputs, no error: the trap became the row's
    // default inside the sandbox, and its count went to the regulators' entry only.
    for key in ["rows", "state", "epsilon_charged"] {
        assert_eq!(with_account[key], without_account[key], "{key}");
    }
    assert_eq!(with_account["rows"], ENTERPRISES as i64 + 1);
    let shape = |run: &Value| {
        run["outputs"].as_array().expect("outputs").iter().map(|output| output["name"].clone()).collect::<Vec<_>>()
    };
    assert_eq!(shape(&with_account), shape(&without_account));
    // The count of insured enterprises is released with noise at ε = 1 per run, charged to
    // both departments' datasets: the only channel, and a charged one.
    let fallbacks = fusion.world.audit_entries("run.fallbacks").await;
    let trapped: Vec<&str> =
        fallbacks.iter().map(|entry| entry["details"]["trap"].as_str().expect("trap count")).collect();
    assert_eq!(trapped[trapped.len() - 2..], ["0", "1"], "only the run without the account trapped");
    assert!((fusion.dataset_spent(fusion.insurance_dataset).await - 2.0).abs() < 1e-9);
    fusion.world.assert_log_verifies().await;
}

/// The canary enterprise's code is in both departments' data; it appears nowhere outside
/// the vault: not in any response of the whole scenario, not in an ingest error about its
/// own row, not in dummy data or automated review results, not in the audit export.
#[tokio::test]
async fn no_key_value_leaves_the_vault() {
    let fusion = Fusion::new().await;
    let world = &fusion.world;
    let authorisation = fusion.approved(2.0).await;
    let model = enterprise_credit();
    let model_id = fusion.approved_model(authorisation, model.wasm, model.manifest).await;
    fusion.run(authorisation, model_id).await.ok().expect("run");
    for path in [
        format!("/v1/authorisations/{authorisation}/budget"),
        format!("/v1/runs?authorisation_id={authorisation}"),
        format!("/v1/datasets/{}/dummy?rows=50", fusion.tax_dataset),
        format!("/v1/datasets/{}/dummy?rows=50", fusion.insurance_dataset),
        "/v1/catalogue".to_owned(),
        "/v1/applications".to_owned(),
    ] {
        fusion.get(&path, &world.operator).await;
    }
    fusion.get("/v1/usage", &world.regulator).await;
    fusion.get("/v1/alerts", &world.regulator).await;
    // A bad row naming the canary code: refused, and the refusal does not echo it.
    let bad = format!("enterprise_code,employees,social_insurance_arrears_months\n{CANARY_CODE},-5,0\n");
    let refused = world
        .api
        .put_csv(
            &format!("/v1/datasets/{}/data", fusion.insurance_dataset),
            &fusion.insurance_provider,
            bad.into_bytes(),
        )
        .await;
    fusion.saw(&refused.text);
    assert!(!refused.status.is_success());
    // The same code twice on one side is past the one row per enterprise the join needs.
    let twice =
        format!("enterprise_code,employees,social_insurance_arrears_months\n{CANARY_CODE},5,0\n{CANARY_CODE},6,0\n");
    let refused = world
        .api
        .put_csv(
            &format!("/v1/datasets/{}/data", fusion.insurance_dataset),
            &fusion.insurance_provider,
            twice.into_bytes(),
        )
        .await;
    fusion.saw(&refused.text);
    assert!(!refused.status.is_success(), "{}", refused.text);
    fusion.saw(&world.export().await);

    // A code with a wrong check character is refused without being echoed either.
    let malformed = "enterprise_code,employees,social_insurance_arrears_months\n91520302MA6H7T3K2A,5,0\n";
    let refused = world
        .api
        .put_csv(
            &format!("/v1/datasets/{}/data", fusion.insurance_dataset),
            &fusion.insurance_provider,
            malformed.as_bytes().to_vec(),
        )
        .await;
    assert!(refused.text.contains("check character"), "{}", refused.text);
    assert!(!refused.text.contains("MA6H7T3K2"), "{}", refused.text);

    let seen = fusion.seen.lock().expect("lock");
    assert!(seen.len() > 20, "the scan covered the scenario");
    // The organisation part alone, in either case, is enough to call it a leak.
    for needle in [CANARY_CODE, "MA6H7T3K2", "ma6h7t3k2"] {
        for text in seen.iter() {
            assert!(!text.contains(needle), "the canary enterprise code left the vault: {text:.300}");
        }
    }
}

/// One code keeps one pseudonym for the life of a deployment: after the master key rotates,
/// a new version of the social-insurance data still joins the tax bureau's version ingested
/// before it (a count of matched enterprises, released with noise at ε = 1, stays near the
/// 85% insured rather than falling to the accounts no longer matching).
#[tokio::test]
async fn codes_keep_joining_across_a_master_key_rotation() {
    let fusion = Fusion::new().await;
    // The catalogue says what the key column holds, without any of its values.
    let catalogue = fusion.get("/v1/catalogue", &fusion.world.operator).await.ok().expect("catalogue");
    for entry in catalogue["datasets"].as_array().expect("datasets") {
        if [fusion.tax_dataset, fusion.insurance_dataset].contains(&entry["id"].as_i64().expect("id")) {
            assert_eq!(entry["columns"][0]["name"], "enterprise_code");
            assert_eq!(entry["columns"][0]["pseudonym_of"], "uscc");
            assert!(entry["columns"][1]["pseudonym_of"].is_null());
        }
    }
    let authorisation = fusion.approved(3.0).await;
    let manifest = r#"
abi_version = 2
name = "matched"
version = "1"
inputs = [{ name = "employees", type = "i64" }]
outputs = [{ name = "matched", kind = "count", epsilon = 1.0 }]
"#;
    // matched = 1 when the social-insurance column is present (bit 0 of the mask: input 0).
    let module = wat::parse_str(
        r#"(module
            (import "sluice" "emit" (func $emit (param i32 f64)))
            (func (export "sluice_row_v2(employees:i64,)->(matched,)") (param $employees i64) (param $present i64)
                (call $emit (i32.const 0)
                    (f64.convert_i64_u (i64.and (local.get $present) (i64.const 1))))))"#,
    )
    .expect("valid WAT");
    let model = fusion.approved_model(authorisation, &module, manifest).await;
    let matched = |run: &Value| run["outputs"][0]["value"].as_f64().expect("a count");
    let before = fusion.run(authorisation, model).await.ok().expect("runs");
    let world = &fusion.world;
    world.api.post("/v1/keys/rotate", &world.admin, &json!({})).await.ok().expect("rotated");
    let (_, insurance) = fusion.data(true);
    fusion.ingest(&fusion.insurance_provider, fusion.insurance_dataset, insurance).await;
    let after = fusion.run(authorisation, model).await.ok().expect("runs after the rotation");
    let insured = ENTERPRISES as f64 * 0.85;
    for run in [&before, &after] {
        assert!((matched(run) - insured).abs() < 60.0, "about 85% of enterprises match: {}", matched(run));
    }
    world.assert_log_verifies().await;
}

/// Inclusive finance over three departments' data (seed 002 item 16: tax, social insurance
/// and market regulation): one application joins two datasets to the tax bureau's; it is
/// authorised only once every department has approved (the third's approval missing, no
/// authorisation); a model reads a column of each; the count of enterprises known to both
/// other departments comes out as a DP count near the exact one; all three datasets'
/// budgets are charged; usage has a row per dataset; the third department's revocation
/// alone stops it; and the offline verifier replays it. Malformed joins are refused.
#[tokio::test]
async fn a_scenario_over_three_departments_data_needs_all_three_and_charges_each() {
    let fusion = Fusion::new().await;
    let world = &fusion.world;
    let token = |principal: Value| principal["token"].as_str().expect("token").to_owned();
    let market_provider = token(
        world
            .principal(json!({"name": "mr data", "role": "provider", "organisation": "Market Regulation Bureau"}))
            .await,
    );
    let market_reviewer = token(world.principal(json!({"name": "mr review", "role": "reviewer", "reviewer_kind": "providing_department", "organisation": "Market Regulation Bureau"})).await);
    let market_dataset = world
        .api
        .post("/v1/datasets", &market_provider, &json!({"schema": MARKET_REGULATION_SCHEMA, "epsilon_total": 5.0}))
        .await
        .ok()
        .expect("dataset")["id"]
        .as_i64()
        .expect("id");
    let mut register = market_regulation_csv(ENTERPRISES, 16);
    register.push_str(&format!("{CANARY_CODE},5000000,false\n"));
    fusion.ingest(&market_provider, market_dataset, register.clone()).await;

    let joins = json!([
        {"dataset_id": fusion.insurance_dataset, "columns": ["employees"]},
        {"dataset_id": market_dataset, "columns": ["abnormal_operations", "registered_capital_cny"]},
    ]);
    let body = json!({
        "dataset_id": fusion.tax_dataset,
        "purpose": "SME credit profile over three departments' records",
        "use_scope": "aggregates",
        "security_measures": "sandbox, DP only",
        "columns": ["annual_tax_paid_cny"],
        "joins": joins,
        "valid_from": time(0),
        "valid_until": time(90),
        "epsilon": 3.0,
    });
    // Malformed: `join` and `joins` at once, one dataset twice, a column in two datasets.
    let mut both = body.clone();
    both["join"] = json!({"dataset_id": fusion.insurance_dataset, "columns": ["employees"]});
    let message = expect_error(&fusion.post("/v1/applications", &world.operator, &both).await, "invalid_request");
    assert!(message.contains("not both"), "{message}");
    let mut many = body.clone();
    many["joins"] = json!(vec![json!({"dataset_id": market_dataset, "columns": ["abnormal_operations"]}); 5]);
    let message = expect_error(&fusion.post("/v1/applications", &world.operator, &many).await, "invalid_request");
    assert!(message.contains("at most 4"), "{message}");
    let mut twice = body.clone();
    twice["joins"][1] = json!({"dataset_id": fusion.insurance_dataset, "columns": ["social_insurance_arrears_months"]});
    let message = expect_error(&fusion.post("/v1/applications", &world.operator, &twice).await, "invalid_request");
    assert!(message.contains("joined twice"), "{message}");
    let clash = world
        .api
        .post(
            "/v1/datasets",
            &market_provider,
            &json!({"schema": MARKET_REGULATION_SCHEMA
                .replace("\"abnormal_operations\"", "\"employees\"")
                .replace("zunyi-market-regulation", "zunyi-market-clash"), "epsilon_total": 5.0}),
        )
        .await
        .ok()
        .expect("a register naming a column as the insurance bureau does")["id"]
        .as_i64()
        .expect("id");
    let mut clashing = body.clone();
    clashing["joins"][1] = json!({"dataset_id": clash, "columns": ["registered_capital_cny"]});
    let message = expect_error(&fusion.post("/v1/applications", &world.operator, &clashing).await, "invalid_request");
    assert!(message.contains("column `employees` is in both"), "{message}");

    let application = fusion.post("/v1/applications", &world.operator, &body).await.ok().expect("application");
    assert_eq!(application["joins"].as_array().expect("joins").len(), 2, "{application}");
    let id = application["id"].as_i64().expect("id");
    let list = fusion.get("/v1/applications", &world.operator).await.ok().expect("list");
    let summary = list["applications"].as_array().expect("applications").iter().find(|a| a["id"] == id).cloned();
    assert_eq!(summary.expect("listed")["joined_dataset_ids"], json!([fusion.insurance_dataset, market_dataset]));
    fusion.review(id, &world.bureau, true).await.ok().expect("bureau");
    fusion.review(id, &fusion.tax_reviewer, true).await.ok().expect("tax bureau");
    let two_of_three = fusion.review(id, &fusion.insurance_reviewer, true).await.ok().expect("social insurance");
    assert_eq!(two_of_three["state"], "bureau_approved", "the market regulation bureau has not approved yet");
    assert!(two_of_three["authorisation_id"].is_null(), "{two_of_three}");
    let whole = fusion.review(id, &market_reviewer, true).await.ok().expect("market regulation");
    assert_eq!(whole["state"], "approved");
    let authorisation = whole["authorisation_id"].as_i64().expect("authorisation");

    // A model reading a column of each department's data: 1 for an enterprise both other
    // departments know (inputs 1 and 2 present: mask bits 1 and 2).
    let manifest = r#"
abi_version = 2
name = "known-to-all"
version = "1"
inputs = [
  { name = "annual_tax_paid_cny", type = "f64" },
  { name = "employees", type = "i64" },
  { name = "abnormal_operations", type = "bool" },
]
outputs = [{ name = "known_to_all", kind = "count", epsilon = 1.0 }]
"#;
    let module = wat::parse_str(
        r#"(module
            (import "sluice" "emit" (func $emit (param i32 f64)))
            (func (export "sluice_row_v2(annual_tax_paid_cny:f64,employees:i64,abnormal_operations:bool,)->(known_to_all,)")
                (param $tax f64) (param $employees i64) (param $abnormal i64) (param $present i64)
                (call $emit (i32.const 0)
                    (f64.convert_i32_u (i64.eq (i64.and (local.get $present) (i64.const 6)) (i64.const 6))))))"#,
    )
    .expect("valid WAT");
    let model = fusion.approved_model(authorisation, &module, manifest).await;
    let run = fusion.run(authorisation, model).await.ok().expect("a run over three datasets");
    assert_eq!(run["rows"], ENTERPRISES as i64 + 1, "one joined row per tax record");
    let codes = |csv: &str| -> std::collections::HashSet<String> {
        csv.lines().skip(1).filter_map(|line| line.split(',').next()).map(str::to_owned).collect()
    };
    let (tax, insurance) = fusion.data(true);
    let (insured, registered) = (codes(&insurance), codes(&register));
    let exact = codes(&tax).iter().filter(|code| insured.contains(*code) && registered.contains(*code)).count() as f64;
    let released = run["outputs"][0]["value"].as_f64().expect("a count");
    assert!(exact > 300.0 && (released - exact).abs() < 30.0, "released {released}, exact {exact}");

    // Every dataset read is charged (ε 1 by the manifest), and the budget shows each.
    for dataset in [fusion.tax_dataset, fusion.insurance_dataset, market_dataset] {
        assert!((fusion.dataset_spent(dataset).await - 1.0).abs() < 1e-9, "dataset {dataset}");
    }
    let budget = fusion
        .get(&format!("/v1/authorisations/{authorisation}/budget"), &market_provider)
        .await
        .ok()
        .expect("the third department's provider reads the budget");
    let joined: Vec<i64> = budget["joined_datasets"]
        .as_array()
        .expect("joined budgets")
        .iter()
        .map(|joined| joined["dataset_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(joined, [fusion.insurance_dataset, market_dataset]);
    let usage = fusion.get("/v1/usage", &world.regulator).await.ok().expect("usage");
    let rows: Vec<&Value> =
        usage["rows"].as_array().expect("rows").iter().filter(|row| row["authorisation_id"] == authorisation).collect();
    let processed: Vec<(i64, i64)> = rows
        .iter()
        .map(|row| (row["dataset_id"].as_i64().expect("id"), row["rows_processed"].as_i64().expect("n")))
        .collect();
    assert_eq!(
        processed,
        [
            (fusion.tax_dataset, ENTERPRISES as i64 + 1),
            (fusion.insurance_dataset, insured.len() as i64),
            (market_dataset, registered.len() as i64)
        ],
        "{usage}"
    );
    assert_eq!(rows[2]["other_dataset_ids"], json!([fusion.tax_dataset, fusion.insurance_dataset]));
    let start = world.audit_entries("run.start").await.last().cloned().expect("a run started");
    assert_eq!(start["details"]["joined_dataset"], format!("{},{}", fusion.insurance_dataset, market_dataset));
    assert_eq!(start["details"]["joined_dataset_version"], "1,1");

    // The third department alone revokes it.
    fusion
        .post(&format!("/v1/authorisations/{authorisation}/revoke"), &market_reviewer, &json!({"reason": "t"}))
        .await
        .ok()
        .expect("revoked by the market regulation bureau");
    expect_error(&fusion.run(authorisation, model).await, "authorisation_revoked");
    // Nothing of the canary's code left the vault here either.
    for text in fusion.seen.lock().expect("lock").iter() {
        assert!(!text.contains(CANARY_CODE) && !text.contains(&CANARY_CODE[8..17]), "a key value in a response");
    }
    world.assert_log_verifies().await;
}

/// What an inner join would give — an aggregate over the enterprises both departments know —
/// comes from the left join without publishing how many matched: a model emits 0 for an
/// unmatched row (its presence mask says which), and a mean over the matched rows is the
/// ratio of two charged releases (a DP sum over a DP count, post-processing). The ratio
/// lands near the exact mean over matched rows; `rows` stays the tax bureau's.
#[tokio::test]
async fn an_inner_joins_mean_is_a_ratio_of_two_releases_over_the_left_join() {
    let fusion = Fusion::new().await;
    let authorisation = fusion.approved(4.0).await;
    let manifest = r#"
abi_version = 2
name = "matched-mean"
version = "1"
inputs = [{ name = "years_operating", type = "f64" }, { name = "employees", type = "i64" }]
outputs = [
  { name = "matched", kind = "count", epsilon = 1.0 },
  { name = "matched_years", kind = "sum", lower = 0.0, upper = 70.0, epsilon = 1.0 },
]
"#;
    // matched = bit 1 of the mask (employees present); matched_years = years × matched.
    let module = wat::parse_str(
        r#"(module
            (import "sluice" "emit" (func $emit (param i32 f64)))
            (func (export "sluice_row_v2(years_operating:f64,employees:i64,)->(matched,matched_years,)")
                (param $years f64) (param $employees i64) (param $present i64)
                (local $matched f64)
                (local.set $matched
                    (f64.convert_i64_u (i64.shr_u (i64.and (local.get $present) (i64.const 2)) (i64.const 1))))
                (call $emit (i32.const 0) (local.get $matched))
                (call $emit (i32.const 1) (f64.mul (local.get $matched) (local.get $years)))))"#,
    )
    .expect("valid WAT");
    let model = fusion.approved_model(authorisation, &module, manifest).await;
    let run = fusion.run(authorisation, model).await.ok().expect("runs");
    assert_eq!(run["rows"], ENTERPRISES as i64 + 1, "the left join's public row count, not the matched one");
    let (tax, insurance) = fusion.data(true);
    let insured: std::collections::HashSet<&str> =
        insurance.lines().skip(1).filter_map(|line| line.split(',').next()).collect();
    let matched_years: Vec<f64> = tax
        .lines()
        .skip(1)
        .filter(|line| line.split(',').next().is_some_and(|code| insured.contains(code)))
        .map(|line| line.split(',').nth(2).and_then(|years| years.parse().ok()).expect("years"))
        .collect();
    let exact = matched_years.iter().sum::<f64>() / matched_years.len() as f64;
    let value = |index: usize| run["outputs"][index]["value"].as_f64().expect("a value");
    // The count is of the matched rows (about 85% of them), not of every row.
    let matched = matched_years.len() as f64;
    assert!(matched < ENTERPRISES as f64 * 0.9 && (value(0) - matched).abs() < 30.0, "{} of {matched}", value(0));
    let ratio = value(1) / value(0);
    assert!((ratio - exact).abs() < 2.0, "ratio {ratio} against the exact mean over matched rows {exact}");
}

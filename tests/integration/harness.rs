//! A complete Sluice world for tests: a fresh data directory, a manual clock, the five
//! roles with tokens, a dataset, an approved authorisation and an approved model, all
//! created through the HTTP API.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use sluice::client::{ApiResponse, InProcessClient};
use sluice::examples::{VEHICLE_RISK_MANIFEST, VEHICLE_RISK_WASM, VEHICLES_SCHEMA, vehicles_csv};
use sluice_gateway::api::router;
use sluice_gateway::chunk_store::{ChunkStore, Location};
use sluice_gateway::config::Config;
use sluice_gateway::service::{App, Clock};
use sluice_gateway::store::Database;
use sqlx::Connection as _;
use time::OffsetDateTime;
use time::macros::datetime;

pub const START: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

/// Set to a PostgreSQL URL (`.ci/run` sets `postgres://127.0.0.1:5432/test`), every world
/// runs on PostgreSQL, in a schema of its own that is dropped with it; unset, on SQLite.
pub const POSTGRES_ENV: &str = "SLUICE_TEST_POSTGRES_URL";
/// Set to an S3 location (`.ci/run` sets `s3://sluice-test?endpoint=http://127.0.0.1:9768`, a
/// moto server), every world keeps its chunks there, under a prefix of its own that is
/// emptied with it; unset, in the data directory's `blobs/`.
pub const S3_ENV: &str = "SLUICE_TEST_S3_URL";

/// A name no other test of any process uses.
fn unique_name(kind: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "sluice_{kind}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000
    )
}

/// The stores for one test: SQLite in `data_dir`, or a fresh PostgreSQL schema when
/// [`POSTGRES_ENV`] is set; the chunks in `data_dir/blobs`, or under a fresh prefix of an
/// S3 bucket when [`S3_ENV`] is set. Keep the [`TestDatabase`] alive as long as they are used.
pub async fn test_database(data_dir: &std::path::Path) -> TestDatabase {
    let objects = match std::env::var(S3_ENV).ok().filter(|url| !url.is_empty()) {
        None => Location::Local(data_dir.join("blobs")),
        Some(url) => match Location::parse(&url).expect("a valid $SLUICE_TEST_S3_URL") {
            Location::S3 { bucket, prefix, endpoint, region } => {
                let prefix = [prefix, unique_name("chunks")]
                    .iter()
                    .filter(|part| !part.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("/");
                Location::S3 { bucket, prefix, endpoint, region }
            }
            Location::Local(_) => panic!("$SLUICE_TEST_S3_URL must be an s3:// location"),
        },
    };
    let Some(url) = std::env::var(POSTGRES_ENV).ok().filter(|url| !url.is_empty()) else {
        return TestDatabase { database: Database::Sqlite(data_dir.join("sluice.db")), objects, schema: None };
    };
    let schema = unique_name("test");
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connects to the test PostgreSQL server");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.expect("creates a schema");
    admin.close().await.expect("closes");
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    TestDatabase { database: Database::Postgres(url.clone()), objects, schema: Some((url, schema)) }
}

/// A test's database and object store; a PostgreSQL schema is dropped and an S3 prefix
/// emptied when this goes.
#[derive(Debug)]
pub struct TestDatabase {
    pub database: Database,
    pub objects: Location,
    /// The server's URL (with the schema) and the schema, on PostgreSQL.
    schema: Option<(String, String)>,
}

impl TestDatabase {
    /// A pool of its own on the database, for tests that reach past the gateway (to show
    /// the database itself refuses something, or to break something on purpose).
    pub async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match &self.database {
            Database::Sqlite(path) => format!("sqlite://{}", path.display()),
            Database::Postgres(url) => url.clone(),
        };
        sqlx::pool::PoolOptions::new().max_connections(2).connect(&url).await.expect("a raw pool on the test database")
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.database, Database::Postgres(_))
    }

    /// The object store the world's chunks are in, opened on its own (to look at or break
    /// what is stored, past the gateway).
    pub fn chunks(&self) -> ChunkStore {
        ChunkStore::open(&self.objects).expect("opens the test object store")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.objects.is_local() {
            let objects = self.objects.clone();
            let emptied = std::thread::spawn(move || {
                use sluice_vault::ChunkIo as _;
                ChunkStore::open(&objects)?.delete_prefix("")
            })
            .join();
            if !matches!(emptied, Ok(Ok(_))) {
                eprintln!("a test prefix was left behind in the S3 bucket");
            }
        }
        let Some((url, schema)) = self.schema.take() else { return };
        // Drop may run inside a runtime: the schema goes on a thread with one of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&url).await?;
                // A test that left a transaction open must not hang the suite here (this
                // thread blocks the test's runtime, so a rollback queued on it never runs).
                sqlx::query("SET lock_timeout = '20s'").execute(&mut admin).await?;
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await?;
                admin.close().await
            })?;
            anyhow::Ok(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("a test schema was left behind on the PostgreSQL server");
        }
    }
}

pub struct World {
    /// Holds the data directory (`dir/data`) for as long as the world lives.
    pub dir: tempfile::TempDir,
    pub app: Arc<App>,
    pub api: InProcessClient,
    pub clock: Clock,
    pub admin: String,
    /// The administrator who approves what `admin` creates (the two-person rule).
    pub second_admin: String,
    pub provider: String,
    pub operator: String,
    pub other_operator: String,
    pub bureau: String,
    pub department: String,
    pub regulator: String,
    pub dataset_id: i64,
    pub application_id: i64,
    pub authorisation_id: i64,
    pub model_id: i64,
    /// The database (SQLite in the data directory, or a PostgreSQL schema dropped with
    /// the world): last, so it goes after everything that uses it.
    pub database: TestDatabase,
}

pub fn time(offset_days: i64) -> String {
    sluice_gateway::store::format_time(START + time::Duration::days(offset_days))
}

pub fn module_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The id of the organisation called `name`, created by `admin` if there is none yet.
pub async fn organisation(api: &InProcessClient, admin: &str, name: &str) -> i64 {
    let listed = api.get("/v1/organisations", admin).await.ok().expect("organisations");
    let known =
        listed["organisations"].as_array().expect("list").iter().find(|organisation| organisation["name"] == name);
    if let Some(known) = known {
        return known["id"].as_i64().expect("id");
    }
    api.post("/v1/organisations", admin, &json!({ "name": name })).await.ok().expect("organisation")["id"]
        .as_i64()
        .expect("id")
}

/// Creates a principal as `admin` from a body naming its organisation by name (created if
/// need be); one waiting under the two-person rule is approved by `second_admin`. The
/// response that carries its token.
pub async fn create_principal(api: &InProcessClient, admin: &str, second_admin: &str, mut body: Value) -> Value {
    let name = body.as_object_mut().expect("object").remove("organisation").expect("an organisation name");
    body["organisation_id"] = json!(organisation(api, admin, name.as_str().expect("name")).await);
    let created = api.post("/v1/principals", admin, &body).await.ok().expect("principal created");
    if created["state"] == "pending_approval" {
        let id = created["id"].as_i64().expect("id");
        return api
            .post(&format!("/v1/principals/{id}/approve"), second_admin, &json!({}))
            .await
            .ok()
            .expect("approved by a second administrator");
    }
    created
}

async fn create(api: &InProcessClient, admins: &(String, String), body: Value) -> String {
    create_principal(api, &admins.0, &admins.1, body).await["token"].as_str().expect("token").to_owned()
}

fn operator_body(organisation: &str) -> Value {
    json!({"name": "analyst", "role": "operator", "organisation": organisation,
           "licence": {"number": "ZY-1", "valid_from": time(-150), "valid_until": time(200)}})
}

/// How far the hand-set clock moves after each run: past any test dataset's visibility time.
pub const RUN_VISIBILITY_STEP: time::Duration = time::Duration::seconds(2);

impl World {
    /// Everything up to an approved model on `rows` vehicles with a budget of `epsilon`
    /// (the vehicle-risk model spends 0.5 a run).
    pub async fn new(rows: usize, epsilon: f64) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = test_database(&dir.path().join("data")).await;
        let mut config = Config::new(dir.path().join("data"));
        config.database = database.database.clone();
        config.objects = database.objects.clone();
        // Tests move the clock by months (windows, licences); tokens are tested on their own.
        config.token_lifetime = time::Duration::days(400);
        config.data_dir.init(true, &config.database, &config.objects).await.expect("init");
        let clock = Clock::manual(START);
        let app = App::open(config, clock.clone()).await.expect("open");
        // Tests run many runs; the fixed delay is tested on its own (`runs.rs`).
        app.gate().set_visibility_base(std::time::Duration::ZERO);
        let admin = app.bootstrap_admin("admin", "platform").await.expect("admin").token;
        let second_admin = app.add_host_admin("second admin", "platform").await.expect("second admin").token;
        let api = InProcessClient::new(router(app.clone()));
        let admins = (admin.clone(), second_admin.clone());

        let provider =
            create(&api, &admins, json!({"name": "p", "role": "provider", "organisation": "Traffic Police"})).await;
        let operator = create(&api, &admins, operator_body("Qianbei Data")).await;
        let other_operator = create(&api, &admins, operator_body("Other Data")).await;
        let bureau = create(
            &api,
            &admins,
            json!({"name": "b", "role": "reviewer", "reviewer_kind": "data_bureau", "organisation": "Big Data Bureau"}),
        )
        .await;
        let department = create(&api, &admins, json!({"name": "d", "role": "reviewer", "reviewer_kind": "providing_department", "organisation": "Traffic Police"})).await;
        let regulator = create(
            &api,
            &admins,
            json!({"name": "r", "role": "regulator", "organisation": "Cyberspace Administration"}),
        )
        .await;

        let dataset = api
            .post("/v1/datasets", &provider, &json!({"schema": VEHICLES_SCHEMA, "epsilon_total": 10.0}))
            .await
            .ok()
            .expect("dataset");
        let dataset_id = dataset["id"].as_i64().expect("id");
        api.put_csv(&format!("/v1/datasets/{dataset_id}/data"), &provider, vehicles_csv(rows, 11).into_bytes())
            .await
            .ok()
            .expect("ingest");

        let mut world = World {
            dir,
            database,
            app,
            api,
            clock,
            admin,
            second_admin,
            provider,
            operator,
            other_operator,
            bureau,
            department,
            regulator,
            dataset_id,
            application_id: 0,
            authorisation_id: 0,
            model_id: 0,
        };
        world.application_id = world.apply(epsilon).await;
        world.authorisation_id = world.approve_application(world.application_id).await;
        world.model_id = world.submit_model(VEHICLE_RISK_WASM, VEHICLE_RISK_MANIFEST).await.ok().expect("model")["id"]
            .as_i64()
            .expect("id");
        world
            .api
            .post(&format!("/v1/models/{}/reviews", world.model_id), &world.bureau, &approve_model())
            .await
            .ok()
            .expect("model approved");
        world
    }

    pub async fn apply(&self, epsilon: f64) -> i64 {
        let body = json!({
            "dataset_id": self.dataset_id,
            "purpose": "vehicle risk",
            "use_scope": "aggregates",
            "security_measures": "sandbox",
            "columns": ["vehicle_age_years", "violations_12m", "accidents_5y", "insured_value_cny"],
            "valid_from": time(0),
            "valid_until": time(90),
            "epsilon": epsilon,
        });
        self.api.post("/v1/applications", &self.operator, &body).await.ok().expect("application")["id"]
            .as_i64()
            .expect("id")
    }

    pub async fn approve_application(&self, id: i64) -> i64 {
        let path = format!("/v1/applications/{id}/reviews");
        self.api.post(&path, &self.bureau, &json!({"approve": true})).await.ok().expect("bureau review");
        let outcome =
            self.api.post(&path, &self.department, &json!({"approve": true})).await.ok().expect("department review");
        outcome["authorisation_id"].as_i64().expect("authorisation created")
    }

    pub async fn submit_model(&self, module: &[u8], manifest: &str) -> ApiResponse {
        let body = json!({"authorisation_id": self.authorisation_id, "module_base64": module_base64(module), "manifest": manifest});
        self.api.post("/v1/models", &self.operator, &body).await
    }

    /// A data bureau reviewer employed by the operator's own organisation, for the
    /// self-review refusals.
    pub async fn colleague_reviewer(&self) -> String {
        let admins = (self.admin.clone(), self.second_admin.clone());
        create(
            &self.api,
            &admins,
            json!({"name": "c", "role": "reviewer", "reviewer_kind": "data_bureau", "organisation": "Qianbei Data"}),
        )
        .await
    }

    /// A new principal (organisation by name), approved by the second administrator when
    /// the two-person rule holds it: the response with its id and token.
    pub async fn principal(&self, body: Value) -> Value {
        create_principal(&self.api, &self.admin, &self.second_admin, body).await
    }

    /// Runs a model; the POST answers once the result is visible, and the gateway's
    /// hand-set clock is moved past that time, as a real clock would have moved.
    pub async fn run_as(&self, token: &str, authorisation_id: i64, model_id: i64) -> ApiResponse {
        let response = self
            .api
            .post("/v1/runs", token, &json!({"authorisation_id": authorisation_id, "model_id": model_id}))
            .await;
        self.clock.advance(RUN_VISIBILITY_STEP);
        response
    }

    pub async fn run(&self) -> ApiResponse {
        self.run_as(&self.operator, self.authorisation_id, self.model_id).await
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The defaults for this world's data directory and database (to reopen it).
    pub fn config(&self) -> Config {
        self.config_at(&self.data_dir())
    }

    /// The defaults for another data directory (a copy of this world's) on this world's
    /// database and object store (another node's configuration).
    pub fn config_at(&self, data_dir: &std::path::Path) -> Config {
        let mut config = Config::new(data_dir);
        config.database = self.database.database.clone();
        config.objects = self.database.objects.clone();
        config
    }

    /// The world's object store, opened on its own.
    pub fn chunks(&self) -> ChunkStore {
        self.database.chunks()
    }

    pub async fn export(&self) -> String {
        let response = self.api.get("/v1/audit/export", &self.regulator).await;
        assert!(response.status.is_success(), "{}", response.text);
        response.text
    }

    /// The whole log, exported and verified offline against the pinned key with every
    /// content rule: whatever a test did, the log the gateway wrote must pass.
    pub async fn assert_log_verifies(&self) {
        let export = self.export().await;
        if let Err(error) =
            sluice_audit::verify_export(&export, sluice_audit::KeyTrust::Pinned(&self.app.public_key()), None)
        {
            panic!("the gateway's own log does not verify: {error}");
        }
    }

    /// Audit entries (parsed) whose action is `action`.
    pub async fn audit_entries(&self, action: &str) -> Vec<Value> {
        self.app
            .store()
            .audit_entries()
            .await
            .expect("entries")
            .iter()
            .map(|text| serde_json::from_str::<Value>(text).expect("json"))
            .filter(|entry| entry["action"] == action)
            .collect()
    }
}

/// A model approval with the whole seed 002 §23 checklist confirmed.
pub fn approve_model() -> Value {
    json!({"approve": true, "checklist": {"usability": true, "consistency": true, "compliance": true, "security": true}})
}

/// Asserts `response` is an error with `code`, and returns its message.
pub fn expect_error(response: &ApiResponse, code: &str) -> String {
    assert_eq!(response.error_code().as_deref(), Some(code), "HTTP {}: {}", response.status, response.text);
    response.json()["error"]["message"].as_str().expect("message").to_owned()
}

/// Serves the world's gateway on a loopback port; the task ends with the test's runtime.
pub async fn serve(world: &World) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(world.app.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/")
}

/// The vehicle-risk model with a custom section of `padding` bytes appended: the same
/// behaviour under another digest (a new submission, or a large one).
pub fn padded_module(padding: usize) -> Vec<u8> {
    let mut body = vec![7u8];
    body.extend_from_slice(b"padding");
    body.extend(std::iter::repeat_n(0u8, padding));
    let mut module = VEHICLE_RISK_WASM.to_vec();
    module.push(0);
    let mut size = body.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        module.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    module.extend(body);
    module
}

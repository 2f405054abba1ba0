//! The web console on a live gateway: its session cookie, its refusals of forged forms,
//! of roles that may not act and of markup smuggled into data; and, in real headless
//! Chromium (when `SLUICE_TEST_CHROMEDRIVER` names a chromedriver, as `.ci/run` sets it),
//! a reviewer approving a model, an operator running it and a regulator finding both in
//! the audit trail, with a screenshot of each role's main page for the README.

use std::os::unix::process::CommandExt as _;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use sluice::examples::VEHICLE_RISK_MANIFEST;

use crate::harness::{RUN_VISIBILITY_STEP, World, module_base64, padded_module, serve, time};

/// An HTTP client that shows redirects instead of following them, and keeps no cookies:
/// each request carries exactly the cookie the test gives it.
fn browserless() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Signs in with `token`; the session cookie's `name=value`.
async fn sign_in(http: &reqwest::Client, server: &str, token: &str) -> String {
    let response =
        http.post(format!("{server}console/sign-in")).form(&[("token", token)]).send().await.expect("sign in");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/console");
    let cookie = response.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "the session cookie lacks {attribute}: {cookie}");
    }
    cookie.split(';').next().expect("name=value").to_owned()
}

async fn page(http: &reqwest::Client, server: &str, path: &str, cookie: &str) -> (u16, String) {
    let response = http.get(format!("{server}{path}")).header("cookie", cookie).send().await.expect("page");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

/// The anti-forgery value in a page's forms.
fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with its anti-forgery value") + 19;
    html[at..at + 32].to_owned()
}

async fn submit_second_model(world: &World) -> i64 {
    let body = json!({
        "authorisation_id": world.authorisation_id,
        "module_base64": module_base64(&padded_module(64)),
        "manifest": VEHICLE_RISK_MANIFEST,
    });
    world.api.post("/v1/models", &world.operator, &body).await.ok().expect("model")["id"].as_i64().expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_keeps_its_session_in_a_cookie_and_refuses_forgery_roles_and_markup() {
    let world = World::new(200, 10.0).await;
    let server = serve(&world).await;
    let http = browserless();
    let model_id = submit_second_model(&world).await;

    // Not signed in: to the sign-in page. A wrong token is refused there, and audited.
    let response = http.get(format!("{server}console")).send().await.expect("home");
    assert_eq!(
        (response.status().as_u16(), response.headers()["location"].to_str().expect("header")),
        (303, "/console/sign-in")
    );
    let response =
        http.post(format!("{server}console/sign-in")).form(&[("token", "sk_wrong")]).send().await.expect("request");
    assert_eq!(response.headers()["location"], "/console/sign-in?failed=unauthenticated");
    assert!(response.headers().get("set-cookie").is_none(), "a refused sign-in sets no cookie");
    let refused = world.audit_entries("authenticate").await;
    assert!(refused.iter().any(|entry| entry["reason"] == "unknown_token"), "{refused:?}");

    // The reviewer's home: who they are, the model waiting, and the console's headers.
    let reviewer = sign_in(&http, &server, &world.bureau).await;
    let response = http.get(format!("{server}console")).header("cookie", &reviewer).send().await.expect("request");
    let headers = response.headers().clone();
    let home = response.text().await.expect("body");
    assert!(home.contains(&format!("/console/models/{model_id}")), "the queue lists the new model");
    let csp = headers["content-security-policy"].to_str().expect("header");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "the console runs no script: {csp}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(!home.contains("<script"), "no script on any page");

    // The model page shows what the reviewer judges: classified inputs, the dummy run
    // exact beside noisy, the checklist.
    let (status, model_page) = page(&http, &server, &format!("console/models/{model_id}"), &reviewer).await;
    assert_eq!(status, 200, "{model_page}");
    for shown in ["vehicle_age_years", "dummy-comparison", "check-usability", "check-security", "level-"] {
        assert!(model_page.contains(shown), "the model page lacks {shown}");
    }
    let csrf = csrf_in(&model_page);
    let review = format!("{server}console/models/{model_id}/review");
    let approval = [
        ("decision", "approve"),
        ("usability", "on"),
        ("consistency", "on"),
        ("compliance", "on"),
        ("security", "on"),
        ("comment", "checked"),
    ];

    // A forged form (no or another session's anti-forgery value) is refused and changes nothing.
    let other = sign_in(&http, &server, &world.department).await;
    let (_, other_page) = page(&http, &server, "console", &other).await;
    for csrf in [String::new(), csrf_in(&other_page)] {
        let mut form = approval.to_vec();
        form.push(("csrf", &csrf));
        let response = http.post(&review).header("cookie", &reviewer).form(&form).send().await.expect("request");
        assert_eq!(response.status(), 400);
        assert!(response.text().await.expect("body").contains("invalid_request"));
    }
    let state = world.api.get(&format!("/v1/models/{model_id}"), &world.bureau).await.ok().expect("model");
    assert_eq!(state["state"], "submitted", "a forged approval changed nothing");

    // An operator sees no review form, and is refused with the policy's reason if it posts one.
    let operator = sign_in(&http, &server, &world.operator).await;
    let (_, operator_view) = page(&http, &server, &format!("console/models/{model_id}"), &operator).await;
    assert!(!operator_view.contains("model-review") && operator_view.contains("class=\"why\""));
    let mut form = approval.to_vec();
    let operator_csrf = csrf_in(&operator_view);
    form.push(("csrf", &operator_csrf));
    let response = http.post(&review).header("cookie", &operator).form(&form).send().await.expect("request");
    assert_eq!(response.status(), 403);
    assert!(response.text().await.expect("body").contains("error-code"));

    // An approval without the whole checklist is refused; with it, the model is approved.
    let partial = [("decision", "approve"), ("usability", "on"), ("csrf", &csrf)];
    let response = http.post(&review).header("cookie", &reviewer).form(&partial).send().await.expect("request");
    assert_eq!(response.status(), 400);
    let mut form = approval.to_vec();
    form.push(("csrf", &csrf));
    let response = http.post(&review).header("cookie", &reviewer).form(&form).send().await.expect("request");
    assert_eq!(response.status(), 303);
    let state = world.api.get(&format!("/v1/models/{model_id}"), &world.bureau).await.ok().expect("model");
    assert_eq!(state["state"], "approved");

    // Markup in what an operator writes is shown as text, never run.
    let body = json!({
        "dataset_id": world.dataset_id,
        "purpose": "<script>alert(1)</script><img src=x onerror=alert(2)>",
        "use_scope": "aggregates", "security_measures": "sandbox",
        "columns": ["vehicle_age_years"], "valid_from": time(0), "valid_until": time(30), "epsilon": 1.0,
    });
    let application = world.api.post("/v1/applications", &world.operator, &body).await.ok().expect("application");
    let path = format!("console/applications/{}", application["id"]);
    let (status, shown) = page(&http, &server, &path, &reviewer).await;
    assert_eq!(status, 200);
    assert!(shown.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img"), "escaped");
    assert!(!shown.contains("<script") && !shown.contains("<img"), "markup was rendered");
    // The bureau decides a submitted application; the department is told it is not its stage.
    assert!(shown.contains("class=\"review\""), "the bureau's form");
    let (_, department_view) = page(&http, &server, &path, &other).await;
    assert!(!department_view.contains("class=\"review\"") && department_view.contains("本阶段由数据主管部门审核"));

    // Signing out clears the cookie; a revoked token's cookie leads back to sign-in.
    let response = http
        .post(format!("{server}console/sign-out"))
        .header("cookie", &operator)
        .form(&[("csrf", operator_csrf.as_str())])
        .send()
        .await
        .expect("sign out");
    assert!(response.headers()["set-cookie"].to_str().expect("header").contains("Max-Age=0"));
    let principal = world.api.get("/v1/principals?role=reviewer", &world.admin).await.ok().expect("principals");
    let department_id = principal["principals"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["name"] == "d")
        .map(|p| p["id"].clone())
        .expect("department reviewer");
    world.api.delete(&format!("/v1/principals/{department_id}/token"), &world.admin).await.ok().expect("revoked");
    let response = http.get(format!("{server}console")).header("cookie", &other).send().await.expect("request");
    assert_eq!(response.headers()["location"], "/console/sign-in?failed=token_revoked");

    // An administrator issues another operator a new token from the console: shown once,
    // the old one refused from then on; an operator posting the same form is refused.
    let admin = sign_in(&http, &server, &world.admin).await;
    let (_, admin_home) = page(&http, &server, "console", &admin).await;
    let other_organisation = crate::harness::organisation(&world.api, &world.admin, "Other Data").await;
    let operators = world.api.get("/v1/principals?role=operator", &world.admin).await.ok().expect("operators");
    let other_id = operators["principals"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["organisation_id"] == other_organisation)
        .map(|p| p["id"].clone())
        .expect("the other operator");
    assert!(admin_home.contains(&format!("data-principal=\"{other_id}\"")), "an issue-token button");
    let issue = format!("{server}console/principals/{other_id}/token");
    let response =
        http.post(&issue).header("cookie", &admin).form(&[("csrf", csrf_in(&admin_home))]).send().await.expect("issue");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let shown = response.text().await.expect("body");
    let at = shown.find("id=\"new-token\">").expect("the token, once") + 15;
    let token = &shown[at..shown[at..].find('<').expect("end") + at];
    assert!(token.starts_with("sk_"), "{token}");
    assert_eq!(world.api.get("/v1/catalogue", &world.other_operator).await.status, 401, "the old token");
    assert_eq!(world.api.get("/v1/catalogue", token).await.status, 200, "the new token");
    let response =
        http.post(&issue).header("cookie", &reviewer).form(&[("csrf", csrf.as_str())]).send().await.expect("refused");
    assert_eq!(response.status(), 403);

    // The other languages' switch, and only the console's own paths to come back to.
    let response = http.get(format!("{server}console/lang/en?back=//evil.example/")).send().await.expect("request");
    assert_eq!(response.headers()["location"], "/console");
    let (_, english) = page(&http, &server, "console", &format!("{reviewer}; sluice_lang=en")).await;
    let (_, chinese) = page(&http, &server, "console", &format!("{reviewer}; sluice_lang=zh")).await;
    assert!(english.contains("Models awaiting review") && chinese.contains("待审核的模型"));
    world.assert_log_verifies().await;
}

/// A `multipart/form-data` body of `fields` in order, each (name, file name, content).
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "sluice-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, file, content) in fields {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some(file) = file {
            body.extend_from_slice(format!("; filename=\"{file}\"\r\nContent-Type: text/csv").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// What administrators and providers do from the console besides deciding: organisations
/// and accounts, datasets registered and new versions uploaded as CSV; and what
/// regulators read besides the trail: witnesses and budgets over time. Forged forms and
/// uploads are refused before anything is read or changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_creates_accounts_registers_datasets_uploads_versions_and_charts_budgets() {
    let world = World::new(200, 10.0).await;
    world.run().await.ok().expect("a run, so budgets have a history");
    let server = serve(&world).await;
    let http = browserless();

    // An administrator creates an organisation, then accounts in it.
    let admin = sign_in(&http, &server, &world.admin).await;
    let (_, home) = page(&http, &server, "console", &admin).await;
    assert!(home.contains("new-organisation") && home.contains("new-principal"), "the admin's forms");
    let csrf = csrf_in(&home);
    let organisations = format!("{server}console/organisations");
    let forged = http.post(&organisations).header("cookie", &admin).form(&[("name", "Forged Co")]).send().await;
    assert_eq!(forged.expect("request").status(), 400, "no anti-forgery value");
    let response = http
        .post(&organisations)
        .header("cookie", &admin)
        .form(&[("csrf", csrf.as_str()), ("name", "Zunyi Insurance Co")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 303);
    let listed = world.api.get("/v1/organisations", &world.admin).await.ok().expect("organisations");
    let listed = listed["organisations"].as_array().expect("list").clone();
    assert!(!listed.iter().any(|one| one["name"] == "Forged Co"), "the forged form created nothing");
    let created = listed.iter().find(|one| one["name"] == "Zunyi Insurance Co").expect("created");
    let organisation_id = created["id"].as_i64().expect("id").to_string();
    let principals = format!("{server}console/principals");
    let post_principal = |fields: Vec<(&'static str, String)>| {
        let http = http.clone();
        let (principals, admin, csrf) = (principals.clone(), admin.clone(), csrf.clone());
        async move {
            let mut form = fields;
            form.push(("csrf", csrf));
            let response = http.post(&principals).header("cookie", &admin).form(&form).send().await.expect("request");
            (response.status().as_u16(), response.text().await.expect("body"))
        }
    };
    // A regulator is active at once: its token is shown once and works.
    let (status, shown) = post_principal(vec![
        ("name", "auditor-2".into()),
        ("role", "regulator".into()),
        ("organisation_id", organisation_id.clone()),
    ])
    .await;
    assert_eq!(status, 200, "{shown}");
    let at = shown.find("id=\"new-token\">").expect("the token shown") + 15;
    let token = &shown[at..shown[at..].find('<').expect("end") + at];
    assert_eq!(world.api.get("/v1/catalogue", token).await.status, 200, "the new regulator's token");
    // An operator waits for a second administrator (the two-person rule); a half-given
    // licence is refused with what is missing.
    let operator = |licence_until: &str| {
        vec![
            ("name", "operator-2".into()),
            ("role", "operator".into()),
            ("organisation_id", organisation_id.clone()),
            ("licence_number", "GZ-DATA-2026-099".into()),
            ("licence_valid_from", time(-1)),
            ("licence_valid_until", licence_until.to_owned()),
        ]
    };
    let (status, refused) = post_principal(operator("")).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.contains("a licence needs its number"), "{refused}");
    let (status, pending) = post_principal(operator(&time(300))).await;
    assert_eq!(status, 200, "{pending}");
    assert!(pending.contains("pending-created") && !pending.contains("new-token"), "{pending}");
    // A provider may not create accounts from the console either.
    let provider = sign_in(&http, &server, &world.provider).await;
    let (_, provider_home) = page(&http, &server, "console", &provider).await;
    let provider_csrf = csrf_in(&provider_home);
    let response = http
        .post(&principals)
        .header("cookie", &provider)
        .form(&[("csrf", provider_csrf.as_str()), ("name", "x"), ("role", "admin"), ("organisation_id", "1")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);

    // A provider registers a dataset from its schema, then uploads a version as CSV.
    let schema =
        sluice::examples::VEHICLES_SCHEMA.replace("name = \"zunyi-vehicles\"", "name = \"zunyi-vehicles-2027\"");
    let datasets = format!("{server}console/datasets");
    let register = |schema: String| {
        let http = http.clone();
        let (datasets, provider, csrf) = (datasets.clone(), provider.clone(), provider_csrf.clone());
        async move {
            let form =
                [("csrf", csrf), ("schema", schema), ("epsilon_total", "5".into()), ("min_group_size", "10".into())];
            http.post(&datasets).header("cookie", &provider).form(&form).send().await.expect("request")
        }
    };
    let refused = register("name = ".into()).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.expect("body").contains("schema"), "the schema's error is shown");
    let response = register(schema).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().expect("location").to_owned();
    let dataset_id: i64 = location.trim_start_matches("/console#dataset-").parse().expect("the new dataset's id");
    let upload = format!("{server}console/datasets/{dataset_id}/data");
    let csv = sluice::examples::vehicles_csv(120, 5);
    let send = |fields: Vec<(&'static str, Option<&'static str>, Vec<u8>)>, cookie: String| {
        let (http, upload) = (http.clone(), upload.clone());
        async move {
            let borrowed: Vec<(&str, Option<&str>, &[u8])> =
                fields.iter().map(|(name, file, content)| (*name, *file, content.as_slice())).collect();
            let (content_type, body) = multipart(&borrowed);
            let response = http
                .post(&upload)
                .header("cookie", cookie)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("request");
            (response.status().as_u16(), response.text().await.expect("body"))
        }
    };
    let versions = || async {
        let catalogue = world.api.get("/v1/catalogue", &world.provider).await.ok().expect("catalogue");
        let entry =
            catalogue["datasets"].as_array().expect("datasets").iter().find(|one| one["id"] == dataset_id).cloned();
        entry.expect("listed")["versions"].as_array().expect("versions").len()
    };
    // Forged: the file before the anti-forgery value, a wrong value, or another session's.
    let file = || ("csv", Some("vehicles.csv"), csv.clone().into_bytes());
    let (status, _) = send(vec![file(), ("csrf", None, provider_csrf.clone().into_bytes())], provider.clone()).await;
    assert_eq!(status, 400, "the file came first");
    let (status, _) = send(vec![("csrf", None, b"0".repeat(32)), file()], provider.clone()).await;
    assert_eq!(status, 400, "a wrong value");
    let (status, _) = send(vec![("csrf", None, csrf.clone().into_bytes()), file()], provider.clone()).await;
    assert_eq!(status, 400, "the administrator's value in the provider's session");
    let (status, _) = send(
        vec![("csrf", None, provider_csrf.clone().into_bytes()), ("other", None, b"x".to_vec())],
        provider.clone(),
    )
    .await;
    assert_eq!(status, 400, "a field the form does not have");
    assert_eq!(versions().await, 0, "no refused upload stored anything");
    let (status, ingested) =
        send(vec![("csrf", None, provider_csrf.clone().into_bytes()), file()], provider.clone()).await;
    assert_eq!(status, 200, "{ingested}");
    assert!(ingested.contains("id=\"ingested\"") && ingested.contains("<dd>120</dd>"), "{ingested}");
    assert_eq!(versions().await, 1);
    // A bad row is refused as the API refuses it, and nothing of its value is shown.
    let bad = format!("{}\n{}", csv.lines().next().expect("header"), "CANARY-VALUE-9d1,x,y");
    let (status, refused) = send(
        vec![("csrf", None, provider_csrf.clone().into_bytes()), ("csv", Some("bad.csv"), bad.into_bytes())],
        provider.clone(),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(!refused.contains("CANARY-VALUE-9d1"), "a refused row's values are never shown");
    assert_eq!(versions().await, 1);

    // The regulator sees the witnesses and the budgets over time; so does the operator, for
    // its own scenario.
    let regulator = sign_in(&http, &server, &world.regulator).await;
    let (status, audit) = page(&http, &server, "console/audit", &regulator).await;
    assert_eq!(status, 200);
    assert!(audit.contains("id=\"witnesses\""), "the witnesses' section");
    let (_, regulator_home) = page(&http, &server, "console", &regulator).await;
    for shown in ["budget-over-time", "scenario-budgets", "dataset-budgets-chart", "<polyline"] {
        assert!(regulator_home.contains(shown), "the regulator's page lacks {shown}");
    }
    let operator = sign_in(&http, &server, &world.operator).await;
    let (_, operator_home) = page(&http, &server, "console", &operator).await;
    assert!(operator_home.contains("scenario-budgets"), "the operator's budget chart");
    world.assert_log_verifies().await;
}

/// A WebDriver session on a headless Chromium started for the test; stopped when dropped.
struct Browser {
    driver: std::process::Child,
    client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromedriver: &str) -> Browser {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("address").port()
        };
        // A process group of its own, so the browser it starts goes with it even when a
        // failed test never closes the session.
        let driver = std::process::Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {chromedriver}: {error}"));
        let profile = tempfile::tempdir().expect("profile");
        let chromium = std::env::var("SLUICE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1000", "--lang=zh-CN",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let capabilities = capabilities.as_object().expect("object").clone();
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = None;
        for _ in 0..100 {
            match ClientBuilder::rustls().expect("tls").capabilities(capabilities.clone()).connect(&url).await {
                Ok(client) => return Browser { driver, client, _profile: profile },
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer at {url}: {last_error:?}");
    }

    async fn sign_in(&self, server: &str, token: &str) {
        self.client.goto(&format!("{server}console/sign-in")).await.expect("sign-in page");
        self.client.find(Locator::Id("token")).await.expect("token field").send_keys(token).await.expect("typed");
        self.client.find(Locator::Id("sign-in")).await.expect("button").click().await.expect("clicked");
        self.client.wait().for_element(Locator::Id("who")).await.expect("signed in");
    }

    async fn sign_out(&self) {
        self.client.find(Locator::Id("sign-out")).await.expect("button").click().await.expect("clicked");
        self.client.wait().for_element(Locator::Id("token")).await.expect("back at sign-in");
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|_| panic!("no {css}")).text().await.expect("text")
    }

    /// The page as the user sees it, saved under `docs/console/` for the README.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
        std::fs::create_dir_all(&dir).expect("docs/console");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("saved");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = format!("-{}", self.driver.id());
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_an_operator_runs_and_a_regulator_audits_in_headless_chromium() {
    let Ok(chromedriver) = std::env::var("SLUICE_TEST_CHROMEDRIVER") else {
        eprintln!("skipped: set SLUICE_TEST_CHROMEDRIVER to a chromedriver (.ci/run installs Debian's)");
        return;
    };
    let world = World::new(400, 10.0).await;
    let server = serve(&world).await;
    let model_id = submit_second_model(&world).await;
    let browser = Browser::start(&chromedriver).await;
    let client = &browser.client;

    // The reviewer: the queue, the model page, the checklist ticked, approved.
    browser.sign_in(&server, &world.bureau).await;
    assert!(browser.text("#models-awaiting").await.contains(&model_id.to_string()));
    browser.screenshot("reviewer").await;
    // The same page in Chinese, through the language switch, and back.
    client.find(Locator::Css("a[href^='/console/lang/zh']")).await.expect("switch").click().await.expect("clicked");
    client.wait().for_element(Locator::Css("html[lang='zh-CN']")).await.expect("in Chinese");
    assert!(browser.text("#models-awaiting").await.contains("待审核的模型"));
    browser.screenshot("reviewer-zh").await;
    client.find(Locator::Css("a[href^='/console/lang/en']")).await.expect("switch").click().await.expect("clicked");
    client.wait().for_element(Locator::Css("html[lang='en']")).await.expect("in English");
    assert!(browser.text("#models-awaiting").await.contains("Models awaiting review"));
    client.goto(&format!("{server}console/models/{model_id}")).await.expect("model page");
    assert!(browser.text("#dummy-comparison").await.contains("risk"), "exact beside noisy on dummy rows");
    browser.screenshot("reviewer-model").await;
    for check in ["usability", "consistency", "compliance", "security"] {
        client.find(Locator::Id(&format!("check-{check}"))).await.expect("checkbox").click().await.expect("ticked");
    }
    client.find(Locator::Id("approve")).await.expect("approve").click().await.expect("clicked");
    client.wait().for_element(Locator::Css("p.why")).await.expect("the model page again, with nothing to decide");
    assert_eq!(browser.text("#state").await, "approved");
    browser.sign_out().await;

    // The operator: runs the approved model and reads the noisy result with its interval.
    browser.sign_in(&server, &world.operator).await;
    let run_button = format!("button.run[data-model='{model_id}']");
    client.find(Locator::Css(&run_button)).await.expect("run button").click().await.expect("clicked");
    client.wait().for_element(Locator::Css("#pending, #results")).await.expect("run page");
    world.clock.advance(RUN_VISIBILITY_STEP);
    client.refresh().await.expect("reloaded");
    let results = browser.text("#results").await;
    assert!(results.contains("± "), "a noisy value with its interval: {results}");
    assert_eq!(browser.text("#state").await, "released");
    let run_path = client.current_url().await.expect("url").path().to_owned();
    client.goto(&format!("{server}console")).await.expect("home");
    browser.screenshot("operator").await;
    client.goto(&format!("{server}{}", run_path.trim_start_matches('/'))).await.expect("run");
    browser.screenshot("operator-run").await;
    browser.sign_out().await;

    // The regulator: the model's approval and the release, in the audit trail.
    browser.sign_in(&server, &world.regulator).await;
    browser.screenshot("regulator").await;
    client.goto(&format!("{server}console/audit?action=model.review")).await.expect("audit");
    let reviews = browser.text("table.entries").await;
    assert!(reviews.contains(&format!("model:{model_id}")), "{reviews}");
    client.goto(&format!("{server}console/audit?action=run.release")).await.expect("audit");
    let releases = browser.text("table.entries").await;
    assert!(releases.contains("run.release"), "{releases}");
    browser.screenshot("regulator-audit").await;
    client.find(Locator::Css("table.entries a")).await.expect("an entry").click().await.expect("opened");
    client.wait().for_element(Locator::Id("entry")).await.expect("the entry's page");
    assert!(browser.text("#entry").await.contains("run.release"));
    browser.sign_out().await;

    // The provider's datasets and the administrator's accounts, for the README.
    browser.sign_in(&server, &world.provider).await;
    assert!(browser.text("section.dataset").await.contains("L"));
    browser.screenshot("provider").await;
    browser.sign_out().await;
    browser.sign_in(&server, &world.admin).await;
    assert!(browser.text("#principals").await.contains("operator"));
    browser.screenshot("admin").await;
    client.clone().close().await.expect("closed");
    world.assert_log_verifies().await;
}

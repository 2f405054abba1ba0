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

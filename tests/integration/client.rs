//! `sluice`'s client commands against a live gateway on a loopback port: the profile file,
//! a 2 MB module submitted with them, a run, its result and budget, the receipt they
//! print, and the server's JSON errors as the user sees them.

use std::path::Path;

use serde_json::Value;
use sluice::examples::VEHICLE_RISK_MANIFEST;
use sluice::remote::{self, Connection, Remote};

use crate::harness::{World, approve_model, padded_module, serve, time};

fn two_megabyte_module() -> Vec<u8> {
    padded_module(2_000_000)
}

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_carry_an_operator_through_a_live_gateway() {
    let world = World::new(200, 10.0).await;
    let server = serve(&world).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let profiles = dir.path().join("sluice").join("profiles.toml");

    // No profile yet: the error says how to make one.
    let error = Connection::open_with(&Remote::default(), &profiles).expect_err("no server");
    assert!(error.to_string().contains("sluice login"), "{error}");

    // Two profiles in one file, readable by their owner only; the URL's slash is dropped.
    remote::save_profile(&profiles, "default", &server, &world.operator).expect("saved");
    remote::save_profile(&profiles, "reviewer", &server, &world.bureau).expect("saved");
    let saved = std::fs::read_to_string(&profiles).expect("profiles");
    assert!(saved.contains("[profiles.default]") && saved.contains("[profiles.reviewer]"), "{saved}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&profiles).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the profile file is readable by others: {mode:o}");
    }
    assert!(remote::save_profile(&profiles, "bad", "ftp://example", "t").is_err());
    let operator =
        Connection::open_with(&Remote { profile: "default".into(), ..Remote::default() }, &profiles).expect("operator");

    // An application from a TOML file, its times written as TOML date-times.
    let work = tempfile::tempdir().expect("tempdir");
    let application = work.path().join("application.toml");
    let toml = format!(
        "dataset_id = {}\npurpose = \"a second scenario\"\nuse_scope = \"aggregates\"\n\
         security_measures = \"sandbox\"\ncolumns = [\"vehicle_age_years\"]\n\
         valid_from = {}\nvalid_until = {}\nepsilon = 1.0\n",
        world.dataset_id,
        time(0),
        time(30)
    );
    std::fs::write(&application, toml).expect("application");
    let mut out = Vec::new();
    remote::apply(&operator, &application, &mut out).await.expect("applied");
    let printed = text(out);
    assert!(printed.starts_with("application ") && printed.contains("columns vehicle_age_years"), "{printed}");

    // A 2 MB module and its manifest go up from files.
    let (module, manifest) = (work.path().join("big.wasm"), work.path().join("model.toml"));
    std::fs::write(&module, two_megabyte_module()).expect("module");
    std::fs::write(&manifest, VEHICLE_RISK_MANIFEST).expect("manifest");
    let mut out = Vec::new();
    remote::submit_model(&operator, world.authorisation_id as u64, &module, &manifest, &mut out)
        .await
        .expect("submitted");
    let printed = text(out);
    let size = two_megabyte_module().len();
    assert!(size > 2_000_000 && printed.contains(&format!("({size} bytes): submitted")), "{printed}");
    let model_id: u64 = printed
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no model id in {printed}"));

    let mut out = Vec::new();
    remote::model_status(&operator, model_id, &mut out).await.expect("status");
    assert!(text(out).contains(&format!("model {model_id}")));
    world
        .api
        .post(&format!("/v1/models/{model_id}/reviews"), &world.bureau, &approve_model())
        .await
        .ok()
        .expect("approved");

    // A run prints its release with intervals; the result and the budget read it back.
    let mut out = Vec::new();
    remote::run(&operator, world.authorisation_id as u64, model_id, &mut out).await.expect("ran");
    let printed = text(out);
    assert!(printed.contains("released") && printed.contains(" ± "), "{printed}");
    let run_id: u64 =
        printed.split_whitespace().nth(1).and_then(|id| id.trim_end_matches(':').parse().ok()).expect("id");
    world.clock.advance(crate::harness::RUN_VISIBILITY_STEP);

    let json = Connection::open_with(&Remote { profile: "default".into(), json: true, ..Remote::default() }, &profiles)
        .expect("json");
    let mut out = Vec::new();
    remote::wait(&json, run_id, std::time::Duration::from_secs(30), &mut out).await.expect("waited");
    let result: Value = serde_json::from_slice(&out).expect("the result is JSON");
    assert_eq!(result["state"], "released");
    let receipt = work.path().join("result.json");
    std::fs::write(&receipt, &out).expect("receipt");
    let key = world.api.get("/v1/audit/public-key", &world.regulator).await.ok().expect("key");
    verify(&receipt, key["public_key"].as_str().expect("key"));

    let mut out = Vec::new();
    remote::budget(&operator, world.authorisation_id as u64, &mut out).await.expect("budget");
    assert!(text(out).contains("ε spent 0.5 of 10"), "budget");

    // The server's refusals reach the user with their code and request id.
    let mut out = Vec::new();
    let error = remote::result(&operator, 999_999, &mut out).await.expect_err("no such run");
    let message = error.to_string();
    assert!(message.contains("404") && message.contains("request"), "{message}");
    let stranger = Connection::open_with(
        &Remote { server: Some(server.clone()), token: Some("not-a-token".into()), ..Remote::default() },
        &profiles,
    )
    .expect("connection");
    let error = remote::budget(&stranger, world.authorisation_id as u64, &mut Vec::new()).await.expect_err("refused");
    assert!(error.to_string().contains("401"), "{error}");
}

fn verify(receipt: &Path, public_key: &str) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let verdict = sluice_audit::tool::verify_receipt_file(receipt, public_key, &mut out, &mut err).expect("verified");
    assert!(matches!(verdict, sluice_audit::tool::Verdict::Verified), "{}{}", text(out), text(err));
}

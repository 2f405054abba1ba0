//! The OpenAPI document at `/v1/openapi.json` against the router itself: every route of
//! the JSON API is documented, every documented operation exists (no framework 404 or 405
//! for it), and the document is OpenAPI 3.1 whose errors are the API's error shape.

use std::collections::BTreeSet;

use serde_json::Value;
use sluice::client::Method;

use crate::harness::World;

/// `(METHOD, /path)` of every `.route(...)` in the API's router, read from its source: the
/// list the server actually serves (the console's HTML routes excepted).
fn routed() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway/src/api/mod.rs"))
        .expect("the router's source");
    let mut routes = BTreeSet::new();
    for line in source.lines().map(str::trim).filter(|line| line.starts_with(".route(\"")) {
        let path = line[8..].split('"').next().expect("a path").to_owned();
        let methods = &line[8 + path.len()..];
        for method in ["get", "post", "put", "patch", "delete"] {
            let calls = methods.matches(&format!("{method}(")).count();
            if calls > 0 {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_operation_exists() {
    let world = World::new(50, 10.0).await;
    let response = world.api.send(Method::GET, "/v1/openapi.json", None, "application/json", Vec::new()).await;
    assert_eq!(response.status, 200, "served without a token");
    let document = response.json();
    assert!(document["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")), "{}", document["openapi"]);

    let routes = routed();
    assert!(routes.len() > 40, "the router's source was read: {routes:?}");
    let operations = documented(&document);
    let undocumented: Vec<_> = routes.difference(&operations).collect();
    assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
    let unrouted: Vec<_> = operations.difference(&routes).collect();
    assert!(unrouted.is_empty(), "documented operations the router does not serve: {unrouted:?}");

    // Each documented operation reaches its handler: whatever it answers, it is not the
    // framework's refusal of an unknown route or method.
    for (method, path) in &operations {
        let concrete = path.replace("{id}", "999999");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let response =
            world.api.send(method.clone(), &concrete, Some(&world.admin), "application/json", Vec::new()).await;
        let message = response.json()["error"]["message"].as_str().unwrap_or("").to_owned();
        assert_ne!(response.status, 405, "{method} {path}");
        assert!(
            !(response.status == 404 && message.ends_with("Not Found")),
            "{method} {path} is not routed: {message}"
        );
    }

    // Every operation documents the error shape for its refusals.
    let error = &document["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error", "request_id"]), "{error}");
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            assert!(operation["responses"]["4XX"].is_object(), "{method} {path} documents no 4XX");
        }
    }
}

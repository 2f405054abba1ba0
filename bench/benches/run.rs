//! A run's fixed cost: `cargo bench -p sluice-bench --bench run`.
//!
//! The reference job on a 1,000-row dataset, in process: `App::run` (authorise, charge,
//! decrypt, instantiate, map, release, audit, receipt) and the same through the API's
//! router (JSON in and out, the request's own audit). The visibility delay's fixed base is
//! set to 0; its per-row part (rows × the manifest's fuel per row × 0.5 ns, 1 ms here) is
//! part of every run by design, so it is part of what is measured. Each run spends
//! ε = 0.05 (the minimum), so the budget holds for the whole measurement.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sluice::client::InProcessClient;
use sluice::examples::vehicles_csv;
use sluice_bench::{REFERENCE_MANIFEST, approve_model, scenario};
use sluice_gateway::api::router;
use sluice_gateway::config::Config;
use sluice_gateway::service::{App, Clock};

/// The reference manifest at the minimum ε per run.
fn cheap_manifest() -> String {
    REFERENCE_MANIFEST.replace("epsilon = 0.4", "epsilon = 0.02").replace("epsilon = 0.2", "epsilon = 0.01")
}

fn run(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, api, operator, authorisation_id, model_id) = runtime.block_on(async {
        let config = Config::new(dir.path().join("data"));
        config.data_dir.init(true, &config.database, &config.objects).await.expect("init");
        let app = App::open(config, Clock::System).await.expect("open");
        app.gate().set_visibility_base(Duration::ZERO);
        app.gate().set_max_runs_per_hour(u64::MAX);
        let api = InProcessClient::new(router(app.clone()));
        let scenario = scenario(&app, &api).await.expect("scenario");
        let path = format!("/v1/datasets/{}/data", scenario.dataset_id);
        api.put_csv(&path, &scenario.provider, vehicles_csv(1_000, 7).into_bytes()).await.ok().expect("ingest");
        let (authorisation_id, model_id) = approve_model(&api, &scenario, &cheap_manifest()).await.expect("approved");
        (app, api, scenario.operator, authorisation_id, model_id)
    });
    let caller = runtime.block_on(app.authenticate(Some(&operator), "bench")).expect("caller");
    let mut group = criterion.benchmark_group("run of 1,000 rows");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    group.bench_function("App::run (in process)", |bench| {
        bench.iter(|| runtime.block_on(app.run(&caller, authorisation_id, model_id)).expect("runs"))
    });
    let body = json!({"authorisation_id": authorisation_id, "model_id": model_id});
    group.bench_function("POST /v1/runs (router, JSON)", |bench| {
        bench.iter(|| runtime.block_on(api.post("/v1/runs", &operator, &body)).ok().expect("runs"))
    });
    group.finish();
}

criterion_group!(benches, run);
criterion_main!(benches);

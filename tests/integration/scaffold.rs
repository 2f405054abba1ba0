//! `sluice new` writes a model crate that builds for wasm32 and passes the server's review
//! as it is, for every shipped schema.

use sluice_vault::schema::DatasetSchema;

#[test]
fn a_new_model_builds_and_passes_review_for_every_example_schema() {
    let runtime = sluice_sandbox::Runtime::new(sluice_sandbox::RuntimeLimits::default()).expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    // One shared target directory keeps the three builds quick.
    let target = dir.path().join("target");
    for (index, model) in sluice::examples::EXAMPLE_MODELS.iter().enumerate() {
        // A model over two departments' data is written for the rows it sees: joined.
        let schema = model.view_schema().expect("schema");
        let name = format!("new-model-{index}");
        sluice::scaffold::new_model(dir.path(), &name, &schema, model.schema_file).expect("written");
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(dir.path().join(&name))
            .args(["build", "--release", "--offline", "--quiet", "--target", "wasm32-unknown-unknown"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "{name} for {} does not build", model.schema_file);
        let wasm = std::fs::read(target.join("wasm32-unknown-unknown/release").join(format!("new_model_{index}.wasm")))
            .expect("built module");
        let manifest = std::fs::read_to_string(dir.path().join(&name).join("manifest.toml")).expect("manifest");
        let (compiled, _) = sluice_gateway::runner::check(&runtime, &wasm, &manifest, Some(&schema))
            .unwrap_or_else(|refusal| panic!("{name} for {}: {refusal}", model.schema_file));
        let run = sluice::dev::run(&runtime, &compiled, &schema, 2_000, 1).expect("runs");
        assert_eq!(run.fallbacks.total(), 0);
        assert!(!run.outputs.is_empty());
    }
    // An existing directory is never overwritten.
    let schema = DatasetSchema::from_toml(sluice::examples::VEHICLES_SCHEMA).expect("schema");
    let error = sluice::scaffold::new_model(dir.path(), "new-model-0", &schema, "s.toml").expect_err("exists");
    assert!(error.to_string().contains("already exists"), "{error}");
    let error = sluice::scaffold::new_model(dir.path(), "Bad Name", &schema, "s.toml").expect_err("name");
    assert!(error.to_string().contains("must start with a-z"), "{error}");
}

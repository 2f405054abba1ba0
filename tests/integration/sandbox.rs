//! Hostile and broken models against the real runtime: each is refused at review or
//! stopped at run time with its own error, and the host keeps working afterwards.

use std::sync::OnceLock;

use sluice_sandbox::{Batch, Column, ColumnValues, Manifest, Runtime, RuntimeLimits, SandboxError};

const MANIFEST: &str = r#"
abi_version = 1
name = "probe"
version = "1"
inputs = [{ name = "x", type = "f64" }]
outputs = [{ name = "y", kind = "sum", lower = 0.0, upper = 1000000.0, epsilon = 1.0 }]
"#;

/// Region for 1 input and 1 output at batch capacity 4096: 4096 × 9 bytes rounded to 8,
/// then 4096 × 8 bytes of outputs. It starts at 65536, in the second page.
const REGION: i32 = 65_536;
const OUTPUTS_AT: i32 = REGION + 36_864;

/// A module with the ABI exports around a `sluice_map` body; `extra` adds items.
fn module(map_body: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {extra}
            (memory (export "memory") 3)
            (func (export "sluice_abi_version") (result i32) i32.const 1)
            (func (export "sluice_reserve") (param i32) (result i32) i32.const {REGION})
            (func (export "sluice_map") (param $region i32) (param $rows i32) (param $inputs i32) (param $outputs i32) (result i32)
                (local $row i32)
                {map_body})
        )"#
    ))
    .expect("valid WAT")
}

/// Copies each row's input to its output: y = x.
fn identity() -> Vec<u8> {
    module(
        &format!(
            "(block $done (loop $next
                (br_if $done (i32.ge_u (local.get $row) (local.get $rows)))
                (f64.store (i32.add (i32.const {OUTPUTS_AT}) (i32.mul (local.get $row) (i32.const 8)))
                           (f64.load (i32.add (i32.const {REGION}) (i32.mul (local.get $row) (i32.const 8)))))
                (local.set $row (i32.add (local.get $row) (i32.const 1)))
                (br $next)))
             i32.const 0"
        ),
        "",
    )
}

/// A module whose ABI exports return fixed values: version, region offset, and a map with
/// the given parameter list.
fn bare(version: i32, region: i64, map_params: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (memory (export "memory") 1)
           (func (export "sluice_abi_version") (result i32) i32.const {version})
           (func (export "sluice_reserve") (param i32) (result i32) i32.const {region})
           (func (export "sluice_map") {map_params} (result i32) i32.const 0))"#
    ))
    .expect("valid WAT")
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let limits = RuntimeLimits { deadline: std::time::Duration::from_secs(5), ..RuntimeLimits::default() };
        Runtime::new(limits).expect("runtime")
    })
}

fn batch(values: &[f64]) -> Batch {
    Batch {
        rows: values.len(),
        columns: vec![Column { values: ColumnValues::F64(values.to_vec()), valid: vec![true; values.len()] }],
    }
}

fn run(module: &[u8], batches: Vec<Batch>) -> Result<Vec<f64>, SandboxError> {
    let compiled = runtime().compile(module, Manifest::from_toml(MANIFEST).expect("manifest"))?;
    let outputs = runtime().run(&compiled, batches.into_iter().map(Ok::<_, std::convert::Infallible>))?;
    Ok(outputs.column(0).to_vec())
}

/// The host still runs a good model correctly.
fn assert_host_healthy() {
    let values: Vec<f64> = (0..10).map(f64::from).collect();
    assert_eq!(run(&identity(), vec![batch(&values)]).expect("healthy"), values);
}

#[test]
fn a_good_model_sees_every_row_in_order_across_batches() {
    let first: Vec<f64> = (0..4096).map(f64::from).collect();
    let second: Vec<f64> = (0..1000).map(|value| f64::from(value) + 0.5).collect();
    let outputs = run(&identity(), vec![batch(&first), batch(&second)]).expect("runs");
    assert_eq!(outputs, [first, second].concat());
}

#[test]
fn hostile_modules_are_refused_or_stopped_with_their_own_error() {
    let recursion = module("call $deep", "(func $deep (result i32) call $deep)");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("infinite loop", module("(loop $forever (br $forever)) i32.const 0", ""), "resource_limit"),
        ("stack overflow", recursion, "resource_limit"),
        ("memory bomb", module("(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) i32.const 0", ""), "resource_limit"),
        ("trap", module("unreachable", ""), "trap"),
        ("NaN output", module(&format!("(f64.store (i32.const {OUTPUTS_AT}) (f64.const nan)) i32.const 0"), ""), "invalid_output"),
        ("infinite output", module(&format!("(f64.store (i32.const {OUTPUTS_AT}) (f64.const inf)) i32.const 0"), ""), "invalid_output"),
        ("model error status", module("i32.const 7", ""), "model_status"),
        ("forbidden import", module("i32.const 0", r#"(import "env" "leak" (func (param i32)))"#), "forbidden_import"),
        ("WASI import", module("i32.const 0", r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#), "forbidden_import"),
        ("table bomb", module("i32.const 0", "(table 1000000 funcref)"), "table_too_large"),
        ("function bomb", module("i32.const 0", &"(func)".repeat(20_001)), "too_many_functions"),
        ("two memories", module("i32.const 0", "(memory 1)"), "too_many_items"),
        ("oversized module", [b"\0asm\x01\0\0\0".as_slice(), &vec![0u8; 9 << 20]].concat(), "module_too_large"),
        ("malformed bytes", b"\0asm\x01\0\0\0garbage".to_vec(), "module_invalid"),
        ("text instead of binary", b"(module)".to_vec(), "module_invalid"),
        ("a component", wat::parse_str("(component)").expect("component"), "component_not_module"),
        (
            "huge initial memory",
            wat::parse_str(r#"(module (memory (export "memory") 2000) (func (export "sluice_abi_version") (result i32) i32.const 1))"#).expect("wat"),
            "memory_too_large",
        ),
        ("missing export", wat::parse_str(r#"(module (memory (export "memory") 1))"#).expect("wat"), "missing_export"),
        ("wrong export signature", bare(1, 0, ""), "wrong_export_signature"),
        ("wrong ABI version", bare(2, 0, "(param i32 i32 i32 i32)"), "abi_version_mismatch"),
        ("region outside memory", bare(1, 2147483640, "(param i32 i32 i32 i32)"), "trap"),
    ];
    for (what, bytes, expected) in cases {
        let error = run(&bytes, vec![batch(&[1.0, 2.0])]).expect_err(what);
        assert_eq!(error.code(), expected, "{what}: {error}");
        // The operator sees only a coarse class, never the detail.
        assert!(!error.outcome().message().contains(&error.to_string()), "{what}");
        assert_host_healthy();
    }
}

/// Every run gets a fresh store: what one run leaves in memory, the next never sees.
#[test]
fn a_canary_written_by_one_run_is_never_seen_by_the_next() {
    // Outputs 1 if the canary is already at address 8, else writes it and outputs 0.
    let canary = module(
        &format!(
            "(f64.store (i32.const {OUTPUTS_AT}) (f64.convert_i32_u (i64.eq (i64.load (i32.const 8)) (i64.const 0x5AFE5AFE5AFE5AFE))))
             (i64.store (i32.const 8) (i64.const 0x5AFE5AFE5AFE5AFE))
             i32.const 0"
        ),
        "",
    );
    let compiled = runtime().compile(&canary, Manifest::from_toml(MANIFEST).expect("manifest")).expect("compiles");
    for attempt in 0..1_000 {
        let outputs =
            runtime().run(&compiled, std::iter::once(Ok::<_, std::convert::Infallible>(batch(&[0.0])))).expect("runs");
        assert_eq!(outputs.column(0), [0.0], "run {attempt} saw a previous run's canary");
    }
}

#[test]
fn the_same_input_and_fuel_give_the_same_output() {
    let values: Vec<f64> = (0..3000).map(|value| f64::from(value).sqrt()).collect();
    let first = run(&identity(), vec![batch(&values)]).expect("runs");
    let second = run(&identity(), vec![batch(&values)]).expect("runs");
    assert_eq!(first, second);
}

/// Every example model passes the server's static review against its schema and runs on
/// dummy data with the server's limits, releasing every declared output.
#[test]
fn example_models_pass_review_and_run_on_dummy_data() {
    use sluice_gateway::schema::DatasetSchema;
    for model in sluice_gateway::examples::EXAMPLE_MODELS {
        let schema = DatasetSchema::from_toml(model.schema).expect("schema");
        let (compiled, report) =
            sluice_gateway::dev::check(runtime(), model.wasm, model.manifest, Some(&schema)).expect(model.name);
        assert_eq!(report.name, model.name);
        let outputs = sluice_gateway::dev::run(runtime(), &compiled, &schema, 5_000, 3).expect(model.name);
        assert_eq!(outputs.len(), report.outputs.len());
        if model.name == "enterprise-credit" {
            let groups = outputs[0].released.groups.as_ref().expect("grouped by industry");
            assert_eq!(groups.len(), 9, "one group per declared industry");
        }
        for output in outputs {
            // Only a grouped mean has no single value; its groups carry the values.
            let released = &output.released;
            assert!(released.value.map_or(released.groups.is_some(), f64::is_finite), "{}", model.name);
            assert!(output.exact.is_finite(), "{}", model.name);
        }
    }
}

/// A manifest reading a level-4 column is refused by the local check, as the server would.
#[test]
fn dev_check_refuses_core_columns_and_type_mismatches() {
    use sluice_gateway::schema::DatasetSchema;
    let model = sluice_gateway::examples::EXAMPLE_MODELS[1];
    let schema = DatasetSchema::from_toml(model.schema).expect("schema");
    let core = model.manifest.replace("\"employees\", type = \"i64\"", "\"legal_representative_id\", type = \"i64\"");
    let refusal = sluice_gateway::dev::check(runtime(), model.wasm, &core, Some(&schema)).expect_err("level 4");
    assert_eq!(refusal.code, "column_not_grantable");
    let mistyped = model.manifest.replace("\"employees\", type = \"i64\"", "\"employees\", type = \"f64\"");
    let refusal = sluice_gateway::dev::check(runtime(), model.wasm, &mistyped, Some(&schema)).expect_err("type");
    assert_eq!(refusal.code, "column_type_mismatch");
}

/// With fuel switched off, the wall-clock deadline alone still stops an infinite loop.
#[test]
fn the_epoch_deadline_stops_a_loop_without_fuel() {
    let limits = RuntimeLimits {
        metering: sluice_sandbox::Metering::Epoch,
        deadline: std::time::Duration::from_millis(200),
        ..RuntimeLimits::default()
    };
    let runtime = Runtime::new(limits).expect("runtime");
    let endless = module("(loop $forever (br $forever)) i32.const 0", "");
    let compiled = runtime.compile(&endless, Manifest::from_toml(MANIFEST).expect("manifest")).expect("compiles");
    let error =
        runtime.run(&compiled, std::iter::once(Ok::<_, std::convert::Infallible>(batch(&[1.0])))).expect_err("stopped");
    assert_eq!(error.code(), "resource_limit");
    assert!(error.to_string().contains("deadline"), "{error}");
}

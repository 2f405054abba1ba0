//! Hostile and broken models against the real runtime, written as a hostile operator would
//! write them: each tries to make one row's output depend on another row (or to turn a
//! failure into a signal), and each is either refused at review with its own code, or runs
//! with per-row outputs bit-identical to computing every row on its own.

use std::sync::OnceLock;

use sluice_sandbox::{Batch, Column, ColumnValues, Fallbacks, Manifest, Runtime, RuntimeLimits, SandboxError};

const MANIFEST: &str = r#"
abi_version = 2
name = "probe"
version = "1"
inputs = [{ name = "x", type = "f64" }]
outputs = [{ name = "y", kind = "sum", lower = -1000000.0, upper = 1000000.0, epsilon = 1.0, default = -1.0 }]
"#;

/// The value a row the model failed on contributes (the manifest's `default`).
const DEFAULT: f64 = -1.0;
const ROW: &str = "sluice_row_v2(x:f64,)->(y,)";

/// An ABI 2 module whose row function has `body` (with `$x` and `$present` in scope);
/// `extra` adds items after the `emit` import.
fn row_module(body: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "sluice" "emit" (func $emit (param i32 f64)))
            {extra}
            (func (export "{ROW}") (param $x f64) (param $present i64)
                {body}))"#
    ))
    .expect("valid WAT")
}

/// y = x.
fn identity() -> Vec<u8> {
    row_module("(call $emit (i32.const 0) (local.get $x))", "")
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

/// Runs `module` over `values` cut into batches of `batch_rows`; the outputs and fallbacks.
fn run_in_batches(module: &[u8], values: &[f64], batch_rows: usize) -> Result<(Vec<f64>, Fallbacks), SandboxError> {
    let compiled = runtime().compile(module, Manifest::from_toml(MANIFEST).expect("manifest"))?;
    let batches: Vec<Batch> = values.chunks(batch_rows).map(batch).collect();
    let outputs = runtime().run(&compiled, batches.into_iter().map(Ok::<_, std::convert::Infallible>))?;
    Ok((outputs.column(0).to_vec(), outputs.fallbacks()))
}

fn run(module: &[u8], values: &[f64]) -> Result<Vec<f64>, SandboxError> {
    run_in_batches(module, values, 4096).map(|(outputs, _)| outputs)
}

/// The host still runs a good model correctly.
fn assert_host_healthy() {
    let values: Vec<f64> = (0..10).map(f64::from).collect();
    assert_eq!(run(&identity(), &values).expect("healthy"), values);
}

/// The row-isolation property, checked the way the issue states it: the per-row outputs of
/// a run over the data in order, of a run over a shuffled copy cut into other batch sizes,
/// and of a run of each row on its own, are bit-identical.
fn assert_isolated(what: &str, module: &[u8], values: &[f64]) -> Fallbacks {
    let (in_order, fallbacks) = run_in_batches(module, values, 4096).expect(what);
    // A fixed permutation (multiplying by a unit modulo the length) into batches of 777.
    let count = values.len();
    let permutation: Vec<usize> = (0..count).map(|index| (index * 7919 + 13) % count).collect();
    let shuffled: Vec<f64> = permutation.iter().map(|index| values[*index]).collect();
    let (shuffled_outputs, shuffled_fallbacks) = run_in_batches(module, &shuffled, 777).expect(what);
    assert_eq!(fallbacks, shuffled_fallbacks, "{what}: fallbacks depend on the order of rows");
    for (position, index) in permutation.iter().enumerate() {
        assert_eq!(
            shuffled_outputs[position].to_bits(),
            in_order[*index].to_bits(),
            "{what}: row {index} changed when moved to another batch and position"
        );
    }
    // Split into three parts mapped at once, each in its own instance and thread, the rows
    // give the same outputs and the same fallback counts, in order.
    let compiled = runtime().compile(module, Manifest::from_toml(MANIFEST).expect("manifest")).expect(what);
    let parts: Vec<_> = values
        .chunks(count.div_ceil(3))
        .map(|part| part.chunks(1000).map(batch).map(Ok::<_, std::convert::Infallible>).collect::<Vec<_>>().into_iter())
        .collect();
    let joined = runtime().run_parts(&compiled, parts).expect(what);
    assert_eq!(joined.fallbacks(), fallbacks, "{what}: fallbacks depend on how the rows were split");
    assert!(
        joined.column(0).iter().zip(&in_order).all(|(part, whole)| part.to_bits() == whole.to_bits()),
        "{what}: rows changed when the run was split into parts"
    );
    assert_eq!(joined.rows(), count);
    // And handed to sinks a batch at a time (what a real run does), the same rows arrive.
    let parts: Vec<_> = values
        .chunks(count.div_ceil(3))
        .map(|part| {
            let batches = part.chunks(1000).map(batch).map(Ok::<_, std::convert::Infallible>).collect::<Vec<_>>();
            (batches.into_iter(), Collect::default())
        })
        .collect();
    let mut streamed = Vec::new();
    let mut streamed_fallbacks = Fallbacks::default();
    for (sink, rows, part_fallbacks) in runtime().run_parts_into(&compiled, parts).expect(what) {
        assert_eq!(sink.0.len(), rows);
        streamed.extend(sink.0);
        streamed_fallbacks.add(part_fallbacks);
    }
    assert_eq!(streamed_fallbacks, fallbacks, "{what}: fallbacks differ when streamed");
    assert!(
        streamed.iter().zip(&in_order).all(|(part, whole)| part.to_bits() == whole.to_bits())
            && streamed.len() == count,
        "{what}: rows changed when streamed to sinks"
    );
    for index in (0..count).step_by(count / 25 + 1) {
        let alone = run(module, &values[index..=index]).expect(what);
        assert_eq!(alone[0].to_bits(), in_order[index].to_bits(), "{what}: row {index} differs when run alone");
    }
    fallbacks
}

/// A sink that keeps output 0 of every row it is handed.
#[derive(Default)]
struct Collect(Vec<f64>);

impl sluice_sandbox::OutputSink for Collect {
    fn take(&mut self, outputs: &sluice_sandbox::ModelOutputs) {
        self.0.extend_from_slice(outputs.column(0));
    }
}

fn data() -> Vec<f64> {
    (0..9000).map(|row| f64::from((row * 37) % 101)).collect()
}

#[test]
fn a_good_model_sees_every_row_in_order_across_batches() {
    let first: Vec<f64> = (0..4096).map(f64::from).collect();
    let second: Vec<f64> = (0..1000).map(|value| f64::from(value) + 0.5).collect();
    let values = [first, second].concat();
    let (outputs, fallbacks) = run_in_batches(&identity(), &values, 4096).expect("runs");
    assert_eq!(outputs, values);
    assert_eq!(fallbacks.total(), 0);
}

/// Every way we know for a row function to keep state is refused at review, with a code of
/// its own and a message naming the function.
#[test]
fn state_carrying_models_are_refused_at_review_with_their_own_code() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // The published attack: keep the first row's value in a global, emit it for every row.
        (
            "a global carried across rows",
            row_module(
                "(if (f64.eq (global.get $first) (f64.const 0)) (then (global.set $first (local.get $x))))
                 (call $emit (i32.const 0) (global.get $first))",
                "(global $first (mut f64) (f64.const 0))",
            ),
            "writes_global",
        ),
        (
            "linear memory carried across rows",
            row_module(
                "(call $emit (i32.const 0) (f64.load (i32.const 8)))
                 (f64.store (i32.const 8) (local.get $x))",
                "(memory 1)",
            ),
            "writes_memory",
        ),
        (
            "memory carried across batches, from a helper function",
            row_module(
                "(call $remember (local.get $x)) (call $emit (i32.const 0) (local.get $x))",
                "(memory 1) (func $remember (param f64) (i64.store (i32.const 64) (i64.reinterpret_f64 (local.get 0))))",
            ),
            "writes_memory",
        ),
        (
            "a table used as storage",
            row_module(
                "(if (f64.gt (local.get $x) (f64.const 50)) (then (table.set $t (i32.const 0) (ref.func $marker))))
                 (call $emit (i32.const 0) (f64.convert_i32_u (ref.is_null (table.get $t (i32.const 0)))))",
                "(table $t 1 funcref) (func $marker) (elem declare func $marker)",
            ),
            "writes_table",
        ),
        (
            "a data segment rewritten at run time",
            row_module(
                "(memory.init $seg (i32.const 0) (i32.const 0) (i32.const 8)) (call $emit (i32.const 0) (local.get $x))",
                "(memory 1) (data $seg \"12345678\")",
            ),
            "writes_memory",
        ),
        (
            "a data segment dropped as a one-bit flag",
            row_module("(data.drop $seg) (call $emit (i32.const 0) (local.get $x))", "(memory 1) (data $seg \"1\")"),
            "drops_segment",
        ),
        (
            "memory.grow as a counter",
            row_module(
                "(call $emit (i32.const 0) (f64.convert_i32_u (memory.grow (i32.const 0))))
                 (drop (memory.grow (i32.const 1)))",
                "(memory 1 100)",
            ),
            "grows_memory",
        ),
        (
            "memory.fill",
            row_module(
                "(memory.fill (i32.const 0) (i32.trunc_f64_u (local.get $x)) (i32.const 4)) (call $emit (i32.const 0) (local.get $x))",
                "(memory 1)",
            ),
            "writes_memory",
        ),
        (
            "memory.copy",
            row_module(
                "(memory.copy (i32.const 100) (i32.const 0) (i32.const 8)) (call $emit (i32.const 0) (local.get $x))",
                "(memory 1)",
            ),
            "writes_memory",
        ),
        (
            "a store reached only through call_indirect",
            row_module(
                "(call_indirect (type $sink) (local.get $x) (i32.const 0)) (call $emit (i32.const 0) (local.get $x))",
                "(type $sink (func (param f64))) (memory 1) (table 1 funcref) (elem (i32.const 0) $hidden)
                 (func $hidden (param f64) (f64.store (i32.const 0) (local.get 0)))",
            ),
            "writes_memory",
        ),
        (
            "a start function",
            row_module(
                "(call $emit (i32.const 0) (f64.load (i32.const 0)))",
                "(memory 1) (func $init (f64.store (i32.const 0) (f64.const 42))) (start $init)",
            ),
            "start_function",
        ),
    ];
    for (what, bytes, expected) in cases {
        let error = run(&bytes, &[1.0, 2.0]).expect_err(what);
        assert_eq!(error.code(), expected, "{what}: {error}");
        assert!(error.to_string().contains("in function") || expected == "start_function", "{what}: {error}");
        assert_host_healthy();
    }
}

/// The review names the offending function so its author can fix it.
#[test]
fn an_isolation_refusal_names_the_function_and_says_what_to_do() {
    let module = row_module(
        "(call $score (local.get $x)) (call $emit (i32.const 0) (local.get $x))",
        "(memory 1) (func $score (param f64) (f64.store (i32.const 0) (local.get 0)))",
    );
    let message = run(&module, &[1.0]).expect_err("refused").to_string();
    assert!(message.contains("writes linear memory in function `score`"), "{message}");
    assert!(message.contains("keep per-row work in locals"), "{message}");
}

/// Models that try to signal through failure, fuel or recursion run, and every row's output
/// equals the output of that row computed on its own: the failing rows contribute the
/// declared default, and nothing else changes.
#[test]
fn failure_fuel_and_recursion_cannot_link_rows() {
    let values = data();
    // Recursion depth chosen by the value: the stack is unwound after every row.
    let recursion = row_module(
        "(call $emit (i32.const 0) (f64.convert_i32_u (call $depth (i32.trunc_f64_u (local.get $x)))))",
        "(func $depth (param i32) (result i32)
           (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
             (else (i32.add (i32.const 1) (call $depth (i32.sub (local.get 0) (i32.const 1)))))))",
    );
    assert_eq!(assert_isolated("recursion depth", &recursion, &values).total(), 0);

    let trap_on_13 = row_module(
        "(if (f64.eq (local.get $x) (f64.const 13)) (then unreachable)) (call $emit (i32.const 0) (local.get $x))",
        "",
    );
    let fallbacks = assert_isolated("a trap on one value", &trap_on_13, &values);
    let thirteens = values.iter().filter(|value| **value == 13.0).count() as u64;
    assert_eq!(fallbacks.trap, thirteens);

    let burn_on_13 = row_module(
        "(local $left i32)
         (if (f64.eq (local.get $x) (f64.const 13))
           (then (local.set $left (i32.const 10000000))
                 (loop $burn (local.set $left (i32.sub (local.get $left) (i32.const 1)))
                             (br_if $burn (local.get $left)))))
         (call $emit (i32.const 0) (local.get $x))",
        "",
    );
    let fallbacks = assert_isolated("fuel burnt on one value", &burn_on_13, &values);
    assert_eq!(fallbacks.fuel, thirteens);

    let deep_on_13 = row_module(
        "(if (f64.eq (local.get $x) (f64.const 13)) (then (call $forever))) (call $emit (i32.const 0) (local.get $x))",
        "(func $forever (call $forever))",
    );
    assert_eq!(assert_isolated("stack overflow on one value", &deep_on_13, &values).stack, thirteens);

    let nan_on_13 = row_module(
        "(call $emit (i32.const 0)
           (select (f64.const nan) (local.get $x) (f64.eq (local.get $x) (f64.const 13))))",
        "",
    );
    assert_eq!(assert_isolated("NaN on one value", &nan_on_13, &values).non_finite, thirteens);

    // Reading constant data is allowed: the module's memory never changes.
    let lookup = row_module(
        "(call $emit (i32.const 0) (f64.load (i32.shl (i32.and (i32.trunc_f64_u (local.get $x)) (i32.const 3)) (i32.const 3))))",
        "(memory 1) (data (i32.const 0) \"\\00\\00\\00\\00\\00\\00\\f0\\3f\\00\\00\\00\\00\\00\\00\\00\\40\\00\\00\\00\\00\\00\\00\\08\\40\\00\\00\\00\\00\\00\\00\\10\\40\")",
    );
    assert_eq!(assert_isolated("a constant lookup table", &lookup, &values).total(), 0);

    // The failing rows hold the default, the others their own value.
    let outputs = run(&trap_on_13, &values).expect("runs");
    for (value, output) in values.iter().zip(outputs) {
        assert_eq!(output, if *value == 13.0 { DEFAULT } else { *value });
    }
}

/// The fuel bound review proves from the code is a real bound, and the one a run's
/// visibility time is priced from: a model that spends its fuel only on a chosen value,
/// run with exactly its bound as each row's fuel, completes every row (the dearest path
/// included); with one unit less, exactly the chosen rows fall back. Code that loops or
/// recurses has no bound, and only its declared fuel bounds it.
#[test]
fn the_fuel_bound_covers_the_dearest_row_and_is_tight() {
    let values = data();
    let thirteens = values.iter().filter(|value| **value == 13.0).count() as u64;
    let mut dear_path = String::new();
    for _ in 0..100 {
        dear_path.push_str("(local.set $y (f64.add (local.get $y) (f64.const 1)))");
    }
    let dear_on_13 = row_module(
        &format!(
            "(local $y f64) (local.set $y (local.get $x))
             (if (f64.eq (local.get $x) (f64.const 13)) (then {dear_path}))
             (call $emit (i32.const 0) (local.get $y))"
        ),
        "",
    );
    let compiled = runtime().compile(&dear_on_13, Manifest::from_toml(MANIFEST).expect("manifest")).expect("reviews");
    let bound = compiled.fuel_bound().expect("loop-free code has a bound");
    // The manifest declares no fuel, so the host's cap applies; the bound is far below it.
    assert!(bound < runtime().limits().fuel_per_row / 10, "{bound}");
    assert_eq!(runtime().worst_fuel_per_row(&compiled), bound);

    let with_fuel = |fuel: u64| {
        let manifest = Manifest::from_toml(&format!("fuel_per_row = {fuel}\n{MANIFEST}")).expect("manifest");
        let compiled = runtime().compile(&dear_on_13, manifest).expect("reviews");
        let batches: Vec<Batch> = values.chunks(4096).map(batch).collect();
        runtime().run(&compiled, batches.into_iter().map(Ok::<_, std::convert::Infallible>)).expect("runs")
    };
    let at_the_bound = with_fuel(bound);
    assert_eq!(at_the_bound.fallbacks().total(), 0, "a row used more fuel than its bound");
    let expected: Vec<f64> = values.iter().map(|x| if *x == 13.0 { x + 100.0 } else { *x }).collect();
    assert_eq!(at_the_bound.column(0), expected.as_slice());
    // The dear path runs every operator of the function (its `if` has no `else`), so the
    // bound is exact for it: one unit less and exactly the chosen rows fall back.
    let below = with_fuel(bound - 1);
    assert_eq!(below.fallbacks().fuel, thirteens);
    assert!(thirteens > 0);

    // A loop, or recursion, has no bound from the code: the declared fuel prices it.
    for (what, module) in [
        (
            "a loop",
            row_module(
                "(loop $l (br_if $l (f64.lt (local.get $x) (f64.const 0)))) (call $emit (i32.const 0) (local.get $x))",
                "",
            ),
        ),
        (
            "recursion",
            row_module(
                "(call $emit (i32.const 0) (call $r (local.get $x)))",
                "(func $r (param f64) (result f64) (call $r (local.get 0)))",
            ),
        ),
    ] {
        let manifest = Manifest::from_toml(&format!("fuel_per_row = 5000\n{MANIFEST}")).expect("manifest");
        let compiled = runtime().compile(&module, manifest).expect(what);
        assert_eq!(compiled.fuel_bound(), None, "{what}");
        assert_eq!(runtime().worst_fuel_per_row(&compiled), 5000, "{what}");
    }
}

/// Every row may fail without failing the run: the run always completes.
#[test]
fn a_model_that_fails_on_every_row_still_completes() {
    let (outputs, fallbacks) = run_in_batches(&row_module("unreachable", ""), &[1.0, 2.0, 3.0], 4096).expect("runs");
    assert_eq!(outputs, vec![DEFAULT; 3]);
    assert_eq!(fallbacks.trap, 3);
    // An output the model never emits reads back as its default too.
    let silent = row_module("(nop)", "");
    assert_eq!(run(&silent, &[5.0]).expect("runs"), vec![DEFAULT]);
}

#[test]
fn broken_and_oversized_modules_are_refused_with_their_own_error() {
    let abi1 = wat::parse_str(
        r#"(module (memory (export "memory") 1)
           (func (export "sluice_abi_version") (result i32) i32.const 1)
           (func (export "sluice_reserve") (param i32) (result i32) i32.const 0)
           (func (export "sluice_map") (param i32 i32 i32 i32) (result i32) i32.const 0))"#,
    )
    .expect("wat");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("an ABI 1 module", abi1, "abi_version_mismatch"),
        ("forbidden import", row_module("", r#"(import "env" "leak" (func (param f64)))"#), "forbidden_import"),
        (
            "WASI import",
            row_module(
                "",
                r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            ),
            "forbidden_import",
        ),
        (
            "a clock-like import",
            row_module("", r#"(import "sluice:math" "now" (func (result f64)))"#),
            "forbidden_import",
        ),
        ("table bomb", row_module("", "(table 1000000 funcref)"), "table_too_large"),
        ("function bomb", row_module("", &"(func)".repeat(20_001)), "too_many_functions"),
        ("huge initial memory", row_module("", "(memory 2000)"), "memory_too_large"),
        ("oversized module", [b"\0asm\x01\0\0\0".as_slice(), &vec![0u8; 9 << 20]].concat(), "module_too_large"),
        ("malformed bytes", b"\0asm\x01\0\0\0garbage".to_vec(), "module_invalid"),
        ("text instead of binary", b"(module)".to_vec(), "module_invalid"),
        ("a component", wat::parse_str("(component)").expect("component"), "component_not_module"),
        ("no row export", wat::parse_str("(module (memory (export \"memory\") 1))").expect("wat"), "missing_export"),
        (
            "a row export whose types disagree with its name",
            wat::parse_str(format!(r#"(module (func (export "{ROW}") (param i64 i64)))"#)).expect("wat"),
            "row_signature_mismatch",
        ),
        (
            "a row export reading a column the manifest does not declare",
            wat::parse_str(r#"(module (func (export "sluice_row_v2(secret:f64,)->(y,)") (param f64 i64)))"#)
                .expect("wat"),
            "row_signature_mismatch",
        ),
        (
            "a row export never emitting a declared output",
            wat::parse_str(r#"(module (func (export "sluice_row_v2(x:f64,)->()") (param f64 i64)))"#).expect("wat"),
            "row_signature_mismatch",
        ),
        (
            "atomics (threads are disabled)",
            row_module("(drop (i32.atomic.load (i32.const 0)))", "(memory 1)"),
            "module_invalid",
        ),
    ];
    for (what, bytes, expected) in cases {
        let error = run(&bytes, &[1.0, 2.0]).expect_err(what);
        assert_eq!(error.code(), expected, "{what}: {error}");
        assert_host_healthy();
    }
    let old = MANIFEST.replace("abi_version = 2", "abi_version = 1");
    let error = Manifest::from_toml(&old).expect_err("ABI 1 manifest");
    assert!(error.to_string().contains("abi_version 1 is retired"), "{error}");
}

#[test]
fn the_same_input_and_fuel_give_the_same_output() {
    let values: Vec<f64> = (0..3000).map(|value| f64::from(value).sqrt()).collect();
    let first = run(&identity(), &values).expect("runs");
    let second = run(&identity(), &values).expect("runs");
    assert_eq!(first, second);
}

/// Every example model passes the server's static review (the isolation proof included)
/// against its schema and runs on dummy data without a single fallback.
#[test]
fn example_models_pass_review_and_run_on_dummy_data() {
    for model in sluice::examples::EXAMPLE_MODELS {
        let schema = model.view_schema().expect("schema");
        let (compiled, report) =
            sluice_gateway::runner::check(runtime(), model.wasm, model.manifest, Some(&schema)).expect(model.name);
        assert_eq!(report.name, model.name);
        let run = sluice::dev::run(runtime(), &compiled, &schema, 5_000, 3).expect(model.name);
        assert_eq!(run.fallbacks.total(), 0, "{}", model.name);
        // Each example is loop-free, so its worst row is known from its code and is what
        // a run is priced from; run with exactly that much fuel per row, none falls back.
        let bound = compiled.fuel_bound().unwrap_or_else(|| panic!("{} has no fuel bound", model.name));
        assert_eq!(runtime().worst_fuel_per_row(&compiled), bound.min(runtime().fuel_per_row(compiled.manifest())));
        let tight: String = model
            .manifest
            .lines()
            .map(|line| {
                if line.starts_with("fuel_per_row") { format!("fuel_per_row = {bound}\n") } else { format!("{line}\n") }
            })
            .collect();
        let tight = if tight.contains("fuel_per_row") { tight } else { format!("fuel_per_row = {bound}\n{tight}") };
        let (tight, _) = sluice_gateway::runner::check(runtime(), model.wasm, &tight, Some(&schema)).expect(model.name);
        let run = sluice::dev::run(runtime(), &tight, &schema, 5_000, 3).expect(model.name);
        assert_eq!(run.fallbacks.total(), 0, "{} at its bound of {bound}", model.name);
        assert_eq!(run.outputs.len(), report.outputs.len());
        if model.name == "enterprise-credit" {
            let groups = run.outputs[0].released.groups.as_ref().expect("grouped by industry");
            assert_eq!(groups.len(), 9, "one group per declared industry");
        }
        for output in run.outputs {
            // Only a grouped mean has no single value; its groups carry the values.
            let released = &output.released;
            assert!(released.value.map_or(released.groups.is_some(), f64::is_finite), "{}", model.name);
            assert!(output.exact.is_finite(), "{}", model.name);
        }
    }
}

/// Inclusive finance over three departments' data (seed 002 item 16: tax, social insurance,
/// market regulation): the schema a model sees joins all three, and the enterprise-credit
/// model passes review over it and runs on its dummy rows, whose third department's
/// columns are sometimes null; a third schema that cannot join is refused by name.
#[test]
fn a_model_over_three_departments_data_passes_review_and_runs_on_dummy_rows() {
    use sluice::examples::{ENTERPRISE_TAX_SCHEMA, MARKET_REGULATION_SCHEMA, SOCIAL_INSURANCE_SCHEMA};
    use sluice_vault::schema::DatasetSchema;
    let read = |source: &str| DatasetSchema::from_toml(source).expect("an example schema");
    let (tax, insurance, market) =
        (read(ENTERPRISE_TAX_SCHEMA), read(SOCIAL_INSURANCE_SCHEMA), read(MARKET_REGULATION_SCHEMA));
    let view = tax.joined_all([&insurance, &market]).expect("three departments join");
    let model = sluice::examples::EXAMPLE_MODELS[1];
    let (compiled, _) =
        sluice_gateway::runner::check(runtime(), model.wasm, model.manifest, Some(&view)).expect("reviewed");
    let run = sluice::dev::run(runtime(), &compiled, &view, 2_000, 5).expect("runs");
    assert_eq!(run.fallbacks.total(), 0);
    let dummy = sluice_vault::dummy::dummy_csv(&view, 500, 5);
    let capital = view.column("registered_capital_cny").expect("the third department's column").0;
    let nulls = dummy.lines().skip(1).filter(|row| row.split(',').nth(capital) == Some("")).count();
    assert!(nulls > 0 && nulls < 500, "{nulls} of 500 rows lack the register's columns");
    let clash = read(&MARKET_REGULATION_SCHEMA.replace("\"abnormal_operations\"", "\"tax_violation\""));
    let error = tax.joined_all([&insurance, &clash]).expect_err("a column twice");
    assert!(error.contains("tax_violation"), "{error}");
}

/// A manifest reading a level-4 column is refused by the local check, as the server would;
/// a manifest that types a column differently from the model is refused by review.
#[test]
fn dev_check_refuses_core_columns_and_type_mismatches() {
    let model = sluice::examples::EXAMPLE_MODELS[1];
    let schema = model.view_schema().expect("schema");
    let core = model.manifest.replace(
        "{ name = \"industry\", type = \"category\" },",
        "{ name = \"industry\", type = \"category\" },\n  { name = \"enterprise_code\", type = \"i64\" },",
    );
    let refusal = sluice_gateway::runner::check(runtime(), model.wasm, &core, Some(&schema)).expect_err("level 4");
    assert_eq!(refusal.code, "column_not_grantable");
    let mistyped = model.manifest.replace("\"employees\", type = \"i64\"", "\"employees\", type = \"f64\"");
    let refusal = sluice_gateway::runner::check(runtime(), model.wasm, &mistyped, Some(&schema)).expect_err("type");
    assert_eq!(refusal.code, "row_signature_mismatch");
    assert!(refusal.message.contains("reads `employees` as i64"), "{}", refusal.message);
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
    let endless = row_module("(loop $forever (br $forever))", "");
    let compiled = runtime.compile(&endless, Manifest::from_toml(MANIFEST).expect("manifest")).expect("compiles");
    let error =
        runtime.run(&compiled, std::iter::once(Ok::<_, std::convert::Infallible>(batch(&[1.0])))).expect_err("stopped");
    assert_eq!(error.code(), "resource_limit");
    assert!(error.to_string().contains("deadline"), "{error}");
}

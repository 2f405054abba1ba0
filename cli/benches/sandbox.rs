//! Sandbox benchmarks: `cargo bench -p sluice --bench sandbox`.
//!
//! - instantiate: a fresh store with the model and its driver instantiated from the
//!   pooling allocator and linked, the fixed cost of every run;
//! - throughput: the vehicle-risk model over 65,536 rows in the sandbox with each metering
//!   configuration, against the same scoring function compiled natively, in one run;
//! - a tight loop (1,000 additions per row), where metering costs the most;
//! - the same rows in one part and in two parts mapped at once (both cores).
//!
//! Compare ratios within one run; absolute times vary on shared machines.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::examples::{VEHICLE_RISK_MANIFEST, VEHICLE_RISK_WASM};
use sluice_sandbox::{Batch, Column, ColumnValues, Manifest, Metering, Runtime, RuntimeLimits};

#[path = "../../examples/models/vehicle-risk/src/score.rs"]
mod score;

const ROWS: usize = 65_536;
const BATCH: usize = sluice_sandbox::abi::BATCH_ROWS;

struct Columns {
    age: Vec<f64>,
    violations: Vec<i64>,
    accidents: Vec<i64>,
    value: Vec<f64>,
}

fn columns() -> Columns {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    Columns {
        age: (0..ROWS).map(|_| (next() % 300) as f64 / 10.0).collect(),
        violations: (0..ROWS).map(|_| (next() % 6) as i64).collect(),
        accidents: (0..ROWS).map(|_| (next() % 3) as i64).collect(),
        value: (0..ROWS).map(|_| (next() % 400_000) as f64).collect(),
    }
}

fn batches(columns: &Columns) -> Vec<Batch> {
    (0..ROWS)
        .step_by(BATCH)
        .map(|start| {
            let range = start..start + BATCH;
            let valid = vec![true; BATCH];
            let f = |values: &[f64]| Column {
                values: ColumnValues::F64(values[range.clone()].to_vec()),
                valid: valid.clone(),
            };
            let i = |values: &[i64]| Column {
                values: ColumnValues::I64(values[range.clone()].to_vec()),
                valid: valid.clone(),
            };
            Batch {
                rows: BATCH,
                columns: vec![f(&columns.age), i(&columns.violations), i(&columns.accidents), f(&columns.value)],
            }
        })
        .collect()
}

fn runtime(metering: Metering) -> Runtime {
    Runtime::new(RuntimeLimits { metering, ..RuntimeLimits::default() }).expect("runtime")
}

fn native(columns: &Columns, outputs: &mut [f64]) {
    for row in 0..ROWS {
        let scored = score::score(
            columns.age[row],
            columns.violations[row] as f64,
            columns.accidents[row] as f64,
            columns.value[row],
            f64::exp,
        );
        outputs[row * 3..row * 3 + 3].copy_from_slice(&scored);
    }
}

fn throughput(criterion: &mut Criterion) {
    let columns = columns();
    let batches = batches(&columns);
    let mut group = criterion.benchmark_group("vehicle-risk 65536 rows");
    group.throughput(Throughput::Elements(ROWS as u64)).measurement_time(Duration::from_secs(4)).sample_size(20);
    let mut outputs = vec![0.0; ROWS * 3];
    group.bench_function("native", |bench| bench.iter(|| native(black_box(&columns), &mut outputs)));
    for (name, metering) in
        [("fuel+epoch", Metering::FuelAndEpoch), ("fuel", Metering::Fuel), ("epoch", Metering::Epoch)]
    {
        let runtime = runtime(metering);
        let model = runtime
            .compile(VEHICLE_RISK_WASM, Manifest::from_toml(VEHICLE_RISK_MANIFEST).expect("manifest"))
            .expect("compiles");
        group.bench_function(format!("sandbox {name}"), |bench| {
            bench.iter(|| runtime.run(&model, batches.iter().map(Ok::<_, std::convert::Infallible>)).expect("runs"))
        });
    }
    // The same rows through a model that copies one input to its outputs: the cost of the
    // host side (moving batches in, validating and collecting outputs) and the ABI.
    let runtime = runtime(Metering::FuelAndEpoch);
    let copy = runtime
        .compile(&copy_model(), Manifest::from_toml(VEHICLE_RISK_MANIFEST).expect("manifest"))
        .expect("compiles");
    group.bench_function("sandbox fuel+epoch, copy model (host and ABI overhead)", |bench| {
        bench.iter(|| runtime.run(&copy, batches.iter().map(Ok::<_, std::convert::Infallible>)).expect("runs"))
    });
    // The rows split into consecutive parts mapped at once, one instance and thread each
    // (`Runtime::run_parts`, what a run does with a dataset of several chunks): against
    // "sandbox fuel+epoch" above, what the second core buys.
    let model = runtime
        .compile(VEHICLE_RISK_WASM, Manifest::from_toml(VEHICLE_RISK_MANIFEST).expect("manifest"))
        .expect("compiles");
    for parts in [1usize, 2] {
        group.bench_function(format!("sandbox fuel+epoch, {parts} part(s) at once"), |bench| {
            bench.iter(|| {
                let per_part = batches.len().div_ceil(parts);
                let split: Vec<_> =
                    batches.chunks(per_part).map(|part| part.iter().map(Ok::<_, std::convert::Infallible>)).collect();
                runtime.run_parts(&model, split).expect("runs")
            })
        });
    }
    group.finish();
}

/// Emits input 0 of each row as its three outputs (ABI 2, WAT): the cost of the host
/// side (moving batches in, the driver's loop, `emit`, collecting outputs).
fn copy_model() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "sluice" "emit" (func $emit (param i32 f64)))
          (func (export "sluice_row_v2(vehicle_age_years:f64,)->(high_risk_vehicles,mean_risk_score,expected_claims_cny,)")
            (param $x f64) (param i64)
            (call $emit (i32.const 0) (local.get $x))
            (call $emit (i32.const 1) (local.get $x))
            (call $emit (i32.const 2) (local.get $x))))"#,
    )
    .expect("wat")
}

/// 1,000 dependent additions per row: metering's worst case, a tight loop.
fn tight_loop(criterion: &mut Criterion) {
    const MANIFEST: &str = r#"
abi_version = 2
name = "tight"
version = "1"
inputs = [{ name = "x", type = "f64" }]
outputs = [{ name = "y", kind = "sum", lower = 0.0, upper = 1e12, epsilon = 1.0 }]
"#;
    let wasm = wat::parse_str(
        r#"(module
          (import "sluice" "emit" (func $emit (param i32 f64)))
          (func (export "sluice_row_v2(x:f64,)->(y,)") (param $x f64) (param i64)
            (local $i i32) (local $acc f64)
            (local.set $acc (local.get $x))
            (loop $inner
              (local.set $acc (f64.add (local.get $acc) (f64.const 1.5)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $inner (i32.lt_u (local.get $i) (i32.const 1000))))
            (call $emit (i32.const 0) (local.get $acc))))"#,
    )
    .expect("wat");
    let rows = 4 * BATCH;
    let batch = Batch {
        rows: BATCH,
        columns: vec![Column { values: ColumnValues::F64(vec![1.0; BATCH]), valid: vec![true; BATCH] }],
    };
    let native = |values: &[f64]| -> f64 {
        let mut total = 0.0;
        for value in values {
            let mut acc = *value;
            for _ in 0..1000 {
                acc = black_box(acc + 1.5);
            }
            total += acc;
        }
        total
    };
    let mut group = criterion.benchmark_group("tight loop 16384 rows x 1000 adds");
    group.throughput(Throughput::Elements(rows as u64)).measurement_time(Duration::from_secs(4)).sample_size(20);
    let inputs = vec![1.0; rows];
    group.bench_function("native", |bench| bench.iter(|| native(black_box(&inputs))));
    for (name, metering) in
        [("fuel+epoch", Metering::FuelAndEpoch), ("fuel", Metering::Fuel), ("epoch", Metering::Epoch)]
    {
        let runtime = Runtime::new(RuntimeLimits { metering, fuel_per_row: 100_000, ..RuntimeLimits::default() })
            .expect("runtime");
        let model = runtime.compile(&wasm, Manifest::from_toml(MANIFEST).expect("manifest")).expect("compiles");
        group.bench_function(format!("sandbox {name}"), |bench| {
            bench.iter(|| {
                runtime
                    .run(&model, std::iter::repeat_n(&batch, 4).map(Ok::<_, std::convert::Infallible>))
                    .expect("runs")
            })
        });
    }
    group.finish();
}

fn instantiate(criterion: &mut Criterion) {
    let runtime = runtime(Metering::FuelAndEpoch);
    let reference = runtime
        .compile(VEHICLE_RISK_WASM, Manifest::from_toml(VEHICLE_RISK_MANIFEST).expect("manifest"))
        .expect("compiles");
    let minimal = runtime
        .compile(
            &wat::parse_str(
                r#"(module (import "sluice" "emit" (func $emit (param i32 f64)))
                  (func (export "sluice_row_v2(x:f64,)->(y,)") (param f64 i64)))"#,
            )
            .expect("wat"),
            Manifest::from_toml(
                "abi_version = 2\nname = \"m\"\nversion = \"1\"\ninputs = [{ name = \"x\", type = \"f64\" }]\n\
                 outputs = [{ name = \"y\", kind = \"count\", epsilon = 1.0 }]",
            )
            .expect("manifest"),
        )
        .expect("compiles");
    let mut group = criterion.benchmark_group("instantiate");
    group.bench_function("minimal module and its driver", |bench| {
        bench.iter(|| runtime.instantiate(&minimal).expect("ok"))
    });
    group.bench_function("vehicle-risk (Rust SDK) and its driver", |bench| {
        bench.iter(|| runtime.instantiate(&reference).expect("ok"))
    });
    group.finish();
}

criterion_group!(benches, instantiate, throughput, tight_loop);
criterion_main!(benches);

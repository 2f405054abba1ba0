//! The DP release benchmark: `cargo bench -p sluice --bench release`.
//!
//! The reference job's release (a count of high-risk rows and a mean risk score, ε = 1
//! split evenly) through `sluice_policies::release_outputs`, the one function every run,
//! the automated review and `sluice dev` call: over all rows at once, and per group of 20
//! districts. The ratio between the two says what grouping costs; the performance issue
//! reads it as the baseline for a release whose work should not grow with groups × rows.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_policies::{AggregateKind, Noise, OutputRule, ReleaseContext, ReleaseSpec, release_outputs};

const DISTRICTS: usize = 20;

fn specs() -> Vec<ReleaseSpec> {
    let rule = |name: &str, kind, upper| OutputRule { name: name.into(), kind, lower: 0.0, upper, epsilon: 0.5 };
    vec![
        ReleaseSpec::Aggregate { rule: rule("high_risk", AggregateKind::Count, 1.0), noise: Noise::Laplace },
        ReleaseSpec::Aggregate { rule: rule("mean_risk", AggregateKind::Mean, 1.0), noise: Noise::Laplace },
    ]
}

/// Per-row outputs as a model would emit them: a 0/1 flag and a score in [0, 1].
fn columns(rows: usize) -> (Vec<f64>, Vec<f64>, Vec<i64>) {
    let flag = (0..rows).map(|row| f64::from(u8::from(row % 7 == 0))).collect();
    let score = (0..rows).map(|row| (row % 1000) as f64 / 1000.0).collect();
    let district = (0..rows).map(|row| (row % DISTRICTS) as i64).collect();
    (flag, score, district)
}

fn release(criterion: &mut Criterion) {
    let labels: Vec<String> = (0..DISTRICTS).map(|district| format!("district-{district:02}")).collect();
    let specs = specs();
    let mut group = criterion.benchmark_group("release");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for rows in [65_536usize, 1_000_000] {
        let (flag, score, district) = columns(rows);
        let values: [&[f64]; 2] = [&flag, &score];
        group.throughput(Throughput::Elements(rows as u64));
        for (name, groups) in [("ungrouped", None), ("20 groups", Some((district.as_slice(), labels.as_slice())))] {
            let context = ReleaseContext { rows, rows_per_person: 1, min_group_size: 10, groups };
            group.bench_with_input(BenchmarkId::new(name, rows), &context, |bench, context| {
                bench.iter(|| {
                    let released = release_outputs(&specs, &values, context).expect("releases");
                    assert_eq!(released.len(), 2);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, release);
criterion_main!(benches);

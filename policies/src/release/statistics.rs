//! Statistical tests of the noise Sluice adds through opendp, each shown to fail on
//! deliberately wrong noise: a Kolmogorov–Smirnov goodness-of-fit test at α = 10⁻⁶ over
//! 100,000 samples, and a neighbouring-dataset test where the empirical privacy loss must
//! stay within the claimed ε.

use std::collections::HashMap;

use super::*;

const SAMPLES: usize = 100_000;
const ALPHA: f64 = 1e-6;

/// The KS critical value for `n` samples at [`ALPHA`] (asymptotic, two-sided).
fn ks_critical(n: usize) -> f64 {
    (-(ALPHA / 2.0).ln() / 2.0).sqrt() / (n as f64).sqrt()
}

fn laplace_cdf(x: f64, scale: f64) -> f64 {
    if x < 0.0 { 0.5 * (x / scale).exp() } else { 1.0 - 0.5 * (-x / scale).exp() }
}

fn ks_statistic(samples: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    samples
        .iter()
        .enumerate()
        .map(|(index, sample)| {
            let expected = cdf(*sample);
            (expected - index as f64 / n).abs().max((expected - (index + 1) as f64 / n).abs())
        })
        .fold(0.0, f64::max)
}

fn sum_rule(epsilon: f64) -> OutputRule {
    OutputRule { name: "x".into(), kind: AggregateKind::Sum, lower: 0.0, upper: 1.0, epsilon }
}

/// `SAMPLES` releases of a sum over `values`, from a measurement whose noise scale is
/// `scale_factor` times the calibrated one; returns the samples and the calibrated scale.
fn releases(rule: &OutputRule, values: &[f64], scale_factor: f64) -> (Vec<f64>, f64) {
    let correct = calibrate(rule, values.len(), 2).expect("calibrates").scale;
    let calibrated = calibrate_with_scale(rule, values.len(), 2, scale_factor).expect("calibrates");
    let mut statistic = PairwiseSum::default();
    values.iter().for_each(|value| statistic.add(value.clamp(rule.lower, rule.upper)));
    let samples = (0..SAMPLES).map(|_| calibrated.noise.invoke(&statistic.total()).expect("invokes")).collect();
    (samples, correct)
}

#[test]
fn laplace_noise_fits_its_distribution_and_wrong_noise_does_not() {
    let zeros = vec![0.0; 100];
    let rule = sum_rule(1.0);
    let (mut noise, scale) = releases(&rule, &zeros, 1.0);
    let statistic = ks_statistic(&mut noise, |x| laplace_cdf(x, scale));
    assert!(statistic < ks_critical(SAMPLES), "KS {statistic} rejects opendp's Laplace noise at α = {ALPHA}");

    // Noise 10% too wide, tested against the distribution Sluice claims: rejected.
    let (mut wide, _) = releases(&rule, &zeros, 1.1);
    let statistic = ks_statistic(&mut wide, |x| laplace_cdf(x, scale));
    assert!(statistic > ks_critical(SAMPLES), "KS {statistic} failed to catch noise 10% too wide");
}

/// Empirical privacy loss between two datasets that differ in one person, over the
/// outcomes seen often enough to estimate (each at least 2,000 times in each run).
fn empirical_loss(first: &[f64], second: &[f64]) -> f64 {
    let histogram = |samples: &[f64]| {
        let mut counts: HashMap<i64, u64> = HashMap::new();
        for sample in samples {
            *counts.entry(sample.round() as i64).or_default() += 1;
        }
        counts
    };
    let (first, second) = (histogram(first), histogram(second));
    first
        .iter()
        .filter_map(|(outcome, count)| {
            let other = *second.get(outcome)?;
            (*count >= 2_000 && other >= 2_000).then(|| ((*count as f64) / (other as f64)).ln().abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn neighbouring_datasets_stay_within_the_claimed_epsilon() {
    let epsilon = 1.0;
    let rule = sum_rule(epsilon);
    let mut dataset = vec![0.0; 200];
    dataset[..50].fill(1.0);
    let mut neighbour = dataset.clone();
    neighbour[199] = 1.0; // one person's row replaced

    let loss = empirical_loss(&releases(&rule, &dataset, 1.0).0, &releases(&rule, &neighbour, 1.0).0);
    // Sampling error on a ratio of two counts of at least 2,000 is under 0.2 at 5σ.
    assert!(loss <= epsilon + 0.2, "empirical privacy loss {loss} exceeds epsilon {epsilon}");
    assert!(loss > epsilon - 0.3, "the test must see the loss it bounds (got {loss})");

    // Half the noise is twice the loss: caught.
    let loss = empirical_loss(&releases(&rule, &dataset, 0.5).0, &releases(&rule, &neighbour, 0.5).0);
    assert!(loss > epsilon + 0.2, "empirical loss {loss} failed to catch noise half as wide");
}

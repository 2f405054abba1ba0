//! Does every released interval mean what it says? For each output kind, thousands of
//! releases of one fixed dataset, counting how often the truth lies within the reported
//! 95% half-width. Exact intervals must cover 95% (within four standard errors, above and
//! below); conservative ones (a grouped mean's, a total's) at least 95% and not absurdly
//! more. Each check is shown to fail on noise 25% wider or narrower than reported.

use super::*;

const TRIALS: usize = 10_000;

/// Four binomial standard errors of a 95% coverage over `TRIALS` trials.
fn tolerance() -> f64 {
    4.0 * (0.95f64 * 0.05 / TRIALS as f64).sqrt()
}

fn coverage(mut trial: impl FnMut() -> bool) -> f64 {
    (0..TRIALS).filter(|_| trial()).count() as f64 / TRIALS as f64
}

/// 200 rows whose values spread over [0, 1], and a group code 0–2 per row.
fn values() -> Vec<f64> {
    (0..200).map(|row| f64::from((row * 37) % 100) / 100.0).collect()
}

fn groups() -> Vec<i64> {
    (0..200).map(|row| row % 3).collect()
}

fn rule(kind: AggregateKind) -> OutputRule {
    OutputRule { name: "o".into(), kind, lower: 0.0, upper: 1.0, epsilon: 0.5 }
}

/// Coverage of a Laplace sum whose noise is `factor` times the reported scale.
fn sum_coverage(factor: f64) -> f64 {
    let values = values();
    let truth: f64 = values.iter().sum();
    let rule = rule(AggregateKind::Sum);
    let reported = calibrate(&rule, values.len(), 2).expect("calibrates");
    let actual = calibrate_with_scale(&rule, values.len(), 2, factor).expect("calibrates");
    let mut statistic = PairwiseSum::default();
    values.iter().for_each(|value| statistic.add(value.clamp(0.0, 1.0)));
    coverage(|| {
        let noisy = actual.noise.invoke(&statistic.total()).expect("releases");
        (noisy - truth).abs() <= reported.scale * LN_TWENTY
    })
}

/// Coverage of a count whose discrete noise is `factor` times the reported scale.
fn count_coverage(factor: f64) -> (f64, f64) {
    let indicators: Vec<i64> = values().iter().map(|value| indicator(*value)).collect();
    let truth: i64 = indicators.iter().sum();
    let reported = calibrate_count("o", indicators.len(), 2, 0.5).expect("calibrates");
    let actual = calibrate_count_with_scale("o", indicators.len(), 2, 0.5, factor).expect("calibrates");
    let half_width = discrete_laplace_half_width(reported.scale, 0.05);
    let q = (-1.0 / reported.scale).exp();
    let exact = 1.0 - 2.0 * q.powf(half_width + 1.0) / (1.0 + q);
    let observed = coverage(|| {
        let noisy = actual.noise_count("o", truth).expect("releases");
        ((noisy - truth) as f64).abs() <= half_width
    });
    (observed, exact)
}

#[test]
fn sums_means_and_counts_cover_exactly_what_they_report() {
    let tolerance = tolerance();
    let sum = sum_coverage(1.0);
    assert!((sum - 0.95).abs() <= tolerance, "sum covers {sum}");
    let (count, exact) = count_coverage(1.0);
    assert!(exact >= 0.95, "the discrete interval is at least 95% by construction: {exact}");
    assert!((count - exact).abs() <= tolerance, "count covers {count}, its interval {exact}");

    let values = values();
    let truth = values.iter().sum::<f64>() / values.len() as f64;
    let released = || release(&[rule(AggregateKind::Mean)], &[&values], values.len(), 1).expect("releases").remove(0);
    let mean = coverage(|| {
        let released = released();
        (released.value - truth).abs() <= released.ci95_half_width
    });
    assert!((mean - 0.95).abs() <= tolerance, "mean covers {mean}");
}

#[test]
fn the_coverage_check_catches_noise_wider_or_narrower_than_reported() {
    let tolerance = tolerance();
    assert!(sum_coverage(1.25) < 0.95 - tolerance, "wider noise must under-cover");
    assert!(sum_coverage(0.8) > 0.95 + tolerance, "narrower noise must over-cover");
    let (wide, exact) = count_coverage(1.25);
    assert!(wide < exact - tolerance, "wider count noise must under-cover: {wide} vs {exact}");
}

#[test]
fn histogram_bins_cover_what_they_report() {
    let values: Vec<f64> = (0..300).map(|row| f64::from(row % 4)).collect();
    let rule =
        HistogramRule { name: "h".into(), bins: vec!["a".into(), "b".into(), "c".into(), "d".into()], epsilon: 0.5 };
    let mut covered = 0usize;
    let mut total = 0usize;
    for _ in 0..TRIALS / 4 {
        let released = release_histogram(&rule, &values, 1, 0).expect("releases");
        for bin in &released.bins {
            total += 1;
            covered += usize::from((bin.count.expect("not suppressed") - 75.0).abs() <= released.ci95_half_width);
        }
    }
    let observed = covered as f64 / total as f64;
    assert!(observed >= 0.95 - tolerance(), "bins cover {observed}");
    assert!(observed <= 0.985, "bins cover {observed}: the interval is far too wide");
}

#[test]
fn grouped_outputs_report_each_groups_own_interval() {
    let values = values();
    let groups = groups();
    let labels: Vec<String> = ["x", "y", "z"].iter().map(|label| (*label).to_owned()).collect();
    let truth = |code: i64, kind: AggregateKind| {
        let members: Vec<f64> =
            values.iter().zip(&groups).filter(|(_, group)| **group == code).map(|(value, _)| *value).collect();
        match kind {
            AggregateKind::Count => members.iter().map(|value| indicator(*value) as f64).sum(),
            AggregateKind::Sum => members.iter().sum(),
            AggregateKind::Mean => members.iter().sum::<f64>() / members.len() as f64,
        }
    };
    for kind in [AggregateKind::Count, AggregateKind::Sum, AggregateKind::Mean] {
        let (mut covered, mut total, mut totals_covered) = (0usize, 0usize, 0usize);
        let trials = TRIALS / 5;
        for _ in 0..trials {
            let released = release_grouped(&rule(kind), &values, &groups, &labels, 1, 0).expect("releases");
            for (code, group) in released.groups.iter().enumerate() {
                // A group whose noisy count fell below zero is suppressed: no value, no claim.
                let (Some(value), Some(half_width)) = (group.value, group.ci95_half_width) else { continue };
                total += 1;
                covered += usize::from((value - truth(code as i64, kind)).abs() <= half_width);
            }
            if let Some(half_width) = released.total_ci95_half_width
                && released.groups.iter().all(|group| !group.suppressed)
            {
                let true_total: f64 = (0..3).map(|code| truth(code, kind)).sum();
                let released_total: f64 = released.groups.iter().filter_map(|group| group.value).sum();
                totals_covered += usize::from((released_total - true_total).abs() <= half_width);
            }
        }
        let observed = covered as f64 / total as f64;
        let floor = 0.95 - 4.0 * (0.95f64 * 0.05 / total as f64).sqrt();
        assert!(observed >= floor, "{kind:?} groups cover {observed}");
        // The old grouped mean reported its sum's interval, about 175 times too wide, and
        // covered every time.
        assert!(observed <= 0.995, "{kind:?} groups cover {observed}: the interval is far too wide");
        if kind != AggregateKind::Mean {
            assert!(totals_covered as f64 / trials as f64 >= floor, "{kind:?} totals cover {totals_covered}");
        }
    }
}

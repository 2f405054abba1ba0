//! One release path for every output kind: a [`ReleaseSpec`] per declared output, and
//! [`release_outputs`], which the gateway's runs, the automated review's dummy run,
//! `sluice dev run` and the benches all call. What it returns already carries each value's
//! 95% interval, so nothing downstream computes accuracy again.
//!
//! It owns choosing the mechanism for a spec. It must not see where the values came from
//! nor return any value unnoised; the noise itself is `release`'s.

use serde::{Deserialize, Serialize};

use super::{
    AggregateKind, AggregateStatistics, HistogramRule, OutputRule, QuantileRule, ReleaseError, ReleasedGroups,
    ReleasedHistogram, ReleasedValue, neighbour_distance, release, release_gaussian, release_grouped,
    release_grouped_from, release_histogram, release_one_from, release_quantile,
};

/// The noise a scalar aggregate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noise {
    /// Pure ε-DP: opendp's (discrete, for counts) Laplace.
    Laplace,
    /// zCDP, charged as (ε, δ = [`super::GAUSSIAN_DELTA`]).
    Gaussian,
}

/// How one declared output is released.
#[derive(Debug, Clone, PartialEq)]
pub enum ReleaseSpec {
    /// A count, sum or mean; per group of the declared domain when the release has groups.
    Aggregate {
        rule: OutputRule,
        noise: Noise,
    },
    Histogram(HistogramRule),
    Quantile(QuantileRule),
}

impl ReleaseSpec {
    pub fn name(&self) -> &str {
        match self {
            ReleaseSpec::Aggregate { rule, .. } => &rule.name,
            ReleaseSpec::Histogram(rule) => &rule.name,
            ReleaseSpec::Quantile(rule) => &rule.name,
        }
    }
}

/// The public facts a release is calibrated to.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseContext<'a> {
    /// The dataset version's row count (public).
    pub rows: usize,
    /// The most rows one person contributes.
    pub rows_per_person: u32,
    /// The disclosure threshold: bins and groups whose noisy count is under it are suppressed.
    pub min_group_size: u32,
    /// For a grouped release: each row's group code, and the declared domain's labels.
    pub groups: Option<(&'a [i64], &'a [String])>,
}

/// A released output as callers see and store it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleasedOutput {
    pub name: String,
    pub kind: String,
    /// The noisy aggregate; for a histogram or a grouped count or sum, the total of what was
    /// released; none for a grouped mean.
    pub value: Option<f64>,
    pub epsilon: f64,
    pub noise_scale: f64,
    /// Half-width of the value's 95% interval. Counts and histogram bins use opendp's
    /// discrete Laplace, so theirs is exact; for a grouped count or sum it is the total's,
    /// for a grouped mean the widest group's (each group also carries its own).
    pub ci95_half_width: f64,
    /// A histogram's bins: each noisy count, or none when suppressed by the disclosure rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bins: Option<Vec<ReleasedBinView>>,
    /// A grouped output's groups, in the declared domain's order; suppressed ones have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<ReleasedGroupView>>,
    /// The mechanism: `laplace`, `gaussian` (zCDP, charged as (ε, δ = 1e-9)) or
    /// `exponential` (a quantile, whose half-width is half a candidate step).
    #[serde(default = "laplace")]
    pub mechanism: String,
    /// For a quantile: with 95% probability its rank is within this many rows of the true one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_error_95: Option<f64>,
}

fn laplace() -> String {
    "laplace".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleasedGroupView {
    pub label: String,
    pub value: Option<f64>,
    pub suppressed: bool,
    /// This group's own 95% half-width; none when suppressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95_half_width: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleasedBinView {
    pub label: String,
    pub count: Option<f64>,
    pub suppressed: bool,
}

/// Releases every spec from its column of per-row values (`columns[i]` for `specs[i]`).
pub fn release_outputs(
    specs: &[ReleaseSpec],
    columns: &[&[f64]],
    context: &ReleaseContext<'_>,
) -> Result<Vec<ReleasedOutput>, ReleaseError> {
    if specs.len() != columns.len() {
        return Err(ReleaseError::InvalidRule {
            output: specs.first().map_or("", ReleaseSpec::name).into(),
            detail: format!("{} outputs declared, {} columns of values", specs.len(), columns.len()),
        });
    }
    specs.iter().zip(columns).map(|(spec, values)| release_output(spec, values, context)).collect()
}

fn release_output(
    spec: &ReleaseSpec,
    values: &[f64],
    context: &ReleaseContext<'_>,
) -> Result<ReleasedOutput, ReleaseError> {
    let ReleaseContext { rows, rows_per_person, min_group_size, groups } = *context;
    match spec {
        ReleaseSpec::Histogram(rule) => {
            if values.len() != rows {
                return Err(ReleaseError::LengthMismatch { output: rule.name.clone(), got: values.len(), rows });
            }
            release_histogram(rule, values, rows_per_person, min_group_size).map(histogram_output)
        }
        ReleaseSpec::Quantile(rule) => {
            let released = release_quantile(rule, values, rows, rows_per_person)?;
            Ok(ReleasedOutput {
                name: released.name,
                kind: "quantile".into(),
                value: Some(released.value),
                epsilon: released.epsilon,
                noise_scale: 0.0,
                ci95_half_width: released.ci95_half_width,
                bins: None,
                groups: None,
                mechanism: "exponential".into(),
                rank_error_95: Some(released.rank_error_95),
            })
        }
        ReleaseSpec::Aggregate { rule, noise: Noise::Gaussian } => {
            let released = release_gaussian(rule, values, rows, rows_per_person)?;
            Ok(ReleasedOutput { mechanism: "gaussian".into(), ..value_output(released) })
        }
        ReleaseSpec::Aggregate { rule, noise: Noise::Laplace } => match groups {
            Some((codes, labels)) => {
                if values.len() != rows {
                    return Err(ReleaseError::LengthMismatch { output: rule.name.clone(), got: values.len(), rows });
                }
                release_grouped(rule, values, codes, labels, rows_per_person, min_group_size).map(groups_output)
            }
            None => {
                let mut released = release(std::slice::from_ref(rule), &[values], rows, rows_per_person)?;
                Ok(value_output(released.remove(0)))
            }
        },
    }
}

/// A release taken in one pass, a batch of rows at a time, so a run need not keep its
/// per-row outputs: each Laplace count, sum or mean (grouped or not) keeps only its
/// sufficient statistics ([`AggregateStatistics`]); a histogram, a quantile or a Gaussian
/// output keeps its values and is released by [`release_outputs`]' own path. The parts of
/// a run each fill one and are merged in order; the result is [`release_outputs`]' over
/// the same rows (the statistics are what it computes itself).
#[derive(Debug, Clone)]
pub struct StreamingRelease {
    specs: Vec<ReleaseSpec>,
    rows: usize,
    rows_per_person: u32,
    min_group_size: u32,
    labels: Option<Vec<String>>,
    state: Vec<Observed>,
    seen: usize,
}

#[derive(Debug, Clone)]
enum Observed {
    Statistics(AggregateStatistics),
    Values(Vec<f64>),
}

impl StreamingRelease {
    /// For `specs` over `rows` rows in all; `labels` are the group-by domain's, when the
    /// release is grouped.
    pub fn new(
        specs: Vec<ReleaseSpec>,
        rows: usize,
        rows_per_person: u32,
        min_group_size: u32,
        labels: Option<Vec<String>>,
    ) -> Self {
        let groups = labels.as_ref().map_or(1, Vec::len);
        let state = specs
            .iter()
            .map(|spec| match spec {
                ReleaseSpec::Aggregate { rule, noise: Noise::Laplace } => {
                    Observed::Statistics(AggregateStatistics::new(rule.kind, groups))
                }
                _ => Observed::Values(Vec::new()),
            })
            .collect();
        Self { specs, rows, rows_per_person, min_group_size, labels, state, seen: 0 }
    }

    /// Takes one batch: `columns[i]` are output `i`'s values for its rows, `codes` their
    /// group codes when the release is grouped.
    pub fn observe(&mut self, columns: &[&[f64]], codes: Option<&[i64]>) {
        let codes = if self.labels.is_some() { codes } else { None };
        for ((spec, state), values) in self.specs.iter().zip(&mut self.state).zip(columns) {
            match (spec, state) {
                (ReleaseSpec::Aggregate { rule, .. }, Observed::Statistics(statistics)) => {
                    statistics.observe(rule, values, codes)
                }
                (_, Observed::Values(kept)) => kept.extend_from_slice(values),
                (_, Observed::Statistics(_)) => {}
            }
        }
        self.seen += columns.first().map_or(0, |values| values.len());
    }

    /// Adds what another part observed of the rows that follow these.
    pub fn merge(&mut self, next: StreamingRelease) {
        for (state, more) in self.state.iter_mut().zip(next.state) {
            match (state, more) {
                (Observed::Statistics(statistics), Observed::Statistics(more)) => statistics.merge(more),
                (Observed::Values(kept), Observed::Values(more)) => kept.extend(more),
                _ => {}
            }
        }
        self.seen += next.seen;
    }

    /// How many outputs it releases (the columns [`StreamingRelease::observe`] takes).
    pub fn outputs(&self) -> usize {
        self.specs.len()
    }

    /// The rows observed so far (across merged parts).
    pub fn rows_observed(&self) -> usize {
        self.seen
    }

    /// Releases every output, once every row was observed.
    pub fn release(self) -> Result<Vec<ReleasedOutput>, ReleaseError> {
        let rows = self.rows;
        if rows == 0 {
            return Err(ReleaseError::NoRows);
        }
        let distance = neighbour_distance(self.rows_per_person);
        let labels = self.labels.as_deref();
        let context = ReleaseContext {
            rows,
            rows_per_person: self.rows_per_person,
            min_group_size: self.min_group_size,
            groups: None,
        };
        self.specs
            .iter()
            .zip(self.state)
            .map(|(spec, state)| {
                if self.seen != rows {
                    return Err(ReleaseError::LengthMismatch { output: spec.name().into(), got: self.seen, rows });
                }
                match (spec, state) {
                    (ReleaseSpec::Aggregate { rule, .. }, Observed::Statistics(statistics)) => match labels {
                        Some(labels) => release_grouped_from(
                            rule,
                            &statistics,
                            rows,
                            self.rows_per_person,
                            self.min_group_size,
                            labels,
                        )
                        .map(groups_output),
                        None => release_one_from(rule, &statistics, rows, distance).map(value_output),
                    },
                    (spec, Observed::Values(values)) => release_output(spec, &values, &context),
                    (spec, Observed::Statistics(_)) => Err(ReleaseError::InvalidRule {
                        output: spec.name().into(),
                        detail: "statistics kept for an output that needs its values".into(),
                    }),
                }
            })
            .collect()
    }
}

fn value_output(value: ReleasedValue) -> ReleasedOutput {
    ReleasedOutput {
        name: value.name,
        kind: value.kind.as_str().into(),
        value: Some(value.value),
        epsilon: value.epsilon,
        noise_scale: value.noise_scale,
        ci95_half_width: value.ci95_half_width,
        bins: None,
        groups: None,
        mechanism: laplace(),
        rank_error_95: None,
    }
}

fn groups_output(released: ReleasedGroups) -> ReleasedOutput {
    let total =
        (released.kind != AggregateKind::Mean).then(|| released.groups.iter().filter_map(|group| group.value).sum());
    // A count's or sum's total has its own interval; a grouped mean has no total, and its
    // top-level half-width is the widest group's. Each group carries its own.
    let widest = released.groups.iter().filter_map(|group| group.ci95_half_width).fold(0.0, f64::max);
    ReleasedOutput {
        name: released.name,
        kind: released.kind.as_str().into(),
        value: total,
        epsilon: released.epsilon,
        noise_scale: released.noise_scale,
        ci95_half_width: released.total_ci95_half_width.unwrap_or(widest),
        bins: None,
        groups: Some(
            released
                .groups
                .into_iter()
                .map(|group| ReleasedGroupView {
                    label: group.label,
                    value: group.value,
                    suppressed: group.suppressed,
                    ci95_half_width: group.ci95_half_width,
                })
                .collect(),
        ),
        mechanism: laplace(),
        rank_error_95: None,
    }
}

fn histogram_output(histogram: ReleasedHistogram) -> ReleasedOutput {
    ReleasedOutput {
        name: histogram.name,
        kind: "histogram".into(),
        value: Some(histogram.bins.iter().filter_map(|bin| bin.count).sum()),
        epsilon: histogram.epsilon,
        noise_scale: histogram.noise_scale,
        ci95_half_width: histogram.ci95_half_width,
        bins: Some(
            histogram
                .bins
                .into_iter()
                .map(|bin| ReleasedBinView { label: bin.label, count: bin.count, suppressed: bin.suppressed })
                .collect(),
        ),
        groups: None,
        mechanism: laplace(),
        rank_error_95: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, kind: AggregateKind) -> OutputRule {
        OutputRule { name: name.into(), kind, lower: 0.0, upper: 1.0, epsilon: 1.0 }
    }

    #[test]
    fn every_kind_goes_through_one_call_and_carries_its_interval() {
        let rows = 400;
        let values: Vec<f64> = (0..rows).map(|row| f64::from(u8::from(row % 4 == 0))).collect();
        let bins: Vec<f64> = (0..rows).map(|row| (row % 3) as f64).collect();
        let specs = vec![
            ReleaseSpec::Aggregate { rule: rule("count", AggregateKind::Count), noise: Noise::Laplace },
            ReleaseSpec::Aggregate { rule: rule("mean", AggregateKind::Mean), noise: Noise::Gaussian },
            ReleaseSpec::Histogram(HistogramRule {
                name: "bins".into(),
                bins: vec!["a".into(), "b".into(), "c".into()],
                epsilon: 1.0,
            }),
            ReleaseSpec::Quantile(QuantileRule {
                name: "median".into(),
                lower: 0.0,
                upper: 1.0,
                alpha: 0.5,
                candidates: 11,
                epsilon: 1.0,
            }),
        ];
        let context = ReleaseContext { rows, rows_per_person: 1, min_group_size: 10, groups: None };
        let released = release_outputs(&specs, &[&values, &values, &bins, &values], &context).expect("releases");
        let mechanisms: Vec<_> = released.iter().map(|output| output.mechanism.as_str()).collect();
        assert_eq!(mechanisms, ["laplace", "gaussian", "laplace", "exponential"]);
        assert!(released.iter().all(|output| output.ci95_half_width > 0.0), "{released:?}");
        assert_eq!(released[3].ci95_half_width, 0.05, "half of a 0.1 candidate step");
        assert_eq!(released[2].bins.as_ref().map(Vec::len), Some(3));
    }

    #[test]
    fn a_column_of_the_wrong_length_or_count_is_refused_whole() {
        let specs = vec![ReleaseSpec::Aggregate { rule: rule("count", AggregateKind::Count), noise: Noise::Laplace }];
        let context = ReleaseContext { rows: 10, rows_per_person: 1, min_group_size: 10, groups: None };
        assert!(matches!(release_outputs(&specs, &[&[1.0; 9]], &context), Err(ReleaseError::LengthMismatch { .. })));
        assert!(matches!(release_outputs(&specs, &[], &context), Err(ReleaseError::InvalidRule { .. })));
        let histogram = vec![ReleaseSpec::Histogram(HistogramRule {
            name: "bins".into(),
            bins: vec!["a".into(), "b".into()],
            epsilon: 1.0,
        })];
        assert!(matches!(
            release_outputs(&histogram, &[&[0.0; 9]], &context),
            Err(ReleaseError::LengthMismatch { .. })
        ));
    }
}

//! The differentially private release: clamp, aggregate and add Laplace noise, all
//! through opendp, so the sensitivity and the privacy loss are opendp's, not ours.
//!
//! It owns turning raw per-row values into released values. It must not see where the
//! values came from, keep them, or return them unnoised; a release that cannot be made
//! exactly as declared fails as a whole.

use opendp::core::{Measurement, Transformation};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace, make_private_quantile};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, SymmetricDistance};
use opendp::transformations::{make_clamp, make_mean, make_sum};
use thiserror::Error;

/// Neighbouring datasets differ in one person: with the row count public, replacing one
/// person's rows (at most `rows_per_person` of them) is a symmetric distance of
/// 2 × `rows_per_person` (their rows out, another person's in).
pub(crate) fn neighbour_distance(rows_per_person: u32) -> u32 {
    2 * rows_per_person.max(1)
}

/// ln(1/0.05): a Laplace(b) draw lies within ±b·ln 20 of zero with probability 95%.
const LN_TWENTY: f64 = 2.995_732_273_553_991;

/// A count's per-row value as an indicator: clamped to [0, 1] and rounded, so a row adds
/// 0 or 1 (NaN, which the sandbox never passes on, counts as 0).
fn indicator(value: f64) -> i64 {
    i64::from(value.clamp(0.0, 1.0) >= 0.5)
}

/// Half-width of the two-sided `1 - miss` interval of discrete Laplace noise with `scale`
/// t: the smallest whole k with P(|Z| > k) ≤ `miss`, where P(|Z| > k) = 2q^(k+1) / (1 + q)
/// and q = e^(-1/t).
pub fn discrete_laplace_half_width(scale: f64, miss: f64) -> f64 {
    let q = (-1.0 / scale).exp();
    let k = (-scale * (miss / 2.0 * (1.0 + q)).ln() - 1.0).ceil();
    // Guard the boundary against rounding in the logarithm.
    let tail = |k: f64| 2.0 * q.powf(k + 1.0) / (1.0 + q);
    let k = k.max(0.0);
    if tail(k) > miss { k + 1.0 } else { k }
}

/// An integer count measurement: a sized sum of 0/1 indicators, then discrete Laplace.
pub(crate) struct CalibratedCount {
    /// The discrete Laplace of the chain opendp's map certified (sized sum of 0/1
    /// indicators, then noise), for the count taken in one pass: the sum of indicators is
    /// exact, so this is the chain's release.
    noise: Measurement<AtomDomain<i64>, AbsoluteDistance<i64>, MaxDivergence, i64>,
    pub scale: f64,
    pub epsilon: f64,
}

impl CalibratedCount {
    /// Noise for a count of indicators over the calibrated row count.
    pub(crate) fn noise_count(&self, output: &str, count: i64) -> Result<i64, ReleaseError> {
        self.noise.invoke(&count).map_err(|error| opendp_error(output, error))
    }
}

/// One aggregate's sufficient statistics, per group (one group when ungrouped), built one
/// batch of rows at a time and merged across the parts of a run in order: the count (of
/// indicators, for a count output; of rows, otherwise) and the pairwise sum of values
/// clamped to the output's bounds. Rows whose group code is outside the domain are in no
/// group.
#[derive(Debug, Clone)]
pub(crate) struct AggregateStatistics {
    counts: Vec<i64>,
    sums: Vec<PairwiseSum>,
}

impl AggregateStatistics {
    pub(crate) fn new(kind: AggregateKind, groups: usize) -> Self {
        let sums = if kind == AggregateKind::Count { 0 } else { groups.max(1) };
        Self { counts: vec![0; groups.max(1)], sums: vec![PairwiseSum::default(); sums] }
    }

    pub(crate) fn observe(&mut self, rule: &OutputRule, values: &[f64], codes: Option<&[i64]>) {
        let groups = self.counts.len();
        for (row, &value) in values.iter().enumerate() {
            let code = match codes {
                None => 0,
                Some(codes) => match codes.get(row).and_then(|code| usize::try_from(*code).ok()) {
                    Some(code) if code < groups => code,
                    _ => continue,
                },
            };
            match rule.kind {
                AggregateKind::Count => self.counts[code] += indicator(value),
                AggregateKind::Sum | AggregateKind::Mean => {
                    self.counts[code] += 1;
                    // Not `clamp`, which panics on bounds a rule has not been checked for yet
                    // (the release refuses such a rule before anything is noised).
                    self.sums[code].add(value.max(rule.lower).min(rule.upper));
                }
            }
        }
    }

    /// Adds the statistics of the rows that follow these.
    pub(crate) fn merge(&mut self, next: AggregateStatistics) {
        for (count, more) in self.counts.iter_mut().zip(next.counts) {
            *count += more;
        }
        for (sum, more) in self.sums.iter_mut().zip(next.sums) {
            sum.merge(more);
        }
    }
}

/// A float sum built one value at a time, pairwise: a binary counter of partial sums, each
/// merged with its equal-sized neighbour, the survivors added smallest first. Every value
/// takes part in at most ⌊log₂ m⌋ + 1 additions, so the rounding error is at most
/// γ(⌊log₂ m⌋ + 1)·Σ|x| (u = 2⁻⁵³), within opendp's `Pairwise` relaxation for a sized sum
/// of n ≥ m clamped values (it uses u = 2⁻⁵² and log₂ n, and 2·log₂ n ≥ log₂ m + 1 once
/// n ≥ 2; one value is exact). So a group's sum taken here is no more sensitive than
/// opendp's own sized sum over the whole dataset with the other rows as 0, and the scale
/// opendp's map certified for that sum holds for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PairwiseSum {
    /// (partial sum, level): a level-ℓ partial holds 2^ℓ values; levels strictly decrease.
    partials: Vec<(f64, u32)>,
}

impl PairwiseSum {
    pub(crate) fn add(&mut self, value: f64) {
        let (mut value, mut level) = (value, 0);
        while let Some(&(partial, top)) = self.partials.last() {
            if top != level {
                break;
            }
            self.partials.pop();
            value += partial;
            level += 1;
        }
        self.partials.push((value, level));
    }

    /// Adds the sum of the values that follow these (a run's next part) as a binary counter
    /// adds: two partials of one level combine into one of the next, carrying upwards. A
    /// level-ℓ partial stays a sum of 2^ℓ values each taken through ℓ additions, so the merged
    /// sum keeps the single stream's bound (⌊log₂ m⌋ + 1 additions per value), however many
    /// parts are merged.
    pub(crate) fn merge(&mut self, next: PairwiseSum) {
        let mut slots: Vec<Option<f64>> = Vec::new();
        for (partial, level) in self.partials.drain(..).chain(next.partials) {
            let (mut value, mut level) = (partial, level as usize);
            loop {
                if slots.len() <= level {
                    slots.resize(level + 1, None);
                }
                match slots[level].take() {
                    Some(other) => {
                        value += other;
                        level += 1;
                    }
                    None => {
                        slots[level] = Some(value);
                        break;
                    }
                }
            }
        }
        // The stack's order: the largest level at the bottom.
        self.partials =
            slots.into_iter().enumerate().rev().filter_map(|(level, value)| Some((value?, level as u32))).collect();
    }

    pub(crate) fn total(&self) -> f64 {
        let mut partials = self.partials.iter().rev();
        let first = partials.next().map_or(0.0, |(partial, _)| *partial);
        partials.fold(first, |total, (partial, _)| total + partial)
    }
}

/// Calibrates a count over `rows` indicators for `epsilon`, with the neighbour `distance`.
pub(crate) fn calibrate_count(
    output: &str,
    rows: usize,
    distance: u32,
    epsilon: f64,
) -> Result<CalibratedCount, ReleaseError> {
    calibrate_count_with_scale(output, rows, distance, epsilon, 1.0)
}

/// [`calibrate_count`] with the scale multiplied by `scale_factor` (1.0 in production; the
/// coverage tests use others to show they catch wrong noise).
pub(crate) fn calibrate_count_with_scale(
    output: &str,
    rows: usize,
    distance: u32,
    epsilon: f64,
    scale_factor: f64,
) -> Result<CalibratedCount, ReleaseError> {
    let to_error = |error| opendp_error(output, error);
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(ReleaseError::InvalidRule {
            output: output.into(),
            detail: "epsilon must be finite and above 0".into(),
        });
    }
    let domain = VectorDomain::new(AtomDomain::<i64>::new_closed((0, 1)).map_err(to_error)?).with_size(rows);
    let sum = make_sum(domain, SymmetricDistance).map_err(to_error)?;
    let sensitivity = sum.map(&distance).map_err(to_error)? as f64;
    let (measurement, scale, spent) = search_scale(output, sensitivity / epsilon * scale_factor, |scale| {
        let laplace =
            make_laplace::<_, _, MaxDivergence>(AtomDomain::<i64>::default(), AbsoluteDistance::default(), scale, None)
                .map_err(to_error)?;
        let measurement = (sum.clone() >> laplace.clone()).map_err(to_error)?;
        let spent = measurement.map(&distance).map_err(to_error)?;
        Ok(((measurement, laplace), spent <= epsilon || scale_factor < 1.0, spent))
    })?;
    let (_chain, noise) = measurement;
    Ok(CalibratedCount { noise, scale, epsilon: spent })
}

/// The one noise-scale search: starting from `initial`, widen the scale a hair until
/// opendp's privacy map confirms it (`build` returns the measurement, whether it fits and
/// the ε it spends). opendp's maps round conservatively, so the first try can miss by ulps.
/// The granularity `k` (noise in multiples of 2^k) opendp is given for a float mechanism
/// of `scale` over an aggregate of `sensitivity`: 40 binary digits below the smaller of the
/// two, so the rounding is a trillionth of the noise and adds a trillionth to the
/// sensitivity (well inside [`search_scale`]'s first step, whatever the ε). opendp's default
/// is the smallest float step (2^-1074), which makes it sample with integers of over a
/// thousand bits (a run's largest CPU cost); a coarser step is its own documented
/// trade-off: opendp adds the rounding to the sensitivity in its privacy map, so every
/// released scale is still certified for its ε. A function of public values only.
fn noise_granularity(scale: f64, sensitivity: f64) -> Option<i32> {
    const DIGITS_BELOW: i32 = 40;
    let unit = scale.min(sensitivity);
    (unit.is_finite() && unit > 0.0).then(|| (unit.log2().floor() as i32 - DIGITS_BELOW).max(-1074))
}

fn search_scale<M>(
    output: &str,
    initial: f64,
    build: impl Fn(f64) -> Result<(M, bool, f64), ReleaseError>,
) -> Result<(M, f64, f64), ReleaseError> {
    let mut scale = initial;
    for _ in 0..8 {
        let (measurement, fits, spent) = build(scale)?;
        if fits {
            return Ok((measurement, scale, spent));
        }
        scale *= 1.0 + 1e-9;
    }
    Err(ReleaseError::InvalidRule {
        output: output.into(),
        detail: "could not find a noise scale within the declared epsilon".into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// Sum of per-row indicators clamped to [0, 1].
    Count,
    Sum,
    Mean,
}

impl AggregateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateKind::Count => "count",
            AggregateKind::Sum => "sum",
            AggregateKind::Mean => "mean",
        }
    }
}

/// How one output is released: its aggregate, clamp bounds and share of ε.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRule {
    pub name: String,
    pub kind: AggregateKind,
    pub lower: f64,
    pub upper: f64,
    pub epsilon: f64,
}

/// One released value and how far to trust it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedValue {
    pub name: String,
    pub kind: AggregateKind,
    pub value: f64,
    /// The privacy loss opendp's privacy map reports for this value (≤ the declared share).
    pub epsilon: f64,
    /// The Laplace noise scale.
    pub noise_scale: f64,
    /// Half-width of the 95% interval of the noise alone.
    pub ci95_half_width: f64,
}

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("output `{output}`: {detail}")]
    InvalidRule { output: String, detail: String },
    #[error("output `{output}` has {got} values for {rows} rows")]
    LengthMismatch { output: String, got: usize, rows: usize },
    #[error("nothing to release: the dataset has no rows")]
    NoRows,
    #[error("output `{output}`: opendp refused: {detail}")]
    OpenDp { output: String, detail: String },
}

/// Releases every output in `rules` from its per-row values (`columns[i]` for `rules[i]`).
/// `rows` is the dataset's public row count; `rows_per_person` the most rows one person
/// contributes (1 when each row is a person), which the noise is calibrated to.
pub fn release(
    rules: &[OutputRule],
    columns: &[&[f64]],
    rows: usize,
    rows_per_person: u32,
) -> Result<Vec<ReleasedValue>, ReleaseError> {
    if rows == 0 {
        return Err(ReleaseError::NoRows);
    }
    let distance = neighbour_distance(rows_per_person);
    rules.iter().zip(columns).map(|(rule, values)| release_one(rule, values, rows, distance)).collect()
}

fn release_one(rule: &OutputRule, values: &[f64], rows: usize, distance: u32) -> Result<ReleasedValue, ReleaseError> {
    if values.len() != rows {
        return Err(ReleaseError::LengthMismatch { output: rule.name.clone(), got: values.len(), rows });
    }
    let mut statistics = AggregateStatistics::new(rule.kind, 1);
    statistics.observe(rule, values, None);
    release_one_from(rule, &statistics, rows, distance)
}

/// One output's release from its one-pass statistics over all `rows`.
pub(crate) fn release_one_from(
    rule: &OutputRule,
    statistics: &AggregateStatistics,
    rows: usize,
    distance: u32,
) -> Result<ReleasedValue, ReleaseError> {
    if rule.kind == AggregateKind::Count {
        // A count is an integer: a sized sum of 0/1 indicators with opendp's discrete
        // Laplace, whose interval is exact (a rounded continuous Laplace under-covers). The
        // sum of indicators is exact, so noising the count is the chain's release.
        let count = calibrate_count(&rule.name, rows, distance, rule.epsilon)?;
        let noisy = count.noise_count(&rule.name, statistics.counts[0])?;
        return Ok(ReleasedValue {
            name: rule.name.clone(),
            kind: rule.kind,
            value: noisy as f64,
            epsilon: count.epsilon,
            noise_scale: count.scale,
            ci95_half_width: discrete_laplace_half_width(count.scale, 0.05),
        });
    }
    let calibrated = calibrate(rule, rows, distance)?;
    // The chain's aggregate, computed in one pass: the pairwise sum of clamped values (within
    // opendp's `Pairwise` relaxation for `rows`, see `PairwiseSum`); for a mean, as opendp's
    // `make_mean` continues, clamped to the sum's bounds (rounded to nearest, so inside
    // opendp's outward-rounded ones) and multiplied by 1/rows.
    let total = statistics.sums[0].total();
    let statistic = match rule.kind {
        AggregateKind::Mean => {
            let n = rows as f64;
            total.max(n * rule.lower).min(n * rule.upper) * n.recip()
        }
        _ => total,
    };
    let value = calibrated.noise.invoke(&statistic).map_err(|error| opendp_error(&rule.name, error))?;
    Ok(ReleasedValue {
        name: rule.name.clone(),
        kind: rule.kind,
        value,
        epsilon: calibrated.epsilon,
        noise_scale: calibrated.scale,
        ci95_half_width: calibrated.scale * LN_TWENTY,
    })
}

/// An opendp measurement (clamp, aggregate, Laplace) for one output, with the noise scale
/// chosen for the rule's ε and the ε opendp's privacy map reports for it.
pub(crate) struct Calibrated {
    /// The Laplace of the chain opendp's map certified (clamp, sized sum or mean, noise),
    /// for the statistic taken in one pass (see [`PairwiseSum`] for why its sensitivity is
    /// within what the whole chain's is).
    pub noise: Measurement<AtomDomain<f64>, AbsoluteDistance<f64>, MaxDivergence, f64>,
    pub scale: f64,
    pub epsilon: f64,
}

type Aggregate =
    Transformation<VectorDomain<AtomDomain<f64>>, SymmetricDistance, AtomDomain<f64>, AbsoluteDistance<f64>>;

/// The rule's checked parameters and its opendp chain up to the noise: clamp, then a sized
/// sum or mean over the public row count.
fn aggregate(rule: &OutputRule, rows: usize) -> Result<Aggregate, ReleaseError> {
    let invalid = |detail: &str| ReleaseError::InvalidRule { output: rule.name.clone(), detail: detail.into() };
    if !(rule.epsilon.is_finite() && rule.epsilon > 0.0) {
        return Err(invalid("epsilon must be finite and above 0"));
    }
    if !(rule.lower.is_finite() && rule.upper.is_finite() && rule.lower < rule.upper) {
        return Err(invalid("bounds must be finite with lower < upper"));
    }
    let opendp_error = |error| opendp_error(&rule.name, error);
    let input_domain = VectorDomain::new(AtomDomain::<f64>::new_non_nan()).with_size(rows);
    let clamp = make_clamp(input_domain, SymmetricDistance, (rule.lower, rule.upper)).map_err(opendp_error)?;
    match rule.kind {
        AggregateKind::Count | AggregateKind::Sum => {
            clamp >> make_sum(clamp_output_domain(rule, rows)?, SymmetricDistance).map_err(opendp_error)?
        }
        AggregateKind::Mean => {
            clamp >> make_mean(clamp_output_domain(rule, rows)?, SymmetricDistance).map_err(opendp_error)?
        }
    }
    .map_err(opendp_error)
}

/// δ of every Gaussian release: the (ε, δ) an output's zCDP guarantee is charged as.
pub const GAUSSIAN_DELTA: f64 = 1e-9;

/// The ε that ρ-zCDP implies at δ (Bun and Steinke 2016): ρ + 2·√(ρ·ln(1/δ)).
pub fn zcdp_epsilon(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// The largest ρ whose implied ε at δ is `epsilon`: solves √ρ² + 2√(ln(1/δ))·√ρ = ε.
fn zcdp_rho(epsilon: f64, delta: f64) -> f64 {
    let log = (1.0 / delta).ln();
    let root = -log.sqrt() + (log + epsilon).sqrt();
    root * root
}

/// Releases a count, sum or mean with Gaussian noise under zero-concentrated DP. The
/// output's share of ε is turned into the largest ρ that implies it at [`GAUSSIAN_DELTA`];
/// opendp's privacy map must confirm ρ, and the reported ε is the one ρ implies.
pub fn release_gaussian(
    rule: &OutputRule,
    values: &[f64],
    rows: usize,
    rows_per_person: u32,
) -> Result<ReleasedValue, ReleaseError> {
    if rows == 0 {
        return Err(ReleaseError::NoRows);
    }
    if values.len() != rows {
        return Err(ReleaseError::LengthMismatch { output: rule.name.clone(), got: values.len(), rows });
    }
    let aggregate = aggregate(rule, rows)?;
    let to_error = |error| opendp_error(&rule.name, error);
    let distance = neighbour_distance(rows_per_person);
    let sensitivity = aggregate.map(&distance).map_err(to_error)?;
    let rho = zcdp_rho(rule.epsilon, GAUSSIAN_DELTA);
    let (measurement, scale, spent) = search_scale(&rule.name, sensitivity / (2.0 * rho).sqrt(), |scale| {
        let gaussian = make_gaussian::<_, _, ZeroConcentratedDivergence>(
            AtomDomain::<f64>::new_non_nan(),
            AbsoluteDistance::default(),
            scale,
            noise_granularity(scale, sensitivity),
        )
        .map_err(to_error)?;
        let measurement = (aggregate.clone() >> gaussian).map_err(to_error)?;
        let spent = measurement.map(&distance).map_err(to_error)?;
        Ok((measurement, spent <= rho, spent))
    })?;
    let mut value = measurement.invoke(&values.to_vec()).map_err(to_error)?;
    if rule.kind == AggregateKind::Count {
        value = value.round();
    }
    Ok(ReleasedValue {
        name: rule.name.clone(),
        kind: rule.kind,
        value,
        epsilon: zcdp_epsilon(spent, GAUSSIAN_DELTA),
        noise_scale: scale,
        ci95_half_width: 1.959_963_984_540_054 * scale,
    })
}

/// A quantile output: bounds, which quantile, how many candidates, its share of ε.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileRule {
    pub name: String,
    pub lower: f64,
    pub upper: f64,
    pub alpha: f64,
    pub candidates: usize,
    pub epsilon: f64,
}

/// A released quantile: the chosen candidate, and its accuracy as a bound on rank: with
/// probability 95% the released value's rank is within `rank_error_95` rows of the true
/// `alpha`-quantile's rank (plus half a candidate step of discretisation).
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedQuantile {
    pub name: String,
    pub value: f64,
    pub epsilon: f64,
    pub rank_error_95: f64,
    /// Half a candidate step: the discretisation part of the value's error.
    pub ci95_half_width: f64,
}

/// Releases a quantile with opendp's private quantile (exponential mechanism over
/// candidate scores), over values clamped to the rule's bounds and the public row count.
pub fn release_quantile(
    rule: &QuantileRule,
    values: &[f64],
    rows: usize,
    rows_per_person: u32,
) -> Result<ReleasedQuantile, ReleaseError> {
    let invalid = |detail: &str| ReleaseError::InvalidRule { output: rule.name.clone(), detail: detail.into() };
    if !(rule.epsilon.is_finite() && rule.epsilon > 0.0) {
        return Err(invalid("epsilon must be finite and above 0"));
    }
    if !(rule.lower.is_finite() && rule.upper.is_finite() && rule.lower < rule.upper) {
        return Err(invalid("bounds must be finite with lower < upper"));
    }
    if !(0.0..=1.0).contains(&rule.alpha) || rule.candidates < 2 {
        return Err(invalid("alpha must be in [0, 1] and there must be at least two candidates"));
    }
    if rows == 0 {
        return Err(ReleaseError::NoRows);
    }
    if values.len() != rows {
        return Err(ReleaseError::LengthMismatch { output: rule.name.clone(), got: values.len(), rows });
    }
    let to_error = |error| opendp_error(&rule.name, error);
    let step = (rule.upper - rule.lower) / (rule.candidates - 1) as f64;
    let candidates: Vec<f64> = (0..rule.candidates).map(|index| rule.lower + step * index as f64).collect();
    let input_domain = VectorDomain::new(AtomDomain::<f64>::new_non_nan()).with_size(rows);
    let clamp = make_clamp(input_domain, SymmetricDistance, (rule.lower, rule.upper)).map_err(to_error)?;
    let clamped_domain =
        VectorDomain::new(AtomDomain::<f64>::new_closed((rule.lower, rule.upper)).map_err(to_error)?).with_size(rows);
    let distance = neighbour_distance(rows_per_person);
    let build = |scale: f64| {
        let quantile = make_private_quantile(
            clamped_domain.clone(),
            SymmetricDistance,
            MaxDivergence,
            candidates.clone(),
            rule.alpha,
            scale,
        )?;
        clamp.clone() >> quantile
    };
    // ε falls as 1/scale: measure it at scale 1, then scale to the declared share.
    let at_unit = build(1.0).map_err(to_error)?.map(&distance).map_err(to_error)?;
    let (measurement, _, epsilon) = search_scale(&rule.name, at_unit / rule.epsilon, |scale| {
        let measurement = build(scale).map_err(to_error)?;
        let epsilon = measurement.map(&distance).map_err(to_error)?;
        Ok((measurement, epsilon <= rule.epsilon, epsilon))
    })?;
    let value = measurement.invoke(&values.to_vec()).map_err(to_error)?;
    // The exponential mechanism's utility bound, for rank scores that one person moves by
    // at most `rows_per_person`: 2·k·ln(c/0.05)/ε.
    let rank_error_95 = 2.0 * f64::from(rows_per_person.max(1)) * (rule.candidates as f64 / 0.05).ln() / rule.epsilon;
    Ok(ReleasedQuantile {
        name: rule.name.clone(),
        value,
        epsilon,
        rank_error_95,
        // The released value is a candidate; the true quantile lies within half a step of
        // the nearest one (the rank bound above covers the rest).
        ci95_half_width: step / 2.0,
    })
}

fn opendp_error(output: &str, error: opendp::error::Error) -> ReleaseError {
    ReleaseError::OpenDp {
        output: output.to_owned(),
        detail: error.variant.to_string() + ": " + error.message.as_deref().unwrap_or(""),
    }
}

pub(crate) fn calibrate(rule: &OutputRule, rows: usize, distance: u32) -> Result<Calibrated, ReleaseError> {
    calibrate_with_scale(rule, rows, distance, 1.0)
}

/// [`calibrate`], with the noise scale multiplied by `scale_factor` (1.0 in production;
/// the statistical tests use other factors to show they catch wrong noise).
pub(crate) fn calibrate_with_scale(
    rule: &OutputRule,
    rows: usize,
    distance: u32,
    scale_factor: f64,
) -> Result<Calibrated, ReleaseError> {
    let opendp_error = |error| opendp_error(&rule.name, error);
    let aggregate = aggregate(rule, rows)?;

    // opendp computes the sensitivity (including floating-point slack); we pick the scale
    // for the declared ε and let opendp's privacy map confirm it.
    let sensitivity = aggregate.map(&distance).map_err(opendp_error)?;
    let (measurement, scale, epsilon) = search_scale(&rule.name, sensitivity / rule.epsilon * scale_factor, |scale| {
        let laplace = make_laplace::<_, _, MaxDivergence>(
            AtomDomain::<f64>::new_non_nan(),
            AbsoluteDistance::default(),
            scale,
            noise_granularity(scale, sensitivity),
        )
        .map_err(opendp_error)?;
        let measurement = (aggregate.clone() >> laplace.clone()).map_err(opendp_error)?;
        let epsilon = measurement.map(&distance).map_err(opendp_error)?;
        Ok(((measurement, laplace), epsilon <= rule.epsilon || scale_factor < 1.0, epsilon))
    })?;
    let (_chain, noise) = measurement;
    Ok(Calibrated { noise, scale, epsilon })
}

fn clamp_output_domain(rule: &OutputRule, rows: usize) -> Result<VectorDomain<AtomDomain<f64>>, ReleaseError> {
    let element = AtomDomain::<f64>::new_closed((rule.lower, rule.upper))
        .map_err(|error| ReleaseError::OpenDp { output: rule.name.clone(), detail: error.to_string() })?;
    Ok(VectorDomain::new(element).with_size(rows))
}

/// A histogram output: its declared bins and its share of ε.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRule {
    pub name: String,
    pub bins: Vec<String>,
    pub epsilon: f64,
}

/// One bin of a released histogram: its noisy count, or nothing when suppressed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedBin {
    pub label: String,
    pub count: Option<f64>,
    pub suppressed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedHistogram {
    pub name: String,
    pub bins: Vec<ReleasedBin>,
    pub epsilon: f64,
    pub noise_scale: f64,
    pub ci95_half_width: f64,
}

/// Releases a histogram over its declared bins. `values[i]` is row i's bin index; a value
/// that is not one counts in no bin. Replacing one person's rows moves at most
/// `rows_per_person` rows between bins, an L1 change of at most 2 × `rows_per_person`, and
/// opendp's Laplace mechanism on the vector of counts is calibrated to that. Disclosure rule
/// (post-processing): a bin whose noisy count is under `min_count` is suppressed.
pub fn release_histogram(
    rule: &HistogramRule,
    values: &[f64],
    rows_per_person: u32,
    min_count: u32,
) -> Result<ReleasedHistogram, ReleaseError> {
    let invalid = |detail: &str| ReleaseError::InvalidRule { output: rule.name.clone(), detail: detail.into() };
    if !(rule.epsilon.is_finite() && rule.epsilon > 0.0) {
        return Err(invalid("epsilon must be finite and above 0"));
    }
    if rule.bins.len() < 2 {
        return Err(invalid("a histogram needs at least two bins"));
    }
    let mut counts = vec![0i64; rule.bins.len()];
    for value in values {
        let index = value.round();
        if value.is_finite() && index >= 0.0 && (index as usize) < counts.len() {
            counts[index as usize] += 1;
        }
    }
    let to_error = |error| opendp_error(&rule.name, error);
    // Bin counts are integers: opendp's discrete Laplace on the count vector.
    let sensitivity = 2 * i64::from(rows_per_person.max(1));
    let (laplace, scale, epsilon) = search_scale(&rule.name, sensitivity as f64 / rule.epsilon, |scale| {
        let laplace = make_laplace::<_, _, MaxDivergence>(
            VectorDomain::new(AtomDomain::<i64>::default()),
            L1Distance::<i64>::default(),
            scale,
            None,
        )
        .map_err(to_error)?;
        let epsilon = laplace.map(&sensitivity).map_err(to_error)?;
        Ok((laplace, epsilon <= rule.epsilon, epsilon))
    })?;
    let noisy = laplace.invoke(&counts).map_err(to_error)?;
    let bins = rule
        .bins
        .iter()
        .zip(noisy)
        .map(|(label, count)| {
            let count = count as f64;
            let suppressed = count < f64::from(min_count);
            ReleasedBin { label: label.clone(), count: (!suppressed).then_some(count), suppressed }
        })
        .collect();
    Ok(ReleasedHistogram {
        name: rule.name.clone(),
        bins,
        epsilon,
        noise_scale: scale,
        ci95_half_width: discrete_laplace_half_width(scale, 0.05),
    })
}

/// One group of a grouped release: its noisy value, or nothing when suppressed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedGroup {
    pub label: String,
    pub value: Option<f64>,
    pub suppressed: bool,
    /// Half-width of this group's own 95% interval (none when suppressed).
    pub ci95_half_width: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedGroups {
    pub name: String,
    pub kind: AggregateKind,
    pub groups: Vec<ReleasedGroup>,
    /// The privacy loss of the whole grouped output (at most the rule's ε).
    pub epsilon: f64,
    /// Noise scale of each group's count (count outputs) or sum (sum and mean outputs).
    pub noise_scale: f64,
    /// Half-width of a 95% interval for the total over the released groups of a count or
    /// sum (a union bound over the groups; none for a mean).
    pub total_ci95_half_width: Option<f64>,
}

/// Releases `rule` once per group of a declared domain (`labels`; `groups[i]` is row i's
/// code, -1 for none). Never groups by keys found in the data.
///
/// Each group's aggregate is an opendp sized sum over all `rows` rows, where rows outside
/// the group contribute 0 (the clamp bounds are widened to include 0), so the row count
/// stays public and opendp sets the sensitivity. Replacing one person's k rows touches at
/// most min(2k, groups) groups, so each group spends ε / min(2k, groups). A sum or mean also
/// releases the group's row count (half of the group's share) for the disclosure rule and,
/// for a mean, as the divisor; a group whose noisy count is under `min_count` is suppressed.
pub fn release_grouped(
    rule: &OutputRule,
    values: &[f64],
    groups: &[i64],
    labels: &[String],
    rows_per_person: u32,
    min_count: u32,
) -> Result<ReleasedGroups, ReleaseError> {
    let rows = values.len();
    if rows == 0 {
        return Err(ReleaseError::NoRows);
    }
    if groups.len() != rows {
        return Err(ReleaseError::LengthMismatch { output: rule.name.clone(), got: groups.len(), rows });
    }
    if labels.is_empty() {
        return Err(ReleaseError::InvalidRule { output: rule.name.clone(), detail: "no groups declared".into() });
    }
    let mut statistics = AggregateStatistics::new(rule.kind, labels.len());
    statistics.observe(rule, values, Some(groups));
    release_grouped_from(rule, &statistics, rows, rows_per_person, min_count, labels)
}

/// A grouped output's release from its one-pass statistics over all `rows`.
pub(crate) fn release_grouped_from(
    rule: &OutputRule,
    statistics: &AggregateStatistics,
    rows: usize,
    rows_per_person: u32,
    min_count: u32,
    labels: &[String],
) -> Result<ReleasedGroups, ReleaseError> {
    if rows == 0 {
        return Err(ReleaseError::NoRows);
    }
    let distance = neighbour_distance(rows_per_person);
    let touched = (distance as usize).min(labels.len()) as f64;
    let group_epsilon = rule.epsilon / touched;
    let (sum_epsilon, count_epsilon) = match rule.kind {
        AggregateKind::Count => (0.0, 0.0),
        AggregateKind::Sum | AggregateKind::Mean => (group_epsilon / 2.0, group_epsilon / 2.0),
    };
    let padded_rule = OutputRule {
        name: rule.name.clone(),
        kind: AggregateKind::Sum,
        lower: rule.lower.min(0.0),
        upper: rule.upper.max(0.0),
        epsilon: sum_epsilon,
    };
    let sum = (sum_epsilon > 0.0).then(|| calibrate(&padded_rule, rows, distance)).transpose()?;
    let count_share = if rule.kind == AggregateKind::Count { group_epsilon } else { count_epsilon };
    let count = calibrate_count(&rule.name, rows, distance, count_share)?;
    let sum_scale = sum.as_ref().map_or(0.0, |sum| sum.scale);
    // Opendp's noise on each group's one-pass statistics, at the scales its maps certified
    // for sized sums over all `rows` with the other groups' rows as 0.
    let (counts, sums) = (&statistics.counts, &statistics.sums);
    if counts.len() != labels.len() {
        return Err(ReleaseError::InvalidRule {
            output: rule.name.clone(),
            detail: format!("{} groups of statistics for {} declared groups", counts.len(), labels.len()),
        });
    }
    let mut released = Vec::with_capacity(labels.len());
    for (code, label) in labels.iter().enumerate() {
        let noisy_count = count.noise_count(&rule.name, counts[code])? as f64;
        let noisy_sum = match &sum {
            Some(sum) => sum.noise.invoke(&sums[code].total()).map_err(|error| opendp_error(&rule.name, error))?,
            None => noisy_count,
        };
        let suppressed = noisy_count < f64::from(min_count);
        let (value, half_width) = match rule.kind {
            AggregateKind::Count => (noisy_count, discrete_laplace_half_width(count.scale, 0.05)),
            AggregateKind::Sum => (noisy_sum, sum_scale * LN_TWENTY),
            AggregateKind::Mean => {
                // Post-processing of two noisy values, kept inside the declared bounds. With
                // |ΔS| ≤ a and |ΔC| ≤ c (each at 97.5%), the mean S'/C' is off by at most
                // (a + |S/C|·c) / C': a 95% interval by the union bound.
                let divisor = noisy_count.max(1.0);
                let mean = (noisy_sum / divisor).clamp(rule.lower, rule.upper);
                let a = sum_scale * (1.0f64 / 0.025).ln();
                let c = discrete_laplace_half_width(count.scale, 0.025);
                (mean, (a + mean.abs() * c) / divisor)
            }
        };
        released.push(ReleasedGroup {
            label: label.clone(),
            value: (!suppressed).then_some(value),
            suppressed,
            ci95_half_width: (!suppressed).then_some(half_width),
        });
    }
    let shown = released.iter().filter(|group| !group.suppressed).count().max(1);
    // Each shown group's noise within its (0.05 / shown) interval, all at once with 95%.
    let miss = 0.05 / shown as f64;
    let total_ci95_half_width = match rule.kind {
        AggregateKind::Count => Some(shown as f64 * discrete_laplace_half_width(count.scale, miss)),
        AggregateKind::Sum => Some(shown as f64 * sum_scale * (1.0 / miss).ln()),
        AggregateKind::Mean => None,
    };
    let epsilon = touched * (sum.as_ref().map_or(0.0, |sum| sum.epsilon) + count.epsilon);
    let noise_scale = if rule.kind == AggregateKind::Count { count.scale } else { sum_scale };
    Ok(ReleasedGroups {
        name: rule.name.clone(),
        kind: rule.kind,
        groups: released,
        epsilon,
        noise_scale,
        total_ci95_half_width,
    })
}

pub mod spec;

#[cfg(test)]
mod coverage;
#[cfg(test)]
mod statistics;

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: AggregateKind, lower: f64, upper: f64, epsilon: f64) -> OutputRule {
        OutputRule { name: "x".into(), kind, lower, upper, epsilon }
    }

    #[test]
    fn releases_are_noisy_but_close_and_report_their_epsilon() {
        let rows = 10_000;
        let ones: Vec<f64> = (0..rows).map(|row| (row % 4 == 0) as u8 as f64).collect();
        let released = release(&[rule(AggregateKind::Count, 0.0, 1.0, 1.0)], &[&ones], rows, 1).expect("released");
        let count = &released[0];
        assert!(count.epsilon <= 1.0 && count.epsilon > 0.99, "{}", count.epsilon);
        assert!((count.value - 2500.0).abs() < 40.0, "{}", count.value);
        assert_eq!(count.value.fract(), 0.0);

        let values: Vec<f64> = (0..rows).map(|row| (row % 10) as f64 * 5.0).collect(); // includes 45 > upper
        let released = release(&[rule(AggregateKind::Mean, 0.0, 40.0, 0.5)], &[&values], rows, 1).expect("released");
        // Clamped mean: (0+5+…+40+40)/10 = 22.0; noise scale ≈ 40/10000/0.5.
        assert!((released[0].value - 22.0).abs() < 0.2, "{}", released[0].value);
        assert!(released[0].noise_scale < 0.01);
    }

    /// A person contributing up to three rows triples the sensitivity, so the noise scale.
    #[test]
    fn noise_scales_with_the_rows_one_person_contributes() {
        let values = vec![1.0; 1_000];
        let sum = rule(AggregateKind::Sum, 0.0, 10.0, 1.0);
        let one = release(std::slice::from_ref(&sum), &[&values], 1_000, 1).expect("released");
        let three = release(&[sum], &[&values], 1_000, 3).expect("released");
        let ratio = three[0].noise_scale / one[0].noise_scale;
        assert!((ratio - 3.0).abs() < 1e-6, "{ratio}");
    }

    /// Float noise comes in multiples of 2^k, 40 binary digits below its scale, and the
    /// privacy map (which adds that rounding to the sensitivity) still certifies the ε.
    #[test]
    fn float_noise_has_a_granularity_below_its_scale_and_keeps_its_epsilon() {
        let values = vec![1.0; 1_000];
        let sum = rule(AggregateKind::Sum, 0.0, 10.0, 1.0);
        for _ in 0..20 {
            let released = release(std::slice::from_ref(&sum), &[&values], 1_000, 1).expect("released");
            let value = &released[0];
            let k = noise_granularity(value.noise_scale, 10.0).expect("a granularity");
            assert_eq!(k, 3 - 40, "scale {}", value.noise_scale);
            let steps = value.value * 2f64.powi(-k);
            assert_eq!(steps.fract(), 0.0, "{} is not a multiple of 2^{k}", value.value);
            assert!(value.epsilon <= 1.0 && value.epsilon > 0.999_999, "{}", value.epsilon);
            assert!((value.noise_scale / 10.0 - 1.0).abs() < 1e-6, "{}", value.noise_scale);
        }
        // At a tiny ε the scale is huge: the step follows the sensitivity, so the rounding
        // stays a trillionth of it and the ε is still met.
        let tiny = rule(AggregateKind::Sum, 0.0, 20_000.0, 1e-9);
        let released = release(&[tiny], &[&values], 1_000, 1).expect("released at a tiny epsilon");
        assert!(released[0].epsilon <= 1e-9, "{}", released[0].epsilon);
        assert_eq!(noise_granularity(2e13, 20_000.0), Some(14 - 40));
        assert_eq!(noise_granularity(0.0, 1.0), None);
        assert_eq!(noise_granularity(f64::INFINITY, f64::INFINITY), None);
        assert_eq!(noise_granularity(1e-320, 1.0), Some(-1074));
    }

    #[test]
    fn histograms_release_noisy_bins_and_suppress_small_ones() {
        let rule =
            HistogramRule { name: "band".into(), bins: vec!["low".into(), "mid".into(), "high".into()], epsilon: 1.0 };
        // 5,000 low, 3,000 mid, 3 high, and values that are no bin index.
        let mut values = vec![0.0; 5_000];
        values.extend(vec![1.0; 3_000]);
        values.extend([2.0, 2.0, 2.0, 7.0, -1.0, 0.4]);
        // A threshold of 30 keeps the bin of 3 suppressed unless the noise adds 27 (p < 1e-6).
        let released = release_histogram(&rule, &values, 1, 30).expect("released");
        assert!(released.epsilon <= 1.0 && (released.noise_scale - 2.0).abs() < 1e-6, "{released:?}");
        let low = released.bins[0].count.expect("large bin released");
        assert!((low - 5_001.0).abs() < 40.0, "{low}");
        assert!(released.bins[2].suppressed && released.bins[2].count.is_none(), "a bin of 3 is suppressed");
        let bad = HistogramRule { epsilon: 0.0, ..rule.clone() };
        assert!(matches!(release_histogram(&bad, &values, 1, 30), Err(ReleaseError::InvalidRule { .. })));
    }

    #[test]
    fn grouped_releases_split_epsilon_and_suppress_small_groups() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // 4,000 rows in group a with value 2, 2,000 in b with value 4, 5 in c, 10 in no group.
        let mut groups = vec![0i64; 4_000];
        groups.extend(vec![1; 2_000]);
        groups.extend(vec![2; 5]);
        groups.extend(vec![-1; 10]);
        let values: Vec<f64> = groups.iter().map(|group| if *group == 1 { 4.0 } else { 2.0 }).collect();
        let mean = OutputRule { name: "m".into(), kind: AggregateKind::Mean, lower: 0.0, upper: 10.0, epsilon: 2.0 };
        // A threshold of 40 keeps the group of 5 suppressed unless its noisy count gains 35.
        let released = release_grouped(&mean, &values, &groups, &labels, 1, 40).expect("released");
        assert!(released.epsilon <= 2.0 + 1e-9 && released.epsilon > 1.9, "{}", released.epsilon);
        let value = |index: usize| released.groups[index].value;
        assert!((value(0).expect("a") - 2.0).abs() < 0.05, "{:?}", value(0));
        assert!((value(1).expect("b") - 4.0).abs() < 0.1, "{:?}", value(1));
        assert!(released.groups[2].suppressed && value(2).is_none());

        let count = OutputRule { kind: AggregateKind::Count, lower: 0.0, upper: 1.0, ..mean.clone() };
        let ones = vec![1.0; groups.len()];
        let counts = release_grouped(&count, &ones, &groups, &labels, 1, 10).expect("released");
        assert!((counts.groups[0].value.expect("a") - 4_000.0).abs() < 30.0);
        assert!(matches!(
            release_grouped(&count, &ones, &groups[1..], &labels, 1, 10),
            Err(ReleaseError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn gaussian_releases_charge_the_epsilon_their_rho_implies() {
        let rows = 10_000;
        let values: Vec<f64> = (0..rows).map(|row| (row % 4) as f64).collect();
        let sum = rule(AggregateKind::Sum, 0.0, 4.0, 1.0);
        let released = release_gaussian(&sum, &values, rows, 1).expect("released");
        assert!(released.epsilon <= 1.0 && released.epsilon > 0.99, "{}", released.epsilon);
        assert!((released.value - 15_000.0).abs() < 6.0 * released.noise_scale, "{}", released.value);
        // At δ = 1e-9 a Gaussian needs more noise than a Laplace for one scalar; it pays off
        // under composition, which is why it is an option and not the default.
        let laplace = release(&[sum], &[&values], rows, 1).expect("released");
        assert!(released.noise_scale > laplace[0].noise_scale);
        assert!((zcdp_epsilon(zcdp_rho(0.7, GAUSSIAN_DELTA), GAUSSIAN_DELTA) - 0.7).abs() < 1e-12);
    }

    #[test]
    fn quantiles_pick_a_candidate_near_the_true_quantile() {
        let rows = 20_000;
        let values: Vec<f64> = (0..rows).map(|row| (row % 100) as f64).collect();
        let median =
            QuantileRule { name: "q".into(), lower: 0.0, upper: 100.0, alpha: 0.5, candidates: 101, epsilon: 1.0 };
        let released = release_quantile(&median, &values, rows, 1).expect("released");
        assert!(released.epsilon <= 1.0, "{}", released.epsilon);
        assert!((released.value - 50.0).abs() <= 3.0, "median {}", released.value);
        assert!(released.rank_error_95 > 0.0 && released.rank_error_95 < 30.0, "{}", released.rank_error_95);
        let bad = QuantileRule { alpha: 1.5, ..median };
        assert!(matches!(release_quantile(&bad, &values, rows, 1), Err(ReleaseError::InvalidRule { .. })));
    }

    /// An exact float sum (Shewchuk's non-overlapping partials, as Python's `math.fsum`),
    /// the reference the pairwise sum's rounding is measured against.
    fn exact_sum(values: &[f64]) -> f64 {
        let mut partials: Vec<f64> = Vec::new();
        for &value in values {
            let mut x = value;
            let mut kept = 0;
            for index in 0..partials.len() {
                let mut y = partials[index];
                if x.abs() < y.abs() {
                    std::mem::swap(&mut x, &mut y);
                }
                let high = x + y;
                let low = y - (high - x);
                if low != 0.0 {
                    partials[kept] = low;
                    kept += 1;
                }
                x = high;
            }
            partials.truncate(kept);
            partials.push(x);
        }
        partials.iter().sum()
    }

    #[test]
    fn pairwise_sums_stay_within_opendps_relaxation() {
        // Exactly representable values sum exactly, whatever their number.
        for count in [0usize, 1, 2, 3, 5, 64, 65, 1000] {
            let mut sum = PairwiseSum::default();
            (0..count).for_each(|index| sum.add(index as f64 / 1024.0));
            assert_eq!(sum.total(), (0..count).map(|index| index as f64 / 1024.0).sum::<f64>(), "{count}");
        }
        // Arbitrary values: the error against the exact sum is within the error opendp's
        // `Pairwise` relaxation allows for a sized sum of that many values.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for count in [2usize, 3, 7, 1000, 100_003] {
            let values: Vec<f64> = (0..count).map(|_| (next() - 0.3) * 1e6 / (1.0 + next() * 1e3)).collect();
            let mut sum = PairwiseSum::default();
            values.iter().for_each(|value| sum.add(*value));
            let bound = {
                let uk = (count as f64).log2() / 2f64.powi(52);
                uk / (1.0 - uk) * count as f64 * values.iter().fold(0.0f64, |max, value| max.max(value.abs()))
            };
            let error = (sum.total() - exact_sum(&values)).abs();
            assert!(error <= bound, "{count} values: error {error:e} beyond opendp's {bound:e}");
            // And far better than a left-to-right sum's worst case.
            assert!(error <= bound / 4.0 || count < 8, "{count}: {error:e} vs {bound:e}");
        }
    }

    #[test]
    fn merged_pairwise_sums_keep_the_single_streams_bound() {
        // Any split into parts, merged in order, sums exactly representable values exactly
        // and keeps levels distinct (so `total` adds at most one per level).
        for (count, parts) in [(8usize, 8usize), (1000, 3), (1000, 7), (65, 64)] {
            let values: Vec<f64> = (0..count).map(|index| index as f64 / 512.0).collect();
            let mut merged = PairwiseSum::default();
            for part in values.chunks(count.div_ceil(parts)) {
                let mut sum = PairwiseSum::default();
                part.iter().for_each(|value| sum.add(*value));
                merged.merge(sum);
            }
            assert_eq!(merged.total(), values.iter().sum::<f64>(), "{count} in {parts}");
            let levels: Vec<u32> = merged.partials.iter().map(|(_, level)| *level).collect();
            assert!(levels.windows(2).all(|pair| pair[0] > pair[1]), "{levels:?}");
            assert_eq!(levels.iter().map(|level| 1usize << level).sum::<usize>(), count, "every value counted once");
        }
    }

    #[test]
    fn a_grouped_release_reads_each_row_once_and_counts_exactly() {
        // At an enormous ε the noise is far below one, so the released statistics show the
        // one-pass counts and sums themselves: each group's, and no row outside the domain.
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|label| label.to_string()).collect();
        let groups: Vec<i64> = (0..3_000).map(|row| if row % 10 == 9 { 7 } else { row % 3 }).collect();
        let values: Vec<f64> = (0..3_000).map(|row| (row % 5) as f64).collect();
        let exact = |code: i64, value: &dyn Fn(f64) -> f64| -> f64 {
            groups.iter().zip(&values).filter(|(group, _)| **group == code).map(|(_, v)| value(*v)).sum()
        };
        let count = rule(AggregateKind::Count, 0.0, 1.0, 1e7);
        let released = release_grouped(&count, &values, &groups, &labels, 1, 0).expect("released");
        for (code, group) in released.groups.iter().enumerate() {
            let indicators = exact(code as i64, &|value| if value >= 0.5 { 1.0 } else { 0.0 });
            assert_eq!(group.value, Some(indicators), "{}", group.label);
        }
        let sum = rule(AggregateKind::Sum, 0.0, 3.0, 1e7);
        let released = release_grouped(&sum, &values, &groups, &labels, 1, 0).expect("released");
        for (code, group) in released.groups.iter().enumerate() {
            let clamped = exact(code as i64, &|value| value.min(3.0));
            assert!((group.value.expect("shown") - clamped).abs() < 1e-3, "{}: {:?}", group.label, group.value);
        }
    }

    #[test]
    fn a_release_streamed_in_batches_and_parts_is_the_release_of_all_rows() {
        use crate::release::spec::{Noise, ReleaseContext, ReleaseSpec, StreamingRelease, release_outputs};
        // At an enormous ε the noise is far below the tolerance, so both show the
        // statistics: the streamed ones must be those of all the rows.
        let rows = 50_000;
        let values: Vec<f64> = (0..rows).map(|row| ((row * 7919) % 1000) as f64 / 999.0).collect();
        let flags: Vec<f64> = (0..rows).map(|row| f64::from(u8::from(row % 3 == 0))).collect();
        let codes: Vec<i64> = (0..rows).map(|row| (row % 5) as i64).collect();
        let labels: Vec<String> = (0..5).map(|code| format!("g{code}")).collect();
        let aggregate = |name: &str, kind, upper| ReleaseSpec::Aggregate {
            rule: OutputRule { name: name.into(), kind, lower: 0.0, upper, epsilon: 1e6 },
            noise: Noise::Laplace,
        };
        let specs = vec![
            aggregate("count", AggregateKind::Count, 1.0),
            aggregate("sum", AggregateKind::Sum, 1.0),
            aggregate("mean", AggregateKind::Mean, 1.0),
        ];
        let columns: [&[f64]; 3] = [&flags, &values, &values];
        for grouped in [false, true] {
            let labels = grouped.then(|| labels.clone());
            let context = ReleaseContext {
                rows,
                rows_per_person: 1,
                min_group_size: 0,
                groups: labels.as_ref().map(|labels| (codes.as_slice(), labels.as_slice())),
            };
            let whole = release_outputs(&specs, &columns, &context).expect("released");
            // Three parts, each observed in uneven batches, merged in order.
            let mut parts = Vec::new();
            for part in [0..17_000, 17_000..17_001, 17_001..rows] {
                let mut streamed = StreamingRelease::new(specs.clone(), rows, 1, 0, labels.clone());
                let mut start = part.start;
                while start < part.end {
                    let end = (start + 4_096).min(part.end);
                    let batch: Vec<&[f64]> = columns.iter().map(|column| &column[start..end]).collect();
                    streamed.observe(&batch, Some(&codes[start..end]));
                    start = end;
                }
                parts.push(streamed);
            }
            let mut parts = parts.into_iter();
            let mut streamed = parts.next().expect("a part");
            parts.for_each(|part| streamed.merge(part));
            assert_eq!(streamed.rows_observed(), rows);
            let streamed = streamed.release().expect("released");
            for (one, other) in whole.iter().zip(&streamed) {
                assert_eq!((one.name.as_str(), one.kind.as_str()), (other.name.as_str(), other.kind.as_str()));
                let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-3 * a.abs().max(1.0),
                    (a, b) => a == b,
                };
                assert!(close(one.value, other.value), "{}: {:?} vs {:?}", one.name, one.value, other.value);
                assert_eq!(one.noise_scale, other.noise_scale);
                for (a, b) in one.groups.iter().flatten().zip(other.groups.iter().flatten()) {
                    assert!(close(a.value, b.value), "{} {}: {:?} vs {:?}", one.name, a.label, a.value, b.value);
                }
            }
        }
        // A release that did not see every row is refused, not made from part of them.
        let mut short = StreamingRelease::new(specs.clone(), rows, 1, 0, None);
        short.observe(&[&flags[..10], &values[..10], &values[..10]], None);
        assert!(matches!(short.release(), Err(ReleaseError::LengthMismatch { .. })));
    }

    #[test]
    fn bad_rules_and_shapes_are_refused() {
        let values = vec![1.0; 10];
        for bad in [
            rule(AggregateKind::Sum, 0.0, 1.0, 0.0),
            rule(AggregateKind::Sum, 0.0, 1.0, f64::NAN),
            rule(AggregateKind::Sum, 2.0, 1.0, 1.0),
            rule(AggregateKind::Sum, 0.0, f64::INFINITY, 1.0),
        ] {
            assert!(matches!(release(&[bad], &[&values], 10, 1), Err(ReleaseError::InvalidRule { .. })));
        }
        let good = rule(AggregateKind::Sum, 0.0, 1.0, 1.0);
        assert!(matches!(
            release(std::slice::from_ref(&good), &[&values], 11, 1),
            Err(ReleaseError::LengthMismatch { .. })
        ));
        assert!(matches!(release(&[good], &[&[]], 0, 1), Err(ReleaseError::NoRows)));
    }
}

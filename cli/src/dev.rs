//! The operator's development loop: `sluice dev check` runs the static review and
//! `sluice dev run` runs a model on dummy data made from a schema, through the gateway's
//! own runner (`sluice_gateway::runner`): the same limits, checks and release as a real
//! run. An operator develops a model without real data.
//!
//! It owns computing the exact values on dummy rows, for comparison. It must never touch
//! a data directory or real rows: its only data is dummy data.

use sluice_gateway::runner::{DummyRun, dummy_run};
use sluice_policies::ReleasedOutput;
use sluice_sandbox::{CompiledModel, Fallbacks, OutputKind, Runtime};
use sluice_vault::schema::DatasetSchema;

/// One output of a dev run: the exact aggregate over the dummy rows (they are not real,
/// so seeing it is harmless) beside what the server would release.
#[derive(Debug, Clone)]
pub struct DevOutput {
    pub exact: f64,
    /// A histogram's exact count per bin.
    pub exact_bins: Option<Vec<f64>>,
    pub released: ReleasedOutput,
}

/// What a dev run produced: each output, and the rows on which the model failed (trap,
/// fuel, stack, non-finite value), which fell back to the outputs' defaults. On dummy data
/// these are harmless to show; a model with any fallback cannot be approved.
#[derive(Debug, Clone)]
pub struct DevRun {
    pub outputs: Vec<DevOutput>,
    pub fallbacks: Fallbacks,
}

/// Runs `compiled` over `rows` dummy rows made from `schema` with `seed`.
pub fn run(
    runtime: &Runtime,
    compiled: &CompiledModel,
    schema: &DatasetSchema,
    rows: usize,
    seed: u64,
) -> anyhow::Result<DevRun> {
    let DummyRun { released, outputs } = dummy_run(runtime, compiled, schema, rows, seed)?;
    let fallbacks = outputs.fallbacks();
    let outputs = compiled
        .manifest()
        .outputs()
        .iter()
        .enumerate()
        .zip(released)
        .map(|((index, spec), released)| {
            let values = outputs.column(index);
            let (lower, upper) = spec.bounds();
            match spec.kind {
                OutputKind::Histogram => {
                    let mut bins = vec![0.0; spec.bins.len()];
                    for value in values {
                        let bin = value.round();
                        if bin >= 0.0 && (bin as usize) < bins.len() {
                            bins[bin as usize] += 1.0;
                        }
                    }
                    DevOutput { exact: bins.iter().sum(), exact_bins: Some(bins), released }
                }
                OutputKind::Quantile => {
                    let mut sorted: Vec<f64> = values.iter().map(|value| value.clamp(lower, upper)).collect();
                    sorted.sort_by(f64::total_cmp);
                    let rank = (spec.alpha.unwrap_or(0.5) * (sorted.len().saturating_sub(1)) as f64).round() as usize;
                    DevOutput { exact: sorted.get(rank).copied().unwrap_or(f64::NAN), exact_bins: None, released }
                }
                kind => {
                    let clamped_sum: f64 = values.iter().map(|value| value.clamp(lower, upper)).sum();
                    let exact = if kind == OutputKind::Mean { clamped_sum / rows as f64 } else { clamped_sum };
                    DevOutput { exact, exact_bins: None, released }
                }
            }
        })
        .collect();
    Ok(DevRun { outputs, fallbacks })
}

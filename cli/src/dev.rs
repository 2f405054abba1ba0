//! The operator's development loop: `sluice dev check` runs the static review and
//! `sluice dev run` runs a model on dummy data made from a schema, through the gateway's
//! own runner (`sluice_gateway::runner`): the same limits, checks and release as a real
//! run. An operator develops a model without real data.
//!
//! It owns printing the exact values on dummy rows beside the release (the runner computes
//! them, as the automated review shows them to reviewers). It must never touch
//! a data directory or real rows: its only data is dummy data.

use sluice_gateway::runner::{ExactOnDummy, dummy_run};
use sluice_policies::ReleasedOutput;
use sluice_sandbox::{CompiledModel, Fallbacks, Runtime};
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
    let run = dummy_run(runtime, compiled, schema, rows, seed)?;
    let fallbacks = run.outputs.fallbacks();
    let exact = run.exact_values(compiled, rows);
    let outputs = exact
        .into_iter()
        .zip(run.released)
        .map(|(ExactOnDummy { exact, exact_bins }, released)| DevOutput { exact, exact_bins, released })
        .collect();
    Ok(DevRun { outputs, fallbacks })
}

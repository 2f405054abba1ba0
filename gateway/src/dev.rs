//! The operator's development loop: `sluice dev check` runs the static review and
//! `sluice dev run` runs a model on dummy data made from a schema, with exactly the
//! server's limits, checks and release. An operator develops a model without real data.
//!
//! It must never touch a data directory or real rows: its only data is `dummy`'s.

use anyhow::Context;
use sluice_sandbox::{Batch, CompiledModel, Fallbacks, Manifest, OutputKind, Runtime, SandboxError};

use crate::dummy::dummy_csv;
use crate::schema::{DatasetSchema, MAX_GRANTABLE_LEVEL};
use crate::service::{ReleasedOutput, group_labels, release_outputs};
use crate::vault::{batches_of, parse_chunks};

/// What the static review found, for printing.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub digest: String,
    pub name: String,
    pub version: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub epsilon_per_run: f64,
    /// The fuel each row may use, within the host's cap.
    pub fuel_per_row: u64,
}

/// A refusal by the static review or the schema check, with its stable code.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl From<SandboxError> for Refusal {
    fn from(error: SandboxError) -> Self {
        Refusal { code: error.code(), message: error.to_string() }
    }
}

/// The server's static review, plus the manifest's columns against `schema` when given.
pub fn check(
    runtime: &Runtime,
    module: &[u8],
    manifest: &str,
    schema: Option<&DatasetSchema>,
) -> Result<(CompiledModel, CheckReport), Refusal> {
    let manifest = Manifest::from_toml(manifest)?;
    let compiled = runtime.compile(module, manifest)?;
    let manifest = compiled.manifest();
    if let Some(schema) = schema {
        for input in manifest.inputs() {
            let Some((_, column)) = schema.column(&input.name) else {
                return Err(Refusal {
                    code: "column_unknown",
                    message: format!("the schema has no column `{}`", input.name),
                });
            };
            if column.column_type != input.column_type {
                return Err(Refusal {
                    code: "column_type_mismatch",
                    message: format!(
                        "`{}` is {} in the schema, {} in the manifest",
                        input.name,
                        column.column_type.as_str(),
                        input.column_type.as_str()
                    ),
                });
            }
            if column.classification > MAX_GRANTABLE_LEVEL {
                return Err(Refusal {
                    code: "column_not_grantable",
                    message: format!(
                        "`{}` is classification level {}, which is never granted",
                        input.name, column.classification
                    ),
                });
            }
        }
    }
    let report = CheckReport {
        digest: compiled.digest().to_string(),
        name: manifest.name().to_owned(),
        version: manifest.version().to_owned(),
        inputs: manifest
            .inputs()
            .iter()
            .map(|input| format!("{} ({})", input.name, input.column_type.as_str()))
            .collect(),
        outputs: manifest.outputs().iter().map(|output| output.name.clone()).collect(),
        epsilon_per_run: manifest.epsilon_per_run(),
        fuel_per_row: runtime.fuel_per_row(manifest),
    };
    Ok((compiled, report))
}

/// One output of a dev run: the exact aggregate over the dummy rows (they are not real,
/// so seeing it is harmless) beside what the server would release.
#[derive(Debug, Clone)]
pub struct DevOutput {
    pub exact: f64,
    /// A histogram's exact count per bin.
    pub exact_bins: Option<Vec<f64>>,
    pub released: ReleasedOutput,
}

/// The disclosure threshold a dev run applies (a dataset's default).
pub const DEV_MIN_GROUP_SIZE: u32 = 10;

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
    let selected: Vec<_> = compiled
        .manifest()
        .inputs()
        .iter()
        .map(|input| schema.column(&input.name).map(|(index, column)| (index, column.column_type)))
        .collect::<Option<_>>()
        .context("the manifest reads a column the schema does not have; run `sluice dev check --schema` first")?;
    let csv = dummy_csv(schema, rows, seed);
    let mut batches: Vec<Batch> = Vec::new();
    parse_chunks(csv.as_bytes(), schema, false, |chunk, _, _| {
        batches.extend(batches_of(chunk, &selected));
        Ok(())
    })
    .map_err(|error| anyhow::anyhow!("dummy data did not parse: {error}"))?;
    let outputs = runtime.run(compiled, batches.into_iter().map(Ok::<_, std::convert::Infallible>))?;
    let labels = group_labels(compiled.manifest(), schema);
    let released =
        release_outputs(compiled.manifest(), &outputs, rows, schema.rows_per_person(), DEV_MIN_GROUP_SIZE, &labels)?;
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

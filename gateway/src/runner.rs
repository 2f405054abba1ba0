//! The runner: the sandbox runtime, the cache of compiled models, the slots that bound how
//! many runs execute at once, and the one function that turns a model's per-row outputs
//! into a release ([`run_and_release`]). Real runs, the automated review's dummy run and
//! `sluice dev run` all go through it, so a model is judged on dummy rows exactly as it
//! will be run on real ones.
//!
//! It owns executing approved code and handing its outputs to `sluice_policies`'s release.
//! It must not decide who may run (the gate did), touch the store, or return an output
//! unnoised except [`dummy_run`]'s, whose rows are made up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sluice_policies::{
    AggregateKind, HistogramRule, Noise, OutputRule, QuantileRule, ReleaseContext, ReleaseError, ReleaseSpec,
    ReleasedOutput, StreamingRelease, release_outputs,
};
use sluice_sandbox::{
    Batch, CompiledModel, DEFAULT_CANDIDATES, Manifest, ModelOutputs, NoiseKind, OutputKind, Runtime, RuntimeLimits,
    SandboxError,
};
use sluice_vault::dummy::dummy_csv;
use sluice_vault::pseudonym::PseudonymKey;
use sluice_vault::schema::{DatasetSchema, MAX_GRANTABLE_LEVEL};
use sluice_vault::{batches_of, parse_chunks};

/// The sandbox runtime and what it keeps between runs.
pub struct Runner {
    runtime: Arc<Runtime>,
    /// Compiled models by digest: compiled here at submission, never loaded from outside.
    compiled: Mutex<HashMap<String, CompiledModel>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("free_slots", &self.slots.available_permits()).finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(limits: RuntimeLimits) -> anyhow::Result<Self> {
        let slots = limits.max_concurrent_runs as usize;
        let runtime = Runtime::new(limits).context("starting the sandbox runtime")?;
        Ok(Self {
            runtime: Arc::new(runtime),
            compiled: Mutex::new(HashMap::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
        })
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Waits for a free sandbox slot; the run holds it until the permit drops.
    pub async fn slot(&self) -> anyhow::Result<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.context("the run slots are closed")
    }

    /// How many sandbox slots are free now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Remembers a model compiled at submission.
    pub fn remember(&self, compiled: &CompiledModel) {
        self.cache().insert(compiled.digest().to_string(), compiled.clone());
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CompiledModel>> {
        self.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Compiled code by digest; compiles (here, never from outside) on a cache miss.
    pub async fn compiled(&self, digest: &str, module: &[u8], manifest: Manifest) -> anyhow::Result<CompiledModel> {
        if let Some(compiled) = self.cache().get(digest) {
            return Ok(compiled.clone());
        }
        let runtime = self.runtime.clone();
        let module = module.to_vec();
        let compiled = tokio::task::spawn_blocking(move || runtime.compile(&module, manifest))
            .await
            .context("the compile task panicked")?
            .map_err(|error| anyhow::anyhow!("an approved model no longer compiles: {error}"))?;
        self.cache().insert(digest.into(), compiled.clone());
        Ok(compiled)
    }
}

/// What a release is calibrated to, besides the manifest: the dataset's public facts.
#[derive(Debug, Clone)]
pub struct ReleaseFacts {
    pub rows: usize,
    pub rows_per_person: u32,
    pub min_group_size: u32,
    /// The declared domain of the manifest's group-by column, when it has one.
    pub group_labels: Vec<String>,
}

impl ReleaseFacts {
    pub fn new(manifest: &Manifest, schema: &DatasetSchema, rows: usize, min_group_size: u32) -> Self {
        Self {
            rows,
            rows_per_person: schema.rows_per_person(),
            min_group_size,
            group_labels: group_labels(manifest, schema),
        }
    }
}

/// The declared domain of the manifest's group-by column, from the dataset schema.
pub fn group_labels(manifest: &Manifest, schema: &DatasetSchema) -> Vec<String> {
    manifest
        .group_by()
        .and_then(|index| schema.column(&manifest.inputs()[index].name))
        .map(|(_, column)| column.domain.clone())
        .unwrap_or_default()
}

/// How each output the manifest declares is released, in its order.
pub fn release_specs(manifest: &Manifest) -> Vec<ReleaseSpec> {
    manifest
        .outputs()
        .iter()
        .map(|output| {
            let (lower, upper) = output.bounds();
            let kind = match output.kind {
                OutputKind::Histogram => {
                    return ReleaseSpec::Histogram(HistogramRule {
                        name: output.name.clone(),
                        bins: output.bins.clone(),
                        epsilon: output.epsilon,
                    });
                }
                OutputKind::Quantile => {
                    return ReleaseSpec::Quantile(QuantileRule {
                        name: output.name.clone(),
                        lower,
                        upper,
                        alpha: output.alpha.unwrap_or(0.5),
                        candidates: output.candidates.unwrap_or(DEFAULT_CANDIDATES),
                        epsilon: output.epsilon,
                    });
                }
                OutputKind::Count => AggregateKind::Count,
                OutputKind::Mean => AggregateKind::Mean,
                OutputKind::Sum => AggregateKind::Sum,
            };
            let noise = match output.noise {
                NoiseKind::Gaussian => Noise::Gaussian,
                NoiseKind::Laplace => Noise::Laplace,
            };
            ReleaseSpec::Aggregate {
                rule: OutputRule { name: output.name.clone(), kind, lower, upper, epsilon: output.epsilon },
                noise,
            }
        })
        .collect()
}

/// Releases the model's per-row outputs as the manifest declares.
pub fn release(
    manifest: &Manifest,
    outputs: &ModelOutputs,
    facts: &ReleaseFacts,
) -> Result<Vec<ReleasedOutput>, ReleaseError> {
    let specs = release_specs(manifest);
    let columns: Vec<&[f64]> = (0..specs.len()).map(|index| outputs.column(index)).collect();
    let groups = manifest.group_by().map(|_| (outputs.groups(), facts.group_labels.as_slice()));
    let context = ReleaseContext {
        rows: facts.rows,
        rows_per_person: facts.rows_per_person,
        min_group_size: facts.min_group_size,
        groups,
    };
    release_outputs(&specs, &columns, &context)
}

/// Why a run produced no release.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("the model mapped {mapped} rows of {rows}")]
    RowCount { mapped: usize, rows: usize },
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

/// Releases what the model computed over every row: the one path from per-row outputs to
/// a release. Also returns the raw outputs, which only [`dummy_run`] may show.
fn release_all(
    compiled: &CompiledModel,
    outputs: ModelOutputs,
    facts: &ReleaseFacts,
) -> Result<(Vec<ReleasedOutput>, ModelOutputs), RunError> {
    if outputs.rows() != facts.rows {
        return Err(RunError::RowCount { mapped: outputs.rows(), rows: facts.rows });
    }
    let released = release(compiled.manifest(), &outputs, facts)?;
    Ok((released, outputs))
}

/// How many parts a run over `chunk_count` chunks is split into with `workers` per run:
/// whole chunks, at least one part. Public facts only, so the visibility delay can count on
/// it before any data is read.
pub fn run_parts(workers: u32, chunk_count: i64) -> usize {
    (workers.max(1) as usize).min(usize::try_from(chunk_count).unwrap_or(0).max(1))
}

/// One part's share of a streaming release: it takes the part's outputs a batch at a time
/// and keeps only what the release needs (see [`StreamingRelease`]).
struct ReleaseSink {
    release: StreamingRelease,
    grouped: bool,
}

impl sluice_sandbox::OutputSink for ReleaseSink {
    fn take(&mut self, outputs: &ModelOutputs) {
        let columns: Vec<&[f64]> = (0..self.release.outputs()).map(|index| outputs.column(index)).collect();
        self.release.observe(&columns, self.grouped.then(|| outputs.groups()));
    }
}

/// A real run over consecutive `parts` of the rows, mapped at once (one sandbox instance
/// and thread each, see [`Runtime::run_parts_into`]) and released in one pass: the per-row
/// outputs are never all kept (only a histogram's, a quantile's or a Gaussian output's
/// values are). Returns the released outputs and how many rows fell back to their
/// defaults (for the regulators' audit entry).
pub fn run_and_release<I, B, E>(
    runtime: &Runtime,
    compiled: &CompiledModel,
    parts: Vec<I>,
    facts: &ReleaseFacts,
) -> Result<(Vec<ReleasedOutput>, sluice_sandbox::Fallbacks), RunError>
where
    I: Iterator<Item = Result<B, E>> + Send,
    B: std::borrow::Borrow<Batch>,
    E: std::fmt::Display,
{
    let manifest = compiled.manifest();
    let grouped = manifest.group_by().is_some();
    let labels = grouped.then(|| facts.group_labels.clone());
    let sinks = parts
        .into_iter()
        .map(|part| {
            let release = StreamingRelease::new(
                release_specs(manifest),
                facts.rows,
                facts.rows_per_person,
                facts.min_group_size,
                labels.clone(),
            );
            (part, ReleaseSink { release, grouped })
        })
        .collect();
    let mut mapped = 0;
    let mut fallbacks = sluice_sandbox::Fallbacks::default();
    let mut whole: Option<StreamingRelease> = None;
    for (sink, rows, part_fallbacks) in runtime.run_parts_into(compiled, sinks)? {
        mapped += rows;
        fallbacks.add(part_fallbacks);
        match &mut whole {
            Some(whole) => whole.merge(sink.release),
            None => whole = Some(sink.release),
        }
    }
    if mapped != facts.rows {
        return Err(RunError::RowCount { mapped, rows: facts.rows });
    }
    let whole = whole.ok_or(RunError::RowCount { mapped, rows: facts.rows })?;
    Ok((whole.release()?, fallbacks))
}

/// How the rows of versions joined on their keys are laid out for the model: which columns
/// each dataset reads after its key, and where each of the manifest's inputs is among the
/// joined columns (the first dataset's, then each joined dataset's in the scenario's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinLayout {
    /// The first dataset's key column, then the inputs it holds, in manifest order.
    pub first_columns: Vec<String>,
    /// Each joined dataset's key column, then the inputs it holds, in manifest order.
    pub joined_columns: Vec<Vec<String>>,
    /// For each manifest input, its index among the joined batch's columns.
    pub order: Vec<usize>,
}

impl JoinLayout {
    /// Splits the manifest's inputs between the schemas (an input is the first's if it has
    /// the column, else the first joined one's that has it). `None` if a schema declares no
    /// key or an input is in none.
    pub fn new(manifest: &Manifest, first: &DatasetSchema, joined: &[&DatasetSchema]) -> Option<Self> {
        let mut keys = Vec::with_capacity(joined.len() + 1);
        for schema in std::iter::once(first).chain(joined.iter().copied()) {
            keys.push(schema.key_column()?);
        }
        let mut columns: Vec<Vec<String>> = keys.iter().map(|key| vec![(*key).to_owned()]).collect();
        let mut sides = Vec::new();
        for input in manifest.inputs() {
            let side = std::iter::once(first)
                .chain(joined.iter().copied())
                .zip(&keys)
                .position(|(schema, key)| schema.column(&input.name).is_some() && input.name != *key)?;
            sides.push((side, columns[side].len() - 1));
            columns[side].push(input.name.clone());
        }
        let mut starts = vec![0];
        for side in &columns {
            starts.push(starts.last().copied().unwrap_or(0) + side.len() - 1);
        }
        let order = sides.into_iter().map(|(side, index)| starts[side] + index).collect();
        let mut columns = columns.into_iter();
        let first_columns = columns.next()?;
        Some(Self { first_columns, joined_columns: columns.collect(), order })
    }

    /// The types of a side's columns after its key, from `schema`.
    pub fn types(columns: &[String], schema: &DatasetSchema) -> Vec<sluice_sandbox::ColumnType> {
        columns[1..].iter().filter_map(|name| schema.column(name).map(|(_, column)| column.column_type)).collect()
    }
}

/// A real run over versions left-joined on their level-4 keys inside the host
/// ([`sluice_vault::join::join_many`]): the join runs on a thread of its own and hands its
/// batches, reordered to the manifest's inputs, to the sandbox through a small bounded
/// channel, so neither side's rows nor the joined rows are ever all held (beyond the join's
/// own memory budget, past which it spills sealed partitions). Released exactly as a run
/// over one version: [`run_and_release`], in one part.
///
/// Each joined side holds at most one row per key and the bound is the first side's rows
/// per key, so the joined rows are exactly the first side's rows: `facts.rows` is the first
/// version's public row count, and a joined row count that differed is refused.
pub fn run_joined_and_release<L, R>(
    runtime: &Runtime,
    compiled: &CompiledModel,
    first: sluice_vault::join::JoinSide<L>,
    joined: Vec<sluice_vault::join::JoinSide<R>>,
    layout: &JoinLayout,
    facts: &ReleaseFacts,
) -> Result<(Vec<ReleasedOutput>, sluice_sandbox::Fallbacks), RunError>
where
    L: Iterator<Item = anyhow::Result<Batch>> + Send,
    R: Iterator<Item = anyhow::Result<Batch>> + Send,
{
    use sluice_vault::join::{JoinKind, JoinPlan, join_many};
    let plan = JoinPlan::new(JoinKind::Left, facts.rows_per_person.max(1));
    let (sender, receiver) = std::sync::mpsc::sync_channel::<anyhow::Result<Batch>>(4);
    let spill_dir = std::env::temp_dir();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let outcome = join_many(first, joined, &plan, &spill_dir, |batch| {
                let mut taken: Vec<Option<sluice_sandbox::Column>> = batch.columns.into_iter().map(Some).collect();
                let columns = layout
                    .order
                    .iter()
                    .map(|&index| taken.get_mut(index).and_then(Option::take))
                    .collect::<Option<Vec<_>>>()
                    .context("a joined batch lacks a column the manifest reads")?;
                sender
                    .send(Ok(Batch { rows: batch.rows, columns }))
                    .map_err(|_| anyhow::anyhow!("the sandbox stopped taking joined rows"))
            });
            if let Err(error) = outcome {
                // The sandbox may have stopped already (its own failure is the run's).
                let _ = sender.send(Err(error));
            }
        });
        run_and_release(runtime, compiled, vec![receiver.into_iter()], facts)
    })
}

/// The disclosure threshold a dummy run applies (a dataset's default).
pub const DUMMY_MIN_GROUP_SIZE: u32 = 10;

/// A run on dummy rows: the release, and the raw per-row outputs (the rows are made up,
/// so showing them is harmless).
#[derive(Debug)]
pub struct DummyRun {
    pub released: Vec<ReleasedOutput>,
    pub outputs: ModelOutputs,
}

/// One output's exact aggregate over dummy rows (they are made up, so seeing it is
/// harmless), to compare with what the release made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactOnDummy {
    pub exact: f64,
    /// A histogram's exact count per bin.
    pub exact_bins: Option<Vec<f64>>,
}

impl DummyRun {
    /// Each declared output's exact value over the run's `rows` dummy rows, in the
    /// manifest's order: a histogram's counts, a quantile's exact rank, a clamped sum or
    /// mean, a count (grouped outputs are taken over all rows).
    pub fn exact_values(&self, compiled: &CompiledModel, rows: usize) -> Vec<ExactOnDummy> {
        compiled
            .manifest()
            .outputs()
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let values = self.outputs.column(index);
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
                        ExactOnDummy { exact: bins.iter().sum(), exact_bins: Some(bins) }
                    }
                    OutputKind::Quantile => {
                        let mut sorted: Vec<f64> = values.iter().map(|value| value.clamp(lower, upper)).collect();
                        sorted.sort_by(f64::total_cmp);
                        let rank =
                            (spec.alpha.unwrap_or(0.5) * (sorted.len().saturating_sub(1)) as f64).round() as usize;
                        ExactOnDummy { exact: sorted.get(rank).copied().unwrap_or(f64::NAN), exact_bins: None }
                    }
                    kind => {
                        let clamped_sum: f64 = values.iter().map(|value| value.clamp(lower, upper)).sum();
                        let exact = if kind == OutputKind::Mean { clamped_sum / rows as f64 } else { clamped_sum };
                        ExactOnDummy { exact, exact_bins: None }
                    }
                }
            })
            .collect()
    }
}

/// Runs `compiled` over `rows` dummy rows made from `schema` with `seed`, exactly as a real
/// run would (same limits, same release).
pub fn dummy_run(
    runtime: &Runtime,
    compiled: &CompiledModel,
    schema: &DatasetSchema,
    rows: usize,
    seed: u64,
) -> anyhow::Result<DummyRun> {
    let selected: Vec<_> = compiled
        .manifest()
        .inputs()
        .iter()
        .map(|input| schema.column(&input.name).map(|(index, column)| (index, column.column_type)))
        .collect::<Option<_>>()
        .context("the manifest reads a column the schema does not have; run `sluice dev check --schema` first")?;
    let csv = dummy_csv(schema, rows, seed);
    let mut batches: Vec<Batch> = Vec::new();
    // Dummy codes are pseudonymised under a public secret: they are made up, and no real
    // dataset's pseudonym is ever computed outside an ingest.
    let pseudonyms = PseudonymKey::for_dummy_data();
    parse_chunks(csv.as_bytes(), schema, &pseudonyms, false, |chunk, _, _| {
        batches.extend(batches_of(chunk, &selected));
        Ok(())
    })
    .map_err(|error| anyhow::anyhow!("dummy data did not parse: {error}"))?;
    let facts = ReleaseFacts::new(compiled.manifest(), schema, rows, DUMMY_MIN_GROUP_SIZE);
    let batches = batches.into_iter().map(Ok::<_, std::convert::Infallible>);
    match runtime
        .run(compiled, batches)
        .map_err(RunError::from)
        .and_then(|outputs| release_all(compiled, outputs, &facts))
    {
        Ok((released, outputs)) => Ok(DummyRun { released, outputs }),
        Err(RunError::Sandbox(error)) => Err(error.into()),
        Err(error) => Err(error.into()),
    }
}

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
    /// The most fuel a row can use by its code, if nothing in it loops or recurses: what a
    /// run's visibility time is priced from when it is below `fuel_per_row`.
    pub fuel_bound: Option<u64>,
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
        check_columns(manifest, schema)?;
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
        fuel_bound: compiled.fuel_bound(),
    };
    Ok((compiled, report))
}

/// Every input the manifest reads exists in `schema` with the same type and a grantable level.
pub fn check_columns(manifest: &Manifest, schema: &DatasetSchema) -> Result<(), Refusal> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{JoinLayout, run_parts};
    use sluice_sandbox::Manifest;
    use sluice_vault::schema::DatasetSchema;

    fn schema(source: &str) -> DatasetSchema {
        DatasetSchema::from_toml(source).expect("an example schema")
    }

    /// Three departments' data (seed 002 item 16): each input is read from the dataset that
    /// holds it, after that dataset's key, and the model's columns come in its own order.
    #[test]
    fn a_layout_reads_each_input_from_its_own_department_in_the_manifests_order() {
        let tax = schema(include_str!("../../examples/data/enterprise-tax.schema.toml"));
        let insurance = schema(include_str!("../../examples/data/social-insurance.schema.toml"));
        let market = schema(include_str!("../../examples/data/market-regulation.schema.toml"));
        let manifest = Manifest::from_toml(
            r#"
abi_version = 2
name = "three-departments"
version = "1.0.0"
fuel_per_row = 1000
inputs = [
  { name = "abnormal_operations", type = "bool" },
  { name = "employees", type = "i64" },
  { name = "years_operating", type = "f64" },
  { name = "registered_capital_cny", type = "f64" },
  { name = "industry", type = "category" },
]
[[outputs]]
name = "listed"
kind = "count"
epsilon = 0.5
"#,
        )
        .expect("a manifest");
        let layout = JoinLayout::new(&manifest, &tax, &[&insurance, &market]).expect("a layout");
        assert_eq!(layout.first_columns, ["enterprise_code", "years_operating", "industry"]);
        assert_eq!(
            layout.joined_columns,
            [
                vec!["enterprise_code", "employees"],
                vec!["enterprise_code", "abnormal_operations", "registered_capital_cny"]
            ]
        );
        // Joined batches hold years_operating, industry | employees | abnormal_operations,
        // registered_capital_cny: the manifest's order picks them out.
        assert_eq!(layout.order, [3, 2, 0, 4, 1]);
        // The same manifest without the third department's data: no layout.
        assert_eq!(JoinLayout::new(&manifest, &tax, &[&insurance]), None);
        // One joined dataset, as a two-department scenario has it.
        let two = Manifest::from_toml(&manifest_reading(&["employees", "industry"])).expect("a manifest");
        let layout = JoinLayout::new(&two, &tax, &[&insurance]).expect("a layout");
        assert_eq!((layout.first_columns.len(), layout.order.as_slice()), (2, [1, 0].as_slice()));
    }

    fn manifest_reading(columns: &[&str]) -> String {
        let types = |name: &str| if name == "industry" { "category" } else { "i64" };
        let inputs: Vec<String> =
            columns.iter().map(|name| format!("{{ name = \"{name}\", type = \"{}\" }}", types(name))).collect();
        format!(
            "abi_version = 2\nname = \"m\"\nversion = \"1.0.0\"\nfuel_per_row = 1000\ninputs = [{}]\n\
             [[outputs]]\nname = \"n\"\nkind = \"count\"\nepsilon = 0.5\n",
            inputs.join(", ")
        )
    }

    #[test]
    fn a_run_has_one_part_per_worker_and_never_more_than_its_chunks() {
        assert_eq!(run_parts(2, 16), 2);
        assert_eq!(run_parts(4, 3), 3);
        assert_eq!(run_parts(2, 1), 1);
        // An empty version and a configuration of no workers still run in one part.
        assert_eq!(run_parts(4, 0), 1);
        assert_eq!(run_parts(0, 5), 1);
    }
}

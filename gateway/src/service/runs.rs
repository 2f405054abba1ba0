//! Runs: the gate's decision, the budget charge, the sandboxed execution over decrypted
//! chunks, and the DP release; plus budgets and the regulator's audit export.
//!
//! The charge and its audit entry commit before any data is read, and are never refunded:
//! a refund would tell the operator whether the model failed on the data. The release and
//! its audit entry commit together afterwards. A run's result becomes visible at a time
//! fixed before data is read, and rows the model failed on are counted only in the audit
//! log, so neither the time nor the outcome tells the operator what the model did on the
//! data. Raw model outputs never leave this module except through `sluice_policies::release`.

use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sluice_policies::{
    Action, AggregateKind, AuthorisationFacts, Denial, DenialReason, Epsilon, HistogramRule, ModelFacts, ModelState,
    OutputRule, PrivacyBudget, QuantileRule, ReleasedGroups, ReleasedHistogram, ReleasedValue, Role, RunFacts,
    authorise_run, check_epsilon_per_run, check_run_rate, release, release_gaussian, release_grouped,
    release_histogram, release_quantile, review_result,
};
use sluice_sandbox::{
    CompiledModel, DEFAULT_CANDIDATES, Fallbacks, Manifest, ModelDigest, NoiseKind, OutputKind, SandboxError,
};

use super::{App, Caller};
use crate::audit::{AuditOutcome, Receipt};
use crate::error::{ServiceError, ServiceResult};
use crate::schema::DatasetSchema;
use crate::store::{AuthorisationRow, RunRow, Store, VersionRow, parse_time};
use crate::vault::{ChunkContext, VersionReader};

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

/// What an operator sees of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunView {
    pub run_id: i64,
    pub state: String,
    pub dataset_version: i64,
    pub rows: i64,
    pub outputs: Vec<ReleasedOutput>,
    pub epsilon_charged: f64,
    /// Filled on the response to the run itself; a later fetch reads the live budget.
    pub authorisation_epsilon_remaining: f64,
    /// Proof that the release was logged: its audit entry, a signed checkpoint covering it
    /// and the inclusion proof (`sluice audit verify-receipt` checks it offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// When the result became visible: fixed before any data was read, from the row count
    /// and the model's declared fuel per row, never from what the model did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BudgetView {
    pub authorisation_id: i64,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
    pub epsilon_remaining: f64,
    pub dataset_epsilon_total: f64,
    pub dataset_epsilon_spent: f64,
}

fn released_output(value: ReleasedValue) -> ReleasedOutput {
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

fn released_groups(released: ReleasedGroups) -> ReleasedOutput {
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

fn released_histogram(histogram: ReleasedHistogram) -> ReleasedOutput {
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

/// The declared domain of the manifest's group-by column, from the dataset schema.
pub fn group_labels(manifest: &Manifest, schema: &DatasetSchema) -> Vec<String> {
    manifest
        .group_by()
        .and_then(|index| schema.column(&manifest.inputs()[index].name))
        .map(|(_, column)| column.domain.clone())
        .unwrap_or_default()
}

/// Releases every output the manifest declares, in its order, from the model's per-row
/// values: scalar aggregates through [`release`] (or [`release_grouped`] when the manifest
/// groups by a column, whose declared domain is `group_labels`), histograms through
/// [`release_histogram`], with the dataset's minimum group size as the disclosure threshold.
pub fn release_outputs(
    manifest: &Manifest,
    outputs: &sluice_sandbox::ModelOutputs,
    rows: usize,
    rows_per_person: u32,
    min_group_size: u32,
    group_labels: &[String],
) -> Result<Vec<ReleasedOutput>, sluice_policies::ReleaseError> {
    manifest
        .outputs()
        .iter()
        .enumerate()
        .map(|(index, output)| {
            let values = outputs.column(index);
            if output.kind == OutputKind::Histogram {
                let rule =
                    HistogramRule { name: output.name.clone(), bins: output.bins.clone(), epsilon: output.epsilon };
                return release_histogram(&rule, values, rows_per_person, min_group_size).map(released_histogram);
            }
            let (lower, upper) = output.bounds();
            if output.kind == OutputKind::Quantile {
                let rule = QuantileRule {
                    name: output.name.clone(),
                    lower,
                    upper,
                    alpha: output.alpha.unwrap_or(0.5),
                    candidates: output.candidates.unwrap_or(DEFAULT_CANDIDATES),
                    epsilon: output.epsilon,
                };
                let released = release_quantile(&rule, values, rows, rows_per_person)?;
                return Ok(ReleasedOutput {
                    name: released.name,
                    kind: "quantile".into(),
                    value: Some(released.value),
                    epsilon: released.epsilon,
                    noise_scale: 0.0,
                    ci95_half_width: (upper - lower) / (rule.candidates - 1) as f64 / 2.0,
                    bins: None,
                    groups: None,
                    mechanism: "exponential".into(),
                    rank_error_95: Some(released.rank_error_95),
                });
            }
            let kind = match output.kind {
                OutputKind::Count => AggregateKind::Count,
                OutputKind::Mean => AggregateKind::Mean,
                OutputKind::Sum | OutputKind::Histogram | OutputKind::Quantile => AggregateKind::Sum,
            };
            let rule = OutputRule { name: output.name.clone(), kind, lower, upper, epsilon: output.epsilon };
            if output.noise == NoiseKind::Gaussian {
                let released = release_gaussian(&rule, values, rows, rows_per_person)?;
                return Ok(ReleasedOutput { mechanism: "gaussian".into(), ..released_output(released) });
            }
            if manifest.group_by().is_some() {
                let grouped =
                    release_grouped(&rule, values, outputs.groups(), group_labels, rows_per_person, min_group_size)?;
                return Ok(released_groups(grouped));
            }
            let mut released = release(&[rule], &[values], rows, rows_per_person)?;
            Ok(released_output(released.remove(0)))
        })
        .collect()
}

fn authorisation_facts(row: &AuthorisationRow) -> anyhow::Result<AuthorisationFacts> {
    Ok(AuthorisationFacts {
        id: row.id,
        operator_id: row.operator_id,
        columns: serde_json::from_str(&row.columns_json).context("stored columns")?,
        valid_from: parse_time(&row.valid_from)?,
        valid_until: parse_time(&row.valid_until)?,
        revoked: row.revoked_at.is_some(),
        budget: budget(row.epsilon_total, row.epsilon_spent)?,
    })
}

pub(super) fn budget(total: i64, spent: i64) -> anyhow::Result<PrivacyBudget> {
    PrivacyBudget::new(Epsilon::from_units(total as u64), Epsilon::from_units(spent as u64))
        .map_err(|denial| anyhow::anyhow!("stored budget is inconsistent: {}", denial.message))
}

/// Everything a permitted run needs, gathered before the charge.
struct PreparedRun {
    compiled: CompiledModel,
    version: VersionRow,
    schema: DatasetSchema,
    epsilon: Epsilon,
    /// Unwrapped before the charge, so a key problem never costs the operator budget.
    key: crate::keys::AeadKey,
    /// The dataset's disclosure threshold for histogram bins.
    min_group_size: u32,
    /// Releases under this authorisation wait for data product review.
    hold_outputs: bool,
}

/// Assumed cost of one unit of fuel when fixing a run's visibility time: a row that uses
/// all its fuel at this speed still finishes before its result is due. Measured speeds
/// are 0.2 to 0.4 ns per unit on the reference models (ARCHITECTURE.md).
const VISIBILITY_NANOS_PER_FUEL: f64 = 0.5;

/// Why a charged run did not release, or what it released with its fallback count.
type Executed = Result<(Vec<ReleasedOutput>, Fallbacks), RunFailure>;

impl App {
    /// Runs `model_id` under `authorisation_id` and returns the DP release once it is
    /// visible.
    ///
    /// The visibility time is fixed before the charge, from public facts only (the row
    /// count, the model's declared fuel per row and a base delay); the answer is held until
    /// then, so its timing says nothing about what the model did on the data. The run
    /// executes in a task of its own: a client that hangs up leaves it to finish, release
    /// and be logged, and the result is there to fetch.
    pub async fn run(
        self: &Arc<Self>,
        caller: &Caller,
        authorisation_id: i64,
        model_id: i64,
    ) -> ServiceResult<RunView> {
        let action = Action::RunModel;
        let object = format!("authorisation:{authorisation_id}");
        self.guard(caller, action, &object).await?;
        let prepared = self.prepare_run(caller, authorisation_id, model_id).await?;
        let started = self.now();
        // The wait is timed on the monotonic clock: the gateway's clock may be set by hand.
        let started_instant = tokio::time::Instant::now();
        let delay = self.visibility_delay(&prepared);
        let visible_at = started + delay;
        let run_id = self.charge(caller, authorisation_id, model_id, &prepared, visible_at).await?;
        let app = Arc::clone(self);
        let task_caller = caller.clone();
        let task = tokio::spawn(async move {
            let outcome = app.execute(authorisation_id, &prepared).await;
            app.finish(&task_caller, run_id, authorisation_id, &prepared, outcome).await
        });
        let outcome = task.await.map_err(|error| anyhow::anyhow!("the run task failed: {error}"))?;
        wait_until_visible(started_instant, delay).await;
        let mut view = outcome?;
        view.visible_at = Some(crate::store::format_time(visible_at));
        Ok(view)
    }

    /// How long after its start a run's result becomes visible: a base delay plus the time
    /// the model may take if every row uses all its fuel.
    fn visibility_delay(&self, prepared: &PreparedRun) -> time::Duration {
        let base = self.visibility_base_ms.load(std::sync::atomic::Ordering::Relaxed);
        let fuel = self.runtime.fuel_per_row(prepared.compiled.manifest()) as f64;
        let rows = prepared.version.row_count.max(0) as f64;
        let model_millis = (rows * fuel * VISIBILITY_NANOS_PER_FUEL / 1e6).ceil() as i64;
        time::Duration::milliseconds(i64::try_from(base).unwrap_or(i64::MAX).saturating_add(model_millis))
    }

    async fn prepare_run(&self, caller: &Caller, authorisation_id: i64, model_id: i64) -> ServiceResult<PreparedRun> {
        let action = Action::RunModel.as_str();
        let object = format!("authorisation:{authorisation_id}");
        let authorisation = self.store.authorisation(authorisation_id).await?;
        let Some(model) = self.store.model(model_id).await? else {
            return Err(self.not_found(caller, action, "model", model_id).await);
        };
        let manifest =
            Manifest::from_toml(&model.manifest_toml).map_err(|error| anyhow::anyhow!("stored manifest: {error}"))?;
        // The digest is recomputed from the stored bytes: a byte changed after review
        // (even in the database) no longer matches the approved digest.
        let digest_to_run = ModelDigest::of(&model.module, &manifest).to_string();
        let submitter = self.principal(model.submitter_id).await?;
        let model_facts = ModelFacts {
            state: ModelState::parse(&model.state).context("stored model state")?,
            submitter_id: submitter.id,
            submitter_organisation: submitter.organisation,
            authorisation_id: model.authorisation_id,
            approved_digest: model.digest.clone(),
        };
        let authorisation_facts = authorisation.as_ref().map(authorisation_facts).transpose()?;
        let dataset_id = authorisation.as_ref().map_or(0, |row| row.dataset_id);
        let dataset = self.store.dataset(dataset_id).await?;
        let dataset_budget = match &dataset {
            Some(dataset) => budget(dataset.epsilon_total, dataset.epsilon_spent)?,
            None => {
                PrivacyBudget::new(Epsilon::ZERO, Epsilon::ZERO).map_err(|denial| anyhow::anyhow!(denial.message))?
            }
        };
        let columns_read: Vec<String> = manifest.inputs().iter().map(|input| input.name.clone()).collect();
        let epsilon =
            Epsilon::from_f64(manifest.epsilon_per_run()).map_err(|denial| ServiceError::invalid(denial.message))?;
        let facts = RunFacts {
            operator: &caller.principal,
            authorisation: authorisation_facts.as_ref(),
            model: &model_facts,
            digest_to_run: &digest_to_run,
            columns_read: &columns_read,
            epsilon,
            dataset_budget,
        };
        if let Err(denial) = authorise_run(&facts, self.now()) {
            return Err(self.deny(caller, action, object, denial).await);
        }
        let remaining = authorisation_facts.as_ref().map_or(Epsilon::ZERO, |facts| facts.budget.remaining());
        if let Err(denial) = check_epsilon_per_run(epsilon, self.min_epsilon_per_run(), remaining) {
            return Err(self.deny(caller, action, object, denial).await);
        }
        let dataset = dataset.context("authorised dataset")?;
        if dataset.destroyed_at.is_some() {
            let denial = Denial::new(
                DenialReason::DatasetDestroyed,
                "the dataset was destroyed; its data can no longer be read",
            );
            return Err(self.deny(caller, action, object, denial).await);
        }
        let schema = DatasetSchema::from_toml(&dataset.schema_toml)
            .map_err(|error| anyhow::anyhow!("stored schema: {error}"))?;
        // The version row and the master key are read under one lock, so a rotation cannot
        // slip between reading a wrapped key and unwrapping it.
        let master = self.master.read().await;
        let Some(version) = self.store.versions(dataset.id).await?.pop() else {
            return Err(ServiceError::invalid("the dataset has no data yet"));
        };
        let context =
            ChunkContext { dataset_id: version.dataset_id, version: version.version, schema_hash: schema.hash() };
        let key = master
            .unwrap_key(&version.wrapped_key, &context.key_context())
            .map_err(|error| anyhow::anyhow!("unwrapping the data key of dataset {}: {error}", dataset.id))?;
        drop(master);
        let compiled = self.compiled_model(&digest_to_run, &model.module, manifest).await?;
        let min_group_size = u32::try_from(dataset.min_group_size).unwrap_or(u32::MAX);
        let hold_outputs = authorisation.as_ref().is_some_and(|row| row.hold_outputs);
        Ok(PreparedRun { compiled, version, schema, epsilon, key, min_group_size, hold_outputs })
    }

    /// Compiled code by digest; compiles (here, never from outside) on a cache miss.
    async fn compiled_model(&self, digest: &str, module: &[u8], manifest: Manifest) -> ServiceResult<CompiledModel> {
        if let Some(compiled) = self.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(digest) {
            return Ok(compiled.clone());
        }
        let runtime = self.runtime.clone();
        let module = module.to_vec();
        let compiled = tokio::task::spawn_blocking(move || runtime.compile(&module, manifest))
            .await
            .context("the compile task panicked")?
            .map_err(|error| anyhow::anyhow!("an approved model no longer compiles: {error}"))?;
        self.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(digest.into(), compiled.clone());
        Ok(compiled)
    }

    /// Debits both budgets and records the start, in one transaction, before any data is
    /// read. The conditional updates make the check and the debit one atomic step.
    async fn charge(
        &self,
        caller: &Caller,
        authorisation_id: i64,
        model_id: i64,
        prepared: &PreparedRun,
        visible_at: time::OffsetDateTime,
    ) -> ServiceResult<i64> {
        let now = self.now();
        let units = prepared.epsilon.units() as i64;
        let mut tx = self.store.begin().await?;
        let recent = Store::runs_since(&mut tx, authorisation_id, now - time::Duration::hours(1)).await?;
        let denial = if let Err(denial) =
            check_run_rate(recent, self.max_runs_per_hour.load(std::sync::atomic::Ordering::Relaxed))
        {
            Some(denial)
        } else if !Store::charge_authorisation(&mut tx, authorisation_id, units).await? {
            // The charge refuses a revoked authorisation too: revocation wins any race.
            let revoked =
                Store::authorisation_in(&mut tx, authorisation_id).await?.is_some_and(|row| row.revoked_at.is_some());
            Some(if revoked {
                Denial::new(DenialReason::AuthorisationRevoked, "the authorisation has been revoked")
            } else {
                Denial::new(DenialReason::BudgetExhausted, "the authorisation's privacy budget is exhausted")
            })
        } else if !Store::charge_dataset(&mut tx, prepared.version.dataset_id, units).await? {
            Some(Denial::new(
                DenialReason::DatasetBudgetExhausted,
                "the dataset's lifetime privacy budget is exhausted",
            ))
        } else {
            None
        };
        if let Some(denial) = denial {
            drop(tx);
            return Err(self
                .deny(caller, Action::RunModel.as_str(), format!("authorisation:{authorisation_id}"), denial)
                .await);
        }
        let row = RunRow {
            id: 0,
            authorisation_id,
            model_id,
            operator_id: caller.principal.id,
            dataset_id: prepared.version.dataset_id,
            dataset_version: prepared.version.version,
            epsilon: units,
            state: "running".into(),
            outcome: None,
            result_json: None,
            visible_at: Some(crate::store::format_time(visible_at)),
        };
        let run_id = Store::insert_run(&mut tx, &row, now).await?;
        let event = Self::event(caller, Action::RunModel.as_str(), format!("run:{run_id}"), AuditOutcome::Ok)
            .detail("authorisation", authorisation_id)
            .detail("model", model_id)
            .detail("digest", prepared.compiled.digest())
            .detail("dataset", prepared.version.dataset_id)
            .detail("dataset_version", prepared.version.version)
            .detail("epsilon_charged", prepared.epsilon)
            .detail("visible_at", crate::store::format_time(visible_at));
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the budget charge")?;
        Ok(run_id)
    }

    /// Decrypts the version chunk by chunk into the sandbox, then releases with DP.
    async fn execute(&self, authorisation_id: i64, prepared: &PreparedRun) -> Executed {
        let _slot = self.run_slots.clone().acquire_owned().await.map_err(|error| RunFailure::Host(error.into()))?;
        // A run queued for a sandbox slot does not start under an authorisation revoked
        // meanwhile; its charge stands (no data was read, but the attempt was made).
        let revoked = self
            .store
            .authorisation(authorisation_id)
            .await
            .map_err(RunFailure::Host)?
            .is_none_or(|row| row.revoked_at.is_some());
        if revoked {
            return Err(RunFailure::Revoked);
        }
        let version = &prepared.version;
        let context = ChunkContext {
            dataset_id: version.dataset_id,
            version: version.version,
            schema_hash: prepared.schema.hash(),
        };
        let key = prepared.key.clone();
        let columns: Vec<String> =
            prepared.compiled.manifest().inputs().iter().map(|input| input.name.clone()).collect();
        let reader = VersionReader::open(
            &self.data_dir.blobs(),
            context,
            version.chunk_count as u64,
            key,
            &prepared.schema,
            &columns,
        )
        .map_err(RunFailure::Host)?;
        let runtime = self.runtime.clone();
        let compiled = prepared.compiled.clone();
        let rows = version.row_count as usize;
        let rows_per_person = prepared.schema.rows_per_person();
        let min_group_size = prepared.min_group_size;
        let group_labels = group_labels(compiled.manifest(), &prepared.schema);
        tracing::info!(authorisation_id, digest = %compiled.digest(), "run started");
        tokio::task::spawn_blocking(move || {
            let outputs = runtime.run(&compiled, reader).map_err(RunFailure::Sandbox)?;
            if outputs.rows() != rows {
                return Err(RunFailure::Host(anyhow::anyhow!("the model mapped {} rows of {rows}", outputs.rows())));
            }
            let released =
                release_outputs(compiled.manifest(), &outputs, rows, rows_per_person, min_group_size, &group_labels)
                    .map_err(|error| RunFailure::Host(error.into()))?;
            Ok((released, outputs.fallbacks()))
        })
        .await
        .map_err(|error| RunFailure::Host(anyhow::anyhow!("the run task panicked: {error}")))?
    }

    /// Stores the release (or the failure) with its audit entry, in one transaction.
    async fn finish(
        &self,
        caller: &Caller,
        run_id: i64,
        authorisation_id: i64,
        prepared: &PreparedRun,
        outcome: Executed,
    ) -> ServiceResult<RunView> {
        let now = self.now();
        let object = format!("run:{run_id}");
        let mut tx = self.store.begin().await?;
        let view = match outcome {
            Ok((values, fallbacks)) => {
                let state = if prepared.hold_outputs { "held" } else { "released" };
                let mut view = RunView {
                    run_id,
                    state: state.into(),
                    dataset_version: prepared.version.version,
                    rows: prepared.version.row_count,
                    outputs: values,
                    epsilon_charged: prepared.epsilon.as_f64(),
                    authorisation_epsilon_remaining: 0.0,
                    receipt: None,
                    visible_at: None,
                };
                let json = serde_json::to_string(&view).context("encoding the release")?;
                Store::finish_run(&mut tx, run_id, state, "ok", Some(&json), now).await?;
                let event = Self::event(caller, "run.release", &object, AuditOutcome::Ok)
                    .detail("authorisation", authorisation_id)
                    .detail("outputs", view.outputs.len())
                    .detail("held", prepared.hold_outputs);
                // Rows the model failed on, which contributed their defaults. The count is
                // not noised, so it goes into an entry of its own that only regulators read
                // (the `run.release` entry travels to the operator inside the receipt). The
                // receipt's entry carries this entry's leaf hash as its `prev`, and the
                // operator knows every other field, so a secret salt keeps the small counts
                // from being found by trying them all against that hash.
                let mut salt = [0u8; 16];
                crate::keys::random_bytes(&mut salt)?;
                let fallback_event = Self::event(caller, "run.fallbacks", &object, AuditOutcome::Ok)
                    .detail("salt", hex::encode(salt))
                    .detail("fallback_rows", fallbacks.total())
                    .detail("trap", fallbacks.trap)
                    .detail("fuel", fallbacks.fuel)
                    .detail("stack", fallbacks.stack)
                    .detail("non_finite", fallbacks.non_finite);
                Store::append_audit(&mut tx, fallback_event, now).await?;
                if prepared.hold_outputs {
                    // Computed and charged, but the operator sees nothing until a reviewer
                    // releases it.
                    view.outputs.clear();
                }
                let seq = Store::append_audit(&mut tx, event, now).await?;
                Store::set_release_seq(&mut tx, run_id, seq).await?;
                Ok((view, seq))
            }
            Err(failure) => {
                let (code, message) = failure.describe();
                tracing::warn!(run_id, code, "run failed");
                Store::finish_run(&mut tx, run_id, "failed", code, None, now).await?;
                // The audit log keeps the detailed code; the operator gets the coarse class.
                let event = Self::event(caller, "run.release", &object, AuditOutcome::Failed).reason(code);
                Store::append_audit(&mut tx, event, now).await?;
                Err(ServiceError::RunFailed { message })
            }
        };
        tx.commit().await.context("committing the run's outcome")?;
        let (mut view, seq) = view?;
        let authorisation = self.store.authorisation(authorisation_id).await?.context("authorisation")?;
        view.authorisation_epsilon_remaining =
            budget(authorisation.epsilon_total, authorisation.epsilon_spent)?.remaining().as_f64();
        view.receipt = Some(self.receipt(seq).await?);
        Ok(view)
    }

    /// A finished run's release, for the operator who ran it (once any data product review
    /// released it), and for reviewers.
    pub async fn run_result(&self, caller: &Caller, run_id: i64) -> ServiceResult<RunView> {
        let action = Action::ReadResult;
        let object = format!("run:{run_id}");
        self.guard(caller, action, &object).await?;
        let is_reviewer = caller.principal.role == Role::Reviewer;
        let run = match self.store.run(run_id).await? {
            Some(run) if run.operator_id == caller.principal.id || is_reviewer => run,
            Some(_) => {
                let denial = Denial::new(DenialReason::AuthorisationNotYours, "the run belongs to another operator");
                return Err(self.deny(caller, action.as_str(), object, denial).await);
            }
            None => return Err(self.not_found(caller, action.as_str(), "run", run_id).await),
        };
        let visible_at = run.visible_at.as_deref().map(parse_time).transpose()?;
        if let Some(visible_at) = visible_at
            && !is_reviewer
            && self.now() < visible_at
        {
            return Err(ServiceError::Conflict(format!(
                "run {run_id} becomes visible at {}",
                crate::store::format_time(visible_at)
            )));
        }
        if !is_reviewer && run.state == "held" {
            return Err(ServiceError::Conflict(format!("run {run_id} is held for data product review")));
        }
        if !is_reviewer && run.state == "withheld" {
            return Err(ServiceError::Conflict(format!("run {run_id} was withheld by data product review")));
        }
        let Some(json) = run.result_json else {
            return Err(ServiceError::Conflict(format!("run {run_id} has no release (state {})", run.state)));
        };
        let mut view: RunView = serde_json::from_str(&json).context("stored release")?;
        view.state = run.state.clone();
        view.visible_at = run.visible_at.clone();
        if let Some(seq) = self.store.release_seq(run_id).await? {
            view.receipt = Some(self.receipt(seq).await?);
        }
        let authorisation = self.store.authorisation(run.authorisation_id).await?.context("authorisation")?;
        view.authorisation_epsilon_remaining =
            budget(authorisation.epsilon_total, authorisation.epsilon_spent)?.remaining().as_f64();
        self.record(Self::event(caller, action.as_str(), object, AuditOutcome::Ok)).await?;
        Ok(view)
    }

    /// Data product review: a reviewer releases a held result to its operator, or withholds it.
    pub async fn review_result(
        &self,
        caller: &Caller,
        run_id: i64,
        approve: bool,
        comment: &str,
    ) -> ServiceResult<RunView> {
        let action = Action::ReviewResult;
        let object = format!("run:{run_id}");
        self.guard(caller, action, &object).await?;
        let Some(run) = self.store.run(run_id).await? else {
            return Err(self.not_found(caller, action.as_str(), "run", run_id).await);
        };
        let operator = self.principal(run.operator_id).await?;
        if let Err(denial) = review_result(run.state == "held", &operator.organisation, &caller.principal) {
            return Err(self.deny(caller, action.as_str(), object, denial).await);
        }
        let state = if approve { "released" } else { "withheld" };
        let now = self.now();
        let mut tx = self.store.begin().await?;
        if !Store::review_held_run(&mut tx, run_id, state).await? {
            return Err(ServiceError::Conflict(format!("run {run_id} was reviewed meanwhile")));
        }
        let event = Self::event(caller, action.as_str(), &object, AuditOutcome::Ok)
            .detail("decision", if approve { "release" } else { "withhold" })
            .detail("note", comment.chars().take(200).collect::<String>());
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the result review")?;
        self.run_result(caller, run_id).await
    }

    /// Budget of one authorisation: its operator, the dataset's provider and regulators.
    pub async fn budget(&self, caller: &Caller, authorisation_id: i64) -> ServiceResult<BudgetView> {
        let action = Action::ReadBudget;
        let object = format!("authorisation:{authorisation_id}");
        self.guard(caller, action, &object).await?;
        let Some(authorisation) = self.store.authorisation(authorisation_id).await? else {
            return Err(self.not_found(caller, action.as_str(), "authorisation", authorisation_id).await);
        };
        let dataset = self.store.dataset(authorisation.dataset_id).await?.context("dataset")?;
        let allowed = match caller.principal.role {
            Role::Operator => authorisation.operator_id == caller.principal.id,
            Role::Provider => dataset.provider_id == caller.principal.id,
            Role::Regulator => true,
            _ => false,
        };
        if !allowed {
            let denial =
                Denial::new(DenialReason::AuthorisationNotYours, "this budget belongs to another operator or provider");
            return Err(self.deny(caller, action.as_str(), object, denial).await);
        }
        let own = budget(authorisation.epsilon_total, authorisation.epsilon_spent)?;
        let view = BudgetView {
            authorisation_id,
            epsilon_total: own.total().as_f64(),
            epsilon_spent: own.spent().as_f64(),
            epsilon_remaining: own.remaining().as_f64(),
            dataset_epsilon_total: Epsilon::from_units(dataset.epsilon_total as u64).as_f64(),
            dataset_epsilon_spent: Epsilon::from_units(dataset.epsilon_spent as u64).as_f64(),
        };
        self.record(Self::event(caller, action.as_str(), object, AuditOutcome::Ok)).await?;
        Ok(view)
    }
}

/// Sleeps until `started + delay`. A run that overran its delay (the host was slower than
/// assumed) is answered at the next whole multiple of the delay, so an overrun shows only
/// as a coarse step, never as a precise duration.
async fn wait_until_visible(started: tokio::time::Instant, delay: time::Duration) {
    let period = delay.unsigned_abs().max(std::time::Duration::from_millis(1));
    let elapsed = started.elapsed();
    let periods = u32::try_from(elapsed.as_nanos() / period.as_nanos()).unwrap_or(u32::MAX).saturating_add(1);
    tokio::time::sleep_until(started + period.saturating_mul(periods)).await;
}

/// Why a charged run did not release.
enum RunFailure {
    Sandbox(SandboxError),
    Host(anyhow::Error),
    /// The authorisation was revoked while the run waited for a sandbox slot.
    Revoked,
}

impl RunFailure {
    /// The detailed code for the audit log, and the coarse message for the operator.
    fn describe(&self) -> (&'static str, &'static str) {
        match self {
            RunFailure::Sandbox(error) => (error.code(), error.outcome().message()),
            RunFailure::Revoked => ("authorisation_revoked", "run stopped: the authorisation was revoked"),
            RunFailure::Host(error) => {
                tracing::error!(error = %format!("{error:#}"), "run failed on the host side");
                ("host_error", "run failed: internal error")
            }
        }
    }
}

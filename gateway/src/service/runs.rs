//! Runs: the gate's decision, the budget charge, the sandboxed execution over decrypted
//! chunks, and the DP release; plus budgets and the regulator's audit export.
//!
//! The charge and its audit entry commit before any data is read, and are never refunded:
//! a refund would tell the operator whether the model failed on the data. The release and
//! its audit entry commit together afterwards. A run's result becomes visible at a time
//! fixed before data is read, and rows the model failed on are counted only in the audit
//! log, so neither the time nor the outcome tells the operator what the model did on the
//! data. Raw model outputs never reach this module: the runner hands back only the release.

use sluice_audit::{Act, Detail};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sluice_audit::{AuditEvent, AuditOutcome, Receipt, release};
use sluice_policies::{
    Action, AuthorisationFacts, ChargeFacts, Denial, Epsilon, ModelFacts, PrivacyBudget, ReleasedOutput, Role,
    RunFacts, RunPermit, authorise_run, check_not_destroyed, review_result,
};
use sluice_sandbox::{CompiledModel, Fallbacks, Manifest, ModelDigest, SandboxError};
use sluice_vault::chunks::{ChunkContext, VersionReader};
use sluice_vault::join::JoinSide;
use sluice_vault::schema::DatasetSchema;

use super::lists::{PageQuery, Pager, check_state_filter};
use super::{App, Caller, stored_epsilon};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{AuthorisationId, DatasetId, ModelId, PrincipalId, RunId};
use crate::runner::{JoinLayout, ReleaseFacts, RunError, run_and_release, run_joined_and_release, run_parts};
use crate::store::{AuthorisationRow, RunEvent, RunRow, RunState, Store, VersionRow};
use crate::timestamp::Timestamp;

/// What an operator sees of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RunView {
    pub run_id: RunId,
    pub state: RunState,
    pub dataset_version: i64,
    pub rows: i64,
    #[schema(value_type = Vec<Object>)]
    pub outputs: Vec<ReleasedOutput>,
    pub epsilon_charged: f64,
    /// Filled on the response to the run itself; a later fetch reads the live budget.
    pub authorisation_epsilon_remaining: f64,
    /// Proof that the release was logged: its audit entry, a signed checkpoint covering it
    /// and the inclusion proof (`sluice audit verify-receipt` checks it offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<Receipt>,
    /// When the result became visible: fixed before any data was read, from the row count
    /// and the model's declared fuel per row, never from what the model did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_at: Option<Timestamp>,
}

/// Which runs a list shows: `GET /v1/runs?authorisation_id=&state=&after=&limit=`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunListQuery {
    pub authorisation_id: Option<AuthorisationId>,
    /// A state as the caller is shown it (`pending` included), not as stored.
    pub state: Option<String>,
    /// The `next_after` of the previous page.
    pub after: Option<RunId>,
    /// At most this many runs (1 to [`super::MAX_LIST`], default [`super::DEFAULT_LIST`]).
    pub limit: Option<u32>,
}

/// A run in a list: its facts, not its release (`GET /v1/runs/{id}` reads that, audited).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RunSummary {
    pub run_id: RunId,
    pub authorisation_id: AuthorisationId,
    pub model_id: ModelId,
    pub dataset_id: DatasetId,
    pub dataset_version: i64,
    pub epsilon_charged: f64,
    /// As [`App::run_result`] would answer it: `pending` until its visibility time for
    /// everyone but reviewers, whatever happened meanwhile.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible_at: Option<Timestamp>,
}

/// One page of runs. A page may hold fewer than `limit` runs and still have a next one:
/// follow `next_after` until it is absent.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<RunId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BudgetView {
    pub authorisation_id: AuthorisationId,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
    pub epsilon_remaining: f64,
    pub dataset_epsilon_total: f64,
    pub dataset_epsilon_spent: f64,
    /// The lifetime budgets of the datasets joined to the first, in the authorisation's
    /// order: every run under it is charged to each of them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined_datasets: Vec<JoinedBudgetView>,
}

/// A joined dataset's lifetime budget, in a [`BudgetView`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JoinedBudgetView {
    pub dataset_id: DatasetId,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
}

fn authorisation_facts(row: &AuthorisationRow) -> anyhow::Result<AuthorisationFacts> {
    Ok(AuthorisationFacts {
        id: row.id.0,
        columns: row.granted_columns()?,
        valid_from: row.valid_from.time(),
        valid_until: row.valid_until.time(),
        revoked: row.revoked_at.is_some(),
        budget: budget(row.epsilon_total, row.epsilon_spent)?,
    })
}

pub(super) fn budget(total: i64, spent: i64) -> anyhow::Result<PrivacyBudget> {
    PrivacyBudget::new(Epsilon::from_units(total as u64), Epsilon::from_units(spent as u64))
        .map_err(|denial| anyhow::anyhow!("stored budget is inconsistent: {}", denial.message))
}

/// Everything a permitted run needs, gathered once before the charge.
struct PreparedRun {
    /// What the gate decided: who pays, how much.
    permit: RunPermit,
    inputs: RunInputs,
}

/// What executing a charged run needs: gathered before the charge by the node that takes
/// the request, or from the stored run by a node that claims it from the queue.
struct RunInputs {
    model_id: ModelId,
    compiled: CompiledModel,
    version: VersionRow,
    schema: DatasetSchema,
    /// Unwrapped before the charge, so a key problem never costs the operator budget.
    key: sluice_vault::keys::AeadKey,
    /// The dataset's disclosure threshold for histogram bins and groups.
    min_group_size: u32,
    /// Releases under this authorisation wait for data product review.
    hold_outputs: bool,
    /// The dataset joined to this one, when the authorisation joins one.
    joined: Option<JoinedInputs>,
}

/// The joined datasets of a run, in the authorisation's order, and the schema of the
/// joined rows the model sees.
struct JoinedInputs {
    sides: Vec<JoinedSide>,
    /// [`DatasetSchema::joined_all`] of them: what the release is calibrated to.
    view: DatasetSchema,
}

/// One joined dataset of a run: the version read (the latest at the charge), its schema
/// and its data key.
struct JoinedSide {
    version: VersionRow,
    schema: DatasetSchema,
    key: sluice_vault::keys::AeadKey,
}

impl RunInputs {
    /// The joined datasets read, in the authorisation's order (none for one dataset).
    fn joined_sides(&self) -> impl Iterator<Item = &JoinedSide> {
        self.joined.iter().flat_map(|joined| &joined.sides)
    }

    /// The schema of the rows the model sees: the dataset's, or the two joined.
    fn view(&self) -> &DatasetSchema {
        self.joined.as_ref().map_or(&self.schema, |joined| &joined.view)
    }
}

/// Assumed host cost of joining, per row of either side (reading its key, partitioning,
/// probing): measured at about 100 ns per row on 1,000,000 rows a side in a release build
/// (ARCHITECTURE.md), doubled as the other per-row costs are.
const VISIBILITY_NANOS_PER_JOINED_ROW: f64 = 200.0;

/// A run whose charge committed (made by [`App::charge`], or read back from a stored
/// charged run): the only thing [`App::execute`] accepts.
struct ChargedRun {
    run_id: RunId,
    authorisation_id: AuthorisationId,
    epsilon: Epsilon,
    /// The authorisation's budget left after this charge (or when it was claimed).
    authorisation_remaining: Epsilon,
    inputs: RunInputs,
}

/// How a charge ended: with the run recorded and both budgets debited, or refused.
enum ChargeOutcome {
    Charged(Box<ChargedRun>),
    Refused(Denial),
}

/// Assumed cost of one unit of fuel when fixing a run's visibility time: a row that uses
/// all its fuel at this speed still finishes before its result is due. Measured speeds
/// are 0.2 to 0.4 ns per unit on the reference models (ARCHITECTURE.md).
const VISIBILITY_NANOS_PER_FUEL: f64 = 0.5;

/// Assumed host cost, per row, of each value the model reads (decrypting and decoding it)
/// and of each output it emits (handing it to the release), which fuel does not meter:
/// about twice what the native floor of the reference job spends (ARCHITECTURE.md).
const VISIBILITY_NANOS_PER_VALUE: f64 = 10.0;
const VISIBILITY_NANOS_PER_OUTPUT: f64 = 5.0;

/// What one row of a model may cost, from public facts: the most fuel a row can use (the
/// lower of its declared fuel and the bound its code proves), and how many values it reads
/// and outputs it emits.
#[derive(Debug, Clone, Copy)]
struct RowPrice {
    worst_fuel: u64,
    inputs: usize,
    outputs: usize,
}

/// A base delay plus the time `rows` take over `parts` mapped at once if every row takes
/// the model's worst case and the host's own per-row work. Whole milliseconds, rounded up.
fn visibility_delay(base: std::time::Duration, price: RowPrice, rows: u64, parts: usize) -> time::Duration {
    let row_nanos = price.worst_fuel as f64 * VISIBILITY_NANOS_PER_FUEL
        + price.inputs as f64 * VISIBILITY_NANOS_PER_VALUE
        + price.outputs as f64 * VISIBILITY_NANOS_PER_OUTPUT;
    let rows_millis = (rows as f64 * row_nanos / parts.max(1) as f64 / 1e6).ceil() as i64;
    let base_millis = i64::try_from(base.as_millis()).unwrap_or(i64::MAX);
    time::Duration::milliseconds(base_millis.saturating_add(rows_millis))
}

/// Why a charged run did not release, or what it released with its fallback count.
type Executed = Result<(Vec<ReleasedOutput>, Fallbacks), RunFailure>;

impl App {
    /// Runs `model_id` under `authorisation_id` and returns the DP release once it is
    /// visible. One path, each fact read once: decide (a [`RunPermit`]), prepare (compile,
    /// unwrap the key), charge with the permit (a [`ChargedRun`] or a refusal), execute
    /// only what was charged, release, record.
    ///
    /// A charged run is `queued` in the database: this node claims it as soon as it has a
    /// free sandbox slot, unless another node's dispatcher ([`App::spawn_run_dispatcher`])
    /// claimed it first, in which case this waits for that node to end it.
    ///
    /// The visibility time is fixed before the charge, from public facts only (the row
    /// count, the model's declared fuel per row and a base delay); the answer is held until
    /// then, so its timing says nothing about what the model did on the data. The run
    /// executes in a task of its own: a client that hangs up leaves it to finish, release
    /// and be logged, and the result is there to fetch.
    pub async fn run(
        self: &Arc<Self>,
        caller: &Caller,
        authorisation_id: AuthorisationId,
        model_id: ModelId,
    ) -> ServiceResult<RunView> {
        let action = Action::RunModel;
        let object = format!("authorisation:{authorisation_id}");
        let prepared = self.decide_and_prepare(caller, authorisation_id, model_id).await?;
        let started = self.now();
        // The wait is timed on the monotonic clock: the gateway's clock may be set by hand.
        let started_instant = tokio::time::Instant::now();
        let delay = self.visibility_delay(&prepared);
        let visible_at = started + delay;
        let charged = match self.charge(caller, prepared, visible_at).await? {
            ChargeOutcome::Charged(charged) => charged,
            ChargeOutcome::Refused(denial) => return Err(self.deny(caller, action.audit(), object, denial).await),
        };
        let app = Arc::clone(self);
        let task_caller = caller.clone();
        let task = tokio::spawn(async move { app.run_here_or_await(&task_caller, *charged).await });
        let outcome = task.await.map_err(|error| anyhow::anyhow!("the run task failed: {error}"))?;
        wait_until_visible(started_instant, delay).await;
        let mut view = outcome?;
        view.visible_at = Some(Timestamp::new(visible_at));
        Ok(view)
    }

    /// How long after its start a run's result becomes visible ([`visibility_delay`]).
    fn visibility_delay(&self, prepared: &PreparedRun) -> time::Duration {
        let runtime = self.runner.runtime();
        let prepared = &prepared.inputs;
        let manifest = prepared.compiled.manifest();
        // A joined run maps its rows in one part, after joining every side's rows (their
        // counts are public facts of the versions read).
        let (parts, join) = match &prepared.joined {
            Some(joined) => {
                let joined_rows: i64 = joined.sides.iter().map(|side| side.version.row_count).sum();
                let join_rows = (prepared.version.row_count + joined_rows).max(0) as f64;
                (1, time::Duration::milliseconds((join_rows * VISIBILITY_NANOS_PER_JOINED_ROW / 1e6).ceil() as i64))
            }
            // The rows are mapped in parts at once, one core each: the part count follows
            // from the (public) chunk count and the configuration, never from the data.
            None => (run_parts(runtime.limits().workers_per_run, prepared.version.chunk_count), time::Duration::ZERO),
        };
        join + visibility_delay(
            self.gate.visibility_base(),
            RowPrice {
                worst_fuel: runtime.worst_fuel_per_row(&prepared.compiled),
                inputs: manifest.inputs().len(),
                outputs: manifest.outputs().len(),
            },
            u64::try_from(prepared.version.row_count).unwrap_or(0),
            parts,
        )
    }

    /// Reads the run's facts in one snapshot, asks the gate once, and prepares what the
    /// permitted run needs (the compiled model, the data key) before anything is charged.
    async fn decide_and_prepare(
        &self,
        caller: &Caller,
        authorisation_id: AuthorisationId,
        model_id: ModelId,
    ) -> ServiceResult<PreparedRun> {
        let action = Action::RunModel.audit();
        let object = format!("authorisation:{authorisation_id}");
        let facts = self.store.run_facts(authorisation_id, model_id).await?;
        // Who may run under this authorisation is the policy set's; a missing authorisation
        // is the run procedure's `authorisation_missing`, below.
        if let Some(authorisation) = &facts.authorisation {
            let datasets: Vec<_> =
                facts.dataset.iter().chain(facts.joined.iter().filter_map(|(dataset, _)| dataset.as_ref())).collect();
            let (Some(organisation), true) = (
                facts.operator_organisation,
                datasets.len() == authorisation.datasets()?.len()
                    && facts.provider_organisations.len() == datasets.len(),
            ) else {
                return Err(
                    anyhow::anyhow!("authorisation {authorisation_id}'s datasets or parties are missing").into()
                );
            };
            let providers: Vec<_> = datasets
                .iter()
                .map(|dataset| dataset.provider_id)
                .zip(facts.provider_organisations.iter().copied())
                .collect();
            let resource = super::objects::authorisation_resource(authorisation, organisation, &providers);
            self.guard(caller, Action::RunModel, &object, &resource).await?;
        }
        let Some(model) = facts.model else {
            return Err(self.not_found(caller, action, "model", model_id).await);
        };
        let manifest =
            Manifest::from_toml(&model.manifest_toml).map_err(|error| anyhow::anyhow!("stored manifest: {error}"))?;
        // The digest is recomputed from the stored bytes: a byte changed after review
        // (even in the database) no longer matches the approved digest.
        let digest_to_run = ModelDigest::of(&model.module, &manifest).to_string();
        let model_facts = ModelFacts {
            state: model.state,
            authorisation_id: model.authorisation_id.0,
            approved_digest: model.digest.clone(),
        };
        let authorisation_facts = facts.authorisation.as_ref().map(authorisation_facts).transpose()?;
        let dataset_budget = match &facts.dataset {
            Some(dataset) => budget(dataset.epsilon_total, dataset.epsilon_spent)?,
            None => {
                PrivacyBudget::new(Epsilon::ZERO, Epsilon::ZERO).map_err(|denial| anyhow::anyhow!(denial.message))?
            }
        };
        let joined_budgets = facts
            .joined
            .iter()
            .filter_map(|(dataset, _)| dataset.as_ref())
            .map(|joined| budget(joined.epsilon_total, joined.epsilon_spent))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let columns_read: Vec<String> = manifest.inputs().iter().map(|input| input.name.clone()).collect();
        let epsilon =
            Epsilon::from_f64(manifest.epsilon_per_run()).map_err(|denial| ServiceError::invalid(denial.message))?;
        let run_facts = RunFacts {
            operator: &caller.principal,
            authorisation: authorisation_facts.as_ref(),
            model: &model_facts,
            digest_to_run: &digest_to_run,
            columns_read: &columns_read,
            epsilon,
            min_epsilon: self.gate.min_epsilon_per_run(),
            dataset_id: facts.dataset.as_ref().map_or(0, |dataset| dataset.id.0),
            dataset_budget,
            joined_dataset_budgets: &joined_budgets,
        };
        let permit = match authorise_run(&run_facts, self.now()) {
            Ok(permit) => permit,
            Err(denial) => return Err(self.deny(caller, action, object, denial).await),
        };
        let dataset = facts.dataset.context("authorised dataset")?;
        if let Err(denial) = check_not_destroyed(dataset.destroyed_at.is_some()) {
            return Err(self.deny(caller, action, object, denial).await);
        }
        let Some(version) = facts.version else {
            return Err(ServiceError::invalid("the dataset has no data yet"));
        };
        let schema = DatasetSchema::from_toml(&dataset.schema_toml)
            .map_err(|error| anyhow::anyhow!("stored schema: {error}"))?;
        let key = self.unwrap_data_key(&version, &schema).await?;
        let mut sides = Vec::with_capacity(facts.joined.len());
        for (joined, joined_version) in facts.joined {
            let joined = joined.context("authorised joined dataset")?;
            if let Err(denial) = check_not_destroyed(joined.destroyed_at.is_some()) {
                return Err(self.deny(caller, action, object, denial).await);
            }
            let Some(joined_version) = joined_version else {
                return Err(ServiceError::invalid(format!("joined dataset {} has no data yet", joined.id)));
            };
            sides.push((joined, joined_version));
        }
        let joined = self.joined_inputs(&schema, sides).await?;
        let compiled = self.runner.compiled(&digest_to_run, &model.module, manifest).await?;
        Ok(PreparedRun {
            permit,
            inputs: RunInputs {
                model_id,
                compiled,
                version,
                schema,
                key,
                min_group_size: u32::try_from(dataset.min_group_size).unwrap_or(u32::MAX),
                hold_outputs: facts.authorisation.as_ref().is_some_and(|row| row.hold_outputs),
                joined,
            },
        })
    }

    /// The joined datasets of a run: each one's version, with its key unwrapped, and the
    /// schema of the joined rows (refused if they no longer join). `None` for none.
    async fn joined_inputs(
        &self,
        first: &DatasetSchema,
        joined: Vec<(crate::store::DatasetRow, VersionRow)>,
    ) -> anyhow::Result<Option<JoinedInputs>> {
        if joined.is_empty() {
            return Ok(None);
        }
        let mut sides = Vec::with_capacity(joined.len());
        for (dataset, version) in joined {
            let schema = DatasetSchema::from_toml(&dataset.schema_toml)
                .map_err(|error| anyhow::anyhow!("stored schema: {error}"))?;
            let key = self.unwrap_data_key(&version, &schema).await?;
            sides.push(JoinedSide { version, schema, key });
        }
        let view = first
            .joined_all(sides.iter().map(|side| &side.schema))
            .map_err(|error| anyhow::anyhow!("the datasets no longer join: {error}"))?;
        Ok(Some(JoinedInputs { sides, view }))
    }

    /// Unwraps a version's data key under the master key. A wrapped key read before a
    /// rotation committed no longer opens; the version is then read again under the lock.
    async fn unwrap_data_key(
        &self,
        version: &VersionRow,
        schema: &DatasetSchema,
    ) -> anyhow::Result<sluice_vault::keys::AeadKey> {
        let context = chunk_context(version, schema);
        let master = self.sealed.master.read().await;
        if let Ok(key) = master.unwrap_key(&version.wrapped_key, &context.key_context()) {
            return Ok(key);
        }
        // A rotation committed between the snapshot and the lock: the key it wrapped anew is
        // in the store now, and the lock keeps another rotation out while it is read.
        let current = self.stored_version(version.dataset_id, version.version).await?;
        master
            .unwrap_key(&current.wrapped_key, &context.key_context())
            .map_err(|error| anyhow::anyhow!("unwrapping the data key of dataset {}: {error}", version.dataset_id))
    }

    /// Version `version` of dataset `dataset_id` as stored now.
    async fn stored_version(&self, dataset_id: DatasetId, version: i64) -> anyhow::Result<VersionRow> {
        self.store
            .versions(dataset_id)
            .await?
            .into_iter()
            .find(|row| row.version == version)
            .with_context(|| format!("version {version} of dataset {dataset_id} is missing"))
    }

    /// Charges the permit and records the start, in one transaction, before any data is
    /// read. The budgets, the revocation and the run rate are read under the write lock and
    /// checked by the permit ([`RunPermit::charge`]); the refusal names its own reason.
    async fn charge(
        &self,
        caller: &Caller,
        prepared: PreparedRun,
        visible_at: time::OffsetDateTime,
    ) -> ServiceResult<ChargeOutcome> {
        let now = self.now();
        let (permit, prepared) = (prepared.permit, prepared.inputs);
        // The charge does not wait for the disk: nothing is answered before the release,
        // whose commit waits and makes the charge durable with it (the write-ahead log is
        // synced in order). A crash in between loses a charge whose run released nothing.
        let (authorisation_id, dataset_id) = (AuthorisationId(permit.authorisation_id), DatasetId(permit.dataset_id));
        let mut tx = self.store.begin_unsynced().await?;
        let row = Store::charge_facts(&mut tx, authorisation_id, dataset_id, now - time::Duration::hours(1))
            .await?
            .context("the authorisation or its dataset disappeared")?;
        let mut joined_dataset_budgets = Vec::new();
        for side in prepared.joined_sides() {
            let (total, spent) = Store::dataset_budget(&mut tx, side.version.dataset_id)
                .await?
                .context("a joined dataset disappeared")?;
            joined_dataset_budgets.push(budget(total, spent)?);
        }
        let facts = ChargeFacts {
            revoked: row.revoked,
            authorisation_budget: budget(row.authorisation_total, row.authorisation_spent)?,
            dataset_budget: budget(row.dataset_total, row.dataset_spent)?,
            joined_dataset_budgets,
            runs_in_last_hour: u64::try_from(row.runs_since).unwrap_or(0),
            max_runs_per_hour: self.gate.max_runs_per_hour(),
        };
        let charged = match permit.charge(&facts) {
            Ok(charged) => charged,
            Err(denial) => {
                tx.rollback().await.context("rolling back")?;
                return Ok(ChargeOutcome::Refused(denial));
            }
        };
        Store::apply_charge(
            &mut tx,
            authorisation_id,
            charged.authorisation_budget_after.spent().units() as i64,
            dataset_id,
            charged.dataset_budget_after.spent().units() as i64,
            &prepared
                .joined_sides()
                .zip(&charged.joined_dataset_budgets_after)
                .map(|(side, after)| (side.version.dataset_id, after.spent().units() as i64))
                .collect::<Vec<_>>(),
        )
        .await?;
        let run = RunRow {
            id: RunId(0),
            authorisation_id,
            model_id: prepared.model_id,
            operator_id: PrincipalId(caller.principal.id),
            dataset_id: prepared.version.dataset_id,
            dataset_version: prepared.version.version,
            epsilon: permit.epsilon.units() as i64,
            // Queued: whichever node has a free sandbox slot first claims it.
            state: RunState::Queued,
            outcome: None,
            result_json: None,
            visible_at: Some(Timestamp::new(visible_at)),
            node: None,
            joined_versions_json: crate::store::encode_joined_versions(
                &prepared.joined_sides().map(|side| side.version.version).collect::<Vec<_>>(),
            )?,
        };
        let run_id = Store::insert_run(&mut tx, &run, now).await?;
        let event = Self::event(caller, Action::RunModel.audit(), format!("run:{run_id}"), AuditOutcome::Ok)
            .detail(Detail::Authorisation, permit.authorisation_id)
            .detail(Detail::Model, prepared.model_id)
            .detail(Detail::Digest, prepared.compiled.digest())
            .detail(Detail::Dataset, prepared.version.dataset_id)
            .detail(Detail::DatasetVersion, prepared.version.version)
            .detail(Detail::EpsilonCharged, permit.epsilon)
            .detail(Detail::VisibleAt, crate::store::format_time(visible_at));
        let event = match &prepared.joined {
            Some(joined) => {
                let list = |of: fn(&JoinedSide) -> String| joined.sides.iter().map(of).collect::<Vec<_>>().join(",");
                event
                    .detail(Detail::JoinedDataset, list(|side| side.version.dataset_id.to_string()))
                    .detail(Detail::JoinedDatasetVersion, list(|side| side.version.version.to_string()))
            }
            None => event,
        };
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the budget charge")?;
        Ok(ChargeOutcome::Charged(Box::new(ChargedRun {
            run_id,
            authorisation_id,
            epsilon: permit.epsilon,
            authorisation_remaining: charged.authorisation_budget_after.remaining(),
            inputs: prepared,
        })))
    }

    /// Decrypts the version chunk by chunk into the sandbox, then releases with DP. Takes
    /// only a charged run, claimed by this node, and the sandbox slot it holds meanwhile.
    async fn execute(&self, run: &ChargedRun, _slot: tokio::sync::OwnedSemaphorePermit) -> Executed {
        let prepared = &run.inputs;
        let authorisation_id = run.authorisation_id;
        let version = &prepared.version;
        if let Some(joined) = &prepared.joined {
            return self.execute_joined(run, joined).await;
        }
        let columns: Vec<String> =
            prepared.compiled.manifest().inputs().iter().map(|input| input.name.clone()).collect();
        let reader = self.open_version(version, &prepared.schema, &prepared.key, &columns)?;
        let runtime = self.runner.runtime().clone();
        let compiled = prepared.compiled.clone();
        let facts = ReleaseFacts::new(
            compiled.manifest(),
            prepared.view(),
            version.row_count as usize,
            prepared.min_group_size,
        );
        let version_chunks = version.chunk_count;
        tracing::info!(%authorisation_id, digest = %compiled.digest(), "run started");
        release_blocking(move || {
            let parts = reader.split(run_parts(runtime.limits().workers_per_run, version_chunks));
            run_and_release(&runtime, &compiled, parts, &facts)
        })
        .await
    }

    /// A reader of `columns` of `version`, decrypting chunk by chunk under `key`.
    fn open_version(
        &self,
        version: &VersionRow,
        schema: &DatasetSchema,
        key: &sluice_vault::keys::AeadKey,
        columns: &[String],
    ) -> Result<VersionReader, RunFailure> {
        VersionReader::open(
            Arc::new(self.sealed.chunks.clone()),
            chunk_context(version, schema),
            version.chunk_count as u64,
            key.clone(),
            schema,
            columns,
        )
        .map_err(RunFailure::Host)
    }

    /// A joined run: every version decrypted chunk by chunk, each with its key column first,
    /// joined inside the host ([`crate::runner::run_joined_and_release`]), the joined rows
    /// (without the key) into the sandbox in one part, then released with DP.
    async fn execute_joined(&self, run: &ChargedRun, joined: &JoinedInputs) -> Executed {
        let prepared = &run.inputs;
        let manifest = prepared.compiled.manifest();
        let schemas: Vec<&DatasetSchema> = joined.sides.iter().map(|side| &side.schema).collect();
        let layout = JoinLayout::new(manifest, &prepared.schema, &schemas)
            .context("the model reads a column neither joined dataset has")
            .map_err(RunFailure::Host)?;
        let open =
            |version: &VersionRow, schema: &DatasetSchema, key: &sluice_vault::keys::AeadKey, columns: &[String]| {
                let reader = self.open_version(version, schema, key, columns)?;
                Ok::<_, RunFailure>(JoinSide { batches: reader, types: JoinLayout::types(columns, schema) })
            };
        let first = open(&prepared.version, &prepared.schema, &prepared.key, &layout.first_columns)?;
        let others = joined
            .sides
            .iter()
            .zip(&layout.joined_columns)
            .map(|(side, columns)| open(&side.version, &side.schema, &side.key, columns))
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = self.runner.runtime().clone();
        let compiled = prepared.compiled.clone();
        let facts =
            ReleaseFacts::new(manifest, &joined.view, prepared.version.row_count as usize, prepared.min_group_size);
        tracing::info!(authorisation_id = %run.authorisation_id, digest = %compiled.digest(), "joined run started");
        release_blocking(move || run_joined_and_release(&runtime, &compiled, first, others, &layout, &facts)).await
    }

    /// Stores the release (or the failure) with its audit entry, in one transaction.
    async fn finish(&self, caller: &Caller, run: &ChargedRun, outcome: Executed) -> ServiceResult<RunView> {
        let (values, fallbacks) = match outcome {
            Ok(released) => released,
            Err(failure) => return self.fail(caller, run.run_id, failure).await,
        };
        let (run_id, prepared) = (run.run_id, &run.inputs);
        let authorisation_id = run.authorisation_id;
        let now = self.now();
        let object = format!("run:{run_id}");
        // A release commits with the checkpoint its receipt names: one wait for the disk.
        let checkpoints = self.checkpoint_turn().await;
        let mut tx = self.store.begin().await?;
        let state = if prepared.hold_outputs { RunState::Held } else { RunState::Released };
        let mut view = RunView {
            run_id,
            state,
            dataset_version: prepared.version.version,
            rows: prepared.version.row_count,
            outputs: values,
            epsilon_charged: run.epsilon.as_f64(),
            // Known from the charge: no need to read the budget again.
            authorisation_epsilon_remaining: run.authorisation_remaining.as_f64(),
            receipt: None,
            visible_at: None,
        };
        let json = serde_json::to_string(&view).context("encoding the release")?;
        ensure_running(Store::finish_run(&mut tx, run_id, state, "ok", Some(&json), now).await?, run_id)?;
        let mut event = Self::event(caller, Act::RunRelease, &object, AuditOutcome::Ok)
            .detail(Detail::Authorisation, authorisation_id)
            .detail(Detail::Outputs, view.outputs.len())
            .detail(Detail::Held, prepared.hold_outputs);
        if !prepared.hold_outputs {
            // What left, in the entry the operator's receipt proves (去向可查); a held
            // result's values enter the log only when a reviewer releases them.
            event = commit_to_release(event, &view.outputs)?;
        }
        // Rows the model failed on, which contributed their defaults. The count is
        // not noised, so it goes into an entry of its own that only regulators read
        // (the `run.release` entry travels to the operator inside the receipt). The
        // receipt's entry carries this entry's leaf hash as its `prev`, and the
        // operator knows every other field, so a secret salt keeps the small counts
        // from being found by trying them all against that hash.
        let mut salt = [0u8; 16];
        sluice_vault::keys::random_bytes(&mut salt)?;
        let fallback_event = Self::event(caller, Act::RunFallbacks, &object, AuditOutcome::Ok)
            .detail(Detail::Salt, hex::encode(salt))
            .detail(Detail::FallbackRows, fallbacks.total())
            .detail(Detail::Trap, fallbacks.trap)
            .detail(Detail::Fuel, fallbacks.fuel)
            .detail(Detail::Stack, fallbacks.stack)
            .detail(Detail::NonFinite, fallbacks.non_finite);
        Store::append_audit(&mut tx, fallback_event, now).await?;
        if prepared.hold_outputs {
            // Computed and charged, but the operator sees nothing until a reviewer
            // releases it.
            view.outputs.clear();
        }
        let (seq, entry) = Store::append_audit_entry(&mut tx, event, now).await?;
        Store::set_release_seq(&mut tx, run_id, seq).await?;
        let checkpoint = self.seal_in(&mut tx, seq).await?;
        tx.commit().await.context("committing the run's outcome")?;
        drop(checkpoints);
        self.run_ended.notify_waiters();
        view.receipt = Some(self.receipt_under(seq, entry, checkpoint).await?);
        Ok(view)
    }

    /// Stores a charged run's failure with its audit entry, in one transaction. The audit
    /// log keeps the detailed code; the operator gets the coarse class.
    async fn fail(&self, caller: &Caller, run_id: RunId, failure: RunFailure) -> ServiceResult<RunView> {
        let (code, message) = failure.describe();
        tracing::warn!(%run_id, code, "run failed");
        let now = self.now();
        let mut tx = self.store.begin().await?;
        ensure_running(Store::finish_run(&mut tx, run_id, RunState::Failed, code, None, now).await?, run_id)?;
        let event = Self::event(caller, Act::RunRelease, format!("run:{run_id}"), AuditOutcome::Failed).reason(code);
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the run's outcome")?;
        self.run_ended.notify_waiters();
        Err(ServiceError::RunFailed { message })
    }

    /// Executes a run this node queued as soon as it has a free sandbox slot — unless
    /// another node claims it first; then waits for that node to end it.
    async fn run_here_or_await(&self, caller: &Caller, run: ChargedRun) -> ServiceResult<RunView> {
        let acquire = self.runner.slot();
        tokio::pin!(acquire);
        let slot = loop {
            // Another node may have claimed it: look now and then, and whenever a run ends.
            tokio::select! {
                slot = &mut acquire => break Some(slot?),
                () = self.run_ended.notified() => {}
                () = tokio::time::sleep(self.queue_poll()) => {}
            }
            if self.store.run(run.run_id).await?.map(|row| row.state) != Some(RunState::Queued) {
                break None;
            }
        };
        if let Some(slot) = slot
            && let Some(revoked) = self.store.claim_run(run.run_id, self.store.node()).await?
        {
            // A run that waited for a slot does not start under an authorisation revoked
            // meanwhile; its charge stands (no data was read, but the attempt was made).
            if revoked {
                return self.fail(caller, run.run_id, RunFailure::Revoked).await;
            }
            let outcome = self.execute(&run, slot).await;
            return self.finish(caller, &run, outcome).await;
        }
        self.await_end(run.run_id).await
    }

    /// Waits for a run another node claimed to end, and answers as that node would have:
    /// the release with its receipt, or the failure's coarse message. A claimer that died
    /// meanwhile has its run settled as interrupted here.
    async fn await_end(&self, run_id: RunId) -> ServiceResult<RunView> {
        loop {
            let ended = self.run_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let run = self.store.run(run_id).await?.with_context(|| format!("run {run_id} disappeared"))?;
            match run.state {
                RunState::Queued | RunState::Running => {}
                RunState::Failed => {
                    return Err(ServiceError::RunFailed {
                        message: failure_message(run.outcome.as_deref().unwrap_or_default()),
                    });
                }
                RunState::Interrupted => return Err(ServiceError::RunFailed { message: INTERRUPTED }),
                RunState::Released | RunState::Held | RunState::Withheld => {
                    let authorisation =
                        self.store.authorisation(run.authorisation_id).await?.context("the run's authorisation")?;
                    let mut view = self.stored_view(&run, &authorisation).await?;
                    if view.state != RunState::Released {
                        // As on the node that ran it: nothing before data product review.
                        view.outputs.clear();
                    }
                    return Ok(view);
                }
            }
            let claimer_dead = match (run.state, run.node) {
                (RunState::Running, Some(node)) => !self.store.node_alive(node).await?,
                (RunState::Running, None) => true,
                _ => false,
            };
            if claimer_dead {
                self.settle_run(run_id).await?;
                continue;
            }
            tokio::select! {
                () = &mut ended => {}
                () = tokio::time::sleep(self.queue_poll()) => {}
            }
        }
    }

    /// Starts this node's dispatcher: whenever a sandbox slot is free, it claims the oldest
    /// queued run — one another node charged but had no slot for, or whose node died before
    /// claiming it — and executes it as the request's own node would have. It stops
    /// claiming once a stop has begun ([`crate::in_flight::InFlight::stop_begun`]); runs it
    /// claimed count as requests under way, so a shutdown drains them.
    pub fn spawn_run_dispatcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let app = Arc::clone(self);
        tokio::spawn(async move { app.dispatch_queued_runs().await })
    }

    async fn dispatch_queued_runs(self: Arc<Self>) {
        let listener = tokio::spawn(Arc::clone(&self).hear_run_events());
        self.claim_queued_runs().await;
        listener.abort();
    }

    /// Hears other nodes' run events (PostgreSQL's `LISTEN`): a queued run wakes the
    /// dispatcher, an ended run the requests waiting for it, at once rather than at the
    /// next look. Events missed while the connection was lost wake everyone, to look.
    async fn hear_run_events(self: Arc<Self>) {
        let mut events = match self.store.run_events().await {
            Ok(Some(events)) => events,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "not hearing run events; looking for them instead");
                return;
            }
        };
        self.hears_runs.store(true, std::sync::atomic::Ordering::Relaxed);
        loop {
            match events.next().await {
                Ok(Some((RunEvent::Queued, _))) => self.run_queued.notify_one(),
                Ok(Some((RunEvent::Ended, _))) => self.run_ended.notify_waiters(),
                // Whatever was announced meanwhile is lost: everyone looks.
                Ok(None) => self.wake_all_waiting(),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "hearing run events failed");
                    self.wake_all_waiting();
                    tokio::time::sleep(QUEUE_POLL * 10).await;
                }
            }
        }
    }

    fn wake_all_waiting(&self) {
        self.run_queued.notify_one();
        self.run_ended.notify_waiters();
    }

    /// How long to wait before looking at the queue or a run again unprompted.
    fn queue_poll(&self) -> std::time::Duration {
        if self.hears_runs.load(std::sync::atomic::Ordering::Relaxed) { QUEUE_POLL_HEARING } else { QUEUE_POLL }
    }

    async fn claim_queued_runs(self: &Arc<Self>) {
        while !self.in_flight.stopping() {
            let Ok(slot) = self.runner.slot().await else { return };
            if self.in_flight.stopping() {
                return;
            }
            match self.claim_queued().await {
                Ok(Some(run)) => {
                    let ticket = self.in_flight.begin();
                    let app = Arc::clone(self);
                    tokio::spawn(async move {
                        app.execute_claimed(run, slot).await;
                        drop(ticket);
                    });
                }
                Ok(None) => {
                    drop(slot);
                    tokio::select! {
                        () = self.run_queued.notified() => {}
                        () = tokio::time::sleep(self.queue_poll()) => {}
                    }
                }
                Err(error) => {
                    drop(slot);
                    tracing::warn!(error = %format!("{error:#}"), "claiming a queued run failed");
                    tokio::time::sleep(QUEUE_POLL * 10).await;
                }
            }
        }
    }

    /// The oldest queued run, claimed for this node; a read first, so an idle node's
    /// polling writes nothing.
    async fn claim_queued(&self) -> anyhow::Result<Option<RunRow>> {
        if self.store.oldest_queued_run().await?.is_none() {
            return Ok(None);
        }
        self.store.claim_next_run(self.store.node()).await
    }

    /// Executes a run claimed from the queue, as its operator's request would have: the
    /// inputs read back from the stored charge, then execute, release, record. Whatever
    /// goes wrong, the run ends: failed, or (if even that cannot be stored) interrupted.
    async fn execute_claimed(&self, run: RunRow, slot: tokio::sync::OwnedSemaphorePermit) {
        let run_id = run.id;
        tracing::info!(%run_id, "running a run claimed from the queue");
        let result = async {
            let operator = self.store.principal(run.operator_id).await?.context("the run's operator")?;
            let caller = Caller {
                principal: super::principal_from_row(&operator)?,
                name: operator.name,
                request_id: format!("queued-run-{run_id}"),
            };
            match self.charged_from_row(&run).await {
                Ok(charged) => {
                    let outcome = self.execute(&charged, slot).await;
                    self.finish(&caller, &charged, outcome).await
                }
                Err(failure) => self.fail(&caller, run_id, failure).await,
            }
        }
        .await;
        match result {
            Ok(_) | Err(ServiceError::RunFailed { .. }) => {}
            Err(error) => {
                tracing::error!(%run_id, error = %error, "a claimed run could not be ended; settling it as interrupted");
                if let Err(error) = self.settle_run(run_id).await {
                    tracing::error!(%run_id, error = %format!("{error:#}"), "settling the run failed");
                }
            }
        }
    }

    /// A stored charged run's inputs, read back as [`App::decide_and_prepare`] gathered
    /// them: the model recompiled from its stored bytes only if they still hash to the
    /// reviewed digest, the version it was charged for, its data key unwrapped.
    async fn charged_from_row(&self, run: &RunRow) -> Result<ChargedRun, RunFailure> {
        let facts = self.store.run_facts(run.authorisation_id, run.model_id).await.map_err(RunFailure::Host)?;
        let (Some(authorisation), Some(model), Some(dataset)) = (facts.authorisation, facts.model, facts.dataset)
        else {
            return Err(RunFailure::Host(anyhow::anyhow!("the run's authorisation, model or dataset is missing")));
        };
        // Read after the claim: as on the node that took the request, a run does not start
        // under an authorisation revoked (or a dataset destroyed) while it was queued.
        if authorisation.revoked_at.is_some() {
            return Err(RunFailure::Revoked);
        }
        if dataset.destroyed_at.is_some() {
            return Err(RunFailure::Destroyed);
        }
        let host = |error: anyhow::Error| RunFailure::Host(error);
        let manifest = Manifest::from_toml(&model.manifest_toml)
            .map_err(|error| host(anyhow::anyhow!("stored manifest: {error}")))?;
        let digest = ModelDigest::of(&model.module, &manifest).to_string();
        if model.digest != digest {
            return Err(host(anyhow::anyhow!("model {} no longer hashes to its reviewed digest", model.id)));
        }
        let version = self.stored_version(run.dataset_id, run.dataset_version).await.map_err(host)?;
        let schema = DatasetSchema::from_toml(&dataset.schema_toml)
            .map_err(|error| host(anyhow::anyhow!("stored schema: {error}")))?;
        let key = self.unwrap_data_key(&version, &schema).await.map_err(host)?;
        let versions = run.joined_versions().map_err(host)?;
        if versions.len() != facts.joined.len() {
            return Err(host(anyhow::anyhow!("the run's joined datasets do not match its authorisation")));
        }
        let mut sides = Vec::with_capacity(versions.len());
        for ((joined, _), joined_version) in facts.joined.into_iter().zip(versions) {
            let joined = joined.context("the run's joined dataset").map_err(host)?;
            if joined.destroyed_at.is_some() {
                return Err(RunFailure::Destroyed);
            }
            let version = self.stored_version(joined.id, joined_version).await.map_err(host)?;
            sides.push((joined, version));
        }
        let joined = self.joined_inputs(&schema, sides).await.map_err(host)?;
        let compiled = self.runner.compiled(&digest, &model.module, manifest).await.map_err(host)?;
        let remaining = budget(authorisation.epsilon_total, authorisation.epsilon_spent).map_err(host)?.remaining();
        Ok(ChargedRun {
            run_id: run.id,
            authorisation_id: run.authorisation_id,
            epsilon: Epsilon::from_units(u64::try_from(run.epsilon).unwrap_or(0)),
            authorisation_remaining: remaining,
            inputs: RunInputs {
                model_id: run.model_id,
                compiled,
                version,
                schema,
                key,
                min_group_size: u32::try_from(dataset.min_group_size).unwrap_or(u32::MAX),
                hold_outputs: authorisation.hold_outputs,
                joined,
            },
        })
    }

    /// A finished run's release, for the operator who ran it (once any data product review
    /// released it), and for the providing department's reviewer when its outputs are held.
    pub async fn run_result(&self, caller: &Caller, run_id: RunId) -> ServiceResult<RunView> {
        let action = Action::ReadResult;
        let object = format!("run:{run_id}");
        let is_reviewer = caller.principal.role == Role::Reviewer;
        let Some(run) = self.store.run(run_id).await? else {
            return Err(self.not_found(caller, action.audit(), "run", run_id).await);
        };
        let authorisation = self.store.authorisation(run.authorisation_id).await?.context("authorisation")?;
        self.guard(caller, action, &object, &self.run_resource(&run, &authorisation).await?).await?;
        if let Some(visible_at) = run.visible_at
            && hidden_from(caller, &run, self.now())
        {
            return Err(ServiceError::Conflict(format!("run {run_id} becomes visible at {visible_at}")));
        }
        if !is_reviewer && run.state == RunState::Held {
            return Err(ServiceError::Conflict(format!("run {run_id} is held for data product review")));
        }
        if run.state == RunState::Interrupted {
            return Err(ServiceError::RunFailed { message: INTERRUPTED });
        }
        if !is_reviewer && run.state == RunState::Withheld {
            return Err(ServiceError::Conflict(format!("run {run_id} was withheld by data product review")));
        }
        let view = self.stored_view(&run, &authorisation).await?;
        self.record(Self::event(caller, action.audit(), object, AuditOutcome::Ok)).await?;
        Ok(view)
    }

    /// The runs the caller may read ([`Action::ReadResult`], decided by the policy set for
    /// each), a page at a time in id order, with one `run.list` entry per page. A run's
    /// state is shown as its own result would answer — `pending` before its visibility time
    /// for all but reviewers — and the `state` filter applies to what is shown, so a list
    /// cannot tell what the run's answer may not yet tell (a failure before the release).
    pub async fn list_runs(&self, caller: &Caller, query: RunListQuery) -> ServiceResult<RunList> {
        const SHOWN: [&str; 8] =
            ["pending", "queued", "running", "released", "held", "withheld", "failed", "interrupted"];
        check_state_filter(query.state.as_deref(), &SHOWN)?;
        let now = self.now();
        let mut authorisations = std::collections::HashMap::new();
        let mut pager = Pager::new(PageQuery { after: query.after.map(|id| id.0), limit: query.limit })?;
        let mut runs = Vec::new();
        while let Some((after, batch)) = pager.next_batch(runs.len()) {
            let rows = self.store.runs_after(RunId(after), query.authorisation_id, batch).await?;
            pager.fetched(rows.len(), batch);
            for run in rows {
                pager.saw(run.id.0);
                let authorisation = match authorisations.get(&run.authorisation_id) {
                    Some(authorisation) => authorisation,
                    None => {
                        let row = self.store.authorisation(run.authorisation_id).await?.context("authorisation")?;
                        authorisations.entry(run.authorisation_id).or_insert(row)
                    }
                };
                let resource = self.run_resource(&run, authorisation).await?;
                if self.decide(caller, Action::ReadResult, &resource).is_err() {
                    continue;
                }
                let state = if hidden_from(caller, &run, now) { "pending" } else { run.state.as_str() };
                if query.state.as_deref().is_some_and(|wanted| wanted != state) {
                    continue;
                }
                runs.push(RunSummary {
                    run_id: run.id,
                    authorisation_id: run.authorisation_id,
                    model_id: run.model_id,
                    dataset_id: run.dataset_id,
                    dataset_version: run.dataset_version,
                    epsilon_charged: stored_epsilon(run.epsilon),
                    state,
                    visible_at: run.visible_at,
                });
                if pager.is_full(runs.len()) {
                    break;
                }
            }
        }
        let next_after = pager.next_after(runs.len()).map(RunId);
        let mut event =
            Self::event(caller, Act::RunList, "runs", AuditOutcome::Ok).detail(Detail::Returned, runs.len());
        if let Some(authorisation) = query.authorisation_id {
            event = event.detail(Detail::Authorisation, authorisation);
        }
        self.record(event).await?;
        Ok(RunList { runs, next_after })
    }

    /// A stored release as its operator's view, with its receipt and the live budget.
    async fn stored_view(&self, run: &RunRow, authorisation: &AuthorisationRow) -> ServiceResult<RunView> {
        let Some(json) = run.result_json.as_deref() else {
            return Err(ServiceError::Conflict(format!("run {} has no release (state {})", run.id, run.state)));
        };
        let mut view: RunView = serde_json::from_str(json).context("stored release")?;
        view.state = run.state;
        view.visible_at = run.visible_at;
        if let Some(seq) = self.store.release_seq(run.id).await? {
            view.receipt = Some(self.receipt(seq).await?);
        }
        view.authorisation_epsilon_remaining =
            budget(authorisation.epsilon_total, authorisation.epsilon_spent)?.remaining().as_f64();
        Ok(view)
    }

    /// Data product review: a reviewer releases a held result to its operator, or withholds it.
    pub async fn review_result(
        &self,
        caller: &Caller,
        run_id: RunId,
        approve: bool,
        comment: &str,
    ) -> ServiceResult<RunView> {
        let action = Action::ReviewResult;
        let object = format!("run:{run_id}");
        let Some(run) = self.store.run(run_id).await? else {
            return Err(self.not_found(caller, action.audit(), "run", run_id).await);
        };
        let authorisation = self.store.authorisation(run.authorisation_id).await?.context("authorisation")?;
        self.guard(caller, action, &object, &self.run_resource(&run, &authorisation).await?).await?;
        if let Err(denial) = review_result(run.state == RunState::Held) {
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        let state = if approve { RunState::Released } else { RunState::Withheld };
        let now = self.now();
        let mut tx = self.store.begin().await?;
        if !Store::review_held_run(&mut tx, run_id, state).await? {
            return Err(ServiceError::Conflict(format!("run {run_id} was reviewed meanwhile")));
        }
        let mut event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::Decision, if approve { "release" } else { "withhold" })
            .detail(Detail::Note, comment.chars().take(200).collect::<String>());
        if approve {
            // The released values enter the log with the decision that releases them, and
            // from now on the run's receipt proves this entry.
            let stored: RunView = serde_json::from_str(run.result_json.as_deref().context("a held run's release")?)
                .context("stored release")?;
            event = commit_to_release(event, &stored.outputs)?;
        }
        let seq = Store::append_audit(&mut tx, event, now).await?;
        if approve {
            Store::set_release_seq(&mut tx, run_id, seq).await?;
        }
        tx.commit().await.context("committing the result review")?;
        self.run_result(caller, run_id).await
    }

    /// Budget of one authorisation: its operator, the dataset's provider and regulators.
    pub async fn budget(&self, caller: &Caller, authorisation_id: AuthorisationId) -> ServiceResult<BudgetView> {
        let action = Action::ReadBudget;
        let object = format!("authorisation:{authorisation_id}");
        let Some(authorisation) = self.store.authorisation(authorisation_id).await? else {
            return Err(self.not_found(caller, action.audit(), "authorisation", authorisation_id).await);
        };
        self.guard(caller, action, &object, &self.authorisation_resource(&authorisation).await?).await?;
        let dataset = self.store.dataset(authorisation.dataset_id).await?.context("dataset")?;
        let mut joined_datasets = Vec::new();
        for join in authorisation.joins()? {
            let joined = self.store.dataset(join.dataset_id).await?.context("joined dataset")?;
            joined_datasets.push(JoinedBudgetView {
                dataset_id: joined.id,
                epsilon_total: stored_epsilon(joined.epsilon_total),
                epsilon_spent: stored_epsilon(joined.epsilon_spent),
            });
        }
        let own = budget(authorisation.epsilon_total, authorisation.epsilon_spent)?;
        let view = BudgetView {
            authorisation_id,
            epsilon_total: own.total().as_f64(),
            epsilon_spent: own.spent().as_f64(),
            epsilon_remaining: own.remaining().as_f64(),
            dataset_epsilon_total: stored_epsilon(dataset.epsilon_total),
            dataset_epsilon_spent: stored_epsilon(dataset.epsilon_spent),
            joined_datasets,
        };
        self.record(Self::event(caller, action.audit(), object, AuditOutcome::Ok)).await?;
        Ok(view)
    }
}

/// What binds a version's chunks and its wrapped key: dataset, version, schema.
fn chunk_context(version: &VersionRow, schema: &DatasetSchema) -> ChunkContext {
    ChunkContext { dataset_id: version.dataset_id.0, version: version.version, schema_hash: schema.hash() }
}

/// Runs a release on a blocking thread (the sandbox and the join are synchronous) and
/// turns its failure into a run's: the sandbox's own, or the host's.
async fn release_blocking(
    release: impl FnOnce() -> Result<(Vec<ReleasedOutput>, Fallbacks), RunError> + Send + 'static,
) -> Executed {
    tokio::task::spawn_blocking(move || {
        release().map_err(|error| match error {
            RunError::Sandbox(error) => RunFailure::Sandbox(error),
            other => RunFailure::Host(other.into()),
        })
    })
    .await
    .map_err(|error| RunFailure::Host(anyhow::anyhow!("the run task panicked: {error}")))?
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

/// Whether `run` is still hidden from `caller` at `now`: nothing of it — outcome, state,
/// that it ended — reaches anyone but a reviewer before its visibility time. The one rule
/// for reading a run and for listing it.
fn hidden_from(caller: &Caller, run: &RunRow, now: time::OffsetDateTime) -> bool {
    caller.principal.role != Role::Reviewer && run.visible_at.is_some_and(|at| now < at.time())
}

/// What the operator is told of a run its node's end cut off.
const INTERRUPTED: &str = "the run was cut off by a restart of the gateway and released nothing; its charge stands";

/// How often a request whose run another node claimed looks for its end (a run ended on
/// this node wakes it at once), and how often an idle node looks for queued runs, when the
/// node does not hear other nodes' run events (SQLite).
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The same when it hears them (PostgreSQL): the look is only a backstop.
const QUEUE_POLL_HEARING: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a charged run did not release.
enum RunFailure {
    Sandbox(SandboxError),
    Host(anyhow::Error),
    /// The authorisation was revoked while the run waited for a sandbox slot.
    Revoked,
    /// The dataset was destroyed while the run waited in the queue.
    Destroyed,
}

/// The coarse message an operator gets for a failed run's stored outcome code: the same
/// as [`RunFailure::describe`] gave the node that failed it.
fn failure_message(code: &str) -> &'static str {
    match code {
        AUTHORISATION_REVOKED => REVOKED_MESSAGE,
        DATASET_DESTROYED => DESTROYED_MESSAGE,
        code if code == RunState::Interrupted.as_str() => INTERRUPTED,
        code => sluice_sandbox::Outcome::of_code(code).map_or(HOST_MESSAGE, sluice_sandbox::Outcome::message),
    }
}

const AUTHORISATION_REVOKED: &str = "authorisation_revoked";
const REVOKED_MESSAGE: &str = "run stopped: the authorisation was revoked";
const DATASET_DESTROYED: &str = "dataset_destroyed";
const DESTROYED_MESSAGE: &str = "run stopped: the dataset was destroyed";
const HOST_MESSAGE: &str = "run failed: internal error";

impl RunFailure {
    /// The detailed code for the audit log, and the coarse message for the operator.
    fn describe(&self) -> (&'static str, &'static str) {
        match self {
            RunFailure::Sandbox(error) => (error.code(), error.outcome().message()),
            RunFailure::Revoked => (AUTHORISATION_REVOKED, REVOKED_MESSAGE),
            RunFailure::Destroyed => (DATASET_DESTROYED, DESTROYED_MESSAGE),
            RunFailure::Host(error) => {
                tracing::error!(error = %format!("{error:#}"), "run failed on the host side");
                ("host_error", HOST_MESSAGE)
            }
        }
    }
}

/// Adds the released values and their digest to the entry that releases them.
fn commit_to_release(event: AuditEvent, outputs: &[ReleasedOutput]) -> anyhow::Result<AuditEvent> {
    let values = serde_json::to_value(outputs).context("encoding the release")?;
    Ok(event
        .detail(release::VALUES_DETAIL, release::canonical_json(&values))
        .detail(release::RELEASE_DETAIL, release::release_digest(&values)))
}

/// A run ends once: if it is no longer `running` when its outcome is stored (settled as
/// interrupted by a node that took this one for dead), nothing is written and the
/// transaction rolls back — no second end in the log, no release after an interruption.
fn ensure_running(was_running: bool, run_id: RunId) -> anyhow::Result<()> {
    anyhow::ensure!(was_running, "run {run_id} was settled as interrupted while it ran; its outcome is not stored");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: std::time::Duration = std::time::Duration::from_millis(100);

    #[test]
    fn the_delay_is_priced_from_the_worst_row_and_split_over_parts() {
        let price = RowPrice { worst_fuel: 2_000, inputs: 4, outputs: 3 };
        // 10 million rows × (2,000 × 0.5 + 4 × 10 + 3 × 5 = 1,055 ns) over two parts.
        assert_eq!(visibility_delay(BASE, price, 10_000_000, 2), time::Duration::milliseconds(100 + 5_275));
        assert_eq!(visibility_delay(BASE, price, 10_000_000, 1), time::Duration::milliseconds(100 + 10_550));
        // A bound of 150 from the code prices the same rows at a tenth.
        let bounded = RowPrice { worst_fuel: 150, ..price };
        assert_eq!(visibility_delay(BASE, bounded, 10_000_000, 2), time::Duration::milliseconds(100 + 650));
        // No rows: the base alone; a part count of 0 is read as one part.
        assert_eq!(visibility_delay(BASE, price, 0, 0), time::Duration::milliseconds(100));
        // Any row at all is at least a millisecond past the base.
        assert_eq!(visibility_delay(BASE, price, 1, 2), time::Duration::milliseconds(101));
    }
}

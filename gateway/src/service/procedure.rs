//! The seed 002 procedure through the service: scenario applications, the two demand
//! reviews that create an authorisation, and model submission and review.
//!
//! Decisions come from `sluice_policies`; this module gathers the facts, reads the state
//! inside the write transaction (so two reviewers cannot both act on one stage), and
//! records each step in the audit log. It must not decide anything itself.

use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sluice_audit::{Act, Detail};
use sluice_policies::{
    Action, ApplicationState, Denial, Epsilon, ModelState, Resource, check_column_grantable, check_column_granted,
    check_dummy_run, check_epsilon_per_run, check_not_revoked, model_review_outcome, review_application, review_model,
    revoke_authorisation, revoke_model, submit_draft, withdraw_application,
};
use sluice_sandbox::{CompiledModel, Manifest};

use super::lists::{PageQuery, Pager};
use super::{App, Caller, stored_epsilon};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{ApplicationId, AuthorisationId, DatasetId, ModelId, PrincipalId};
use crate::store::{ApplicationRow, AuthorisationRow, JoinedColumns, ModelRow, Store, encode_joins};
use crate::timestamp::Timestamp;
use sluice_audit::AuditOutcome;
use sluice_vault::schema::{DatasetSchema, MAX_GRANTABLE_LEVEL};

/// A scenario application (一场景一申请).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct NewApplication {
    pub dataset_id: DatasetId,
    pub purpose: String,
    pub use_scope: String,
    pub security_measures: String,
    pub columns: Vec<String>,
    pub valid_from: String,
    pub valid_until: String,
    pub epsilon: f64,
    /// Save as a draft, to submit later with `POST /v1/applications/{id}/submit`.
    #[serde(default)]
    pub draft: bool,
    /// Another department's dataset joined to this one on their level-4 ids, inside the
    /// host, before the model sees a row (公共数据融合); its department reviews the
    /// application too. One join: `joins` names several; give one or the other.
    #[serde(default)]
    pub join: Option<JoinRequest>,
    /// Other departments' datasets joined to this one on their level-4 ids, in order (seed
    /// 002 item 16 joins the tax, social-insurance and market-regulation bureaus' data);
    /// every department whose data is used reviews the application.
    #[serde(default)]
    pub joins: Vec<JoinRequest>,
}

/// At most this many datasets joined to a scenario's first one.
pub const MAX_JOINED_DATASETS: usize = 4;

/// A dataset an application joins to its first one, and the columns of it asked for.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct JoinRequest {
    pub dataset_id: DatasetId,
    pub columns: Vec<String>,
}

impl From<JoinedColumns> for JoinRequest {
    fn from(join: JoinedColumns) -> Self {
        Self { dataset_id: join.dataset_id, columns: join.columns }
    }
}

impl From<&JoinRequest> for JoinedColumns {
    fn from(join: &JoinRequest) -> Self {
        Self { dataset_id: join.dataset_id, columns: join.columns.clone() }
    }
}

/// The audit details of a scenario's joins: the joined datasets' ids separated by `,`, and
/// their columns (each dataset's separated by `,`, the datasets by `;`). One join reads as
/// it always has.
pub(crate) fn join_details(joins: &[JoinedColumns]) -> (String, String) {
    let ids: Vec<String> = joins.iter().map(|join| join.dataset_id.to_string()).collect();
    let columns: Vec<String> = joins.iter().map(|join| join.columns.join(",")).collect();
    (ids.join(","), columns.join(";"))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationView {
    pub id: ApplicationId,
    pub state: &'static str,
    pub dataset_id: DatasetId,
    pub columns: Vec<String>,
    /// The datasets joined to the first on their ids, in order, and their columns asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<JoinRequest>,
    pub authorisation_id: Option<AuthorisationId>,
    /// What the reviewers judge it by (seed 002 §21): the purpose, the scope of use and
    /// the security measures, the window and the privacy budget asked for.
    pub purpose: String,
    pub use_scope: String,
    pub security_measures: String,
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
    pub epsilon_requested: f64,
}

impl ApplicationView {
    fn of(
        row: &ApplicationRow,
        state: ApplicationState,
        authorisation_id: Option<AuthorisationId>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.id,
            state: state.as_str(),
            dataset_id: row.dataset_id,
            columns: serde_json::from_str(&row.columns_json).context("stored columns")?,
            joins: row.joins()?.into_iter().map(JoinRequest::from).collect(),
            authorisation_id,
            purpose: row.purpose.clone(),
            use_scope: row.use_scope.clone(),
            security_measures: row.security_measures.clone(),
            valid_from: row.valid_from,
            valid_until: row.valid_until,
            epsilon_requested: stored_epsilon(row.epsilon_requested),
        })
    }
}

/// Which applications a list shows: `GET /v1/applications?dataset_id=&state=&after=&limit=`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplicationListQuery {
    pub dataset_id: Option<DatasetId>,
    pub state: Option<String>,
    pub after: Option<ApplicationId>,
    pub limit: Option<u32>,
}

/// An application in a list (`GET /v1/applications/{id}` reads it whole, audited).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationSummary {
    pub id: ApplicationId,
    pub dataset_id: DatasetId,
    /// The datasets joined to the first, if the scenario joins other departments'.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub joined_dataset_ids: Vec<DatasetId>,
    pub state: &'static str,
    pub purpose: String,
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
    pub epsilon_requested: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplicationList {
    pub applications: Vec<ApplicationSummary>,
    /// Follow it until it is absent (a page can be short).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<ApplicationId>,
}

/// Which models a list shows: `GET /v1/models?authorisation_id=&state=&after=&limit=` (a
/// reviewer's queue is `?state=submitted`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelListQuery {
    pub authorisation_id: Option<AuthorisationId>,
    pub state: Option<String>,
    pub after: Option<ModelId>,
    pub limit: Option<u32>,
}

/// A model in a list (`GET /v1/models/{id}` reads it whole, with its manifest, audited).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelSummary {
    pub id: ModelId,
    pub authorisation_id: AuthorisationId,
    pub name: String,
    pub digest: String,
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelSummary>,
    /// Follow it until it is absent (a page can be short).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<ModelId>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReviewOutcome {
    pub state: &'static str,
    /// Set when this review approved the application and created its authorisation.
    pub authorisation_id: Option<AuthorisationId>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct NewModel {
    pub authorisation_id: AuthorisationId,
    /// The WebAssembly module, base64.
    pub module_base64: String,
    /// The manifest's text (TOML).
    pub manifest: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelView {
    pub id: ModelId,
    pub authorisation_id: AuthorisationId,
    pub name: String,
    pub digest: String,
    pub state: &'static str,
    pub epsilon_per_run: f64,
    /// What the model declares it reads and releases, for its reviewers to check against
    /// the application's purpose (seed 002 §23's consistency and compliance questions).
    pub manifest: ManifestView,
    /// What the automated checks found at submission, shown to reviewers first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub automated_results: Option<serde_json::Value>,
}

/// A model's manifest as submitted (`toml`) and as Sluice read it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ManifestView {
    /// The granted columns it reads, with their types.
    #[schema(value_type = Vec<Object>)]
    pub inputs: Vec<sluice_sandbox::InputColumn>,
    /// The column its outputs are grouped by, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// Each output: its mechanism, clamp bounds and share of ε.
    #[schema(value_type = Vec<Object>)]
    pub outputs: Vec<sluice_sandbox::OutputSpec>,
    /// The fuel one row may use, if declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_per_row: Option<u64>,
    pub toml: String,
}

impl ModelView {
    fn of(model: &ModelRow, state: ModelState, automated_results: Option<serde_json::Value>) -> anyhow::Result<Self> {
        let manifest =
            Manifest::from_toml(&model.manifest_toml).map_err(|error| anyhow::anyhow!("stored manifest: {error}"))?;
        Ok(Self {
            id: model.id,
            authorisation_id: model.authorisation_id,
            name: model.name.clone(),
            digest: model.digest.clone(),
            state: state.as_str(),
            epsilon_per_run: manifest.epsilon_per_run(),
            manifest: ManifestView {
                inputs: manifest.inputs().to_vec(),
                group_by: manifest.group_by().map(|index| manifest.inputs()[index].name.clone()),
                outputs: manifest.outputs().to_vec(),
                fuel_per_row: manifest.fuel_per_row(),
                toml: model.manifest_toml.clone(),
            },
            automated_results,
        })
    }
}

/// The four questions of seed 002 §23 a model review answers; an approval needs all four.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct ReviewChecklist {
    /// 可用性: it runs within the limits and produces the declared outputs.
    pub usability: bool,
    /// 一致性: what it computes matches the application's stated purpose.
    pub consistency: bool,
    /// 合规性: it reads only granted columns and releases only what the rules allow.
    pub compliance: bool,
    /// 安全性: nothing in it tries to carry data out or to attack the sandbox.
    pub security: bool,
}

impl ReviewChecklist {
    fn all_confirmed(&self) -> bool {
        self.usability && self.consistency && self.compliance && self.security
    }
}

/// A number JSON can carry (a quantile of no rows is not a number).
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// Dummy rows the automated review runs a submitted model on.
const DUMMY_REVIEW_ROWS: usize = 1_000;

fn parse_window(from: &str, until: &str) -> ServiceResult<(Timestamp, Timestamp)> {
    let invalid = |error: anyhow::Error| ServiceError::invalid(format!("{error:#}"));
    let (from, until) = (Timestamp::parse(from).map_err(invalid)?, Timestamp::parse(until).map_err(invalid)?);
    if from >= until {
        return Err(ServiceError::invalid("valid_from must be before valid_until"));
    }
    Ok((from, until))
}

impl App {
    pub async fn submit_application(
        &self,
        caller: &Caller,
        mut request: NewApplication,
    ) -> ServiceResult<ApplicationView> {
        let action = Action::SubmitApplication;
        let object = format!("dataset:{}", request.dataset_id);
        let Some(dataset) = self.store.dataset(request.dataset_id).await? else {
            return Err(self.not_found(caller, action.audit(), "dataset", request.dataset_id).await);
        };
        self.guard(caller, action, &object, &self.dataset_resource(&dataset).await?).await?;
        let schema = DatasetSchema::from_toml(&dataset.schema_toml)
            .map_err(|error| anyhow::anyhow!("stored schema: {error}"))?;
        if request.columns.is_empty() || request.purpose.trim().is_empty() {
            return Err(ServiceError::invalid("an application names a purpose and at least one column"));
        }
        self.check_columns_asked(caller, &object, dataset.id, &schema, &request.columns).await?;
        let (valid_from, valid_until) = parse_window(&request.valid_from, &request.valid_until)?;
        let epsilon = Epsilon::from_f64(request.epsilon).map_err(|denial| ServiceError::invalid(denial.message))?;
        if epsilon.units() as i64 > dataset.epsilon_total {
            return Err(ServiceError::invalid("the requested epsilon exceeds the dataset's lifetime budget"));
        }
        let joins: Vec<JoinRequest> = match (request.join.take(), std::mem::take(&mut request.joins)) {
            (Some(_), joins) if !joins.is_empty() => {
                return Err(ServiceError::invalid("an application gives `join` or `joins`, not both"));
            }
            (Some(join), _) => vec![join],
            (None, joins) => joins,
        };
        if joins.len() > MAX_JOINED_DATASETS {
            return Err(ServiceError::invalid(format!(
                "an application joins at most {MAX_JOINED_DATASETS} other datasets to its first"
            )));
        }
        let mut view = schema.clone();
        for (index, join) in joins.iter().enumerate() {
            if joins[..index].iter().any(|earlier| earlier.dataset_id == join.dataset_id) {
                return Err(ServiceError::invalid(format!("dataset {} is joined twice", join.dataset_id)));
            }
            view = self.check_join(caller, &dataset, &view, join, epsilon).await?;
        }
        let joins: Vec<JoinedColumns> = joins.iter().map(JoinedColumns::from).collect();
        let row = ApplicationRow {
            id: ApplicationId(0),
            operator_id: PrincipalId(caller.principal.id),
            dataset_id: dataset.id,
            purpose: request.purpose,
            use_scope: request.use_scope,
            security_measures: request.security_measures,
            columns_json: serde_json::to_string(&request.columns).context("encoding columns")?,
            valid_from,
            valid_until,
            epsilon_requested: epsilon.units() as i64,
            state: if request.draft { ApplicationState::Draft } else { ApplicationState::Submitted },
            bureau_reviewer_id: None,
            joins_json: encode_joins(&joins)?,
        };
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let id = Store::insert_application(&mut tx, &row, now).await?;
        let row = ApplicationRow { id, ..row };
        let event = Self::event(caller, action.audit(), format!("application:{id}"), AuditOutcome::Ok)
            .detail(Detail::Dataset, dataset.id)
            .detail(Detail::Columns, request.columns.join(","))
            .detail(Detail::Epsilon, epsilon);
        let event = if joins.is_empty() {
            event
        } else {
            let (datasets, columns) = join_details(&joins);
            event.detail(Detail::JoinedDataset, datasets).detail(Detail::JoinedColumns, columns)
        };
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the application")?;
        Ok(ApplicationView::of(&row, row.state, None)?)
    }

    /// One of an application's joins, checked as its first dataset is: the joined dataset
    /// exists, the caller may apply for it, its schema joins what came before (`view`: both
    /// keyed alike, at most one row per key on the joined side, no column name in both),
    /// each column asked for is in it and grantable, and the ε asked for fits its lifetime
    /// budget too. Returns the view with it joined.
    async fn check_join(
        &self,
        caller: &Caller,
        first: &crate::store::DatasetRow,
        view: &DatasetSchema,
        join: &JoinRequest,
        epsilon: Epsilon,
    ) -> ServiceResult<DatasetSchema> {
        let action = Action::SubmitApplication;
        let object = format!("dataset:{}", join.dataset_id);
        if join.dataset_id == first.id {
            return Err(ServiceError::invalid("an application joins another dataset, not its own"));
        }
        let Some(joined) = self.store.dataset(join.dataset_id).await? else {
            return Err(self.not_found(caller, action.audit(), "dataset", join.dataset_id).await);
        };
        self.guard(caller, action, &object, &self.dataset_resource(&joined).await?).await?;
        let joined_schema =
            DatasetSchema::from_toml(&joined.schema_toml).map_err(|error| anyhow::anyhow!("stored schema: {error}"))?;
        let joined_view = view.joined(&joined_schema).map_err(ServiceError::invalid)?;
        if join.columns.is_empty() {
            return Err(ServiceError::invalid("a join names at least one column of the joined dataset"));
        }
        self.check_columns_asked(caller, &object, joined.id, &joined_schema, &join.columns).await?;
        if epsilon.units() as i64 > joined.epsilon_total {
            return Err(ServiceError::invalid(format!(
                "the requested epsilon exceeds joined dataset {}'s lifetime budget",
                joined.id
            )));
        }
        Ok(joined_view)
    }

    /// Each column an application asks of dataset `dataset` is in its schema and may be
    /// granted (a level-4 column never is: refused and audited on `object`).
    async fn check_columns_asked(
        &self,
        caller: &Caller,
        object: &str,
        dataset: DatasetId,
        schema: &DatasetSchema,
        columns: &[String],
    ) -> ServiceResult<()> {
        for name in columns {
            let Some((_, column)) = schema.column(name) else {
                return Err(ServiceError::invalid(format!("dataset {dataset} has no column `{name}`")));
            };
            if let Err(denial) = check_column_grantable(name, column.classification, MAX_GRANTABLE_LEVEL) {
                return Err(self.deny(caller, Action::SubmitApplication.audit(), object.to_owned(), denial).await);
            }
        }
        Ok(())
    }

    pub async fn application(&self, caller: &Caller, id: ApplicationId) -> ServiceResult<ApplicationView> {
        let action = Action::ReadApplication;
        let object = format!("application:{id}");
        let Some(row) = self.store.application(id).await? else {
            return Err(self.not_found(caller, action.audit(), "application", id).await);
        };
        let state = row.state;
        self.guard(caller, action, &object, &self.application_resource(&row, state).await?).await?;
        self.record(Self::event(caller, action.audit(), &object, AuditOutcome::Ok)).await?;
        Ok(ApplicationView::of(&row, state, self.store.authorisation_for_application(id).await?)?)
    }

    /// The applications the caller may read ([`Action::ReadApplication`], decided by the
    /// policy set for each), a page at a time in id order; one `application.list` entry a page.
    pub async fn list_applications(
        &self,
        caller: &Caller,
        query: ApplicationListQuery,
    ) -> ServiceResult<ApplicationList> {
        let wanted = match query.state.as_deref() {
            Some(text) => Some(
                ApplicationState::parse(text)
                    .ok_or_else(|| ServiceError::invalid(format!("`{text}` is not an application state")))?,
            ),
            None => None,
        };
        let mut pager = Pager::new(PageQuery { after: query.after.map(|id| id.0), limit: query.limit })?;
        let mut applications = Vec::new();
        while let Some((after, batch)) = pager.next_batch(applications.len()) {
            let rows = self.store.applications_after(ApplicationId(after), query.dataset_id, batch).await?;
            pager.fetched(rows.len(), batch);
            for row in rows {
                pager.saw(row.id.0);
                if wanted.is_some_and(|wanted| wanted != row.state) {
                    continue;
                }
                let resource = self.application_resource(&row, row.state).await?;
                if self.decide(caller, Action::ReadApplication, &resource).is_err() {
                    continue;
                }
                applications.push(ApplicationSummary {
                    id: row.id,
                    dataset_id: row.dataset_id,
                    joined_dataset_ids: row.joins()?.into_iter().map(|join| join.dataset_id).collect(),
                    state: row.state.as_str(),
                    purpose: row.purpose,
                    valid_from: row.valid_from,
                    valid_until: row.valid_until,
                    epsilon_requested: stored_epsilon(row.epsilon_requested),
                });
                if pager.is_full(applications.len()) {
                    break;
                }
            }
        }
        let next_after = pager.next_after(applications.len()).map(ApplicationId);
        let mut event = Self::event(caller, Act::ApplicationList, "applications", AuditOutcome::Ok)
            .detail(Detail::Returned, applications.len());
        if let Some(dataset) = query.dataset_id {
            event = event.detail(Detail::Dataset, dataset);
        }
        self.record(event).await?;
        Ok(ApplicationList { applications, next_after })
    }

    /// The models the caller may read ([`Action::ReadModel`], decided by the policy set for
    /// each), a page at a time in id order; one `model.list` entry a page.
    pub async fn list_models(&self, caller: &Caller, query: ModelListQuery) -> ServiceResult<ModelList> {
        let wanted = match query.state.as_deref() {
            Some(text) => Some(
                ModelState::parse(text)
                    .ok_or_else(|| ServiceError::invalid(format!("`{text}` is not a model state")))?,
            ),
            None => None,
        };
        let mut pager = Pager::new(PageQuery { after: query.after.map(|id| id.0), limit: query.limit })?;
        let mut models = Vec::new();
        while let Some((after, batch)) = pager.next_batch(models.len()) {
            let rows = self.store.models_after(ModelId(after), query.authorisation_id, batch).await?;
            pager.fetched(rows.len(), batch);
            for row in rows {
                pager.saw(row.id.0);
                if wanted.is_some_and(|wanted| wanted != row.state) {
                    continue;
                }
                let resource = self.model_resource(&row, row.state).await?;
                if self.decide(caller, Action::ReadModel, &resource).is_err() {
                    continue;
                }
                models.push(ModelSummary {
                    id: row.id,
                    authorisation_id: row.authorisation_id,
                    name: row.name,
                    digest: row.digest,
                    state: row.state.as_str(),
                });
                if pager.is_full(models.len()) {
                    break;
                }
            }
        }
        let next_after = pager.next_after(models.len()).map(ModelId);
        let mut event =
            Self::event(caller, Act::ModelList, "models", AuditOutcome::Ok).detail(Detail::Returned, models.len());
        if let Some(authorisation) = query.authorisation_id {
            event = event.detail(Detail::Authorisation, authorisation);
        }
        self.record(event).await?;
        Ok(ModelList { models, next_after })
    }

    /// One demand, one review: records a bureau or department decision; the second
    /// approval creates the scenario's authorisation in the same transaction.
    pub async fn review_application(
        &self,
        caller: &Caller,
        id: ApplicationId,
        approve: bool,
        comment: &str,
        hold_outputs: bool,
    ) -> ServiceResult<ReviewOutcome> {
        let action = Action::ReviewApplication;
        let object = format!("application:{id}");
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let Some(application) = Store::application_in(&mut tx, id).await? else {
            tx.rollback().await.context("rolling back")?;
            return Err(self.not_found(caller, action.audit(), "application", id).await);
        };
        let state = application.state;
        let approvals = Store::provider_approvals(&mut tx, id).await?;
        let resource = self.application_resource_with(&application, state, &approvals).await?;
        let Resource::Application { pending_providers, .. } = &resource else {
            return Err(anyhow::anyhow!("an application's resource is an application").into());
        };
        let others_pending =
            pending_providers.iter().filter(|organisation| **organisation != caller.principal.organisation).count();
        let next = match self
            .decide(caller, action, &resource)
            .and_then(|()| review_application(state, approve, others_pending))
        {
            Ok(next) => next,
            Err(denial) => {
                tx.rollback().await.context("rolling back")?;
                return Err(self.deny(caller, action.audit(), object, denial).await);
            }
        };
        Store::record_application_review(
            &mut tx,
            id,
            PrincipalId(caller.principal.id),
            state.as_str(),
            approve,
            comment,
            next,
            now,
        )
        .await?;
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::Stage, state.as_str())
            .detail(Detail::Decision, if approve { "approve" } else { "reject" })
            .detail(Detail::State, next.as_str());
        Store::append_audit(&mut tx, event, now).await?;
        let mut authorisation_id = None;
        if next == ApplicationState::Approved {
            let new_id = Store::insert_authorisation(&mut tx, &application, hold_outputs, now).await?;
            let event =
                Self::event(caller, Act::AuthorisationCreate, format!("authorisation:{new_id}"), AuditOutcome::Ok)
                    .detail(Detail::Application, id)
                    .detail(Detail::Operator, application.operator_id)
                    .detail(Detail::Dataset, application.dataset_id)
                    .detail(Detail::EpsilonTotal, Epsilon::from_units(application.epsilon_requested as u64))
                    .detail(Detail::HoldOutputs, hold_outputs)
                    .detail(Detail::ValidUntil, application.valid_until);
            let joins = application.joins()?;
            let event =
                if joins.is_empty() { event } else { event.detail(Detail::JoinedDataset, join_details(&joins).0) };
            Store::append_audit(&mut tx, event, now).await?;
            authorisation_id = Some(new_id);
        }
        tx.commit().await.context("committing the review")?;
        Ok(ReviewOutcome { state: next.as_str(), authorisation_id })
    }

    /// Submits a model version under an authorisation: static review, then stored
    /// pending human review, bound to the digest of module + manifest.
    pub async fn submit_model(&self, caller: &Caller, request: NewModel) -> ServiceResult<ModelView> {
        let action = Action::SubmitModel;
        let object = format!("authorisation:{}", request.authorisation_id);
        let Some(authorisation) = self.store.authorisation(request.authorisation_id).await? else {
            return Err(self.not_found(caller, action.audit(), "authorisation", request.authorisation_id).await);
        };
        self.guard(caller, action, &object, &self.authorisation_resource(&authorisation).await?).await?;
        self.spend(caller, crate::parts::Expensive::ModelSubmission, 1, action.audit(), &object).await?;
        let module = base64::engine::general_purpose::STANDARD
            .decode(request.module_base64.trim())
            .map_err(|_| ServiceError::invalid("module_base64 is not base64"))?;
        let compiled = match self.review_statically(&module, &request.manifest, &authorisation).await {
            Ok(compiled) => compiled,
            Err(error) => {
                let reason = error.code();
                let event = Self::event(caller, action.audit(), &object, AuditOutcome::Failed).reason(reason);
                self.record(event).await?;
                return Err(error);
            }
        };
        // A model whose ε per run is under the floor, or more than the authorisation has
        // left, could never run: refuse it now rather than approve it and fail every run.
        let epsilon = Epsilon::from_f64(compiled.manifest().epsilon_per_run()).map_err(ServiceError::Denied)?;
        let remaining = super::runs::budget(authorisation.epsilon_total, authorisation.epsilon_spent)?.remaining();
        if let Err(denial) = check_epsilon_per_run(epsilon, self.gate.min_epsilon_per_run(), remaining) {
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        let digest = compiled.digest().to_string();
        let manifest = compiled.manifest();
        let mut row = ModelRow {
            id: ModelId(0),
            authorisation_id: authorisation.id,
            submitter_id: PrincipalId(caller.principal.id),
            name: format!("{} {}", manifest.name(), manifest.version()),
            digest: digest.clone(),
            module,
            manifest_toml: request.manifest,
            state: ModelState::Submitted,
        };
        let now = self.now();
        let mut tx = self.store.begin().await?;
        if let Err(denial) = check_not_revoked(Store::digest_revoked(&mut tx, authorisation.id, &digest).await?) {
            tx.rollback().await.context("rolling back")?;
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        let id = Store::insert_model(&mut tx, &row, now).await?;
        row.id = id;
        let event = Self::event(caller, action.audit(), format!("model:{id}"), AuditOutcome::Ok)
            .detail(Detail::Authorisation, authorisation.id)
            .detail(Detail::Digest, &digest);
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the model")?;
        self.runner.remember(&compiled);
        let automated = self.automated_results(&compiled, &authorisation).await?;
        self.store.set_automated_results(id, &automated.to_string()).await?;
        Ok(ModelView::of(&row, ModelState::Submitted, Some(automated))?)
    }

    /// The automated half of model review: ABI checks by the sandbox, then the manifest's
    /// columns against the authorisation and the dataset schema (joined, if it joins two).
    async fn review_statically(
        &self,
        module: &[u8],
        manifest: &str,
        authorisation: &AuthorisationRow,
    ) -> ServiceResult<CompiledModel> {
        let manifest = Manifest::from_toml(manifest).map_err(ServiceError::ModelRejected)?;
        let runtime = self.runner.runtime().clone();
        let module = module.to_vec();
        let compiled = tokio::task::spawn_blocking(move || runtime.compile(&module, manifest))
            .await
            .context("the compile task panicked")?
            .map_err(ServiceError::ModelRejected)?;
        let granted = authorisation.granted_columns()?;
        let schema = self.authorisation_schema(authorisation).await?;
        for input in compiled.manifest().inputs() {
            check_column_granted(&input.name, granted.contains(&input.name)).map_err(ServiceError::Denied)?;
            let declared = schema.column(&input.name).map(|(_, column)| column.column_type);
            if declared != Some(input.column_type) {
                return Err(ServiceError::Denied(Denial::invalid_request(format!(
                    "the manifest reads `{}` as {}, the dataset declares it differently",
                    input.name,
                    input.column_type.as_str()
                ))));
            }
        }
        Ok(compiled)
    }

    /// The rows a model under `authorisation` sees, as one schema: its dataset's, or it
    /// joined with each joined dataset in turn ([`DatasetSchema::joined_all`]).
    pub(crate) async fn authorisation_schema(&self, authorisation: &AuthorisationRow) -> anyhow::Result<DatasetSchema> {
        let schema_of = |row: crate::store::DatasetRow| {
            DatasetSchema::from_toml(&row.schema_toml).map_err(|error| anyhow::anyhow!("stored schema: {error}"))
        };
        let first = schema_of(self.store.dataset(authorisation.dataset_id).await?.context("authorisation's dataset")?)?;
        let mut joined = Vec::new();
        for join in authorisation.joins()? {
            joined.push(schema_of(
                self.store.dataset(join.dataset_id).await?.context("authorisation's joined dataset")?,
            )?);
        }
        first
            .joined_all(&joined)
            .map_err(|error| anyhow::anyhow!("the authorisation's datasets no longer join: {error}"))
    }

    /// One model, one review: a reviewer outside the submitting organisation decides.
    pub async fn review_model(
        &self,
        caller: &Caller,
        id: ModelId,
        approve: bool,
        comment: &str,
        checklist: Option<ReviewChecklist>,
    ) -> ServiceResult<ModelView> {
        let action = Action::ReviewModel;
        let object = format!("model:{id}");
        let Some(model) = self.store.model(id).await? else {
            return Err(self.not_found(caller, action.audit(), "model", id).await);
        };
        // Read before the write transaction: the automated results never change, and the
        // write lock should not wait on another read.
        let dummy_run_passed = self.dummy_run_passed(id).await?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let state = Self::model_state_in(&mut tx, &model).await?;
        let resource = self.model_resource(&model, state).await?;
        if let Err(denial) = self.decide(caller, action, &resource).and_then(|()| review_model(state)) {
            tx.rollback().await.context("rolling back")?;
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        if approve && let Err(denial) = check_dummy_run(dummy_run_passed) {
            tx.rollback().await.context("rolling back")?;
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        if approve
            && let Err(denial) =
                check_not_revoked(Store::digest_revoked(&mut tx, model.authorisation_id, &model.digest).await?)
        {
            tx.rollback().await.context("rolling back")?;
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        if approve && !checklist.is_some_and(|checklist| checklist.all_confirmed()) {
            return Err(ServiceError::invalid(
                "an approval confirms the whole checklist: usability, consistency, compliance and security",
            ));
        }
        let mut prior = Vec::new();
        for approver in Store::model_approvers(&mut tx, id).await? {
            prior.push((approver.0, self.principal(approver).await?.organisation));
        }
        let quorum = self.gate.model_review_quorum() as usize;
        let next = match model_review_outcome(&prior, &caller.principal, approve, quorum) {
            Ok(next) => next,
            Err(denial) => {
                tx.rollback().await.context("rolling back")?;
                return Err(self.deny(caller, action.audit(), object, denial).await);
            }
        };
        let checklist_json = serde_json::to_string(&checklist.unwrap_or_default()).context("encoding the checklist")?;
        Store::record_model_review(
            &mut tx,
            id,
            PrincipalId(caller.principal.id),
            approve,
            comment,
            &checklist_json,
            next,
            now,
        )
        .await?;
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::Decision, if approve { "approve" } else { "reject" })
            .detail(Detail::Digest, &model.digest)
            .detail(Detail::Checklist, &checklist_json)
            .detail(Detail::State, next.as_str());
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the model review")?;
        Ok(ModelView::of(&model, next, None)?)
    }

    /// A model submission with its automated results, for its submitter and reviewers.
    pub async fn model_view(&self, caller: &Caller, id: ModelId) -> ServiceResult<ModelView> {
        let action = Action::ReadModel;
        let object = format!("model:{id}");
        let Some(model) = self.store.model(id).await? else {
            return Err(self.not_found(caller, action.audit(), "model", id).await);
        };
        let state = model.state;
        self.guard(caller, action, &object, &self.model_resource(&model, state).await?).await?;
        self.record(Self::event(caller, action.audit(), &object, AuditOutcome::Ok)).await?;
        let automated_results = self
            .store
            .automated_results(id)
            .await?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .context("stored automated results")?;
        Ok(ModelView::of(&model, state, automated_results)?)
    }

    /// The automated half of review, run at submission and shown to reviewers first: the
    /// static review (passed, or the model would have been refused) and a run on dummy rows
    /// made from the dataset's schema, with the server's limits and release.
    async fn automated_results(
        &self,
        compiled: &CompiledModel,
        authorisation: &AuthorisationRow,
    ) -> anyhow::Result<serde_json::Value> {
        // A joined scenario's dummy rows follow the joined schema: the joined columns are
        // sometimes null, as they are for a key the other department lacks.
        let schema = self.authorisation_schema(authorisation).await?;
        let (runtime, compiled) = (self.runner.runtime().clone(), compiled.clone());
        let compiled_for_exact = compiled.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            crate::runner::dummy_run(&runtime, &compiled, &schema, DUMMY_REVIEW_ROWS, 0)
        })
        .await
        .context("the review run panicked")?;
        let dummy_run = match outcome {
            // Dummy rows are not secret, so the counts of failed rows are shown to reviewers.
            Ok(run) if run.outputs.fallbacks().total() > 0 => serde_json::json!({
                "rows": DUMMY_REVIEW_ROWS,
                "outcome": "failed",
                "code": "row_fallbacks",
                "fallback_rows": {
                    "trap": run.outputs.fallbacks().trap,
                    "fuel": run.outputs.fallbacks().fuel,
                    "stack": run.outputs.fallbacks().stack,
                    "non_finite": run.outputs.fallbacks().non_finite,
                },
            }),
            Ok(run) => {
                // Per output, the exact value on the dummy rows beside its noisy release:
                // how much the noise moves it, for the reviewers' usability question.
                let exact = run.exact_values(&compiled_for_exact, DUMMY_REVIEW_ROWS);
                let compared: Vec<_> = run
                    .released
                    .iter()
                    .zip(exact)
                    .map(|(released, exact)| {
                        serde_json::json!({
                            "name": released.name,
                            "kind": released.kind,
                            "exact": finite(exact.exact),
                            "noisy": released.value.and_then(finite),
                            "ci95_half_width": finite(released.ci95_half_width),
                        })
                    })
                    .collect();
                serde_json::json!({"rows": DUMMY_REVIEW_ROWS, "outcome": "passed", "outputs": run.released.len(), "compared": compared})
            }
            Err(error) => {
                let code = error.downcast_ref::<sluice_sandbox::SandboxError>().map_or("failed", |error| error.code());
                serde_json::json!({"rows": DUMMY_REVIEW_ROWS, "outcome": "failed", "code": code})
            }
        };
        Ok(serde_json::json!({"static_review": "passed", "dummy_run": dummy_run}))
    }

    /// Whether the model's automated dummy-data run passed (rows that fail on dummy data
    /// would fall back on real data too, silently skewing every release).
    async fn dummy_run_passed(&self, id: ModelId) -> anyhow::Result<bool> {
        let results: Option<serde_json::Value> =
            self.store.automated_results(id).await?.map(|text| serde_json::from_str(&text)).transpose()?;
        Ok(results.is_some_and(|results| results["dummy_run"]["outcome"] == "passed"))
    }

    /// The applicant submits its draft for review.
    pub async fn submit_draft(&self, caller: &Caller, id: ApplicationId) -> ServiceResult<ApplicationView> {
        self.settle_own_application(caller, id, Action::SubmitApplication, submit_draft).await
    }

    /// A model's state read inside `tx`, so two reviews of one model cannot both act on
    /// the same state.
    async fn model_state_in(tx: &mut crate::store::Tx, model: &ModelRow) -> ServiceResult<ModelState> {
        Ok(Store::model_state_in(tx, model.id).await?.context("the model disappeared")?)
    }

    /// The applicant withdraws an application that awaits a decision.
    pub async fn withdraw_application(&self, caller: &Caller, id: ApplicationId) -> ServiceResult<ApplicationView> {
        self.settle_own_application(caller, id, Action::WithdrawApplication, withdraw_application).await
    }

    /// Moves the caller's own application to the state `decide` allows, with its audit entry.
    async fn settle_own_application(
        &self,
        caller: &Caller,
        id: ApplicationId,
        action: Action,
        next_state: fn(ApplicationState) -> Result<ApplicationState, Denial>,
    ) -> ServiceResult<ApplicationView> {
        let object = format!("application:{id}");
        let mut tx = self.store.begin().await?;
        let Some(application) = Store::application_in(&mut tx, id).await? else {
            tx.rollback().await.context("rolling back")?;
            return Err(self.not_found(caller, action.audit(), "application", id).await);
        };
        let state = application.state;
        let resource = self.application_resource(&application, state).await?;
        let next = match self.decide(caller, action, &resource).and_then(|()| next_state(state)) {
            Ok(next) => next,
            Err(denial) => {
                tx.rollback().await.context("rolling back")?;
                return Err(self.deny(caller, action.audit(), object, denial).await);
            }
        };
        Store::set_application_state(&mut tx, id, next).await?;
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok).detail(Detail::State, next.as_str());
        Store::append_audit(&mut tx, event, self.now()).await?;
        tx.commit().await.context("committing the application's new state")?;
        self.application(caller, id).await
    }

    /// Revokes an authorisation at once: no run starts or charges under it afterwards.
    pub async fn revoke_authorisation(&self, caller: &Caller, id: AuthorisationId, reason: &str) -> ServiceResult<()> {
        let action = Action::RevokeAuthorisation;
        let object = format!("authorisation:{id}");
        let Some(authorisation) = self.store.authorisation(id).await? else {
            return Err(self.not_found(caller, action.audit(), "authorisation", id).await);
        };
        self.guard(caller, action, &object, &self.authorisation_resource(&authorisation).await?).await?;
        if let Err(denial) = revoke_authorisation(authorisation.revoked_at.is_some()) {
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        let now = self.now();
        let mut tx = self.store.begin().await?;
        if !Store::revoke_authorisation(&mut tx, id, now).await? {
            return Err(ServiceError::Conflict(format!("authorisation {id} is already revoked")));
        }
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::Note, reason.chars().take(200).collect::<String>());
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the revocation")?;
        Ok(())
    }

    /// Revokes a model's approval (or refuses a pending model for good).
    pub async fn revoke_model(&self, caller: &Caller, id: ModelId, reason: &str) -> ServiceResult<ModelView> {
        let action = Action::RevokeModel;
        let object = format!("model:{id}");
        let Some(model) = self.store.model(id).await? else {
            return Err(self.not_found(caller, action.audit(), "model", id).await);
        };
        let mut tx = self.store.begin().await?;
        let state = Self::model_state_in(&mut tx, &model).await?;
        let resource = self.model_resource(&model, state).await?;
        if let Err(denial) = self.decide(caller, action, &resource).and_then(|()| revoke_model(state)) {
            tx.rollback().await.context("rolling back")?;
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        Store::set_model_state(&mut tx, id, ModelState::Revoked).await?;
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::Digest, &model.digest)
            .detail(Detail::Note, reason.chars().take(200).collect::<String>());
        Store::append_audit(&mut tx, event, self.now()).await?;
        tx.commit().await.context("committing the model revocation")?;
        Ok(ModelView::of(&model, ModelState::Revoked, None)?)
    }
}

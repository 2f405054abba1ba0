//! The service layer: every operation Sluice offers, shared by the HTTP API and the CLI.
//!
//! Each operation authenticates nothing itself (the caller arrives as a [`Caller`]), asks
//! the policy gate, does the work, and records the outcome in the audit log in the same
//! transaction as the change; a denial is recorded in a transaction of its own before the
//! error is returned. It must not speak HTTP or format output for people.

mod audit;
mod datasets;
mod group_commit;
mod lists;
mod objects;
mod procedure;
mod reports;
mod runs;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use base64::Engine as _;
use sluice_policies::{
    Action, Denial, Licence, OrganisationId, Principal, Resource, ReviewerKind, Role, normalise_organisation_name,
};
use sluice_sandbox::RuntimeLimits;
use time::OffsetDateTime;

pub use audit::{
    AuditQuery, CHECKPOINT_EVERY, CHECKPOINT_EVERY_ENTRIES, CheckpointView, ProofView, WitnessReport, WitnessStatus,
};
pub use datasets::{CatalogueColumn, CatalogueEntry, CatalogueVersion, DestroySummary, IngestSummary, NewDataset};
pub use lists::{DEFAULT_LIST, MAX_LIST};
pub use procedure::{
    ApplicationList, ApplicationListQuery, ApplicationSummary, ApplicationView, ManifestView, ModelList,
    ModelListQuery, ModelSummary, ModelView, NewApplication, NewModel, ReviewChecklist, ReviewOutcome,
};
pub use reports::{AlertView, UsageQuery, UsageReport, UsageRow, alerts_csv};
pub use runs::{BudgetView, RunList, RunListQuery, RunSummary, RunView};

use crate::chunk_store::ChunkStore;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{DatasetId, NodeId, PrincipalId, RunId};
use crate::parts::{AuditLog, Gate, Sealed};
use crate::runner::Runner;
use crate::store::{NewPrincipal, OrganisationRow, PrincipalRow, Store, format_time, parse_time};
use crate::timestamp::Timestamp;
use sluice_audit::{Act, AuditEvent, AuditOutcome, Detail};
use sluice_vault::keys::{AeadKey, random_bytes};
use sluice_vault::pseudonym::PseudonymKey;

/// Where "now" comes from. Tests use a manual clock to step past validity windows.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual(Arc<Mutex<OffsetDateTime>>),
}

impl Clock {
    pub fn manual(start: OffsetDateTime) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> OffsetDateTime {
        match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Manual(time) => *time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    pub fn advance(&self, by: time::Duration) {
        if let Clock::Manual(time) = self {
            *time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) += by;
        }
    }
}

/// An authenticated caller and the request it made.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub name: String,
    pub request_id: String,
}

/// How long readiness waits for the database before it says this node is not ready.
pub const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The running gateway, composed of parts with one job each: the store, the sealed data
/// at rest, the audit log's key, the sandbox runner and the gate. Built once from a
/// [`Config`].
pub struct App {
    pub(crate) store: Store,
    pub(crate) sealed: Sealed,
    pub(crate) log: AuditLog,
    pub(crate) runner: Runner,
    pub(crate) gate: Gate,
    pub(crate) clock: Clock,
    /// The one writer of audit entries that stand alone ([`App::record`]).
    audit_batch: group_commit::AuditBatcher,
    /// The requests under way, which a shutdown waits for.
    in_flight: crate::in_flight::InFlight,
    /// Woken whenever this node ends a run, or hears that another node ended one, for
    /// requests waiting on a run claimed elsewhere.
    run_ended: tokio::sync::Notify,
    /// Woken when another node announces a queued run, for this node's dispatcher.
    run_queued: tokio::sync::Notify,
    /// Whether this node hears other nodes' run events ([`crate::store::RunEvents`]); if
    /// so it looks for itself only now and then, otherwise often.
    hears_runs: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("sealed", &self.sealed).field("runner", &self.runner).finish_non_exhaustive()
    }
}

/// A new principal as the admin describes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct NewPrincipalRequest {
    pub name: String,
    pub role: String,
    /// The organisation it works for, by id (`POST /v1/organisations` creates one).
    #[schema(value_type = i64)]
    pub organisation_id: OrganisationId,
    #[serde(default)]
    pub reviewer_kind: Option<String>,
    #[serde(default)]
    pub licence: Option<LicenceRequest>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct LicenceRequest {
    pub number: String,
    pub valid_from: String,
    pub valid_until: String,
}

/// Which accounts a list shows: `GET /v1/principals?role=&pending=&after=&limit=` (an
/// administrator's approval queue is `?pending=true`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PrincipalListQuery {
    pub role: Option<String>,
    pub pending: Option<bool>,
    pub after: Option<PrincipalId>,
    pub limit: Option<u32>,
}

/// An account as a list shows it: never a token or its hash.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PrincipalSummary {
    pub id: PrincipalId,
    pub name: String,
    pub role: String,
    #[schema(value_type = i64)]
    pub organisation_id: OrganisationId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewer_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licence_valid_until: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Timestamp>,
    pub disabled: bool,
    pub pending_approval: bool,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PrincipalList {
    pub principals: Vec<PrincipalSummary>,
    /// Follow it until it is absent (a page can be short).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<PrincipalId>,
}

#[derive(Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedPrincipal {
    pub id: PrincipalId,
    /// Shown once; only its hash is stored.
    pub token: String,
    /// When the token stops working (RFC 3339).
    pub expires_at: String,
}

/// What creating a principal through the API gave: a token at once, or, under the
/// two-person rule, a principal waiting for a second administrator's approval.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
#[derive(utoipa::ToSchema)]
pub enum PrincipalCreation {
    Active(CreatedPrincipal),
    Pending { id: PrincipalId, state: &'static str },
}

/// An organisation as the API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OrganisationView {
    #[schema(value_type = i64)]
    pub id: OrganisationId,
    pub name: String,
    pub created_at: Timestamp,
}

impl From<OrganisationRow> for OrganisationView {
    fn from(row: OrganisationRow) -> Self {
        Self { id: row.id, name: row.name, created_at: row.created_at }
    }
}

impl std::fmt::Debug for CreatedPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedPrincipal").field("id", &self.id).field("token", &"redacted").finish()
    }
}

/// API tokens are stored as a keyed blake3 hash; the token itself is never kept.
/// An ε stored as whole units (a non-negative integer column) as a number for display.
/// A negative stored value, which the store's checks rule out, shows as 0.
pub(crate) fn stored_epsilon(units: i64) -> f64 {
    sluice_policies::Epsilon::from_units(u64::try_from(units).unwrap_or(0)).as_f64()
}

fn token_hash(token: &str) -> String {
    blake3::Hasher::new_derive_key("sluice 2026 api token v1").update(token.as_bytes()).finalize().to_hex().to_string()
}

fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    Ok(format!("sk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// A fresh request id for calls that did not bring one.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    random_bytes(&mut bytes).map(|()| hex::encode(bytes)).unwrap_or_else(|_| "unknown".into())
}

fn principal_from_row(row: &PrincipalRow) -> anyhow::Result<Principal> {
    let role = Role::parse(&row.role).with_context(|| format!("principal {} has unknown role {}", row.id, row.role))?;
    let reviewer_kind = row.reviewer_kind.as_deref().and_then(ReviewerKind::parse);
    let licence = match (&row.licence_number, &row.licence_valid_from, &row.licence_valid_until) {
        (Some(number), Some(from), Some(until)) => {
            Some(Licence { number: number.clone(), valid_from: from.time(), valid_until: until.time() })
        }
        _ => None,
    };
    Ok(Principal { id: row.id.0, role, organisation: row.organisation_id, reviewer_kind, licence })
}

impl App {
    /// Opens the gateway over an initialised data directory, as `config` describes.
    pub async fn open(config: Config, clock: Clock) -> anyhow::Result<Arc<Self>> {
        let data_dir = config.data_dir.clone();
        let store = Store::open(&config.database, false).await?;
        let from_environment = config.master_key_from_environment.as_deref().map(String::as_str);
        let master = open_master_key(&data_dir, &store, from_environment).await?;
        let pseudonyms = open_pseudonym_key(&store, &master).await?;
        let chunks = ChunkStore::open(&config.objects)?;
        sweep_unfinished_ingests(&chunks, &store).await?;
        let witnesses = config
            .witnesses
            .iter()
            .map(|vkey| crate::parts::parse_witness(vkey).context("a witness in the configuration"))
            .collect::<anyhow::Result<_>>()?;
        let log = AuditLog::new(data_dir.load_signing_key()?, witnesses);
        let gate = Gate::new(&config)?;
        let runner = Runner::new(RuntimeLimits::default())?;
        let sealed = Sealed::new(data_dir, chunks, master, pseudonyms, from_environment.is_some());
        let audit_batch = group_commit::AuditBatcher::start(store.clone());
        let app = Self {
            store,
            sealed,
            log,
            runner,
            gate,
            clock,
            audit_batch,
            in_flight: Default::default(),
            run_ended: tokio::sync::Notify::new(),
            run_queued: tokio::sync::Notify::new(),
            hears_runs: std::sync::atomic::AtomicBool::new(false),
        };
        app.settle_interrupted_runs().await?;
        Ok(Arc::new(app))
    }

    /// The gate, whose limits an administrator's tooling (and the tests) may change.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The requests under way: the API counts each one, a shutdown waits for them.
    pub fn in_flight(&self) -> &crate::in_flight::InFlight {
        &self.in_flight
    }

    /// Whether this node should be sent new work: not stopping, and its database answers
    /// within [`READINESS_TIMEOUT`]. `Err` names the reason (no detail of the database's
    /// error: readiness is unauthenticated).
    pub async fn readiness(&self) -> Result<(), &'static str> {
        if self.in_flight.stopping() {
            return Err("stopping");
        }
        match tokio::time::timeout(READINESS_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::warn!(error = %format!("{error:#}"), "readiness: the database did not answer");
                Err("database_unavailable")
            }
            Err(_) => Err("database_unavailable"),
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn public_key(&self) -> sluice_audit::PublicKey {
        self.log.public_key()
    }

    /// The audit log's part: its key and the witnesses it accepts.
    pub fn audit_log(&self) -> &AuditLog {
        &self.log
    }

    /// Resolves an API token to its principal. Failures are audited, without the token.
    pub async fn authenticate(&self, token: Option<&str>, request_id: &str) -> ServiceResult<Caller> {
        let refuse = |reason: &'static str, code: &'static str, actor: Option<i64>| async move {
            let mut event = AuditEvent::new(Act::Authenticate, "api", AuditOutcome::Denied).reason(reason);
            event.request_id = request_id.into();
            event.actor_id = actor;
            self.record(event).await?;
            Err(ServiceError::Unauthenticated(code))
        };
        let Some(token) = token else {
            return refuse("missing_token", "unauthenticated", None).await;
        };
        let hash = token_hash(token);
        let Some(row) = self.store.principal_by_token_hash(&hash).await? else {
            // A token rotated away or revoked is told apart from one never issued.
            return match self.store.revoked_token(&hash).await? {
                Some(_) => refuse("token_revoked", "token_revoked", None).await,
                None => refuse("unknown_token", "unauthenticated", None).await,
            };
        };
        if row.disabled_at.is_some() {
            return refuse("principal_disabled", "principal_disabled", Some(row.id.0)).await;
        }
        let expires_at = row.token_expires_at.map(Timestamp::time);
        if expires_at.is_none_or(|expires_at| self.now() >= expires_at) {
            return refuse("token_expired", "token_expired", Some(row.id.0)).await;
        }
        Ok(Caller { principal: principal_from_row(&row)?, name: row.name, request_id: request_id.into() })
    }

    /// Issues principal `id` a new token (an administrator's action): the old one stops
    /// working at once and is remembered as revoked. The new token is shown once.
    pub async fn issue_token(&self, caller: &Caller, id: PrincipalId) -> ServiceResult<CreatedPrincipal> {
        let action = Action::IssueToken;
        let object = format!("principal:{id}");
        let Some(row) = self.store.principal(id).await? else {
            return Err(self.not_found(caller, action.audit(), "principal", id).await);
        };
        self.guard(caller, action, &object, &self.account_resource(&row).await?).await?;
        if row.pending_approval {
            // A token for it now would step around the second administrator.
            return Err(ServiceError::Conflict(format!(
                "principal {id} waits for a second administrator's approval (POST /v1/principals/{id}/approve)"
            )));
        }
        self.replace_token(caller, action, id, "reissued").await
    }

    /// Replaces the caller's own token; the old one stops working at once.
    pub async fn rotate_own_token(&self, caller: &Caller) -> ServiceResult<CreatedPrincipal> {
        let action = Action::RotateOwnToken;
        let object = format!("principal:{}", caller.principal.id);
        self.guard(caller, action, &object, &Resource::Platform).await?;
        self.replace_token(caller, action, PrincipalId(caller.principal.id), "rotated").await
    }

    async fn replace_token(
        &self,
        caller: &Caller,
        action: Action,
        id: PrincipalId,
        reason: &str,
    ) -> ServiceResult<CreatedPrincipal> {
        let token = new_token()?;
        let now = self.now();
        let expires_at = now + self.gate.token_lifetime();
        let mut tx = self.store.begin().await?;
        if !Store::replace_token(&mut tx, id, &token_hash(&token), expires_at, reason, now).await? {
            tx.rollback().await.context("rolling back")?;
            return Err(self.not_found(caller, action.audit(), "principal", id).await);
        }
        let event = Self::event(caller, action.audit(), format!("principal:{id}"), AuditOutcome::Ok)
            .detail(Detail::ExpiresAt, format_time(expires_at));
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the new token")?;
        Ok(CreatedPrincipal { id, token, expires_at: format_time(expires_at) })
    }

    /// Revokes principal `id`'s token (an administrator's action): it stops working at once,
    /// and the principal has no token until one is issued again.
    pub async fn revoke_token(&self, caller: &Caller, id: PrincipalId, note: &str) -> ServiceResult<()> {
        let action = Action::RevokeToken;
        let object = format!("principal:{id}");
        let Some(row) = self.store.principal(id).await? else {
            return Err(self.not_found(caller, action.audit(), "principal", id).await);
        };
        self.guard(caller, action, &object, &self.account_resource(&row).await?).await?;
        // The replacement is a random hash nobody holds the token for.
        let unusable = token_hash(&new_token()?);
        let now = self.now();
        let mut tx = self.store.begin().await?;
        if !Store::replace_token(&mut tx, id, &unusable, now, "revoked", now).await? {
            tx.rollback().await.context("rolling back")?;
            return Err(self.not_found(caller, action.audit(), "principal", id).await);
        }
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::Note, note.chars().take(200).collect::<String>());
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the revocation")?;
        Ok(())
    }

    /// Disables principal `id` for good (an administrator's action): every token it holds
    /// stops working at once. An administrator cannot disable itself.
    pub async fn disable_principal(&self, caller: &Caller, id: PrincipalId, note: &str) -> ServiceResult<()> {
        let action = Action::DisablePrincipal;
        let object = format!("principal:{id}");
        let Some(row) = self.store.principal(id).await? else {
            return Err(self.not_found(caller, action.audit(), "principal", id).await);
        };
        self.guard(caller, action, &object, &self.account_resource(&row).await?).await?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        if !Store::disable_principal(&mut tx, id, now).await? {
            tx.rollback().await.context("rolling back")?;
            return match self.store.principal(id).await? {
                Some(_) => Err(ServiceError::Conflict(format!("principal {id} is already disabled"))),
                None => Err(self.not_found(caller, action.audit(), "principal", id).await),
            };
        }
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::Note, note.chars().take(200).collect::<String>());
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the disabling")?;
        Ok(())
    }

    /// Records one audit event that stands alone, committed (with any others waiting at
    /// the same moment: group commit) before this returns.
    pub(crate) async fn record(&self, event: AuditEvent) -> anyhow::Result<()> {
        self.audit_batch.record(event, self.now()).await
    }

    /// An audit event attributed to `caller`.
    pub(crate) fn event(caller: &Caller, action: Act, object: impl Into<String>, outcome: AuditOutcome) -> AuditEvent {
        let mut event = AuditEvent::new(action, object, outcome);
        event.actor_id = Some(caller.principal.id);
        event.role = caller.principal.role.as_str().into();
        event.request_id = caller.request_id.clone();
        event
    }

    /// Records a denial and returns it as the error to give the caller.
    pub(crate) async fn deny(
        &self,
        caller: &Caller,
        action: Act,
        object: impl Into<String>,
        denial: Denial,
    ) -> ServiceError {
        let event = Self::event(caller, action, object, AuditOutcome::Denied).reason(denial.reason.code());
        match self.record(event).await {
            Ok(()) => ServiceError::Denied(denial),
            Err(error) => ServiceError::Internal(error),
        }
    }

    /// Records a lookup of something that does not exist, then returns the error.
    pub(crate) async fn not_found(
        &self,
        caller: &Caller,
        action: Act,
        what: &'static str,
        id: impl Into<i64>,
    ) -> ServiceError {
        let id = id.into();
        let event = Self::event(caller, action, format!("{what}:{id}"), AuditOutcome::Denied).reason("not_found");
        match self.record(event).await {
            Ok(()) => ServiceError::NotFound { what, id },
            Err(error) => ServiceError::Internal(error),
        }
    }

    /// Spends `cost` of the caller's budget for an expensive endpoint; a refusal
    /// (`rate_limited`, 429) is recorded under `action` and `object`.
    pub(crate) async fn spend(
        &self,
        caller: &Caller,
        kind: crate::parts::Expensive,
        cost: u64,
        action: Act,
        object: &str,
    ) -> ServiceResult<()> {
        if let Err(denial) = self.gate.use_expensive(caller.principal.id, kind, cost, self.now()) {
            return Err(self.deny(caller, action, object, denial).await);
        }
        Ok(())
    }

    /// The policy set's decision without recording it, for a handler that must first close
    /// its transaction (then it records the denial with [`App::deny`]).
    pub(crate) fn decide(&self, caller: &Caller, action: Action, resource: &Resource) -> Result<(), Denial> {
        self.gate.policies.decide(&caller.principal, self.now(), action, resource)
    }

    /// The one decision point: may the caller perform `action` on `resource` (named
    /// `object` in the audit log)? A denial is recorded and returned.
    pub(crate) async fn guard(
        &self,
        caller: &Caller,
        action: Action,
        object: &str,
        resource: &Resource,
    ) -> ServiceResult<()> {
        if let Err(denial) = self.decide(caller, action, resource) {
            return Err(self.deny(caller, action.audit(), object, denial).await);
        }
        Ok(())
    }

    /// Creates the first admin of a new data directory; refuses once any principal exists.
    pub async fn bootstrap_admin(&self, name: &str, organisation: &str) -> anyhow::Result<CreatedPrincipal> {
        anyhow::ensure!(self.store.principal_count().await? == 0, "this data directory already has principals");
        self.host_admin(name, organisation).await
    }

    /// Creates a further administrator from the host (`sluice admin add`), where the data
    /// directory and its keys are: the trust root the API's two-person rule starts from.
    /// The organisation is created if no organisation has that name's normal form.
    pub async fn add_host_admin(&self, name: &str, organisation: &str) -> anyhow::Result<CreatedPrincipal> {
        anyhow::ensure!(self.store.principal_count().await? > 0, "initialise the data directory first (`sluice init`)");
        self.host_admin(name, organisation).await
    }

    async fn host_admin(&self, name: &str, organisation: &str) -> anyhow::Result<CreatedPrincipal> {
        anyhow::ensure!(!name.trim().is_empty(), "an administrator needs a name");
        let (shown, key) =
            normalise_organisation_name(organisation).map_err(|denial| anyhow::anyhow!(denial.message))?;
        let token = new_token()?;
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let (organisation_id, created) = match Store::insert_organisation(&mut tx, &shown, &key, None, now).await? {
            Ok(id) => (id, true),
            Err(existing) => (existing, false),
        };
        let new = NewPrincipal {
            name: name.trim().into(),
            role: Role::Admin.as_str().into(),
            organisation_id,
            reviewer_kind: None,
            licence: None,
            token_hash: token_hash(&token),
            token_expires_at: now + self.gate.token_lifetime(),
            created_by: None,
            pending_approval: false,
        };
        let id = Store::insert_principal(&mut tx, &new, now).await?;
        let mut event = AuditEvent::new(Act::PrincipalBootstrap, format!("principal:{id}"), AuditOutcome::Ok)
            .detail(Detail::Role, "admin")
            .detail(Detail::Organisation, organisation_id);
        if created {
            event = event.detail(Detail::OrganisationName, &shown);
        }
        event.actor_id = Some(id.0);
        event.role = "admin".into();
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(CreatedPrincipal { id, token, expires_at: format_time(new.token_expires_at) })
    }

    /// Creates an organisation (an administrator's action). Its name is normalised; a name
    /// whose normal form an organisation already has is refused with that organisation's id.
    pub async fn create_organisation(&self, caller: &Caller, name: &str) -> ServiceResult<OrganisationView> {
        let action = Action::CreateOrganisation;
        self.guard(caller, action, "organisation:new", &Resource::Platform).await?;
        let (shown, key) = match normalise_organisation_name(name) {
            Ok(normal) => normal,
            Err(denial) => return Err(self.deny(caller, action.audit(), "organisation:new", denial).await),
        };
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let id = match Store::insert_organisation(&mut tx, &shown, &key, Some(PrincipalId(caller.principal.id)), now)
            .await?
        {
            Ok(id) => id,
            Err(existing) => {
                tx.rollback().await.context("rolling back")?;
                return Err(ServiceError::Conflict(format!(
                    "organisation {existing} already has this name (names are compared after normalising \
                     spaces, case and full-width letters)"
                )));
            }
        };
        let event = Self::event(caller, action.audit(), format!("organisation:{id}"), AuditOutcome::Ok)
            .detail(Detail::Name, &shown);
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the new organisation")?;
        Ok(OrganisationView { id, name: shown, created_at: Timestamp::new(now) })
    }

    /// Renames organisation `id` (an administrator's action); its id, and so every
    /// separation of duties, stays.
    pub async fn rename_organisation(
        &self,
        caller: &Caller,
        id: OrganisationId,
        name: &str,
    ) -> ServiceResult<OrganisationView> {
        let action = Action::RenameOrganisation;
        let object = format!("organisation:{id}");
        self.guard(caller, action, &object, &Resource::Organisation(id)).await?;
        let (shown, key) = match normalise_organisation_name(name) {
            Ok(normal) => normal,
            Err(denial) => return Err(self.deny(caller, action.audit(), &object, denial).await),
        };
        let now = self.now();
        let mut tx = self.store.begin().await?;
        match Store::rename_organisation(&mut tx, id, &shown, &key).await? {
            Ok(true) => {}
            Ok(false) => {
                tx.rollback().await.context("rolling back")?;
                return Err(self.not_found(caller, action.audit(), "organisation", id).await);
            }
            Err(existing) => {
                tx.rollback().await.context("rolling back")?;
                return Err(ServiceError::Conflict(format!("organisation {existing} already has this name")));
            }
        }
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok).detail(Detail::Name, &shown);
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the renaming")?;
        let row = self.store.organisation(id).await?.with_context(|| format!("organisation {id} vanished"))?;
        Ok(row.into())
    }

    /// The accounts the caller may read ([`Action::ReadPrincipal`]: an administrator every
    /// one, anyone else its own), a page at a time in id order; one `principal.list` entry
    /// a page. Shows no token and no token hash.
    pub async fn list_principals(&self, caller: &Caller, query: PrincipalListQuery) -> ServiceResult<PrincipalList> {
        if let Some(role) = query.role.as_deref()
            && Role::parse(role).is_none()
        {
            return Err(ServiceError::invalid(format!("`{role}` is not a role")));
        }
        let mut pager = lists::Pager::new(lists::PageQuery { after: query.after.map(|id| id.0), limit: query.limit })?;
        let mut principals = Vec::new();
        while let Some((after, batch)) = pager.next_batch(principals.len()) {
            let rows = self.store.principals_after(PrincipalId(after), batch).await?;
            pager.fetched(rows.len(), batch);
            for row in rows {
                pager.saw(row.id.0);
                if query.role.as_deref().is_some_and(|role| role != row.role)
                    || query.pending.is_some_and(|pending| pending != row.pending_approval)
                {
                    continue;
                }
                if self.decide(caller, Action::ReadPrincipal, &self.account_resource(&row).await?).is_err() {
                    continue;
                }
                principals.push(PrincipalSummary {
                    id: row.id,
                    name: row.name,
                    role: row.role,
                    organisation_id: row.organisation_id,
                    reviewer_kind: row.reviewer_kind,
                    licence_number: row.licence_number,
                    licence_valid_until: row.licence_valid_until,
                    token_expires_at: row.token_expires_at,
                    disabled: row.disabled_at.is_some(),
                    pending_approval: row.pending_approval,
                });
                if pager.is_full(principals.len()) {
                    break;
                }
            }
        }
        let next_after = pager.next_after(principals.len()).map(PrincipalId);
        let event = Self::event(caller, Act::PrincipalList, "principals", AuditOutcome::Ok)
            .detail(Detail::Returned, principals.len());
        self.record(event).await?;
        Ok(PrincipalList { principals, next_after })
    }

    /// Every organisation (names are public: the catalogue shows the providers').
    pub async fn organisations(&self, caller: &Caller) -> ServiceResult<Vec<OrganisationView>> {
        self.guard(caller, Action::ReadOrganisations, "organisation:*", &Resource::Platform).await?;
        Ok(self.store.organisations().await?.into_iter().map(OrganisationView::from).collect())
    }

    /// A second administrator approves a principal created under the two-person rule;
    /// it gets its first token (shown once).
    pub async fn approve_principal(&self, caller: &Caller, id: PrincipalId) -> ServiceResult<CreatedPrincipal> {
        let action = Action::ApprovePrincipal;
        let object = format!("principal:{id}");
        let Some(row) = self.store.principal(id).await? else {
            return Err(self.not_found(caller, action.audit(), "principal", id).await);
        };
        self.guard(caller, action, &object, &self.account_resource(&row).await?).await?;
        if !row.pending_approval {
            return Err(ServiceError::Conflict(format!("principal {id} is not waiting for approval")));
        }
        let token = new_token()?;
        let now = self.now();
        let expires_at = now + self.gate.token_lifetime();
        let mut tx = self.store.begin().await?;
        if !Store::approve_principal(&mut tx, id, &token_hash(&token), expires_at).await? {
            tx.rollback().await.context("rolling back")?;
            return Err(ServiceError::Conflict(format!("principal {id} is not waiting for approval")));
        }
        let mut event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::ExpiresAt, format_time(expires_at));
        if let Some(creator) = row.created_by {
            event = event.detail(Detail::CreatedBy, creator);
        }
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the approval")?;
        Ok(CreatedPrincipal { id, token, expires_at: format_time(expires_at) })
    }

    /// Creates a principal. Under the two-person rule a reviewer, an operator (its licence)
    /// or an administrator waits, without a working token, for a second administrator.
    pub async fn create_principal(
        &self,
        caller: &Caller,
        request: NewPrincipalRequest,
    ) -> ServiceResult<PrincipalCreation> {
        let action = Action::CreatePrincipal;
        self.guard(caller, action, "principal:new", &Resource::Platform).await?;
        let new = self.validate_principal(request)?;
        if self.store.organisation(new.organisation_id).await?.is_none() {
            return Err(ServiceError::invalid(format!(
                "organisation {} does not exist (POST /v1/organisations creates it)",
                new.organisation_id
            )));
        }
        let pending = self.gate.two_person_rule() && matches!(new.role.as_str(), "reviewer" | "operator" | "admin");
        let token = new_token()?;
        let now = self.now();
        let new = NewPrincipal {
            // A pending principal's token is never shown: nobody holds the one hashed here
            // until a second administrator approves and a new one is issued.
            token_hash: token_hash(&token),
            token_expires_at: if pending { now } else { now + self.gate.token_lifetime() },
            created_by: Some(PrincipalId(caller.principal.id)),
            pending_approval: pending,
            ..new
        };
        let mut tx = self.store.begin().await?;
        let id = Store::insert_principal(&mut tx, &new, now).await?;
        let mut event = Self::event(caller, action.audit(), format!("principal:{id}"), AuditOutcome::Ok)
            .detail(Detail::Role, &new.role)
            .detail(Detail::Organisation, new.organisation_id)
            .detail(Detail::Approval, if pending { "pending" } else { "not_required" });
        if let Some(kind) = &new.reviewer_kind {
            event = event.detail(Detail::ReviewerKind, kind);
        }
        if let Some((number, from, until)) = &new.licence {
            event = event
                .detail(Detail::Licence, number)
                .detail(Detail::LicenceValidFrom, from)
                .detail(Detail::LicenceValidUntil, until);
        }
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the new principal")?;
        Ok(if pending {
            PrincipalCreation::Pending { id, state: "pending_approval" }
        } else {
            PrincipalCreation::Active(CreatedPrincipal { id, token, expires_at: format_time(new.token_expires_at) })
        })
    }

    fn validate_principal(&self, request: NewPrincipalRequest) -> ServiceResult<NewPrincipal> {
        let role = Role::parse(&request.role).ok_or_else(|| {
            ServiceError::invalid(format!(
                "role `{}` is not one of admin, provider, operator, reviewer, regulator",
                request.role
            ))
        })?;
        if request.name.trim().is_empty() {
            return Err(ServiceError::invalid("a principal needs a name"));
        }
        let reviewer_kind = match (role, request.reviewer_kind.as_deref()) {
            (Role::Reviewer, Some(kind)) => Some(
                ReviewerKind::parse(kind)
                    .ok_or_else(|| ServiceError::invalid("reviewer_kind must be data_bureau or providing_department"))?
                    .as_str()
                    .to_owned(),
            ),
            (Role::Reviewer, None) => return Err(ServiceError::invalid("a reviewer needs a reviewer_kind")),
            (_, Some(_)) => return Err(ServiceError::invalid("only a reviewer has a reviewer_kind")),
            (_, None) => None,
        };
        let licence = match (role, request.licence) {
            (Role::Operator, Some(licence)) => {
                let from =
                    parse_time(&licence.valid_from).map_err(|error| ServiceError::invalid(format!("{error:#}")))?;
                let until =
                    parse_time(&licence.valid_until).map_err(|error| ServiceError::invalid(format!("{error:#}")))?;
                if from >= until || licence.number.trim().is_empty() {
                    return Err(ServiceError::invalid("a licence needs a number and valid_from before valid_until"));
                }
                Some((licence.number, format_time(from), format_time(until)))
            }
            (Role::Operator, None) => return Err(ServiceError::invalid("an operator needs a licence")),
            (_, Some(_)) => return Err(ServiceError::invalid("only an operator holds a licence")),
            (_, None) => None,
        };
        Ok(NewPrincipal {
            name: request.name,
            role: role.as_str().into(),
            organisation_id: request.organisation_id,
            reviewer_kind,
            licence,
            token_hash: String::new(),
            token_expires_at: self.now(),
            created_by: None,
            pending_approval: false,
        })
    }

    pub(crate) async fn organisation_name(&self, id: OrganisationId) -> anyhow::Result<String> {
        Ok(self.store.organisation(id).await?.with_context(|| format!("organisation {id} is missing"))?.name)
    }

    pub(crate) async fn principal(&self, id: PrincipalId) -> anyhow::Result<Principal> {
        let row = self.store.principal(id).await?.with_context(|| format!("principal {id} is missing"))?;
        principal_from_row(&row)
    }
}

/// The meta entry that names the master key wrapping every data key.
const MASTER_FINGERPRINT: &str = "master_key_fingerprint";

/// Loads the master key, finishing or undoing a rotation that was interrupted, and checks
/// it is the key this data directory's data keys are wrapped under.
async fn open_master_key(data_dir: &DataDir, store: &Store, from_environment: Option<&str>) -> anyhow::Result<AeadKey> {
    let recorded = store.meta(MASTER_FINGERPRINT).await?;
    let next_path = data_dir.master_key_next();
    if next_path.exists() {
        let next = sluice_vault::keys::read_key_file(&next_path)?;
        if recorded.as_deref() == Some(next.fingerprint().as_str()) {
            // The re-wrap committed but the new key file was not moved into place.
            std::fs::rename(&next_path, data_dir.master_key()).context("finishing an interrupted key rotation")?;
        } else {
            // The re-wrap never committed: the old key is still the right one.
            std::fs::remove_file(&next_path).context("removing an unfinished key rotation")?;
        }
    }
    let master = sluice_vault::keys::load_master_key(&data_dir.master_key(), from_environment)?;
    match recorded {
        Some(fingerprint) if fingerprint != master.fingerprint() => anyhow::bail!(
            "the master key does not match this data directory (it wraps its data keys under key {}…)",
            &fingerprint[..16]
        ),
        Some(_) => {}
        None => {
            let mut tx = store.begin().await?;
            Store::set_meta(&mut tx, MASTER_FINGERPRINT, &master.fingerprint()).await?;
            tx.commit().await?;
        }
    }
    Ok(master)
}

/// Deletes what no version can read. An ingest interrupted by a crash leaves chunks under a version no row refers to (with a
/// local store of an earlier release, a staging directory `vN.partial`). None of it was
/// acknowledged. Each belongs to a version reserved by the node that wrote it: what a dead
/// node reserved is removed with its reservation, at start-up, before any request runs,
/// so the next ingest of that dataset is not blocked by it; what a live node (another node
/// on the shared store, the `sluice serve` beside a CLI command) is still writing is left
/// alone.
async fn sweep_unfinished_ingests(chunks: &ChunkStore, store: &Store) -> anyhow::Result<()> {
    for dataset in chunks.children_async("").await? {
        let Some(dataset_id) = dataset.strip_prefix("dataset-").and_then(|id| id.parse::<i64>().ok()).map(DatasetId)
        else {
            continue;
        };
        // A destruction deletes the keys, then the objects: objects left by one cut off
        // between the two are unreadable, and are deleted now.
        if store.dataset(dataset_id).await?.is_some_and(|row| row.destroyed_at.is_some()) {
            tracing::warn!(%dataset_id, "deleting the chunks of a destroyed dataset");
            chunks.delete_prefix_async(&dataset).await?;
            continue;
        }
        let known: std::collections::HashSet<i64> =
            store.versions(dataset_id).await?.iter().map(|version| version.version).collect();
        let reserved: std::collections::HashMap<i64, NodeId> =
            store.reservations(dataset_id).await?.into_iter().collect();
        for entry in chunks.children_async(&dataset).await? {
            let Some(number) = entry.strip_prefix('v') else { continue };
            let (number, staging) = match number.strip_suffix(".partial") {
                Some(number) => (number, true),
                None => (number, false),
            };
            let Ok(version) = number.parse::<i64>() else { continue };
            if !staging && known.contains(&version) {
                continue;
            }
            if let Some(&node) = reserved.get(&version)
                && store.node_alive(node).await?
            {
                continue;
            }
            tracing::warn!(%dataset_id, entry = %entry, "removing an ingest a crash interrupted");
            chunks
                .delete_prefix_async(&format!("{dataset}/{entry}"))
                .await
                .with_context(|| format!("removing the interrupted ingest {dataset}/{entry}"))?;
            if reserved.contains_key(&version) && !known.contains(&version) {
                store.release_reservation(dataset_id, version).await?;
            }
        }
    }
    Ok(())
}

impl App {
    /// Runs that were charged but never finished — the node running them died — are
    /// settled: `interrupted`, with a failed `run.release` in the log, and the charge kept
    /// (the model may have read the data). A run whose node is alive (this one, another
    /// node of a shared database, the `sluice serve` beside a CLI command) is left alone:
    /// it is still under way. Done at start-up and by `sluice serve` every
    /// [`crate::service::audit::SWEEP_EVERY`], for nodes that die and do not come back.
    /// Returns how many runs it settled.
    pub async fn settle_interrupted_runs(&self) -> anyhow::Result<u64> {
        let mut settled = 0;
        for (run_id, node) in self.store.running_runs().await? {
            if let Some(node) = node
                && self.store.node_alive(node).await?
            {
                continue;
            }
            if self.settle_run(run_id).await? {
                settled += 1;
                tracing::warn!(%run_id, "a run cut off by its node's end was settled as interrupted; its charge stands");
            }
        }
        Ok(settled)
    }

    /// Settles run `run_id` as interrupted, with its failed `run.release` entry, if it is
    /// still `running`; false if it had ended meanwhile.
    pub(crate) async fn settle_run(&self, run_id: RunId) -> anyhow::Result<bool> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        if !Store::interrupt_run(&mut tx, run_id, now).await? {
            return Ok(false);
        }
        let mut event = AuditEvent::new(Act::RunRelease, format!("run:{run_id}"), AuditOutcome::Failed)
            .reason(crate::store::RunState::Interrupted.as_str());
        event.role = "system".into();
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("settling an interrupted run")?;
        self.run_ended.notify_waiters();
        Ok(true)
    }
}

/// What a key rotation did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RotationSummary {
    pub data_keys_rewrapped: u64,
    pub new_fingerprint: String,
}

/// The meta entry holding the deployment's key pseudonym secret, wrapped by the master key
/// (hex).
const PSEUDONYM_SECRET: &str = "key_pseudonym_secret";

/// Loads the deployment's key pseudonym secret, making it on the first open. Every node and
/// every ingest uses the one secret (two nodes opening a new deployment at once keep the
/// first one stored), so one code has one pseudonym in every dataset.
async fn open_pseudonym_key(store: &Store, master: &AeadKey) -> anyhow::Result<PseudonymKey> {
    if store.meta(PSEUDONYM_SECRET).await?.is_none() {
        let wrapped = PseudonymKey::generate()?.wrap(master)?;
        let mut tx = store.begin().await?;
        Store::insert_meta_if_absent(&mut tx, PSEUDONYM_SECRET, &hex::encode(wrapped)).await?;
        tx.commit().await.context("storing the key pseudonym secret")?;
    }
    let wrapped = store.meta(PSEUDONYM_SECRET).await?.context("the key pseudonym secret is missing")?;
    unwrap_pseudonym_key(master, &wrapped)
}

fn unwrap_pseudonym_key(master: &AeadKey, wrapped_hex: &str) -> anyhow::Result<PseudonymKey> {
    let wrapped =
        hex::decode(wrapped_hex).map_err(|_| anyhow::anyhow!("the stored key pseudonym secret is not hex"))?;
    PseudonymKey::unwrap(master, &wrapped).map_err(|_| {
        anyhow::anyhow!(
            "the key pseudonym secret does not open under the master key (tampered, or another deployment's)"
        )
    })
}

impl App {
    /// Re-wraps every data key under a new master key, without re-encrypting any data.
    /// Crash-safe: the new key is written beside the old one first, the re-wrap and its
    /// audit entry commit together, and only then does the new key file replace the old
    /// (an interrupted rotation is finished or undone when the gateway next opens).
    pub async fn rotate_master_key(&self, caller: &Caller) -> ServiceResult<RotationSummary> {
        let action = Action::RotateKeys;
        self.guard(caller, action, "master_key", &Resource::Platform).await?;
        if self.sealed.master_from_environment {
            return Err(ServiceError::invalid(format!(
                "the master key comes from ${}; rotate it where it is kept, or use a key file",
                sluice_vault::keys::MASTER_KEY_ENV
            )));
        }
        // Ingests under way go on; each re-wraps its new data key under whichever master key
        // is current when it commits (holding the read lock this write lock waits for).
        let mut master = self.sealed.master.write().await;
        let new_key = AeadKey::generate()?;
        let next_path = self.sealed.data_dir.master_key_next();
        let _ = std::fs::remove_file(&next_path);
        sluice_vault::keys::write_secret_file(&next_path, format!("{}\n", new_key.to_hex().as_str()).as_bytes())?;
        let outcome = self.rewrap_all(caller, &master, &new_key).await;
        let rewrapped = match outcome {
            Ok(count) => count,
            Err(error) => {
                let _ = std::fs::remove_file(&next_path);
                return Err(error.into());
            }
        };
        std::fs::rename(&next_path, self.sealed.data_dir.master_key()).context("installing the new master key")?;
        if let Ok(directory) = std::fs::File::open(self.sealed.data_dir.root()) {
            let _ = directory.sync_all();
        }
        *master = new_key;
        Ok(RotationSummary { data_keys_rewrapped: rewrapped, new_fingerprint: master.fingerprint() })
    }

    async fn rewrap_all(&self, caller: &Caller, old: &AeadKey, new: &AeadKey) -> anyhow::Result<u64> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let keys = Store::wrapped_keys(&mut tx).await?;
        for (dataset_id, version, wrapped) in &keys {
            let context = sluice_vault::chunks::ChunkContext {
                dataset_id: dataset_id.0,
                version: *version,
                schema_hash: [0; 32],
            };
            let data_key = old
                .unwrap_key(wrapped, &context.key_context())
                .map_err(|error| anyhow::anyhow!("dataset {dataset_id} version {version}: {error}"))?;
            Store::replace_wrapped_key(&mut tx, *dataset_id, *version, &new.wrap(&data_key, &context.key_context())?)
                .await?;
        }
        // The pseudonym secret stays the same secret: only its wrapping changes, so versions
        // ingested before and after the rotation still join.
        let wrapped =
            Store::meta_in(&mut tx, PSEUDONYM_SECRET).await?.context("the key pseudonym secret is missing")?;
        let pseudonyms = unwrap_pseudonym_key(old, &wrapped)?;
        Store::set_meta(&mut tx, PSEUDONYM_SECRET, &hex::encode(pseudonyms.wrap(new)?)).await?;
        Store::set_meta(&mut tx, MASTER_FINGERPRINT, &new.fingerprint()).await?;
        let event = Self::event(caller, Action::RotateKeys.audit(), "master_key", AuditOutcome::Ok)
            .detail(Detail::DataKeysRewrapped, keys.len())
            .detail(Detail::OldFingerprint, &old.fingerprint()[..16])
            .detail(Detail::NewFingerprint, &new.fingerprint()[..16]);
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the key rotation")?;
        Ok(keys.len() as u64)
    }
}

//! The seed 002 procedure as pure checks: licences, the two demand reviews, model review
//! and the decision to run.
//!
//! It owns the stateful rules (who reviews what, in which order, validity windows, digest
//! binding, column scope, budget). Facts and the current time come in as arguments; it
//! must not read a clock or a store, and it returns the next state rather than writing it.

use time::OffsetDateTime;

use crate::budget::{Epsilon, PrivacyBudget};
use crate::decision::{Denial, DenialReason};
use crate::organisation::OrganisationId;
use crate::roles::{ReviewerKind, Role};

/// An operator's licence (持牌): number and validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    pub number: String,
    pub valid_from: OffsetDateTime,
    pub valid_until: OffsetDateTime,
}

/// The acting principal, as the gateway authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: i64,
    pub role: Role,
    pub organisation: OrganisationId,
    pub reviewer_kind: Option<ReviewerKind>,
    pub licence: Option<Licence>,
}

/// An operator may act only while its licence is valid.
pub fn check_licence(operator: &Principal, now: OffsetDateTime) -> Result<(), Denial> {
    let Some(licence) = &operator.licence else {
        return Err(Denial::new(DenialReason::LicenceMissing, "the operator holds no licence"));
    };
    if now < licence.valid_from || now >= licence.valid_until {
        return Err(Denial::new(
            DenialReason::LicenceExpired,
            format!("licence {} is not valid at this time", licence.number),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationState {
    /// Saved by the operator, not yet submitted for review.
    Draft,
    /// Waiting for the data bureau.
    Submitted,
    /// The bureau approved; waiting for the providing department.
    BureauApproved,
    Approved,
    Rejected,
    /// The applicant withdrew it before a decision.
    Withdrawn,
}

impl ApplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationState::Draft => "draft",
            ApplicationState::Submitted => "submitted",
            ApplicationState::BureauApproved => "bureau_approved",
            ApplicationState::Approved => "approved",
            ApplicationState::Rejected => "rejected",
            ApplicationState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        use ApplicationState::*;
        [Draft, Submitted, BureauApproved, Approved, Rejected, Withdrawn]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// A state read back as its stored name; an unknown name is an error naming it.
impl TryFrom<String> for ApplicationState {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("`{text}` is not an application state"))
    }
}

/// One demand, one review (一需求一审核): the state an application moves to after a
/// review. Who may review at which stage (the data bureau first, then every department
/// providing data to it, each reviewer other than the bureau's, none from the applying
/// organisation) is the policy set's (`policies/cedar/default.cedar`).
///
/// `others_pending` counts the providing departments other than the reviewer's that have
/// not yet approved: a department's approval leaves the application `bureau_approved`
/// until the last of them approves; any one's rejection rejects it.
pub fn review_application(
    state: ApplicationState,
    approve: bool,
    others_pending: usize,
) -> Result<ApplicationState, Denial> {
    let next = match state {
        ApplicationState::Submitted => ApplicationState::BureauApproved,
        ApplicationState::BureauApproved if others_pending > 0 => ApplicationState::BureauApproved,
        ApplicationState::BureauApproved => ApplicationState::Approved,
        ApplicationState::Draft
        | ApplicationState::Approved
        | ApplicationState::Rejected
        | ApplicationState::Withdrawn => {
            return Err(Denial::new(
                DenialReason::NotPending,
                format!("the application is {}, not awaiting review", state.as_str()),
            ));
        }
    };
    Ok(if approve { next } else { ApplicationState::Rejected })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    Submitted,
    Approved,
    Rejected,
    /// Approval withdrawn by a reviewer: the model can no longer run.
    Revoked,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Submitted => "submitted",
            ModelState::Approved => "approved",
            ModelState::Rejected => "rejected",
            ModelState::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        use ModelState::*;
        [Submitted, Approved, Rejected, Revoked].into_iter().find(|state| state.as_str() == text)
    }
}

/// A state read back as its stored name; an unknown name is an error naming it.
impl TryFrom<String> for ModelState {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("`{text}` is not a model state"))
    }
}

/// A model submission: bound to its digest and to the authorisation it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    pub state: ModelState,
    pub authorisation_id: i64,
    /// The digest the review approved (module + manifest).
    pub approved_digest: String,
}

/// One model, one review (一模型一审定): only a pending submission is reviewed (who may
/// review it is the policy set's: a reviewer from outside the submitting organisation).
pub fn review_model(state: ModelState) -> Result<(), Denial> {
    if state != ModelState::Submitted {
        return Err(Denial::new(
            DenialReason::NotPending,
            format!("the model is {}, not awaiting review", state.as_str()),
        ));
    }
    Ok(())
}

/// The next state of a model after a review, under a quorum of 1 or 2 independent
/// approvals: `prior_approvals` are (reviewer id, organisation) of earlier approvals. A
/// rejection settles it; a second approval must come from another reviewer of another
/// organisation.
pub fn model_review_outcome(
    prior_approvals: &[(i64, OrganisationId)],
    reviewer: &Principal,
    approve: bool,
    quorum: usize,
) -> Result<ModelState, Denial> {
    if !approve {
        return Ok(ModelState::Rejected);
    }
    if prior_approvals.iter().any(|(id, organisation)| *id == reviewer.id || *organisation == reviewer.organisation) {
        return Err(Denial::new(
            DenialReason::WrongReviewer,
            "the approvals must come from independent reviewers of different organisations",
        ));
    }
    Ok(if prior_approvals.len() + 1 >= quorum.max(1) { ModelState::Approved } else { ModelState::Submitted })
}

/// The applicant may withdraw its application while it awaits a decision.
pub fn withdraw_application(state: ApplicationState) -> Result<ApplicationState, Denial> {
    match state {
        ApplicationState::Draft | ApplicationState::Submitted | ApplicationState::BureauApproved => {
            Ok(ApplicationState::Withdrawn)
        }
        state => Err(Denial::new(
            DenialReason::NotPending,
            format!("the application is {}, it can no longer be withdrawn", state.as_str()),
        )),
    }
}

/// The applicant submits its draft for review.
pub fn submit_draft(state: ApplicationState) -> Result<ApplicationState, Denial> {
    if state != ApplicationState::Draft {
        return Err(Denial::new(
            DenialReason::NotPending,
            format!("the application is {}, not a draft", state.as_str()),
        ));
    }
    Ok(ApplicationState::Submitted)
}

/// An authorisation is revoked once; revocation takes effect at once (who may revoke it is
/// the policy set's: the data bureau or the department providing its data).
pub fn revoke_authorisation(already_revoked: bool) -> Result<(), Denial> {
    if already_revoked {
        return Err(Denial::new(DenialReason::NotPending, "the authorisation is already revoked"));
    }
    Ok(())
}

/// Revocation is of the bytes, for the authorisation: once a model's digest was revoked
/// under an authorisation, the same bytes are never submitted or approved there again
/// (a new model row with identical bytes would otherwise undo the revocation).
pub fn check_not_revoked(digest_revoked_here: bool) -> Result<(), Denial> {
    if digest_revoked_here {
        return Err(Denial::new(
            DenialReason::ModelRevoked,
            "these exact bytes were revoked for this authorisation; a changed model needs a new review",
        ));
    }
    Ok(())
}

/// A pending or approved model may be revoked (refused for good, or its approval
/// withdrawn); who may is the policy set's.
pub fn revoke_model(state: ModelState) -> Result<(), Denial> {
    if !matches!(state, ModelState::Submitted | ModelState::Approved) {
        return Err(Denial::new(
            DenialReason::NotPending,
            format!("the model is {}, there is nothing to revoke", state.as_str()),
        ));
    }
    Ok(())
}

/// Data product review (数据产品审查): only a held result is released or withheld (by the
/// providing department, under the policy set).
pub fn review_result(held: bool) -> Result<(), Denial> {
    if !held {
        return Err(Denial::new(DenialReason::NotPending, "the result is not held for review"));
    }
    Ok(())
}

/// Run-rate limit: an authorisation allows at most `limit` runs in any hour. Rapid runs are
/// how an operator would probe a model's behaviour on the data, so they are bounded
/// besides the budget.
pub fn check_run_rate(runs_in_last_hour: u64, limit: u64) -> Result<(), Denial> {
    if runs_in_last_hour >= limit {
        return Err(Denial::new(
            DenialReason::RateLimited,
            format!("the authorisation allows {limit} runs an hour; try again later"),
        ));
    }
    Ok(())
}

/// The smallest ε a run may spend unless configured otherwise: with a budget of 10, at most
/// 200 runs, so the budget bounds how many observations an operator gets.
pub const DEFAULT_MIN_EPSILON_PER_RUN: Epsilon = Epsilon::from_units(50_000);

/// A model's ε per run must be at least `minimum` (each run is one more observation of the
/// data, so a tiny ε must not buy many of them) and fit what `remaining` allows. Checked at
/// upload, where a model that could never run is refused, and again before each charge.
pub fn check_epsilon_per_run(epsilon: Epsilon, minimum: Epsilon, remaining: Epsilon) -> Result<(), Denial> {
    if epsilon < minimum {
        return Err(Denial::new(
            DenialReason::EpsilonBelowMinimum,
            format!("a run spends at least ε = {}; this model spends {}", minimum.as_f64(), epsilon.as_f64()),
        ));
    }
    if epsilon > remaining {
        return Err(Denial::new(
            DenialReason::EpsilonAboveBudget,
            format!(
                "this model spends ε = {} per run and the authorisation has {} left",
                epsilon.as_f64(),
                remaining.as_f64()
            ),
        ));
    }
    Ok(())
}

/// One scenario, one authorisation (一场景一授权).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorisationFacts {
    pub id: i64,
    pub columns: Vec<String>,
    pub valid_from: OffsetDateTime,
    pub valid_until: OffsetDateTime,
    pub revoked: bool,
    pub budget: PrivacyBudget,
}

/// Everything the gate needs to decide a run.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    pub operator: &'a Principal,
    pub authorisation: Option<&'a AuthorisationFacts>,
    pub model: &'a ModelFacts,
    /// The digest of the bytes about to run, computed now from what is stored.
    pub digest_to_run: &'a str,
    pub columns_read: &'a [String],
    pub epsilon: Epsilon,
    /// The least ε a run may spend (the gateway's configuration).
    pub min_epsilon: Epsilon,
    pub dataset_id: i64,
    pub dataset_budget: PrivacyBudget,
    /// The lifetime budgets of the datasets joined to it (none for one dataset): every run
    /// that reads a dataset is charged to it.
    pub joined_dataset_budgets: &'a [PrivacyBudget],
}

/// The gate's yes, carrying what was decided: which authorisation and dataset pay, and how
/// much. The charge is made with it ([`RunPermit::charge`]); nothing decides again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPermit {
    pub authorisation_id: i64,
    pub dataset_id: i64,
    pub epsilon: Epsilon,
}

/// What may have changed between the decision and the charge, read in the charging
/// transaction (which holds the write lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeFacts {
    pub revoked: bool,
    pub authorisation_budget: PrivacyBudget,
    pub dataset_budget: PrivacyBudget,
    /// Each joined dataset's lifetime budget, in the authorisation's order.
    pub joined_dataset_budgets: Vec<PrivacyBudget>,
    pub runs_in_last_hour: u64,
    pub max_runs_per_hour: u64,
}

/// A charge that fits: every budget after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    pub permit: RunPermit,
    pub authorisation_budget_after: PrivacyBudget,
    pub dataset_budget_after: PrivacyBudget,
    /// Each joined dataset's, in the authorisation's order.
    pub joined_dataset_budgets_after: Vec<PrivacyBudget>,
}

impl RunPermit {
    /// Charges the permit against the budgets as they are now. Revocation and a spent
    /// budget win any race with the decision; the run rate is counted here, where
    /// concurrent runs are serialised.
    pub fn charge(&self, facts: &ChargeFacts) -> Result<Charged, Denial> {
        if facts.revoked {
            return Err(Denial::new(DenialReason::AuthorisationRevoked, "the authorisation has been revoked"));
        }
        check_run_rate(facts.runs_in_last_hour, facts.max_runs_per_hour)?;
        let authorisation_budget_after =
            facts.authorisation_budget.charge(self.epsilon, DenialReason::BudgetExhausted)?;
        let dataset_budget_after = facts.dataset_budget.charge(self.epsilon, DenialReason::DatasetBudgetExhausted)?;
        let joined_dataset_budgets_after = facts
            .joined_dataset_budgets
            .iter()
            .map(|budget| budget.charge(self.epsilon, DenialReason::DatasetBudgetExhausted))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Charged { permit: *self, authorisation_budget_after, dataset_budget_after, joined_dataset_budgets_after })
    }
}

/// Decides whether a run may start. Checks run from the actor outwards, so the reason
/// names the first rule that fails.
pub fn authorise_run(facts: &RunFacts<'_>, now: OffsetDateTime) -> Result<RunPermit, Denial> {
    let Some(authorisation) = facts.authorisation else {
        return Err(Denial::new(DenialReason::AuthorisationMissing, "no authorisation covers this run"));
    };
    check_licence(facts.operator, now)?;
    if authorisation.revoked {
        return Err(Denial::new(DenialReason::AuthorisationRevoked, "the authorisation has been revoked"));
    }
    if now < authorisation.valid_from || now >= authorisation.valid_until {
        return Err(Denial::new(
            DenialReason::AuthorisationOutsideWindow,
            "the authorisation is not valid at this time (expired or not yet started)",
        ));
    }
    check_model(facts, authorisation)?;
    if let Some(column) = facts.columns_read.iter().find(|column| !authorisation.columns.contains(column)) {
        return Err(Denial::new(
            DenialReason::ColumnNotAuthorised,
            format!("column `{column}` is not granted by the authorisation"),
        ));
    }
    authorisation.budget.charge(facts.epsilon, DenialReason::BudgetExhausted)?;
    facts.dataset_budget.charge(facts.epsilon, DenialReason::DatasetBudgetExhausted)?;
    for joined in facts.joined_dataset_budgets {
        joined.charge(facts.epsilon, DenialReason::DatasetBudgetExhausted)?;
    }
    check_epsilon_per_run(facts.epsilon, facts.min_epsilon, authorisation.budget.remaining())?;
    Ok(RunPermit { authorisation_id: authorisation.id, dataset_id: facts.dataset_id, epsilon: facts.epsilon })
}

fn check_model(facts: &RunFacts<'_>, authorisation: &AuthorisationFacts) -> Result<(), Denial> {
    let model = facts.model;
    if model.state != ModelState::Approved {
        return Err(Denial::new(
            DenialReason::ModelNotApproved,
            format!("the model is {}, only an approved model may run", model.state.as_str()),
        ));
    }
    if model.authorisation_id != authorisation.id {
        return Err(Denial::new(
            DenialReason::ModelNotForAuthorisation,
            "the model was approved for another authorisation",
        ));
    }
    if model.approved_digest != facts.digest_to_run {
        return Err(Denial::new(
            DenialReason::ModelDigestMismatch,
            "the model's bytes differ from the ones reviewed; a changed model needs a new review",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

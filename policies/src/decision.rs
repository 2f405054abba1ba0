//! Denials: the reason an action was refused, with a stable code and a plain message.
//!
//! It owns the vocabulary of refusals shared by the HTTP API, the CLI and the audit log.
//! A message must name the rule, never a data value or a secret.

use std::fmt;

/// Why the gate said no. Each reason has a stable code used by the API and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialReason {
    WrongRole,
    LicenceMissing,
    LicenceExpired,
    AuthorisationMissing,
    AuthorisationNotYours,
    AuthorisationRevoked,
    AuthorisationOutsideWindow,
    ModelNotApproved,
    ModelNotForAuthorisation,
    ModelDigestMismatch,
    ColumnNotAuthorised,
    BudgetExhausted,
    DatasetBudgetExhausted,
    SelfReview,
    WrongReviewer,
    NotPending,
    InvalidRequest,
    DatasetDestroyed,
    RateLimited,
    EpsilonBelowMinimum,
    EpsilonAboveBudget,
    DummyRunFailed,
    ModelRevoked,
    TwoPersonRule,
    /// A forbid policy without a `@reason` of its own (an administrator's addition).
    Forbidden,
}

impl DenialReason {
    pub fn code(self) -> &'static str {
        match self {
            DenialReason::WrongRole => "wrong_role",
            DenialReason::LicenceMissing => "licence_missing",
            DenialReason::LicenceExpired => "licence_expired",
            DenialReason::AuthorisationMissing => "authorisation_missing",
            DenialReason::AuthorisationNotYours => "authorisation_not_yours",
            DenialReason::AuthorisationRevoked => "authorisation_revoked",
            DenialReason::AuthorisationOutsideWindow => "authorisation_outside_window",
            DenialReason::ModelNotApproved => "model_not_approved",
            DenialReason::ModelNotForAuthorisation => "model_not_for_authorisation",
            DenialReason::ModelDigestMismatch => "model_digest_mismatch",
            DenialReason::ColumnNotAuthorised => "column_not_authorised",
            DenialReason::BudgetExhausted => "budget_exhausted",
            DenialReason::DatasetBudgetExhausted => "dataset_budget_exhausted",
            DenialReason::SelfReview => "self_review",
            DenialReason::WrongReviewer => "wrong_reviewer",
            DenialReason::NotPending => "not_pending",
            DenialReason::InvalidRequest => "invalid_request",
            DenialReason::DatasetDestroyed => "dataset_destroyed",
            DenialReason::RateLimited => "rate_limited",
            DenialReason::EpsilonBelowMinimum => "epsilon_below_minimum",
            DenialReason::EpsilonAboveBudget => "epsilon_above_budget",
            DenialReason::DummyRunFailed => "dummy_run_failed",
            DenialReason::ModelRevoked => "model_revoked",
            DenialReason::TwoPersonRule => "two_person_rule",
            DenialReason::Forbidden => "forbidden",
        }
    }

    /// Every reason, for parsing a code (a policy's `@reason`).
    pub const ALL: [DenialReason; 25] = [
        DenialReason::WrongRole,
        DenialReason::LicenceMissing,
        DenialReason::LicenceExpired,
        DenialReason::AuthorisationMissing,
        DenialReason::AuthorisationNotYours,
        DenialReason::AuthorisationRevoked,
        DenialReason::AuthorisationOutsideWindow,
        DenialReason::ModelNotApproved,
        DenialReason::ModelNotForAuthorisation,
        DenialReason::ModelDigestMismatch,
        DenialReason::ColumnNotAuthorised,
        DenialReason::BudgetExhausted,
        DenialReason::DatasetBudgetExhausted,
        DenialReason::SelfReview,
        DenialReason::WrongReviewer,
        DenialReason::NotPending,
        DenialReason::InvalidRequest,
        DenialReason::DatasetDestroyed,
        DenialReason::RateLimited,
        DenialReason::EpsilonBelowMinimum,
        DenialReason::EpsilonAboveBudget,
        DenialReason::DummyRunFailed,
        DenialReason::ModelRevoked,
        DenialReason::TwoPersonRule,
        DenialReason::Forbidden,
    ];

    /// A refusal that asking again later may turn into a yes (a rate limit): HTTP 429.
    pub fn retry_later(self) -> bool {
        self == DenialReason::RateLimited
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }
}

/// A refusal: the reason and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenialReason,
    pub message: String,
}

impl Denial {
    pub fn new(reason: DenialReason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }

    /// A request the gate refuses because it is malformed, not because of who sent it.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(DenialReason::InvalidRequest, message)
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.message)
    }
}

impl std::error::Error for Denial {}

//! The service's error type: every failure a caller can see, with a stable code and a
//! message that names the rule, never a secret or a data value.
//!
//! It must not carry internal detail to callers: `Internal` errors are logged by the API
//! layer and answered with a generic message.

use sluice_policies::Denial;
use sluice_sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No usable token: the reason is the stable code (`unauthenticated` for a missing or
    /// unknown token, `token_expired`, `token_revoked`, `principal_disabled`).
    #[error("{}", unauthenticated_message(.0))]
    Unauthenticated(&'static str),
    #[error("{}", .0.message)]
    Denied(Denial),
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: i64 },
    #[error("{0}")]
    Invalid(String),
    /// Invalid input whose refusal the service already recorded (a failed ingest).
    #[error("{0}")]
    InvalidRecorded(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the model failed static review: {0}")]
    ModelRejected(SandboxError),
    /// A run that was charged but did not release: only the coarse outcome is shown.
    #[error("{message}")]
    RunFailed { message: &'static str },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Unauthenticated(code) => code,
            ServiceError::Denied(denial) => denial.reason.code(),
            ServiceError::NotFound { .. } => "not_found",
            ServiceError::Invalid(_) | ServiceError::InvalidRecorded(_) => "invalid_request",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::ModelRejected(error) => error.code(),
            ServiceError::RunFailed { .. } => "run_failed",
            ServiceError::Internal(_) => "internal",
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid(message.into())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

fn unauthenticated_message(code: &str) -> &'static str {
    match code {
        "token_expired" => "the API token has expired; ask an administrator for a new one",
        "token_revoked" => "the API token was revoked or replaced; use the newest token you were given",
        "principal_disabled" => "this principal was disabled by an administrator",
        _ => "missing or unknown API token",
    }
}

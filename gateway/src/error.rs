//! The service's error type: every failure a caller can see, with a stable code and a
//! message that names the rule, never a secret or a data value.
//!
//! It must not carry internal detail to callers: `Internal` errors are logged by the API
//! layer and answered with a generic message.

use sluice_policies::Denial;
use sluice_sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("missing or unknown API token")]
    Unauthenticated,
    #[error("{}", .0.message)]
    Denied(Denial),
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: i64 },
    #[error("{0}")]
    Invalid(String),
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
            ServiceError::Unauthenticated => "unauthenticated",
            ServiceError::Denied(denial) => denial.reason.code(),
            ServiceError::NotFound { .. } => "not_found",
            ServiceError::Invalid(_) => "invalid_request",
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

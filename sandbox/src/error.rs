//! The sandbox's error type, with a stable code for each failure and the coarse
//! [`Outcome`] an operator is allowed to see.
//!
//! Detail (trap messages, which row, which limit) is for reviewers and the audit log only:
//! the guest controls it, so showing it to the operator would open a channel out of the
//! sandbox. It must not carry data values.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("manifest is invalid: {0}")]
    ManifestInvalid(String),
    #[error("model digest `{0}` is not 64 hexadecimal characters")]
    DigestInvalid(String),
    #[error("module is {bytes} bytes, the limit is {limit}")]
    ModuleTooLarge { bytes: usize, limit: usize },
    #[error("module is not a valid core WebAssembly module: {0}")]
    ModuleInvalid(String),
    #[error("a component was uploaded; Sluice runs core WebAssembly modules only")]
    ComponentNotModule,
    #[error("module defines {count} functions, the limit is {limit}")]
    TooManyFunctions { count: u32, limit: u32 },
    #[error("module declares a table of {elements} elements, the limit is {limit}")]
    TableTooLarge { elements: u64, limit: u64 },
    #[error("module asks for {requested_bytes} bytes of initial memory, the limit is {limit}")]
    MemoryTooLarge { requested_bytes: u64, limit: u64 },
    #[error("module declares {count} {what}; ABI 1 allows one")]
    TooMany { what: &'static str, count: u32 },
    #[error("module imports `{module}::{name}`, which the host does not offer (ABI 1 offers no imports)")]
    ForbiddenImport { module: String, name: String },
    #[error("module does not export `{name}`")]
    MissingExport { name: &'static str },
    #[error("export `{name}` has the wrong type, expected {expected}")]
    WrongExportSignature { name: &'static str, expected: &'static str },
    #[error("module exceeds the sandbox's limits: {0}")]
    LimitsExceeded(String),
    #[error("module targets ABI version {declared}, this host implements {expected}")]
    AbiVersionMismatch { declared: i32, expected: u32 },
    #[error("batch does not match the manifest: {0}")]
    BatchShape(String),
    #[error("reading the input failed: {0}")]
    Input(String),
    #[error("model exceeded a resource limit: {0}")]
    ResourceLimit(String),
    #[error("model trapped: {0}")]
    Trap(String),
    #[error("model returned error status {0}")]
    ModelStatus(i32),
    #[error("model wrote an invalid value for output `{output}`: {detail}")]
    InvalidOutput { output: String, detail: String },
    #[error("all sandbox slots are busy, try again")]
    Busy,
    #[error("sandbox engine error: {0}")]
    Engine(String),
}

/// What an operator may learn about a run that did not release: a coarse class only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The module or manifest failed review.
    Rejected,
    /// The model hit fuel, time, memory, stack or output limits.
    ResourceLimit,
    /// The model trapped or reported an error.
    ModelFailed,
    /// The model wrote values the manifest does not allow.
    InvalidOutput,
    /// The sandbox is busy; the run may be retried.
    Busy,
    /// Something on the host side failed.
    Internal,
}

impl Outcome {
    pub fn message(self) -> &'static str {
        match self {
            Outcome::Rejected => "model rejected by static review",
            Outcome::ResourceLimit => "model failed: resource limit",
            Outcome::ModelFailed => "model failed: trap or model error",
            Outcome::InvalidOutput => "model failed: invalid output",
            Outcome::Busy => "sandbox busy, try again",
            Outcome::Internal => "internal sandbox error",
        }
    }
}

impl SandboxError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::ManifestInvalid(_) => "manifest_invalid",
            SandboxError::DigestInvalid(_) => "digest_invalid",
            SandboxError::ModuleTooLarge { .. } => "module_too_large",
            SandboxError::ModuleInvalid(_) => "module_invalid",
            SandboxError::ComponentNotModule => "component_not_module",
            SandboxError::TooManyFunctions { .. } => "too_many_functions",
            SandboxError::TableTooLarge { .. } => "table_too_large",
            SandboxError::MemoryTooLarge { .. } => "memory_too_large",
            SandboxError::TooMany { .. } => "too_many_items",
            SandboxError::ForbiddenImport { .. } => "forbidden_import",
            SandboxError::MissingExport { .. } => "missing_export",
            SandboxError::WrongExportSignature { .. } => "wrong_export_signature",
            SandboxError::AbiVersionMismatch { .. } => "abi_version_mismatch",
            SandboxError::LimitsExceeded(_) => "limits_exceeded",
            SandboxError::BatchShape(_) => "batch_shape",
            SandboxError::Input(_) => "input_failed",
            SandboxError::ResourceLimit(_) => "resource_limit",
            SandboxError::Trap(_) => "trap",
            SandboxError::ModelStatus(_) => "model_status",
            SandboxError::InvalidOutput { .. } => "invalid_output",
            SandboxError::Busy => "sandbox_busy",
            SandboxError::Engine(_) => "engine_error",
        }
    }

    /// The coarse outcome an operator may see.
    pub fn outcome(&self) -> Outcome {
        match self {
            SandboxError::ManifestInvalid(_)
            | SandboxError::DigestInvalid(_)
            | SandboxError::ModuleTooLarge { .. }
            | SandboxError::ModuleInvalid(_)
            | SandboxError::ComponentNotModule
            | SandboxError::TooManyFunctions { .. }
            | SandboxError::TableTooLarge { .. }
            | SandboxError::MemoryTooLarge { .. }
            | SandboxError::TooMany { .. }
            | SandboxError::ForbiddenImport { .. }
            | SandboxError::MissingExport { .. }
            | SandboxError::WrongExportSignature { .. }
            | SandboxError::LimitsExceeded(_)
            | SandboxError::AbiVersionMismatch { .. } => Outcome::Rejected,
            SandboxError::ResourceLimit(_) => Outcome::ResourceLimit,
            SandboxError::Trap(_) | SandboxError::ModelStatus(_) => Outcome::ModelFailed,
            SandboxError::InvalidOutput { .. } => Outcome::InvalidOutput,
            SandboxError::Busy => Outcome::Busy,
            SandboxError::BatchShape(_) | SandboxError::Input(_) | SandboxError::Engine(_) => Outcome::Internal,
        }
    }
}

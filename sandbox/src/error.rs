//! The sandbox's error type, with a stable code for each failure and the coarse
//! [`Outcome`] an operator is allowed to see.
//!
//! Review errors say exactly what is wrong, for the model's author and its reviewers. A run
//! fails only for reasons that do not depend on row values (the host, the engine, a busy
//! sandbox): what a model does on a row is never an error here but a row fallback
//! ([`crate::RowFailure`]), counted for the audit log only. No error carries data values.

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
    #[error("module declares {count} {what}; ABI 2 allows one")]
    TooMany { what: &'static str, count: u32 },
    #[error(
        "module imports `{module}::{name}`, which the host does not offer (ABI 2 offers `sluice::emit` and `sluice:math` functions only)"
    )]
    ForbiddenImport { module: String, name: String },
    #[error("module has a start function; an ABI 2 model runs no code but its row function")]
    StartFunction,
    #[error("{} in function {function} (`{instruction}`): keep per-row work in locals, and constant tables in `const` or `static` items", effect.describe())]
    NotIsolated { effect: Effect, instruction: String, function: String },
    #[error("the row export does not match the manifest: {0}")]
    RowSignature(String),
    #[error("module does not export `{name}`")]
    MissingExport { name: &'static str },
    #[error("export `{name}` has the wrong type, expected {expected}")]
    WrongExportSignature { name: &'static str, expected: &'static str },
    #[error("module exceeds the sandbox's limits: {0}")]
    LimitsExceeded(String),
    #[error("{0}")]
    AbiVersionMismatch(String),
    #[error("batch does not match the manifest: {0}")]
    BatchShape(String),
    #[error("reading the input failed: {0}")]
    Input(String),
    #[error("model exceeded a resource limit: {0}")]
    ResourceLimit(String),
    #[error("model trapped while being instantiated: {0}")]
    Trap(String),
    #[error("all sandbox slots are busy, try again")]
    Busy,
    #[error("sandbox engine error: {0}")]
    Engine(String),
}

/// Which kind of state a non-isolated instruction would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    MemoryWrite,
    MemoryGrow,
    GlobalWrite,
    TableWrite,
    SegmentDrop,
    Atomic,
    Unsupported,
}

impl Effect {
    pub const ALL: [Effect; 7] = [
        Effect::MemoryWrite,
        Effect::MemoryGrow,
        Effect::GlobalWrite,
        Effect::TableWrite,
        Effect::SegmentDrop,
        Effect::Atomic,
        Effect::Unsupported,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Effect::MemoryWrite => "writes linear memory",
            Effect::MemoryGrow => "grows linear memory",
            Effect::GlobalWrite => "writes a global",
            Effect::TableWrite => "changes a table",
            Effect::SegmentDrop => "drops a data or element segment",
            Effect::Atomic => "uses an atomic instruction",
            Effect::Unsupported => "uses an instruction ABI 2 does not allow",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Effect::MemoryWrite => "writes_memory",
            Effect::MemoryGrow => "grows_memory",
            Effect::GlobalWrite => "writes_global",
            Effect::TableWrite => "writes_table",
            Effect::SegmentDrop => "drops_segment",
            Effect::Atomic => "uses_atomics",
            Effect::Unsupported => "unsupported_instruction",
        }
    }
}

/// What an operator may learn about a run that did not release: a coarse class only, and
/// only ever for reasons that do not depend on row values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The module or manifest failed review.
    Rejected,
    /// The host stopped the run (wall-clock backstop, instantiation limits).
    ResourceLimit,
    /// The model trapped while being instantiated, before any row.
    ModelFailed,
    /// The sandbox is busy; the run may be retried.
    Busy,
    /// Something on the host side failed.
    Internal,
}

impl Outcome {
    /// The coarse class of the error whose [`SandboxError::code`] is `code`, for an
    /// outcome read back from storage; `None` for a code no sandbox error has.
    pub fn of_code(code: &str) -> Option<Outcome> {
        Some(match code {
            "resource_limit" => Outcome::ResourceLimit,
            "trap" => Outcome::ModelFailed,
            "sandbox_busy" => Outcome::Busy,
            "batch_shape" | "input_failed" | "engine_error" => Outcome::Internal,
            "manifest_invalid"
            | "digest_invalid"
            | "module_too_large"
            | "module_invalid"
            | "component_not_module"
            | "too_many_functions"
            | "table_too_large"
            | "memory_too_large"
            | "too_many_items"
            | "forbidden_import"
            | "start_function"
            | "row_signature_mismatch"
            | "missing_export"
            | "wrong_export_signature"
            | "abi_version_mismatch"
            | "limits_exceeded" => Outcome::Rejected,
            effect if Effect::ALL.iter().any(|known| known.code() == effect) => Outcome::Rejected,
            _ => return None,
        })
    }

    pub fn message(self) -> &'static str {
        match self {
            Outcome::Rejected => "model rejected by static review",
            Outcome::ResourceLimit => "run stopped by the host: resource limit",
            Outcome::ModelFailed => "model failed to instantiate",
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
            SandboxError::StartFunction => "start_function",
            SandboxError::NotIsolated { effect, .. } => effect.code(),
            SandboxError::RowSignature(_) => "row_signature_mismatch",
            SandboxError::MissingExport { .. } => "missing_export",
            SandboxError::WrongExportSignature { .. } => "wrong_export_signature",
            SandboxError::AbiVersionMismatch(_) => "abi_version_mismatch",
            SandboxError::LimitsExceeded(_) => "limits_exceeded",
            SandboxError::BatchShape(_) => "batch_shape",
            SandboxError::Input(_) => "input_failed",
            SandboxError::ResourceLimit(_) => "resource_limit",
            SandboxError::Trap(_) => "trap",
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
            | SandboxError::StartFunction
            | SandboxError::NotIsolated { .. }
            | SandboxError::RowSignature(_)
            | SandboxError::MissingExport { .. }
            | SandboxError::WrongExportSignature { .. }
            | SandboxError::LimitsExceeded(_)
            | SandboxError::AbiVersionMismatch(_) => Outcome::Rejected,
            SandboxError::ResourceLimit(_) => Outcome::ResourceLimit,
            SandboxError::Trap(_) => Outcome::ModelFailed,
            SandboxError::Busy => Outcome::Busy,
            SandboxError::BatchShape(_) | SandboxError::Input(_) | SandboxError::Engine(_) => Outcome::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error, one of each variant (and every effect): a variant added without a
    /// place in [`Outcome::of_code`] fails here.
    fn one_of_each() -> Vec<SandboxError> {
        let text = || String::from("x");
        let mut errors = vec![
            SandboxError::ManifestInvalid(text()),
            SandboxError::DigestInvalid(text()),
            SandboxError::ModuleTooLarge { bytes: 2, limit: 1 },
            SandboxError::ModuleInvalid(text()),
            SandboxError::ComponentNotModule,
            SandboxError::TooManyFunctions { count: 2, limit: 1 },
            SandboxError::TableTooLarge { elements: 2, limit: 1 },
            SandboxError::MemoryTooLarge { requested_bytes: 2, limit: 1 },
            SandboxError::TooMany { what: "memories", count: 2 },
            SandboxError::ForbiddenImport { module: text(), name: text() },
            SandboxError::StartFunction,
            SandboxError::RowSignature(text()),
            SandboxError::MissingExport { name: "row" },
            SandboxError::WrongExportSignature { name: "row", expected: "()" },
            SandboxError::LimitsExceeded(text()),
            SandboxError::AbiVersionMismatch(text()),
            SandboxError::BatchShape(text()),
            SandboxError::Input(text()),
            SandboxError::ResourceLimit(text()),
            SandboxError::Trap(text()),
            SandboxError::Busy,
            SandboxError::Engine(text()),
        ];
        errors.extend(Effect::ALL.into_iter().map(|effect| SandboxError::NotIsolated {
            effect,
            instruction: text(),
            function: text(),
        }));
        errors
    }

    #[test]
    fn a_stored_code_reads_back_as_its_errors_outcome() {
        for error in one_of_each() {
            // A new variant must be added to `one_of_each` too: this match has no wildcard.
            match &error {
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
                | SandboxError::StartFunction
                | SandboxError::NotIsolated { .. }
                | SandboxError::RowSignature(_)
                | SandboxError::MissingExport { .. }
                | SandboxError::WrongExportSignature { .. }
                | SandboxError::LimitsExceeded(_)
                | SandboxError::AbiVersionMismatch(_)
                | SandboxError::BatchShape(_)
                | SandboxError::Input(_)
                | SandboxError::ResourceLimit(_)
                | SandboxError::Trap(_)
                | SandboxError::Busy
                | SandboxError::Engine(_) => {}
            }
            assert_eq!(Outcome::of_code(error.code()), Some(error.outcome()), "{}", error.code());
        }
        assert_eq!(one_of_each().len(), 22 + Effect::ALL.len());
        assert_eq!(Outcome::of_code("host_error"), None);
        assert_eq!(Outcome::of_code(""), None);
    }
}

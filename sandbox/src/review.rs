//! Static review of a module at upload: size, shape, imports, the row export, and the
//! row-isolation proof.
//!
//! It owns the checks that need no data and no run. It must not execute guest code.

use std::collections::HashMap;

use wasmtime::{Engine, ExternType, Module, ValType};

use crate::abi::{ABI_VERSION, ABI1_EXPORTS, ROW_EXPORT_PREFIX, RowSignature, WasmType, host_function};
use crate::error::SandboxError;
use crate::isolation::{ModuleFacts, check_isolation};
use crate::manifest::{Manifest, ModelDigest};
use crate::runtime::RuntimeLimits;

/// What review learns about a module that passes it.
pub struct Reviewed {
    pub module: Module,
    pub digest: ModelDigest,
    pub row_export: String,
    pub signature: RowSignature,
    /// The parsed code, for the fuel bound.
    pub(crate) facts: ModuleFacts,
}

/// Reviews `module_bytes` against the ABI, `manifest` and `limits`, compiling it with
/// `engine`.
pub fn review_module(
    engine: &Engine,
    limits: &RuntimeLimits,
    module_bytes: &[u8],
    manifest: &Manifest,
) -> Result<Reviewed, SandboxError> {
    if module_bytes.len() > limits.max_module_bytes {
        return Err(SandboxError::ModuleTooLarge { bytes: module_bytes.len(), limit: limits.max_module_bytes });
    }
    // Only the binary format is accepted: the digest must cover the bytes that run.
    if !module_bytes.starts_with(b"\0asm") {
        return Err(SandboxError::ModuleInvalid("not a WebAssembly binary (missing the \\0asm magic)".into()));
    }
    check_shape(module_bytes, limits)?;
    // `Module::new` validates and compiles; it refuses components and malformed bytes.
    // It never deserialises precompiled artefacts: that needs `Module::deserialize`,
    // which Sluice does not call on bytes from outside.
    let module = Module::new(engine, module_bytes).map_err(|error| {
        let detail = format!("{error:#}");
        // The pooling allocator refuses, at compile time, modules whose tables or
        // memories could never fit a slot.
        if detail.contains("pooling allocator") {
            SandboxError::LimitsExceeded(detail)
        } else {
            SandboxError::ModuleInvalid(detail)
        }
    })?;
    check_imports(&module)?;
    let (row_export, signature) = check_exports(&module)?;
    check_against_manifest(&signature, manifest)?;
    let facts = ModuleFacts::parse(module_bytes, &crate::runtime::operator_costs())?;
    check_isolation(&facts, &row_export)?;
    Ok(Reviewed { module, digest: ModelDigest::of(module_bytes, manifest), row_export, signature, facts })
}

const WASM_PAGE_BYTES: u64 = 65_536;

/// A pass over the sections before compiling, so each cap fails with its own code and a
/// hostile module is refused before Cranelift spends time on it.
fn check_shape(module_bytes: &[u8], limits: &RuntimeLimits) -> Result<(), SandboxError> {
    use wasmparser::{Encoding, Parser, Payload};
    let malformed = |error: wasmparser::BinaryReaderError| SandboxError::ModuleInvalid(error.to_string());
    for payload in Parser::new(0).parse_all(module_bytes) {
        match payload.map_err(malformed)? {
            Payload::Version { encoding: Encoding::Component, .. } => return Err(SandboxError::ComponentNotModule),
            Payload::FunctionSection(functions) if functions.count() > limits.max_functions => {
                return Err(SandboxError::TooManyFunctions { count: functions.count(), limit: limits.max_functions });
            }
            Payload::TableSection(tables) => {
                if tables.count() > 1 {
                    return Err(SandboxError::TooMany { what: "tables", count: tables.count() });
                }
                for table in tables {
                    let elements = table.map_err(malformed)?.ty.initial;
                    let limit = limits.max_table_elements as u64;
                    if elements > limit {
                        return Err(SandboxError::TableTooLarge { elements, limit });
                    }
                }
            }
            Payload::MemorySection(memories) => {
                if memories.count() > 1 {
                    return Err(SandboxError::TooMany { what: "memories", count: memories.count() });
                }
                for memory in memories {
                    let requested_bytes = memory.map_err(malformed)?.initial.saturating_mul(WASM_PAGE_BYTES);
                    let limit = limits.max_memory_bytes as u64;
                    if requested_bytes > limit {
                        return Err(SandboxError::MemoryTooLarge { requested_bytes, limit });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_imports(module: &Module) -> Result<(), SandboxError> {
    for import in module.imports() {
        let forbidden = || SandboxError::ForbiddenImport { module: import.module().into(), name: import.name().into() };
        let offered = host_function(import.module(), import.name()).ok_or_else(forbidden)?;
        let ExternType::Func(function) = import.ty() else {
            return Err(forbidden());
        };
        if !same_types(function.params(), offered.params) || !same_types(function.results(), offered.results) {
            return Err(SandboxError::WrongExportSignature {
                name: "an import of a host function",
                expected: "the signature ABI.md gives for it",
            });
        }
    }
    Ok(())
}

fn same_types(actual: impl ExactSizeIterator<Item = ValType>, expected: &[WasmType]) -> bool {
    actual.len() == expected.len()
        && actual.zip(expected).all(|(actual, expected)| match expected {
            WasmType::I32 => matches!(actual, ValType::I32),
            WasmType::I64 => matches!(actual, ValType::I64),
            WasmType::F64 => matches!(actual, ValType::F64),
        })
}

/// Finds the one row export and parses the signature its name declares.
fn check_exports(module: &Module) -> Result<(String, RowSignature), SandboxError> {
    if let Some(old) = ABI1_EXPORTS.iter().find(|name| module.get_export(name).is_some()) {
        return Err(SandboxError::AbiVersionMismatch(format!(
            "this is an ABI 1 module (it exports `{old}`); ABI 1 is retired because a model could keep state \
             across rows: rebuild it with the sluice-guest SDK for ABI {ABI_VERSION}"
        )));
    }
    if let Some(ExternType::Memory(memory)) = module.get_export("memory")
        && (memory.is_64() || memory.is_shared())
    {
        return Err(SandboxError::WrongExportSignature { name: "memory", expected: "a 32-bit unshared memory" });
    }
    let rows: Vec<&str> =
        module.exports().map(|export| export.name()).filter(|name| name.starts_with(ROW_EXPORT_PREFIX)).collect();
    let [row_export] = rows.as_slice() else {
        return if rows.is_empty() {
            Err(SandboxError::MissingExport { name: "sluice_row_v2(…)->(…)" })
        } else {
            Err(SandboxError::RowSignature(format!("{} row exports; a model has exactly one", rows.len())))
        };
    };
    let signature = RowSignature::parse(row_export).map_err(SandboxError::RowSignature)?;
    let Some(ExternType::Func(function)) = module.get_export(row_export) else {
        return Err(SandboxError::WrongExportSignature { name: "sluice_row_v2", expected: "a function" });
    };
    if !same_types(function.params(), &signature.param_types()) || function.results().len() != 0 {
        return Err(SandboxError::RowSignature(
            "the row function's parameters must be its inputs in the order its name lists them (f64 for f64 \
             columns, i64 otherwise) and then an i64 presence mask, with no results"
                .into(),
        ));
    }
    Ok(((*row_export).to_owned(), signature))
}

/// Binds the row function's inputs and outputs to the manifest's, by name.
fn check_against_manifest(signature: &RowSignature, manifest: &Manifest) -> Result<(), SandboxError> {
    let inputs: HashMap<&str, _> =
        manifest.inputs().iter().map(|input| (input.name.as_str(), input.column_type)).collect();
    for (name, column_type) in &signature.inputs {
        match inputs.get(name.as_str()) {
            None => {
                return Err(SandboxError::RowSignature(format!(
                    "the model reads `{name}`, which the manifest does not declare"
                )));
            }
            Some(declared) if declared != column_type => {
                return Err(SandboxError::RowSignature(format!(
                    "the model reads `{name}` as {}, the manifest declares {}",
                    column_type.as_str(),
                    declared.as_str()
                )));
            }
            Some(_) => {}
        }
    }
    let declared: Vec<&str> = manifest.outputs().iter().map(|output| output.name.as_str()).collect();
    for name in &signature.outputs {
        if !declared.contains(&name.as_str()) {
            return Err(SandboxError::RowSignature(format!(
                "the model emits `{name}`, which the manifest does not declare"
            )));
        }
    }
    if let Some(missing) = declared.iter().find(|name| !signature.outputs.iter().any(|output| output == *name)) {
        return Err(SandboxError::RowSignature(format!(
            "the manifest declares output `{missing}`, which the model never emits"
        )));
    }
    Ok(())
}

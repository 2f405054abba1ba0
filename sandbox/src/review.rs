//! Static review of a module at upload: size, imports, exports and memory caps.
//!
//! It owns the checks that need no data and no run. It must not execute guest code; the
//! ABI-version handshake happens at instantiation in `runtime`.

use wasmtime::{Engine, ExternType, Module, ValType};

use crate::abi::{EXPORT_ABI_VERSION, EXPORT_MAP, EXPORT_MEMORY, EXPORT_RESERVE, HOST_FUNCTIONS};
use crate::error::SandboxError;
use crate::manifest::{Manifest, ModelDigest};
use crate::runtime::RuntimeLimits;

/// Reviews `module_bytes` against the ABI and `limits`, compiling it with `engine`.
/// Returns the compiled module and its digest with `manifest`.
pub fn review_module(
    engine: &Engine,
    limits: &RuntimeLimits,
    module_bytes: &[u8],
    manifest: &Manifest,
) -> Result<(Module, ModelDigest), SandboxError> {
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
    check_exports(&module)?;
    Ok((module, ModelDigest::of(module_bytes, manifest)))
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
        let offered =
            HOST_FUNCTIONS.iter().any(|(module_name, name)| *module_name == import.module() && *name == import.name());
        if !offered || !matches!(import.ty(), ExternType::Func(_)) {
            return Err(SandboxError::ForbiddenImport { module: import.module().into(), name: import.name().into() });
        }
    }
    Ok(())
}

fn check_exports(module: &Module) -> Result<(), SandboxError> {
    match module.get_export(EXPORT_MEMORY) {
        // Initial sizes past the caps are refused by the pooling allocator at compile time.
        Some(ExternType::Memory(memory)) => {
            if memory.is_64() || memory.is_shared() {
                return Err(SandboxError::WrongExportSignature {
                    name: EXPORT_MEMORY,
                    expected: "a 32-bit unshared memory",
                });
            }
        }
        Some(_) => return Err(SandboxError::WrongExportSignature { name: EXPORT_MEMORY, expected: "a memory" }),
        None => return Err(SandboxError::MissingExport { name: EXPORT_MEMORY }),
    }
    check_function(module, EXPORT_ABI_VERSION, 0, "() -> i32")?;
    check_function(module, EXPORT_RESERVE, 1, "(i32) -> i32")?;
    check_function(module, EXPORT_MAP, 4, "(i32, i32, i32, i32) -> i32")
}

/// Every ABI 1 export takes `params` i32 arguments and returns one i32.
fn check_function(
    module: &Module,
    name: &'static str,
    params: usize,
    expected: &'static str,
) -> Result<(), SandboxError> {
    let Some(export) = module.get_export(name) else {
        return Err(SandboxError::MissingExport { name });
    };
    let ExternType::Func(function) = export else {
        return Err(SandboxError::WrongExportSignature { name, expected });
    };
    let all_i32 =
        |types: Vec<ValType>, count: usize| types.len() == count && types.iter().all(|ty| matches!(ty, ValType::I32));
    if all_i32(function.params().collect(), params) && all_i32(function.results().collect(), 1) {
        Ok(())
    } else {
        Err(SandboxError::WrongExportSignature { name, expected })
    }
}

//! The row-isolation review: proves, before a model may run, that its row function cannot
//! keep state from one row to the next.
//!
//! It owns the walk over every function reachable from the row export (direct calls, and
//! every function a table could hold for `call_indirect`) and the list of instructions that
//! change state a later call could observe: stores and bulk memory writes, `memory.grow`,
//! `global.set`, every table mutation, segment drops and atomics. A module with a start
//! function is refused too, so the only code that ever runs is the reviewed row function.
//! It must not execute guest code, and it must not accept a module it did not fully parse.
//!
//! Why this is enough: with no writes, the model's memory, globals and tables keep their
//! initial (constant) contents for the whole run; the rows live in the driver's memory,
//! which the model's code cannot address; the only imports are pure math and `emit`, which
//! writes to the driver. So each row's outputs are a function of that row's parameters.

use std::collections::{HashMap, HashSet, VecDeque};

use wasmparser::{ElementItems, ExternalKind, KnownCustom, Name, Operator, Parser, Payload, TypeRef};
use wasmtime::OperatorCost;

use crate::error::{Effect, SandboxError};

/// Refuses `module_bytes` unless nothing reachable from `row_export` changes state.
pub(crate) fn check_isolation(facts: &ModuleFacts, row_export: &str) -> Result<(), SandboxError> {
    if facts.has_start {
        return Err(SandboxError::StartFunction);
    }
    let Some(&root) = facts.exports.get(row_export) else {
        return Err(SandboxError::MissingExport { name: "sluice_row_v2(…)" });
    };
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut table_functions_reached = false;
    while let Some(function) = queue.pop_front() {
        let Some(body) = facts.body(function) else {
            // An import: the review of imports allows only pure math and `emit`.
            continue;
        };
        if let Some((effect, instruction)) = &body.first_effect {
            return Err(SandboxError::NotIsolated {
                effect: *effect,
                instruction: instruction.clone(),
                function: facts.describe(function),
            });
        }
        let mut callees = body.calls.clone();
        if body.calls_indirect && !table_functions_reached {
            table_functions_reached = true;
            callees.extend(facts.table_functions.iter().copied());
        }
        for callee in callees {
            if seen.insert(callee) {
                queue.push_back(callee);
            }
        }
    }
    Ok(())
}

/// What one defined function does that matters for isolation and for its fuel.
#[derive(Debug, Default)]
pub(crate) struct BodyFacts {
    /// Every function it names: called directly, or taken as a reference.
    calls: Vec<u32>,
    calls_indirect: bool,
    /// The first state-changing instruction, with its text form.
    first_effect: Option<(Effect, String)>,
    /// The fuel one pass over the body costs: the engine's charge on entry plus every
    /// operator's cost in the engine's table, each counted once.
    pub(crate) fuel: u64,
    /// Whether the body has a `loop`: only a loop runs an operator twice in one call.
    pub(crate) has_loop: bool,
    /// The functions it calls directly, once per call site.
    pub(crate) call_sites: Vec<u32>,
    /// How many `call_indirect` sites it has.
    pub(crate) indirect_sites: u64,
}

/// One parse of a module: what the isolation review and the fuel bound read.
#[derive(Debug, Default)]
pub(crate) struct ModuleFacts {
    pub(crate) imported_functions: u32,
    /// Each imported function's module and name, in index order.
    pub(crate) imports: Vec<(String, String)>,
    pub(crate) bodies: Vec<BodyFacts>,
    pub(crate) exports: HashMap<String, u32>,
    /// Every function an element segment names: what `call_indirect` could reach.
    pub(crate) table_functions: Vec<u32>,
    has_start: bool,
    names: HashMap<u32, String>,
    export_names: HashMap<u32, String>,
}

impl ModuleFacts {
    /// Parses every section `module_bytes` has, pricing operators with `costs` (the
    /// engine's table, [`crate::runtime::operator_costs`]).
    pub(crate) fn parse(module_bytes: &[u8], costs: &OperatorCost) -> Result<Self, SandboxError> {
        let malformed = |error: wasmparser::BinaryReaderError| SandboxError::ModuleInvalid(error.to_string());
        let mut facts = ModuleFacts::default();
        for payload in Parser::new(0).parse_all(module_bytes) {
            match payload.map_err(malformed)? {
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        let import = import.map_err(malformed)?;
                        if matches!(import.ty, TypeRef::Func(_) | TypeRef::FuncExact(_)) {
                            facts.imported_functions += 1;
                            facts.imports.push((import.module.to_owned(), import.name.to_owned()));
                        }
                    }
                }
                Payload::StartSection { .. } => facts.has_start = true,
                Payload::ExportSection(exports) => {
                    for export in exports {
                        let export = export.map_err(malformed)?;
                        if export.kind == ExternalKind::Func {
                            facts.exports.insert(export.name.to_owned(), export.index);
                            facts.export_names.entry(export.index).or_insert_with(|| export.name.to_owned());
                        }
                    }
                }
                Payload::ElementSection(elements) => {
                    for element in elements {
                        match element.map_err(malformed)?.items {
                            ElementItems::Functions(functions) => {
                                for function in functions {
                                    facts.table_functions.push(function.map_err(malformed)?);
                                }
                            }
                            ElementItems::Expressions(_, expressions) => {
                                for expression in expressions {
                                    let mut reader = expression.map_err(malformed)?.get_operators_reader();
                                    while !reader.eof() {
                                        if let Operator::RefFunc { function_index } =
                                            reader.read().map_err(malformed)?
                                        {
                                            facts.table_functions.push(function_index);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let mut reader = body.get_operators_reader().map_err(malformed)?;
                    // The engine charges one unit on entry to every function.
                    let mut facts_of_body = BodyFacts { fuel: 1, ..BodyFacts::default() };
                    while !reader.eof() {
                        let operator = reader.read().map_err(malformed)?;
                        let cost = u64::try_from(costs.cost(&operator)).unwrap_or(0);
                        facts_of_body.fuel = facts_of_body.fuel.saturating_add(cost);
                        match &operator {
                            Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                                facts_of_body.calls.push(*function_index);
                                facts_of_body.call_sites.push(*function_index);
                            }
                            Operator::CallIndirect { .. } | Operator::ReturnCallIndirect { .. } => {
                                facts_of_body.calls_indirect = true;
                                facts_of_body.indirect_sites += 1;
                            }
                            Operator::Loop { .. } => facts_of_body.has_loop = true,
                            // A function reference can only be called through a table or
                            // `call_ref`; count it as reachable so neither escapes review.
                            Operator::RefFunc { function_index } => facts_of_body.calls.push(*function_index),
                            _ => {}
                        }
                        if facts_of_body.first_effect.is_none()
                            && let Some(effect) = effect_of(&operator)
                        {
                            facts_of_body.first_effect = Some((effect, instruction_name(&operator)));
                        }
                    }
                    facts.bodies.push(facts_of_body);
                }
                Payload::CustomSection(section) => {
                    if let KnownCustom::Name(names) = section.as_known() {
                        for name in names.into_iter().flatten() {
                            if let Name::Function(map) = name {
                                for naming in map.into_iter().flatten() {
                                    facts.names.insert(naming.index, naming.name.to_owned());
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(facts)
    }

    /// The facts of function `function` if the module defines it (not an import).
    pub(crate) fn body(&self, function: u32) -> Option<&BodyFacts> {
        function.checked_sub(self.imported_functions).and_then(|index| self.bodies.get(index as usize))
    }

    /// A function's name for a review message: its debug name, its export, or its index.
    fn describe(&self, function: u32) -> String {
        if let Some(name) = self.names.get(&function) {
            format!("`{name}`")
        } else if let Some(name) = self.export_names.get(&function) {
            format!("`{name}`")
        } else {
            format!("#{function} (build with debug names, e.g. `strip = \"debuginfo\"`, to see its name)")
        }
    }
}

/// An operator's text-format mnemonic, near enough to find it in `wasm2wat` output:
/// `I64Store` becomes `i64.store`, `GlobalSet` becomes `global.set`.
fn instruction_name(operator: &Operator<'_>) -> String {
    let debug = format!("{operator:?}");
    let variant = debug.split([' ', '{', '(']).next().unwrap_or_default();
    let mut words: Vec<String> = Vec::new();
    for character in variant.chars() {
        match words.last_mut() {
            Some(word) if !character.is_ascii_uppercase() => word.push(character.to_ascii_lowercase()),
            _ => words.push(character.to_ascii_lowercase().to_string()),
        }
    }
    match words.split_first() {
        Some((first, [])) => first.clone(),
        Some((first, rest)) => format!("{first}.{}", rest.join("_")),
        None => String::new(),
    }
}

/// Whether `operator` changes state that outlives the call, and which kind.
///
/// Listed by instruction class rather than one by one, so a store added by a future
/// proposal is caught by its name; the engine also disables every proposal that adds
/// state this list does not name (threads, GC, exceptions, multi-memory, stack switching).
fn effect_of(operator: &Operator<'_>) -> Option<Effect> {
    use Operator as O;
    match operator {
        O::GlobalSet { .. } => return Some(Effect::GlobalWrite),
        O::MemoryGrow { .. } => return Some(Effect::MemoryGrow),
        O::DataDrop { .. } | O::ElemDrop { .. } => return Some(Effect::SegmentDrop),
        O::MemoryFill { .. } | O::MemoryCopy { .. } | O::MemoryInit { .. } => return Some(Effect::MemoryWrite),
        O::TableSet { .. } | O::TableGrow { .. } | O::TableFill { .. } | O::TableCopy { .. } | O::TableInit { .. } => {
            return Some(Effect::TableWrite);
        }
        _ => {}
    }
    let debug = format!("{operator:?}");
    let variant = debug.split([' ', '{', '(']).next().unwrap_or_default();
    if variant.contains("Atomic") {
        Some(Effect::Atomic)
    } else if variant.contains("Store") || variant.starts_with("Memory") && variant != "MemorySize" {
        Some(Effect::MemoryWrite)
    } else if variant.starts_with("Global") && variant != "GlobalGet" {
        Some(Effect::GlobalWrite)
    } else if variant.starts_with("Table") && !matches!(variant, "TableGet" | "TableSize") {
        Some(Effect::TableWrite)
    } else if variant.starts_with("Struct") || variant.starts_with("Array") || variant.contains("Throw") {
        // GC objects and exceptions are disabled in the engine; refuse them here as well.
        Some(Effect::Unsupported)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_names_read_like_the_text_format() {
        let check = |operator: Operator<'_>, expected: &str| assert_eq!(instruction_name(&operator), expected);
        check(Operator::GlobalSet { global_index: 0 }, "global.set");
        check(Operator::I64Add, "i64.add");
        check(Operator::MemoryGrow { mem: 0 }, "memory.grow");
        check(Operator::Nop, "nop");
    }
}

//! The fuel bound: the most fuel one row can use, read from the code alone.
//!
//! It owns the worst-case sum over everything a row can execute: the driver's pass for one
//! row, the row function, every function it can call (directly, or through the table for
//! `call_indirect`), and each host function's charge. Operators are priced with the very
//! table the engine meters with ([`crate::runtime::operator_costs`]), and the engine's
//! charge on entry to a function is counted, so a row never uses more fuel than the bound.
//! It must not execute guest code, and it must not guess: code with a `loop` or a cycle of
//! calls (recursion) has no bound from the code, and then the manifest's declared fuel is
//! the only one.
//!
//! Why it is sound: WebAssembly control flow is structured, and only a `loop` can branch
//! backwards, so without loops each operator of a body runs at most once per call; with no
//! cycle in the call graph, each call site calls its callee at most once per pass, and the
//! callee's own bound covers that call. The gateway prices a run's visibility time from
//! this bound (`min(declared, bound)`), so a model whose rows are cheap is not priced as if
//! every row burned its whole declared fuel.

use crate::isolation::ModuleFacts;

/// What calling an imported function costs beyond the `call` operator itself.
pub(crate) type ImportCost<'a> = &'a dyn Fn(&str, &str) -> u64;

/// The most fuel one call of `root` can use, or `None` when the code reachable from it
/// has a loop or recursion. Imports cost what `import_cost` says.
pub(crate) fn function_bound(facts: &ModuleFacts, root: u32, import_cost: ImportCost<'_>) -> Option<u64> {
    // An iterative post-order walk: a model's call chain may be deeper than the host's stack.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done(u64),
    }
    let mut marks: std::collections::HashMap<u32, Mark> = std::collections::HashMap::new();
    let table_bound = std::cell::OnceCell::new();
    let mut stack: Vec<(u32, bool)> = vec![(root, false)];
    while let Some((function, children_done)) = stack.pop() {
        let Some(body) = facts.body(function) else {
            let (module, name) = facts.imports.get(function as usize)?;
            marks.insert(function, Mark::Done(import_cost(module, name)));
            continue;
        };
        if body.has_loop {
            return None;
        }
        let callees = || {
            body.call_sites.iter().copied().chain(if body.indirect_sites > 0 {
                facts.table_functions.clone()
            } else {
                Vec::new()
            })
        };
        if !children_done {
            match marks.get(&function) {
                Some(Mark::Done(_)) => continue,
                // Reached again while its own callees are open: a cycle of calls.
                Some(Mark::Open) => return None,
                None => {}
            }
            marks.insert(function, Mark::Open);
            stack.push((function, true));
            for callee in callees() {
                match marks.get(&callee) {
                    Some(Mark::Done(_)) => {}
                    Some(Mark::Open) => return None,
                    None => stack.push((callee, false)),
                }
            }
            continue;
        }
        let done = |callee: u32| match marks.get(&callee) {
            Some(Mark::Done(bound)) => Some(*bound),
            _ => None,
        };
        let mut bound = body.fuel;
        for callee in &body.call_sites {
            bound = bound.saturating_add(done(*callee)?);
        }
        if body.indirect_sites > 0 {
            // Any function an element segment names may sit in the table.
            let most = match table_bound.get() {
                Some(most) => *most,
                None => {
                    let mut most = 0u64;
                    for callee in &facts.table_functions {
                        most = most.max(done(*callee)?);
                    }
                    *table_bound.get_or_init(|| most)
                }
            };
            bound = bound.saturating_add(most.saturating_mul(body.indirect_sites));
        }
        marks.insert(function, Mark::Done(bound));
    }
    match marks.get(&root) {
        Some(Mark::Done(bound)) => Some(*bound),
        _ => None,
    }
}

/// The fuel one row needs: one pass of the driver's `run` body (its loop body, set-up and
/// exit, all counted for every row, so any block size is covered) plus one call of the row
/// function, whose `emit` calls cost the driver's `emit` body and whose math calls cost
/// their host charge.
pub(crate) fn row_bound(
    model: &ModuleFacts,
    row_export: &str,
    driver: &ModuleFacts,
    driver_run: &str,
    driver_emit: &str,
    math_fuel: u64,
) -> Option<u64> {
    let own = |name: &str| driver.exports.get(name).and_then(|index| driver.body(*index)).map(|body| body.fuel);
    let run = own(driver_run)?;
    let emit = own(driver_emit)?;
    let root = *model.exports.get(row_export)?;
    let import_cost = |module: &str, name: &str| {
        if module == crate::abi::EMIT_MODULE && name == crate::abi::EMIT_NAME { emit } else { math_fuel }
    };
    // The engine traps once the fuel left reaches zero, not below it: a row that uses `n`
    // units needs `n + 1` (measured: with exactly its use, the dearest row falls back).
    function_bound(model, root, &import_cost).map(|row| row.saturating_add(run).saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(wat: &str) -> ModuleFacts {
        let bytes = wat::parse_str(wat).expect("test module");
        ModuleFacts::parse(&bytes, &crate::runtime::operator_costs()).expect("parses")
    }

    fn bound(wat: &str) -> Option<u64> {
        let facts = facts(wat);
        let root = facts.exports["f"];
        function_bound(&facts, root, &|_, _| 20)
    }

    #[test]
    fn straight_line_code_costs_each_operator_once_plus_entry() {
        // local.get, f64.const, f64.mul = 3; `end` costs 0; entry 1.
        assert_eq!(
            bound(r#"(module (func (export "f") (param f64) (result f64) local.get 0 f64.const 2 f64.mul))"#),
            Some(4)
        );
    }

    #[test]
    fn both_arms_of_a_branch_are_counted() {
        let wat = r#"(module (func (export "f") (param i32) (result i32)
            local.get 0
            if (result i32) i32.const 1 i32.const 2 i32.add else i32.const 3 end))"#;
        // local.get 1, if 1, then 3, else 1 (+ else/end 0), entry 1.
        assert_eq!(bound(wat), Some(7));
    }

    #[test]
    fn calls_add_their_callee_per_call_site_and_imports_their_charge() {
        let wat = r#"(module
            (import "sluice:math" "exp" (func $exp (param f64) (result f64)))
            (func $g (param f64) (result f64) local.get 0 call $exp)
            (func (export "f") (param f64) (result f64) local.get 0 call $g call $g))"#;
        // $g: entry 1 + local.get + call = 3, plus exp's 20 = 23; f: 1 + 3 + 2 × 23 = 50.
        assert_eq!(bound(wat), Some(50));
    }

    #[test]
    fn an_indirect_call_costs_the_dearest_function_in_the_table() {
        let wat = r#"(module
            (type $t (func (result i32)))
            (table 2 funcref)
            (elem (i32.const 0) $cheap $dear)
            (func $cheap (result i32) i32.const 1)
            (func $dear (result i32) i32.const 1 i32.const 2 i32.add i32.const 3 i32.mul)
            (func (export "f") (param i32) (result i32) local.get 0 call_indirect (type $t)))"#;
        // $dear: 1 + 5 = 6; f: 1 + 2 + 6 = 9.
        assert_eq!(bound(wat), Some(9));
    }

    #[test]
    fn loops_and_recursion_have_no_bound() {
        assert_eq!(bound(r#"(module (func (export "f") (loop $l br $l)))"#), None);
        let recursive = r#"(module
            (func $a (param i32) (result i32) local.get 0 call $b)
            (func $b (param i32) (result i32) local.get 0 call $a)
            (func (export "f") (param i32) (result i32) local.get 0 call $a))"#;
        assert_eq!(bound(recursive), None);
        let through_the_table = r#"(module
            (type $t (func (param i32) (result i32)))
            (table 1 funcref)
            (elem (i32.const 0) $self)
            (func $self (param i32) (result i32) local.get 0 local.get 0 call_indirect (type $t))
            (func (export "f") (param i32) (result i32) local.get 0 call $self))"#;
        assert_eq!(bound(through_the_table), None);
    }

    #[test]
    fn a_deep_chain_of_calls_is_walked_without_the_host_stack() {
        let depth = 50_000;
        let mut wat = String::from("(module\n");
        for index in 0..depth {
            wat.push_str(&format!("(func $f{index} call $f{})\n", index + 1));
        }
        wat.push_str(&format!("(func $f{depth})\n(export \"f\" (func $f0)))"));
        // Each link: entry 1 + call 1; the last: entry 1.
        assert_eq!(bound(&wat), Some(2 * depth + 1));
    }
}

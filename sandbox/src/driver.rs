//! The driver: a small module the host generates for each model, which holds a batch in
//! its own memory and calls the model's row function once per row.
//!
//! It owns the loop over rows and the `emit` function the model calls to hand back an
//! output. The model's code cannot address the driver's memory (it is another instance's),
//! so a row function sees exactly one row: its parameters. It must not be built from
//! anything but the reviewed row signature and the manifest's defaults; it holds no data.
//!
//! Exports: `memory` (the batch, see [`BatchLayout`]), `row` (a one-slot table the host
//! fills with the model's row function), `emit(index: i32, value: f64)` and
//! `run(start: i32, end: i32)`, which maps rows `start..end`. Before calling the model on a
//! row, `run` writes each output's default into the row's output slots, so an output the
//! model never emits reads back as its default.

use std::fmt::Write;

use crate::abi::{BatchLayout, RowSignature, WasmType};

/// Export names of the driver.
pub const DRIVER_MEMORY: &str = "memory";
pub const DRIVER_TABLE: &str = "row";
pub const DRIVER_EMIT: &str = "emit";
pub const DRIVER_RUN: &str = "run";

const WASM_PAGE_BYTES: usize = 65_536;

/// The driver's text for a row function of `signature`, with `defaults[e]` the default of
/// the output the model emits at index `e`.
pub fn driver_wat(signature: &RowSignature, defaults: &[f64]) -> String {
    let param_types = signature.param_types();
    let layout = BatchLayout::new(param_types.len() - 1, signature.outputs.len());
    let pages = layout.region_bytes().div_ceil(WASM_PAGE_BYTES).max(1);
    let outputs = layout.outputs;
    let mut wat = String::new();
    let types: Vec<&str> = param_types.iter().map(|ty| wat_type(*ty)).collect();
    let _ = writeln!(wat, "(module");
    let _ = writeln!(wat, "  (type $row (func (param {})))", types.join(" "));
    let _ = writeln!(wat, "  (table (export \"{DRIVER_TABLE}\") 1 funcref)");
    let _ = writeln!(wat, "  (memory (export \"{DRIVER_MEMORY}\") {pages})");
    let _ = writeln!(wat, "  (global $out (mut i32) (i32.const 0))");
    let _ = writeln!(
        wat,
        "  (func (export \"{DRIVER_EMIT}\") (param $index i32) (param $value f64)
    (if (i32.ge_u (local.get $index) (i32.const {outputs})) (then unreachable))
    (f64.store (i32.add (global.get $out) (i32.shl (local.get $index) (i32.const 3))) (local.get $value)))"
    );
    let _ = writeln!(
        wat,
        "  (func (export \"{DRIVER_RUN}\") (param $start i32) (param $end i32)
    (local $row i32) (local $at i32)
    (local.set $row (local.get $start))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $at (i32.shl (local.get $row) (i32.const 3)))
        (global.set $out (i32.add (i32.const {}) (i32.mul (local.get $row) (i32.const {}))))",
        layout.outputs_offset(),
        outputs * 8
    );
    for (index, default) in defaults.iter().enumerate() {
        let _ = writeln!(
            wat,
            "        (f64.store offset={} (global.get $out) (f64.reinterpret_i64 (i64.const {})))",
            index * 8,
            default.to_bits() as i64
        );
    }
    let _ = writeln!(wat, "        (call_indirect (type $row)");
    for (param, ty) in param_types.iter().take(layout.params).enumerate() {
        let _ =
            writeln!(wat, "          ({}.load offset={} (local.get $at))", wat_type(*ty), layout.values_offset(param));
    }
    let _ = writeln!(wat, "          (i64.load offset={} (local.get $at))", layout.mask_offset());
    let _ = writeln!(wat, "          (i32.const 0))");
    let _ = writeln!(
        wat,
        "        (local.set $row (i32.add (local.get $row) (i32.const 1)))
        (br $next))))
)"
    );
    wat
}

fn wat_type(ty: WasmType) -> &'static str {
    match ty {
        WasmType::I32 => "i32",
        WasmType::I64 => "i64",
        WasmType::F64 => "f64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_is_valid_wasm_for_every_shape() {
        for inputs in [0, 1, 5, 64] {
            let signature = RowSignature {
                inputs: (0..inputs).map(|index| (format!("c{index}"), crate::ColumnType::F64)).collect(),
                outputs: vec!["a".into(), "b".into()],
            };
            let wat = driver_wat(&signature, &[0.0, -1.5]);
            wat::parse_str(&wat).unwrap_or_else(|error| panic!("{inputs} inputs: {error}\n{wat}"));
        }
    }
}

//! The guest ABI, version 2: the row export, the host functions a model may import, and
//! the batch layout of the host-generated driver.
//!
//! This file is the single list of what a model may import from the host and what it must
//! export; `ABI.md` documents it for model authors. It must not contain runtime logic.
//!
//! In ABI 2 a model is a *pure row function*. It exports one function whose name carries
//! its signature, `sluice_row_v2(vehicle_age_years:f64,accidents_5y:i64,)->(mean_risk,)`,
//! taking one row's values as parameters (plus a bit mask of which are present) and
//! handing each output to the host through the `sluice::emit` import. Review proves that
//! nothing reachable from that function writes linear memory, globals or tables, so no
//! state can carry from one row to the next; the rows themselves live in a memory the
//! model's code cannot address (the driver's, see `driver.rs`).

use std::collections::HashSet;

use crate::manifest::ColumnType;

/// The ABI version this host implements; a manifest must declare it.
pub const ABI_VERSION: u32 = 2;

/// The prefix of the row export's name; the rest of the name is its signature.
pub const ROW_EXPORT_PREFIX: &str = "sluice_row_v2(";

/// ABI 1 exports, recognised only to refuse an old module with a message that says why.
pub const ABI1_EXPORTS: &[&str] = &["sluice_map", "sluice_reserve", "sluice_abi_version"];

/// A value type in a host function's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmType {
    I32,
    I64,
    F64,
}

/// One host function a guest may import: module, name, parameters, results.
#[derive(Debug, Clone, Copy)]
pub struct HostFunction {
    pub module: &'static str,
    pub name: &'static str,
    pub params: &'static [WasmType],
    pub results: &'static [WasmType],
}

const F64_TO_F64: (&[WasmType], &[WasmType]) = (&[WasmType::F64], &[WasmType::F64]);
const F64_F64_TO_F64: (&[WasmType], &[WasmType]) = (&[WasmType::F64, WasmType::F64], &[WasmType::F64]);

const fn math(name: &'static str, signature: (&'static [WasmType], &'static [WasmType])) -> HostFunction {
    HostFunction { module: MATH_MODULE, name, params: signature.0, results: signature.1 }
}

/// The module name of the deterministic math functions.
pub const MATH_MODULE: &str = "sluice:math";
/// The module and name of the output function.
pub const EMIT_MODULE: &str = "sluice";
pub const EMIT_NAME: &str = "emit";

/// Every function a guest may import. `sluice::emit(index, value)` hands output `index`
/// (its position in the row export's output list) to the host; the rest are pure math
/// functions computed natively by the host, each charged [`MATH_FUEL`] fuel. There is
/// no clock, randomness, file, network or environment: a row's outputs are a function of
/// that row's values alone.
pub const HOST_FUNCTIONS: &[HostFunction] = &[
    HostFunction { module: EMIT_MODULE, name: EMIT_NAME, params: &[WasmType::I32, WasmType::F64], results: &[] },
    math("exp", F64_TO_F64),
    math("ln", F64_TO_F64),
    math("log2", F64_TO_F64),
    math("log10", F64_TO_F64),
    math("sin", F64_TO_F64),
    math("cos", F64_TO_F64),
    math("tan", F64_TO_F64),
    math("atan", F64_TO_F64),
    math("tanh", F64_TO_F64),
    math("sqrt", F64_TO_F64),
    math("floor", F64_TO_F64),
    math("ceil", F64_TO_F64),
    math("pow", F64_F64_TO_F64),
    math("atan2", F64_F64_TO_F64),
];

/// Fuel charged for one call of a host math function, so a row's fuel still bounds its time.
pub const MATH_FUEL: u64 = 20;

/// The host function `module::name`, if the ABI offers it.
pub fn host_function(module: &str, name: &str) -> Option<&'static HostFunction> {
    HOST_FUNCTIONS.iter().find(|function| function.module == module && function.name == name)
}

/// Evaluates a host math function. Only names in [`HOST_FUNCTIONS`] reach here.
pub fn math_value(name: &str, x: f64, y: f64) -> f64 {
    match name {
        "exp" => x.exp(),
        "ln" => x.ln(),
        "log2" => x.log2(),
        "log10" => x.log10(),
        "sin" => x.sin(),
        "cos" => x.cos(),
        "tan" => x.tan(),
        "atan" => x.atan(),
        "tanh" => x.tanh(),
        "sqrt" => x.sqrt(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        "pow" => x.powf(y),
        "atan2" => x.atan2(y),
        _ => f64::NAN,
    }
}

/// The signature a row export declares in its name: its parameters (input column names
/// with their types, in parameter order) and its outputs (in `emit` index order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSignature {
    pub inputs: Vec<(String, ColumnType)>,
    pub outputs: Vec<String>,
}

impl RowSignature {
    /// Parses `sluice_row_v2(a:f64,b:i64,)->(x,y,)` (trailing commas optional).
    pub fn parse(export_name: &str) -> Result<Self, String> {
        let rest = export_name
            .strip_prefix(ROW_EXPORT_PREFIX)
            .ok_or_else(|| format!("`{export_name}` does not start with `{ROW_EXPORT_PREFIX}`"))?;
        let (inputs, outputs) = rest
            .split_once(")->(")
            .ok_or_else(|| format!("`{export_name}` lacks `)->(` between inputs and outputs"))?;
        let outputs = outputs.strip_suffix(')').ok_or_else(|| format!("`{export_name}` does not end with `)`"))?;
        let mut seen = HashSet::new();
        let inputs = list(inputs)
            .map(|item| {
                let (name, column_type) =
                    item.split_once(':').ok_or_else(|| format!("input `{item}` has no `:type` in the row export"))?;
                let column_type = match column_type {
                    "f64" => ColumnType::F64,
                    "i64" => ColumnType::I64,
                    "category" => ColumnType::Category,
                    "bool" => ColumnType::Bool,
                    "date" => ColumnType::Date,
                    other => return Err(format!("input `{name}` has an unknown type `{other}` in the row export")),
                };
                if !seen.insert(name.to_owned()) {
                    return Err(format!("input `{name}` appears twice in the row export"));
                }
                Ok((name.to_owned(), column_type))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = HashSet::new();
        let outputs =
            list(outputs)
                .map(|name| {
                    if seen.insert(name) { Ok(name.to_owned()) } else { Err(format!("output `{name}` appears twice")) }
                })
                .collect::<Result<Vec<_>, _>>()?;
        if inputs.len() > MAX_ROW_INPUTS {
            return Err(format!("the row export takes {} inputs, at most {MAX_ROW_INPUTS}", inputs.len()));
        }
        Ok(Self { inputs, outputs })
    }

    /// The wasm parameter types the row export must have: one per input, then the mask.
    pub fn param_types(&self) -> Vec<WasmType> {
        let mut types: Vec<WasmType> = self.inputs.iter().map(|(_, column_type)| wasm_type(*column_type)).collect();
        types.push(WasmType::I64);
        types
    }
}

fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// Inputs a row function may take: one bit each in the `present` mask.
pub const MAX_ROW_INPUTS: usize = 64;

/// How a column of `column_type` is passed to the row function.
pub fn wasm_type(column_type: ColumnType) -> WasmType {
    match column_type {
        ColumnType::F64 => WasmType::F64,
        ColumnType::I64 | ColumnType::Category | ColumnType::Bool | ColumnType::Date => WasmType::I64,
    }
}

/// Rows per batch the host hands the driver at once.
pub const BATCH_ROWS: usize = 4096;

/// Where each part of a batch lives in the driver's memory (never the model's).
///
/// Layout, all little-endian, for `params` row-function parameters and `outputs` outputs:
/// 1. `params` value arrays, each [`BATCH_ROWS`] × 8 bytes (f64 bits, or i64);
/// 2. the presence masks, [`BATCH_ROWS`] × 8 bytes (bit `j` set when parameter `j` is present);
/// 3. the output area, [`BATCH_ROWS`] × `outputs` f64, row-major, written by the driver's
///    `emit` on the model's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLayout {
    pub capacity: usize,
    pub params: usize,
    pub outputs: usize,
}

impl BatchLayout {
    pub fn new(params: usize, outputs: usize) -> Self {
        Self { capacity: BATCH_ROWS, params, outputs }
    }

    pub fn values_offset(&self, param: usize) -> usize {
        param * self.capacity * 8
    }

    pub fn mask_offset(&self) -> usize {
        self.params * self.capacity * 8
    }

    pub fn outputs_offset(&self) -> usize {
        self.mask_offset() + self.capacity * 8
    }

    /// Total bytes of the driver's batch region.
    pub fn region_bytes(&self) -> usize {
        self.outputs_offset() + self.capacity * self.outputs * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_parts_do_not_overlap() {
        for params in 0..6 {
            for outputs in 1..6 {
                let layout = BatchLayout::new(params, outputs);
                if params > 0 {
                    assert_eq!(layout.values_offset(params - 1) + layout.capacity * 8, layout.mask_offset());
                }
                assert_eq!(layout.outputs_offset() % 8, 0);
                assert_eq!(layout.region_bytes(), layout.outputs_offset() + layout.capacity * outputs * 8);
            }
        }
    }

    #[test]
    fn row_signatures_parse_or_say_why_not() {
        let parsed = RowSignature::parse("sluice_row_v2(age:f64,n:i64,)->(a,b,)").expect("parses");
        assert_eq!(parsed.inputs, vec![("age".into(), ColumnType::F64), ("n".into(), ColumnType::I64)]);
        assert_eq!(parsed.outputs, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(parsed.param_types(), vec![WasmType::F64, WasmType::I64, WasmType::I64]);
        assert_eq!(RowSignature::parse("sluice_row_v2()->(a)").expect("no inputs").inputs, vec![]);
        for (bad, why) in [
            ("sluice_row(a:f64)->(x)", "does not start"),
            ("sluice_row_v2(a:f64)(x)", "lacks"),
            ("sluice_row_v2(a)->(x)", "no `:type`"),
            ("sluice_row_v2(a:string)->(x)", "unknown type"),
            ("sluice_row_v2(a:f64,a:f64)->(x)", "twice"),
            ("sluice_row_v2(a:f64)->(x,x)", "twice"),
            ("sluice_row_v2(a:f64)->(x", "does not end"),
        ] {
            let error = RowSignature::parse(bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}

//! The Sluice guest SDK: write a model as a plain function from a row to its outputs.
//!
//! It owns the guest side of ABI version 1 (`sandbox/ABI.md`): the three exports, the
//! batch layout, and reading rows and writing outputs without `unsafe`. It must not give a
//! model anything the ABI does not: no imports, no clock, no randomness.
//!
//! ```ignore
//! use sluice_guest::Row;
//!
//! // Inputs and outputs are in the order the model's manifest declares them.
//! fn risk(row: &Row, out: &mut [f64]) {
//!     let accidents = row.i64(0).unwrap_or(0) as f64;
//!     out[0] = if accidents > 1.0 { 1.0 } else { 0.0 };
//! }
//! sluice_guest::model!(risk);
//! ```
//! Build with `cargo build --release --target wasm32-unknown-unknown`.

use std::sync::Mutex;

/// The ABI version this SDK implements.
pub const ABI_VERSION: i32 = 1;
/// Rows per batch; must equal the host's `BATCH_ROWS`.
pub const BATCH_ROWS: usize = 4096;

/// The region the host writes batches into. Words of 8 bytes, so it is 8-byte aligned
/// and every value slot is one element; the guest reads it without `unsafe`.
///
/// It is a zero-initialised static, so it lives in the module's initial memory (pages the
/// host maps lazily) instead of being allocated and zeroed at every instantiation. Its size
/// fits the largest batch ABI 1 allows: 64 inputs and 32 outputs of 4,096 rows.
static REGION: Mutex<[u64; REGION_WORDS]> = Mutex::new([0; REGION_WORDS]);
const REGION_WORDS: usize = (64 * BATCH_ROWS * 9).div_ceil(8) + 32 * BATCH_ROWS;

/// One input row: read column `i` (manifest order) as the type the manifest declares.
pub struct Row<'a> {
    region: &'a [u64],
    row: usize,
    inputs: usize,
}

impl Row<'_> {
    fn word(&self, column: usize) -> Option<u64> {
        if column >= self.inputs {
            return None;
        }
        let validity_byte = self.inputs * BATCH_ROWS * 8 + column * BATCH_ROWS + self.row;
        let present = (self.region[validity_byte / 8] >> ((validity_byte % 8) * 8)) & 0xff;
        (present == 1).then(|| self.region[column * BATCH_ROWS + self.row])
    }

    /// A `f64` column's value, `None` when null (or when `column` is out of range).
    pub fn f64(&self, column: usize) -> Option<f64> {
        self.word(column).map(f64::from_bits)
    }

    /// An `i64` column's value or a category column's code, `None` when null.
    pub fn i64(&self, column: usize) -> Option<i64> {
        self.word(column).map(|word| word as i64)
    }

    /// A `bool` column's value, `None` when null.
    pub fn bool(&self, column: usize) -> Option<bool> {
        self.word(column).map(|word| word != 0)
    }
}

/// Implementation of the `sluice_reserve` export; use [`model!`] instead.
#[doc(hidden)]
pub fn reserve(bytes: i32) -> i32 {
    let Ok(bytes) = usize::try_from(bytes) else { return -1 };
    if bytes.div_ceil(8) > REGION_WORDS {
        return -1;
    }
    let region = REGION.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // On wasm32 an address is the offset into linear memory.
    region.as_ptr() as usize as i32
}

/// Most outputs a manifest may declare (the host's `MAX_OUTPUTS`).
pub const MAX_OUTPUTS: usize = 32;

/// Implementation of the `sluice_map` export; use [`model!`] instead. Generic over the
/// model so the compiler inlines it into the row loop.
#[doc(hidden)]
pub fn map<F: Fn(&Row, &mut [f64])>(rows: i32, inputs: i32, outputs: i32, model: F) -> i32 {
    let (Ok(rows), Ok(inputs), Ok(outputs)) =
        (usize::try_from(rows), usize::try_from(inputs), usize::try_from(outputs))
    else {
        return 1;
    };
    let mut region = REGION.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let outputs_word = (inputs * BATCH_ROWS * 9).div_ceil(8);
    if rows > BATCH_ROWS || outputs > MAX_OUTPUTS || region.len() < outputs_word + BATCH_ROWS * outputs {
        return 2;
    }
    let (input_words, output_words) = region.as_mut_slice().split_at_mut(outputs_word);
    let mut buffer = [0f64; MAX_OUTPUTS];
    for (row, slots) in output_words.chunks_exact_mut(outputs).take(rows).enumerate() {
        let values = &mut buffer[..outputs];
        values.fill(0.0);
        model(&Row { region: input_words, row, inputs }, values);
        for (slot, value) in slots.iter_mut().zip(values.iter()) {
            *slot = value.to_bits();
        }
    }
    0
}

/// Exports `function` (a `fn(&Row, &mut [f64])`) as a Sluice ABI 1 model.
#[macro_export]
macro_rules! model {
    ($function:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn sluice_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn sluice_reserve(bytes: i32) -> i32 {
            $crate::reserve(bytes)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn sluice_map(_region: i32, rows: i32, inputs: i32, outputs: i32) -> i32 {
            $crate::map(rows, inputs, outputs, $function)
        }
    };
}

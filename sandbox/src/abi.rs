//! The guest ABI, version 1: export names, signatures and the batch memory layout.
//!
//! This file is the single list of what a model may import from the host and what it must
//! export; `ABI.md` documents it for model authors. It must not contain runtime logic.

/// The ABI version this host implements; a module must report it from [`EXPORT_ABI_VERSION`].
pub const ABI_VERSION: u32 = 1;

/// Host functions a guest may import, as `(module, name)`. ABI 1 offers none: a model is a
/// pure function of its input rows, so it has no clock, no randomness, no files and no
/// network, and any import (WASI included) is refused at review.
pub const HOST_FUNCTIONS: &[(&str, &str)] = &[];

/// The guest's exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// `() -> i32`: the ABI version the module targets.
pub const EXPORT_ABI_VERSION: &str = "sluice_abi_version";
/// `(bytes: i32) -> i32`: returns the offset of a guest-owned, 8-byte aligned region of
/// at least `bytes` bytes, or a negative value if it cannot provide one. Called once per run.
pub const EXPORT_RESERVE: &str = "sluice_reserve";
/// `(region: i32, rows: i32, inputs: i32, outputs: i32) -> i32`: maps one batch laid out
/// in `region` (see [`BatchLayout`]); returns 0 on success, anything else is a model error.
pub const EXPORT_MAP: &str = "sluice_map";

/// Rows per batch. A batch of 4,096 rows keeps the reserved region small (a few hundred
/// KiB for typical models) while making the per-call overhead negligible.
pub const BATCH_ROWS: usize = 4096;

/// Where each part of a batch lives inside the region the guest reserved.
///
/// Layout, all little-endian, for `rows` rows, `inputs` columns and `outputs` outputs:
/// 1. `inputs` value arrays, column after column, each `rows` × 8 bytes
///    (f64 bits, or i64 for integer, category code and bool columns);
/// 2. `inputs` validity arrays, each `rows` bytes (1 = present, 0 = null);
/// 3. padding to 8 bytes;
/// 4. the output area, `rows` × `outputs` f64, row-major, written by the guest.
///
/// Offsets are computed for the batch capacity ([`BATCH_ROWS`]), so they do not move
/// between batches; a shorter last batch uses the first `rows` slots of each array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLayout {
    pub capacity: usize,
    pub inputs: usize,
    pub outputs: usize,
}

impl BatchLayout {
    pub fn new(inputs: usize, outputs: usize) -> Self {
        Self { capacity: BATCH_ROWS, inputs, outputs }
    }

    pub fn values_offset(&self, column: usize) -> usize {
        column * self.capacity * 8
    }

    pub fn validity_offset(&self, column: usize) -> usize {
        self.inputs * self.capacity * 8 + column * self.capacity
    }

    pub fn outputs_offset(&self) -> usize {
        let end_of_validity = self.inputs * self.capacity * 9;
        end_of_validity.next_multiple_of(8)
    }

    /// Total bytes the guest must reserve.
    pub fn region_bytes(&self) -> usize {
        self.outputs_offset() + self.capacity * self.outputs * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_parts_do_not_overlap() {
        for inputs in 0..6 {
            for outputs in 1..6 {
                let layout = BatchLayout::new(inputs, outputs);
                if inputs > 0 {
                    assert_eq!(layout.values_offset(inputs - 1) + layout.capacity * 8, layout.validity_offset(0));
                    assert!(layout.validity_offset(inputs - 1) + layout.capacity <= layout.outputs_offset());
                }
                assert_eq!(layout.outputs_offset() % 8, 0);
                assert_eq!(layout.region_bytes(), layout.outputs_offset() + layout.capacity * outputs * 8);
            }
        }
    }
}

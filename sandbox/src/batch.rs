//! Rows going into a model and the raw per-row values coming out of it.
//!
//! It owns the in-memory shapes only. Raw outputs must never be serialised or logged:
//! [`ModelOutputs`] has no `Serialize` and a redacted `Debug`, and its values are reachable
//! only by the policy gate's release code through the gateway.

use std::fmt;

/// One column of a batch: its values and which of them are present.
#[derive(Clone, PartialEq)]
pub struct Column {
    pub values: ColumnValues,
    /// `true` where the value is present; a null's slot in `values` holds 0.
    pub valid: Vec<bool>,
}

/// Column values as the guest receives them (8 bytes each).
#[derive(Clone, PartialEq)]
pub enum ColumnValues {
    F64(Vec<f64>),
    /// Integers, category codes and booleans (0 or 1).
    I64(Vec<i64>),
}

impl fmt::Debug for ColumnValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnValues::F64(values) => write!(f, "F64(× {}, redacted)", values.len()),
            ColumnValues::I64(values) => write!(f, "I64(× {}, redacted)", values.len()),
        }
    }
}

impl ColumnValues {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::F64(values) => values.len(),
            ColumnValues::I64(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// A batch holds plaintext rows: wipe them when it is dropped, after the guest has them.
impl Drop for Column {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match &mut self.values {
            ColumnValues::F64(values) => values.zeroize(),
            ColumnValues::I64(values) => values.zeroize(),
        }
        self.valid.zeroize();
    }
}

// Plaintext rows must not reach a log by accident, so Debug shows only shapes.
impl fmt::Debug for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.values {
            ColumnValues::F64(_) => "f64",
            ColumnValues::I64(_) => "i64",
        };
        write!(f, "Column({kind} × {}, redacted)", self.values.len())
    }
}

/// Up to [`crate::abi::BATCH_ROWS`] rows, columnar, in the manifest's input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub columns: Vec<Column>,
}

/// Raw per-row model outputs, one vector per manifest output. Deliberately not
/// `Serialize`: the only way out of Sluice is a differentially private release.
pub struct ModelOutputs {
    rows: usize,
    columns: Vec<Vec<f64>>,
    groups: Vec<i64>,
    fallbacks: Fallbacks,
}

/// Why the model produced no usable outputs for one row. Each is a row fallback, never a
/// run failure: the row contributes its outputs' declared defaults and the run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFailure {
    /// The row function trapped (unreachable, division by zero, out-of-bounds read, …).
    Trap,
    /// The row used more than its fuel.
    Fuel,
    /// The row overflowed the wasm stack.
    Stack,
    /// The row emitted NaN or an infinity.
    NonFinite,
}

/// How many rows fell back to their defaults, by reason. For the audit log only: shown to
/// an operator, the count would be an unnoised function of the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fallbacks {
    pub trap: u64,
    pub fuel: u64,
    pub stack: u64,
    pub non_finite: u64,
}

impl Fallbacks {
    pub fn total(&self) -> u64 {
        self.trap + self.fuel + self.stack + self.non_finite
    }

    /// Adds another part's counts.
    pub fn add(&mut self, more: Fallbacks) {
        self.trap += more.trap;
        self.fuel += more.fuel;
        self.stack += more.stack;
        self.non_finite += more.non_finite;
    }

    pub(crate) fn record(&mut self, failure: RowFailure) {
        match failure {
            RowFailure::Trap => self.trap += 1,
            RowFailure::Fuel => self.fuel += 1,
            RowFailure::Stack => self.stack += 1,
            RowFailure::NonFinite => self.non_finite += 1,
        }
    }
}

impl ModelOutputs {
    pub(crate) fn new(outputs: usize) -> Self {
        Self { rows: 0, columns: vec![Vec::new(); outputs], groups: Vec::new(), fallbacks: Fallbacks::default() }
    }

    /// Appends the values of the rows that follow these (the next batch or part of a run);
    /// fallback counts are the caller's to add.
    pub(crate) fn extend_rows(&mut self, next: &ModelOutputs) {
        for (column, more) in self.columns.iter_mut().zip(&next.columns) {
            column.extend_from_slice(more);
        }
        self.groups.extend_from_slice(&next.groups);
        self.rows += next.rows;
    }

    /// Forgets the rows' values (a sink took them), keeping the fallback counts.
    pub(crate) fn clear_rows(&mut self) {
        self.columns.iter_mut().for_each(Vec::clear);
        self.groups.clear();
        self.rows = 0;
    }

    /// Rows that contributed defaults instead of the model's values, by reason.
    pub fn fallbacks(&self) -> Fallbacks {
        self.fallbacks
    }

    pub(crate) fn fallbacks_mut(&mut self) -> &mut Fallbacks {
        &mut self.fallbacks
    }

    /// Each row's group code (the group-by input's category code; -1 for null), when the
    /// manifest declares `group_by`. Taken from the input, never from the guest.
    pub fn groups(&self) -> &[i64] {
        &self.groups
    }

    pub(crate) fn push_groups(&mut self, codes: impl Iterator<Item = i64>) {
        self.groups.extend(codes);
    }

    /// The vector the runtime appends output `index`'s validated values to.
    pub(crate) fn column_mut(&mut self, index: usize) -> &mut Vec<f64> {
        &mut self.columns[index]
    }

    /// Records that every column grew by `rows` values.
    pub(crate) fn add_rows(&mut self, rows: usize) {
        self.rows += rows;
        debug_assert!(self.columns.iter().all(|column| column.len() == self.rows));
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The per-row values of output `index` (manifest order), finite; a row the model
    /// failed on holds the output's default.
    pub fn column(&self, index: usize) -> &[f64] {
        &self.columns[index]
    }
}

impl fmt::Debug for ModelOutputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelOutputs({} rows × {} outputs, redacted)", self.rows, self.columns.len())
    }
}

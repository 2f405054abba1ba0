//! The Sluice sandbox: the only crate that links wasmtime.
//!
//! It owns the model contract (the guest ABI and the manifest, see `ABI.md`), the static
//! review of a module at upload, and the runtime that executes an approved model against
//! batches of rows under hard limits. It must not know about HTTP, SQL, keys, budgets or
//! differential privacy: it returns raw per-row outputs, which have no `Serialize` and a
//! redacted `Debug`, and the gateway hands them to the policy gate for release.
//!
//! ```no_run
//! use sluice_sandbox::{Batch, Manifest, Runtime, RuntimeLimits};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeLimits::default())?;
//! let manifest = Manifest::from_toml(&std::fs::read_to_string("manifest.toml")?)?;
//! let module = std::fs::read("model.wasm")?;
//! let model = runtime.compile(&module, manifest)?; // static review + compilation
//! let batches: Vec<Batch> = Vec::new(); // columns the manifest declares, in its order
//! let outputs = runtime.run(&model, batches.into_iter().map(Ok::<_, std::convert::Infallible>))?;
//! println!("{} rows mapped", outputs.rows());
//! # Ok(()) }
//! ```
//!
//! Core concepts:
//! - [`Runtime`]: one per process; holds the wasmtime `Engine` and the epoch ticker.
//! - [`CompiledModel`]: a reviewed, compiled module bound to its [`ModelDigest`], with the
//!   driver the host generated for its row function.
//! - A model is a pure row function (ABI 2, `ABI.md`): review proves nothing reachable from
//!   it writes memory, globals or tables, and the rows live in the driver's memory, which
//!   the model cannot address. So each row's outputs depend on that row alone.
//! - A run gets a fresh `Store` with per-row fuel, an epoch backstop and memory/table caps;
//!   nothing survives between runs except compiled code. A row the model fails on
//!   contributes its declared defaults; it never fails the run.
//! - [`ModelOutputs`]: the raw per-row outputs, only ever handed to the policy gate.

pub mod abi;
mod batch;
mod driver;
mod error;
mod fuel;
mod isolation;
mod manifest;
mod review;
mod runtime;

pub use batch::{Batch, Column, ColumnValues, Fallbacks, ModelOutputs, RowFailure};
pub use error::{Effect, Outcome, SandboxError};
pub use manifest::{
    ColumnType, DEFAULT_CANDIDATES, InputColumn, MAX_ABS_BOUND, Manifest, ModelDigest, NoiseKind, OutputKind,
    OutputSpec, is_input_or_output_name,
};
pub use runtime::{CompiledModel, Metering, OutputSink, Runtime, RuntimeLimits};

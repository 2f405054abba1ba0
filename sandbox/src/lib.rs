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
//! - [`CompiledModel`]: a reviewed, compiled module bound to its [`ModelDigest`].
//! - A run gets a fresh `Store` with fuel, an epoch deadline and memory/table caps;
//!   nothing survives between runs except compiled code.
//! - [`ModelOutputs`]: the raw per-row outputs, only ever handed to the policy gate.

pub mod abi;
mod batch;
mod error;
mod manifest;
mod review;
mod runtime;

pub use batch::{Batch, Column, ColumnValues, ModelOutputs};
pub use error::{Outcome, SandboxError};
pub use manifest::{
    ColumnType, DEFAULT_CANDIDATES, InputColumn, Manifest, ModelDigest, NoiseKind, OutputKind, OutputSpec,
};
pub use runtime::{CompiledModel, Metering, Runtime, RuntimeLimits};

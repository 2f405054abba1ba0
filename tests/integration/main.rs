//! One integration-test binary for the whole of Sluice. Each module covers one area and
//! drives real components: no mocks. Run with `cargo test --workspace`.

mod audit;
mod client;
mod console;
mod harness;
mod insiders;
mod joins;
mod lifecycle;
mod nodes;
mod openapi;
mod privacy;
mod reports;
mod robustness;
mod sandbox;
mod scaffold;
mod tidy;
mod vault;

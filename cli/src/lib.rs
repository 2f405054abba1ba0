//! The `sluice` command: the CLI over the gateway, the demo, the operator's dev runner,
//! `sluice new`, and the example models built from `examples/` and embedded here.
//!
//! It owns parsing flags and printing for people. It must not hold any rule of its own:
//! every decision is the gateway's (and so `sluice_policies`'), every release goes through
//! `sluice_gateway::runner`.

pub mod cli;
pub mod client;
pub mod demo;
pub mod dev;
pub mod examples;
pub mod remote;
pub mod scaffold;
pub mod witness;

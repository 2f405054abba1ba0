//! The Sluice gateway: the HTTP API, the CLI, storage, crypto at rest, job execution and
//! the audit log. It is the only crate that speaks HTTP, JSON and SQL.
//!
//! Core concepts:
//! - [`service::App`]: the running gateway; every operation of the API and the CLI.
//! - [`api::router`]: the HTTP API over an `App`, separate from serving so tests drive it.
//! - [`vault`]: datasets sealed in AES-256-GCM chunks under per-version data keys.
//! - [`audit`]: the tamper-evident log and its offline verifier.
//!
//! It must not make policy decisions itself (that is `sluice_policies`) nor execute guest
//! code outside `sluice_sandbox`.

pub mod api;
pub mod audit;
pub mod cli;
pub mod client;
pub mod datadir;
pub mod demo;
pub mod dev;
pub mod dummy;
pub mod error;
pub mod examples;
pub mod keys;
pub mod scaffold;
pub mod schema;
pub mod service;
pub mod store;
pub mod vault;

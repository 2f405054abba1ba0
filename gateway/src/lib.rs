//! The Sluice gateway: the service every client goes through, its store, and the HTTP API.
//!
//! Core concepts:
//! - [`config::Config`]: every setting, read once (file, environment, flags).
//! - [`service::App`]: every operation of the API and the CLI, composed of parts with one
//!   job each: the [`store::Store`], the [`parts::Sealed`] data at rest, the
//!   [`parts::AuditLog`], the [`runner::Runner`] and the [`parts::Gate`].
//! - [`api::router`]: the HTTP API over an `App`, separate from serving so tests drive it.
//! - [`in_flight::InFlight`]: the requests under way, which a shutdown drains.
//! - [`chunk_store::ChunkStore`]: where sealed chunks rest (a directory or an S3-compatible
//!   bucket), through the `object_store` crate.
//!
//! It must not make policy decisions itself (that is `sluice_policies`), execute guest
//! code outside `sluice_sandbox`, or touch plaintext outside `sluice_vault`. SQL lives only
//! in [`store`]; HTTP only in [`api`]; the service layer knows neither HTTP nor the CLI.

pub mod api;
pub mod chunk_store;
pub mod config;
pub mod datadir;
pub mod error;
pub mod ids;
pub mod in_flight;
pub mod parts;
pub mod runner;
pub mod service;
pub mod store;
pub mod timestamp;

//! Sluice's vault: what a dataset is and how it rests. Schemas (columns, types, bounds,
//! domains, classification levels), ingest into AES-256-GCM chunks under per-version data
//! keys wrapped by a master key (put in and read from the gateway's object store through
//! [`chunks::ChunkIo`]), reading a version back as sandbox batches, the key files,
//! dummy data made from a schema, keyed pseudonyms of text identifiers (unified social
//! credit codes, resident identity numbers) for key columns, and joins of two datasets on a level-4 key (sealed
//! spills, contribution bound) before the sandbox.
//!
//! It owns plaintext in memory and the sealed form at rest. It must not decide who may read
//! (the service asks the policy gate first), touch the database, or speak HTTP; no error
//! it returns carries a data value or key material.

pub mod chunks;
pub mod dummy;
pub mod join;
pub mod keys;
pub mod pseudonym;
pub mod schema;

pub use chunks::{ChunkContext, ChunkIo, VersionReader, batches_of, ingest, parse_chunks};
pub use keys::AeadKey;
pub use schema::DatasetSchema;

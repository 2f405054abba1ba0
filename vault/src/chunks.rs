//! The data vault: columnar chunks sealed with AES-256-GCM, one data key per dataset
//! version, wrapped by the master key.
//!
//! It owns ingest (CSV → validated columns → sealed chunks in the object store) and reading
//! a version back as batches for the sandbox. Plaintext exists only in memory and is never
//! written: only sealed chunks reach the store, through [`ChunkIo`] (the gateway's object
//! store: a local directory or an S3-compatible bucket). It must not decide who may read;
//! callers have been authorised by the policy gate first.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, bail};
use ring::aead::NONCE_LEN;
use sluice_sandbox::abi::BATCH_ROWS;
use sluice_sandbox::{Batch, Column, ColumnType, ColumnValues};
use zeroize::Zeroize;

use crate::keys::AeadKey;
use crate::pseudonym::{CodeBuffer, PseudonymKey};
use crate::schema::{DatasetSchema, Field, PrivacyUnit};

/// Rows per sealed chunk: 65,536 rows of a few columns is a few MiB, small enough to
/// decrypt one at a time and large enough that per-chunk overhead is negligible.
pub const CHUNK_ROWS: usize = 65_536;
/// How many row errors an ingest reports before it stops looking.
const MAX_REPORTED_ERRORS: usize = 10;
const CHUNK_MAGIC: &[u8; 4] = b"SLC1";

/// Identifies what a chunk belongs to; all of it goes into the chunk's associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkContext {
    pub dataset_id: i64,
    pub version: i64,
    pub schema_hash: [u8; 32],
}

impl ChunkContext {
    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"sluice chunk v1");
        aad.extend_from_slice(&self.dataset_id.to_le_bytes());
        aad.extend_from_slice(&self.version.to_le_bytes());
        aad.extend_from_slice(&self.schema_hash);
        aad.extend_from_slice(&index.to_le_bytes());
        aad.push(u8::from(last));
        aad
    }

    /// The context a data key is wrapped under.
    pub fn key_context(&self) -> Vec<u8> {
        let mut context = b"sluice data key v1".to_vec();
        context.extend_from_slice(&self.dataset_id.to_le_bytes());
        context.extend_from_slice(&self.version.to_le_bytes());
        context
    }
}

/// A chunk's nonce is its index: each version has a fresh key, so an index is never
/// used twice under one key.
fn chunk_nonce(index: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    nonce
}

/// Column-major buffers for up to [`CHUNK_ROWS`] rows.
#[derive(Debug, Default)]
pub struct ColumnarRows {
    pub rows: usize,
    /// Per column: the 8-byte values (nulls hold 0) and validity flags.
    pub values: Vec<Vec<u64>>,
    pub valid: Vec<Vec<bool>>,
}

// Decoded chunks hold plaintext rows: wipe them when they go.
impl Drop for ColumnarRows {
    fn drop(&mut self) {
        self.values.zeroize();
        self.valid.iter_mut().for_each(|valid| valid.zeroize());
    }
}

impl ColumnarRows {
    fn new(columns: usize) -> Self {
        Self { rows: 0, values: vec![Vec::new(); columns], valid: vec![Vec::new(); columns] }
    }

    fn push(&mut self, fields: &[Field]) {
        for (column, field) in fields.iter().enumerate() {
            let (word, present) = match *field {
                Field::Null => (0, false),
                Field::F64(value) => (value.to_bits(), true),
                Field::I64(value) => (value as u64, true),
            };
            self.values[column].push(word);
            self.valid[column].push(present);
        }
        self.rows += 1;
    }

    /// Plaintext encoding: magic, rows (u32), columns (u16), then per column a validity
    /// byte per row followed by the 8-byte little-endian values.
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(10 + self.values.len() * self.rows * 9);
        bytes.extend_from_slice(CHUNK_MAGIC);
        bytes.extend_from_slice(&(self.rows as u32).to_le_bytes());
        bytes.extend_from_slice(&(self.values.len() as u16).to_le_bytes());
        for (values, valid) in self.values.iter().zip(&self.valid) {
            bytes.extend(valid.iter().map(|present| u8::from(*present)));
            for value in values {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
        }
        bytes
    }

    fn decode(bytes: &[u8], expected_columns: usize) -> anyhow::Result<Self> {
        let header_ok = bytes.len() >= 10 && &bytes[..4] == CHUNK_MAGIC;
        if !header_ok {
            bail!("chunk header is malformed");
        }
        let rows = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
        let columns = u16::from_le_bytes(bytes[8..10].try_into().expect("2 bytes")) as usize;
        if columns != expected_columns || bytes.len() != 10 + columns * rows * 9 {
            bail!("chunk shape does not match the schema");
        }
        let mut decoded = Self::new(columns);
        decoded.rows = rows;
        if rows == 0 {
            // The last chunk of a dataset whose size is a multiple of CHUNK_ROWS is empty.
            return Ok(decoded);
        }
        for (column, part) in bytes[10..].chunks_exact(rows * 9).enumerate().take(columns) {
            decoded.valid[column] = part[..rows].iter().map(|byte| *byte == 1).collect();
            decoded.values[column] = part[rows..]
                .chunks_exact(8)
                .map(|word| u64::from_le_bytes(word.try_into().expect("8 bytes")))
                .collect();
        }
        Ok(decoded)
    }
}

/// Where sealed chunks are put and read back, by key (`dataset-1/v2/00000000.chunk`): the
/// gateway's object store. Calls block; the vault makes them from its own threads.
pub trait ChunkIo: Send + Sync + std::fmt::Debug {
    /// Writes one object whole: a reader never sees part of it.
    fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()>;
    /// Reads one object; `None` when there is none under `key`.
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Deletes every object under `prefix`, by whole path segments (`a/v1` is not a prefix
    /// of `a/v10/x`; `""` is everything), and says how many.
    fn delete_prefix(&self, prefix: &str) -> anyhow::Result<u64>;
}

/// The key prefix of everything a dataset stored, every version.
pub fn dataset_prefix(dataset_id: i64) -> String {
    format!("dataset-{dataset_id}")
}

/// The key prefix of a version's sealed chunks.
pub fn version_prefix(dataset_id: i64, version: i64) -> String {
    format!("dataset-{dataset_id}/v{version}")
}

/// The key of chunk `index` under a version's prefix.
pub fn chunk_key(prefix: &str, index: u64) -> String {
    format!("{prefix}/{index:08}.chunk")
}

/// The keys an ingest uses: the master key that wraps the new version's data key, and the
/// deployment's secret that pseudonymises text codes in a key column.
#[derive(Debug, Clone, Copy)]
pub struct IngestKeys<'a> {
    pub master: &'a AeadKey,
    pub pseudonyms: &'a PseudonymKey,
}

/// What an ingest stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub rows: u64,
    pub chunks: u64,
    /// Rows refused and left out (only with `skip_invalid`), and the first few of them.
    pub skipped: u64,
    pub skipped_examples: Vec<RowError>,
    /// The data key wrapped by the master key; the only copy of the key that persists.
    pub wrapped_key: Vec<u8>,
}

/// A row the schema refused: 1-based line number (the header is line 1) and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the CSV is invalid: {0}")]
    Csv(String),
    #[error("{} invalid row(s); first: line {}, column `{}` {}", .0.len(), .0[0].line, .0[0].column, .0[0].problem)]
    InvalidRows(Vec<RowError>),
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// Validates every row of `csv` against `schema`, seals it into chunks under a fresh data
/// key and writes them to the store under the version's prefix. The caller gives a version
/// number it has reserved and no version row refers to: the chunks are readable only once
/// the caller commits that row with the wrapped key, so an object store needs no rename.
/// On any error the version's objects are deleted again.
pub fn ingest(
    csv: impl Read,
    schema: &DatasetSchema,
    context: ChunkContext,
    keys: IngestKeys<'_>,
    store: &dyn ChunkIo,
    skip_invalid: bool,
    mut progress: impl FnMut(u64),
) -> Result<IngestReport, IngestError> {
    let prefix = version_prefix(context.dataset_id, context.version);
    // Objects already there are what a crash left of an earlier attempt at this reserved
    // version; they hold nothing anyone has.
    store.delete_prefix(&prefix)?;
    let outcome = seal_all(csv, schema, keys.pseudonyms, context, store, &prefix, skip_invalid, &mut progress)
        .and_then(|(parsed, chunks, data_key)| {
            let wrapped_key = keys.master.wrap(&data_key, &context.key_context())?;
            Ok((parsed, chunks, wrapped_key))
        });
    let (parsed, chunks, wrapped_key) = match outcome {
        Ok(done) => done,
        Err(error) => {
            if let Err(cleanup) = store.delete_prefix(&prefix) {
                // The caller's reservation stays, so a later sweep removes them.
                return Err(IngestError::Storage(cleanup.context("removing the chunks of a failed ingest")));
            }
            return Err(error);
        }
    };
    Ok(IngestReport {
        rows: parsed.rows,
        chunks,
        skipped: parsed.skipped,
        skipped_examples: parsed.skipped_examples,
        wrapped_key,
    })
}

#[allow(clippy::too_many_arguments)]
fn seal_all(
    csv: impl Read,
    schema: &DatasetSchema,
    pseudonyms: &PseudonymKey,
    context: ChunkContext,
    store: &dyn ChunkIo,
    prefix: &str,
    skip_invalid: bool,
    progress: &mut impl FnMut(u64),
) -> Result<(ParsedRows, u64, AeadKey), IngestError> {
    let data_key = AeadKey::generate()?;
    let mut chunks = 0u64;
    let parsed = parse_chunks(csv, schema, pseudonyms, skip_invalid, |chunk, rows_so_far, last| {
        seal_chunk(chunk, &data_key, context, chunks, last, store, prefix)?;
        chunks += 1;
        progress(rows_so_far);
        Ok(())
    })?;
    Ok((parsed, chunks, data_key))
}

/// How many rows a parse kept, and what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRows {
    pub rows: u64,
    pub skipped: u64,
    pub skipped_examples: Vec<RowError>,
}

/// Parses and validates `csv` against `schema`, handing each chunk of up to
/// [`CHUNK_ROWS`] rows to `on_chunk` with the rows kept so far and whether it is the last.
/// The last chunk is always emitted (possibly empty), so a reader can tell a truncated
/// dataset from a complete one. By default one invalid row fails the whole file (no
/// further chunk is emitted and up to ten invalid rows are reported); with `skip_invalid`
/// invalid rows are left out, counted, and the first ten kept as examples. A pseudonymised
/// key column's codes become their pseudonyms under `pseudonyms`.
pub fn parse_chunks(
    csv: impl Read,
    schema: &DatasetSchema,
    pseudonyms: &PseudonymKey,
    skip_invalid: bool,
    mut on_chunk: impl FnMut(&ColumnarRows, u64, bool) -> anyhow::Result<()>,
) -> Result<ParsedRows, IngestError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(csv);
    let positions = header_positions(&mut reader, schema)?;
    let mut errors = Vec::new();
    let mut skipped = 0u64;
    let mut pending = ColumnarRows::new(schema.columns.len());
    let mut rows = 0u64;
    let mut fields = vec![Field::Null; schema.columns.len()];
    let mut record = csv::StringRecord::new();
    let mut code = CodeBuffer::default();
    let mut line = 1u64;
    let mut contributions = Contributions::new(schema);
    while reader.read_record(&mut record).map_err(|error| IngestError::Csv(csv_problem(&error)))? {
        line += 1;
        let parsed = parse_record(&record, schema, (pseudonyms, &mut code), &positions, line, &mut fields)
            .and_then(|check| contributions.admit(&fields, check, line));
        if let Err(error) = parsed {
            skipped += 1;
            if errors.len() < MAX_REPORTED_ERRORS {
                errors.push(error);
            } else if !skip_invalid {
                break;
            }
            continue;
        }
        if !skip_invalid && !errors.is_empty() {
            continue; // keep looking for errors, but emit nothing from an invalid file
        }
        pending.push(&fields);
        rows += 1;
        if pending.rows == CHUNK_ROWS {
            on_chunk(&pending, rows, false)?;
            pending = ColumnarRows::new(schema.columns.len());
        }
    }
    if !skip_invalid && !errors.is_empty() {
        return Err(IngestError::InvalidRows(errors));
    }
    on_chunk(&pending, rows, true)?;
    Ok(ParsedRows { rows, skipped, skipped_examples: errors })
}

/// Splits a decoded chunk into sandbox batches of the `selected` (schema index, type) columns.
pub fn batches_of(chunk: &ColumnarRows, selected: &[(usize, ColumnType)]) -> Vec<Batch> {
    (0..chunk.rows)
        .step_by(BATCH_ROWS)
        .map(|start| batch_of(chunk, selected, start..(start + BATCH_ROWS).min(chunk.rows)))
        .collect()
}

/// Bounds each person's contribution when the schema has a person-id column: rows past
/// `max_rows` for one person are invalid (refused, or left out with `skip_invalid`). For a
/// pseudonymised key it also keeps 32 more bits of each code's hash, so two different codes
/// sharing a 64-bit pseudonym (about 1 in 370,000 for 10 million codes) are refused
/// rather than counted as one person.
struct Contributions {
    person: Option<(usize, u32, String)>,
    seen: std::collections::HashMap<i64, (u32, u32)>,
}

impl Contributions {
    fn new(schema: &DatasetSchema) -> Self {
        let person = match &schema.privacy_unit {
            PrivacyUnit::PersonId { column, max_rows } => {
                schema.column(column).map(|(index, _)| (index, *max_rows, column.clone()))
            }
            PrivacyUnit::RowPerPerson => None,
        };
        Self { person, seen: std::collections::HashMap::new() }
    }

    fn admit(&mut self, fields: &[Field], check: u32, line: u64) -> Result<(), RowError> {
        let Some((index, max_rows, column)) = &self.person else { return Ok(()) };
        let Field::I64(person) = fields[*index] else { return Ok(()) };
        let (count, seen_check) = self.seen.entry(person).or_insert((0, check));
        if *seen_check != check {
            return Err(RowError {
                line,
                column: column.clone(),
                problem: "is a different code from an earlier line's with the same 64-bit pseudonym (a chance of \
                          1 in 1.8 × 10^19 a pair); the two cannot be told apart in a join, so the row is refused"
                    .into(),
            });
        }
        if *count >= *max_rows {
            return Err(RowError {
                line,
                column: column.clone(),
                problem: format!("adds a row past the {max_rows} one person may contribute"),
            });
        }
        *count += 1;
        Ok(())
    }
}

fn csv_problem(error: &csv::Error) -> String {
    if error.is_io_error() {
        return "reading the upload failed before it was complete".into();
    }
    match error.position() {
        Some(position) => format!("malformed CSV near line {}", position.line()),
        None => "malformed CSV".into(),
    }
}

fn header_positions<R: Read>(reader: &mut csv::Reader<R>, schema: &DatasetSchema) -> Result<Vec<usize>, IngestError> {
    let headers = reader.headers().map_err(|error| IngestError::Csv(csv_problem(&error)))?.clone();
    if headers.len() != schema.columns.len() {
        return Err(IngestError::Csv(format!(
            "the header has {} columns, the schema declares {}",
            headers.len(),
            schema.columns.len()
        )));
    }
    schema
        .columns
        .iter()
        .map(|column| {
            headers
                .iter()
                .position(|header| header.trim() == column.name)
                .ok_or_else(|| IngestError::Csv(format!("the header has no column `{}`", column.name)))
        })
        .collect()
}

/// Parses one record into `fields`; returns the check bits of its pseudonymised key (0
/// without one), spelt canonically in `code` on the way.
fn parse_record(
    record: &csv::StringRecord,
    schema: &DatasetSchema,
    (pseudonyms, code): (&PseudonymKey, &mut CodeBuffer),
    positions: &[usize],
    line: u64,
    fields: &mut [Field],
) -> Result<u32, RowError> {
    let mut check = 0;
    for ((column, position), field) in schema.columns.iter().zip(positions).zip(fields.iter_mut()) {
        let problem = |problem| RowError { line, column: column.name.clone(), problem };
        let text = record.get(*position).ok_or_else(|| problem("is missing".into()))?;
        *field = match column.pseudonym_of {
            Some(format) => {
                let canonical = format.canonical_in(text, code).map_err(|rule| problem(rule.into()))?;
                let pseudonym = pseudonyms.pseudonym_of(canonical);
                check = pseudonym.check;
                Field::I64(pseudonym.value)
            }
            None => column.parse_field(text).map_err(problem)?,
        };
    }
    Ok(check)
}

fn seal_chunk(
    rows: &ColumnarRows,
    key: &AeadKey,
    context: ChunkContext,
    index: u64,
    last: bool,
    store: &dyn ChunkIo,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut buffer = rows.encode();
    key.seal(chunk_nonce(index), &context.aad(index, last), &mut buffer)?;
    store.put(&chunk_key(prefix, index), buffer)
}

/// Reads a version back, chunk by chunk, as sandbox batches of the requested columns.
/// Only one decrypted chunk is in memory at a time.
pub struct VersionReader {
    store: Arc<dyn ChunkIo>,
    prefix: String,
    key: AeadKey,
    context: ChunkContext,
    chunk_count: u64,
    schema_columns: usize,
    /// (schema index, type) of each requested column, in the requested order.
    selected: Vec<(usize, ColumnType)>,
    next_chunk: u64,
    /// One past the last chunk this reader reads (a part of the version, see
    /// [`VersionReader::split`]).
    end_chunk: u64,
    current: Option<ColumnarRows>,
    offset: usize,
}

impl std::fmt::Debug for VersionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionReader")
            .field("prefix", &self.prefix)
            .field("chunk_count", &self.chunk_count)
            .finish_non_exhaustive()
    }
}

impl VersionReader {
    pub fn open(
        store: Arc<dyn ChunkIo>,
        context: ChunkContext,
        chunk_count: u64,
        key: AeadKey,
        schema: &DatasetSchema,
        columns: &[String],
    ) -> anyhow::Result<Self> {
        let selected = columns
            .iter()
            .map(|name| {
                schema
                    .column(name)
                    .map(|(index, column)| (index, column.column_type))
                    .with_context(|| format!("column `{name}` is not in the dataset"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            store,
            prefix: version_prefix(context.dataset_id, context.version),
            key,
            context,
            chunk_count,
            schema_columns: schema.columns.len(),
            selected,
            next_chunk: 0,
            end_chunk: chunk_count,
            current: None,
            offset: 0,
        })
    }

    /// Splits the version into at most `parts` readers over consecutive runs of whole
    /// chunks, in order, each holding its own copy of the key: read one after the other
    /// they give exactly this reader's batches. A version with fewer chunks gives fewer.
    pub fn split(self, parts: usize) -> Vec<VersionReader> {
        let chunks = self.end_chunk - self.next_chunk;
        let parts = (parts.max(1) as u64).min(chunks.max(1));
        // Part i reads chunks [start + i·chunks/parts, start + (i+1)·chunks/parts): as even
        // as whole chunks allow, none empty.
        let boundary = |part: u64| self.next_chunk + chunks * part / parts;
        let mut readers = Vec::new();
        for part in 0..parts {
            readers.push(VersionReader {
                store: self.store.clone(),
                prefix: self.prefix.clone(),
                key: self.key.clone(),
                context: self.context,
                chunk_count: self.chunk_count,
                schema_columns: self.schema_columns,
                selected: self.selected.clone(),
                next_chunk: boundary(part),
                end_chunk: boundary(part + 1),
                current: None,
                offset: 0,
            });
        }
        readers
    }

    fn load_next_chunk(&mut self) -> anyhow::Result<Option<ColumnarRows>> {
        if self.next_chunk >= self.end_chunk {
            return Ok(None);
        }
        let index = self.next_chunk;
        let mut buffer = self
            .store
            .get(&chunk_key(&self.prefix, index))?
            .with_context(|| format!("chunk {index} of the dataset is missing"))?;
        let last = index + 1 == self.chunk_count;
        self.key
            .open(chunk_nonce(index), &self.context.aad(index, last), &mut buffer)
            .map_err(|_| anyhow::anyhow!("chunk {index} failed authentication: it was altered, moved or truncated"))?;
        let decoded = ColumnarRows::decode(&buffer, self.schema_columns);
        buffer.zeroize();
        self.next_chunk += 1;
        Ok(Some(decoded?))
    }

    fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        loop {
            if let Some(chunk) = &self.current
                && self.offset < chunk.rows
            {
                let end = (self.offset + BATCH_ROWS).min(chunk.rows);
                let batch = batch_of(chunk, &self.selected, self.offset..end);
                self.offset = end;
                return Ok(Some(batch));
            }
            self.offset = 0;
            match self.load_next_chunk()? {
                Some(chunk) => self.current = Some(chunk),
                None => {
                    self.current = None;
                    return Ok(None);
                }
            }
        }
    }
}

fn batch_of(chunk: &ColumnarRows, selected: &[(usize, ColumnType)], range: std::ops::Range<usize>) -> Batch {
    let columns = selected
        .iter()
        .map(|&(index, column_type)| {
            let words = &chunk.values[index][range.clone()];
            let values = match column_type {
                ColumnType::F64 => ColumnValues::F64(words.iter().map(|word| f64::from_bits(*word)).collect()),
                ColumnType::I64 | ColumnType::Category | ColumnType::Bool | ColumnType::Date => {
                    ColumnValues::I64(words.iter().map(|word| *word as i64).collect())
                }
            };
            Column { values, valid: chunk.valid[index][range.clone()].to_vec() }
        })
        .collect();
    Batch { rows: range.len(), columns }
}

impl Iterator for VersionReader {
    type Item = anyhow::Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

#[cfg(test)]
mod tests;

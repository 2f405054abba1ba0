//! Joins two or more datasets' rows on a level-4 key inside the host, before the sandbox
//! (公共数据融合): a model receives joined rows, never the key.
//!
//! It owns the join: a partitioned (grace) hash join whose partitions are held in memory up
//! to the join's budget and past it go to temporary files sealed with AES-256-GCM under a
//! key that exists only for this join
//! (so no plaintext row and no key value is ever written, and nothing spilled can be read
//! once the join is gone); and the contribution bound after the join (at most
//! `max_rows_per_key` joined rows for one key, what the noise is calibrated to).
//!
//! It must not decide who may join what (the gateway's policy does, before), give a key
//! value to a batch, an error or a file in plaintext, or say anything about how many rows
//! matched: what it returns is rows for the sandbox, and the only way anything about them
//! leaves is a charged differentially private release.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, bail};
use ring::aead::NONCE_LEN;
use sluice_sandbox::abi::BATCH_ROWS;
use sluice_sandbox::{Batch, Column, ColumnType, ColumnValues};
use zeroize::Zeroize;

use crate::keys::AeadKey;

/// Which left rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Only left rows whose key is on the right, once per matching right row.
    Inner,
    /// Every left row; one without a match has nulls for the right's columns.
    Left,
}

/// How to join: the kind, the contribution bound and the memory the join may hold.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub kind: JoinKind,
    /// At most this many joined rows for one key (the privacy unit's contribution after the
    /// join); matches past it are left out. It must be at least each side's own rows per
    /// key (bounded at ingest), which is all an unmatched left row's key contributes.
    pub max_rows_per_key: u32,
    /// Bytes of rows each side holds in memory; past it the join spills sealed partitions.
    /// While joining it also holds one partition of each side.
    pub memory_bytes: usize,
    /// Partitions of a spilled join (each is joined in memory on its own).
    pub partitions: usize,
    /// Reads and partitions both sides at once, the right on a thread of its own (the
    /// default: reading a side decrypts its chunks, and sealing its spills encrypts them);
    /// `false` reads them one after the other on the caller's thread. Either way each side
    /// holds at most `memory_bytes` and the joined rows are the same.
    pub parallel: bool,
}

impl JoinPlan {
    pub fn new(kind: JoinKind, max_rows_per_key: u32) -> Self {
        Self { kind, max_rows_per_key, memory_bytes: 64 << 20, partitions: 64, parallel: true }
    }
}

/// One side of a join: its rows as batches whose first column is the key (a non-null
/// `i64`; a row whose key is null matches nothing), followed by the columns the model
/// reads, with their types.
#[derive(Debug)]
pub struct JoinSide<I> {
    pub batches: I,
    pub types: Vec<ColumnType>,
}

/// Columns a side may give the model (validity is one 64-bit mask per row).
const MAX_COLUMNS: usize = 63;

/// Right sides one join may take (each is read, partitioned and held on its own).
pub const MAX_RIGHT_SIDES: usize = 8;

/// Rows of one side, row-major: per row the key, a validity mask, then one 8-byte word
/// per column. Wiped when dropped.
#[derive(Default)]
struct Rows {
    words: Vec<u64>,
}

impl Drop for Rows {
    fn drop(&mut self) {
        self.words.zeroize();
    }
}

/// A side's rows split by key into partitions, each in memory, or partly sealed on disk.
struct Partitioned {
    /// Which side (the right sides 0, 1, …, the left after them): it names the side's spill
    /// file and is in every nonce its segments are sealed with, so no two sides share a nonce.
    side: u8,
    width: usize,
    memory: Vec<Rows>,
    /// Sealed segments on disk, per partition: (offset, length, nonce counter).
    spilled: Vec<Vec<(u64, usize, u64)>>,
    file: Option<File>,
    file_len: u64,
    next_nonce: u64,
}

/// What the join holds for its own sake, shared by both sides: the key its spills are
/// sealed with, and the salt that assigns keys to partitions (so which keys share a
/// partition is not the same from one join to the next).
struct Spill {
    key: AeadKey,
    salt: std::hash::RandomState,
    dir: tempfile::TempDir,
}

impl Spill {
    fn new(parent: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-join-")
            .tempdir_in(parent)
            .context("creating the join's spill directory")?;
        Ok(Self { key: AeadKey::generate()?, salt: std::hash::RandomState::new(), dir })
    }

    fn partition(&self, key: u64, partitions: usize) -> usize {
        use std::hash::BuildHasher as _;
        (self.salt.hash_one(key) % partitions as u64) as usize
    }

    fn nonce(side: u8, counter: u64) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&counter.to_le_bytes());
        nonce[8] = side;
        nonce
    }

    fn aad(partition: usize) -> Vec<u8> {
        let mut aad = b"sluice join spill v1".to_vec();
        aad.extend_from_slice(&(partition as u64).to_le_bytes());
        aad
    }
}

impl Partitioned {
    fn new(side: u8, width: usize, partitions: usize) -> Self {
        Self {
            side,
            next_nonce: 0,
            width,
            memory: (0..partitions).map(|_| Rows::default()).collect(),
            spilled: vec![Vec::new(); partitions],
            file: None,
            file_len: 0,
        }
    }

    fn held_bytes(&self) -> usize {
        self.memory.iter().map(|rows| rows.words.len() * 8).sum()
    }

    /// Seals partition `partition`'s rows held in memory and appends them to this side's file.
    fn spill(&mut self, partition: usize, spill: &Spill) -> anyhow::Result<()> {
        let rows = std::mem::take(&mut self.memory[partition]);
        if rows.words.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let path = spill.dir.path().join(format!("side-{}", self.side));
            self.file = Some(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .context("creating a spill file")?,
            );
        }
        let mut buffer: Vec<u8> = Vec::with_capacity(rows.words.len() * 8 + 16);
        for word in &rows.words {
            buffer.extend_from_slice(&word.to_le_bytes());
        }
        let counter = self.next_nonce;
        self.next_nonce += 1;
        spill.key.seal(Spill::nonce(self.side, counter), &Spill::aad(partition), &mut buffer)?;
        let file = self.file.as_mut().context("the spill file")?;
        file.seek(SeekFrom::End(0)).context("seeking in a spill file")?;
        file.write_all(&buffer).context("writing a spill file")?;
        let length = buffer.len();
        buffer.zeroize();
        self.spilled[partition].push((self.file_len, length, counter));
        self.file_len += length as u64;
        Ok(())
    }

    /// Reads a side's batches into its partitions, spilling the largest partition whenever
    /// the rows held pass `memory_bytes`.
    fn fill(
        &mut self,
        batches: impl Iterator<Item = anyhow::Result<Batch>>,
        types: &[ColumnType],
        side: &str,
        spill: &Spill,
        memory_bytes: usize,
    ) -> anyhow::Result<()> {
        let partitions = self.memory.len();
        for batch in batches {
            let batch = batch?;
            push_rows(&batch, types, side, &mut |row| {
                self.memory[spill.partition(row[0], partitions)].words.extend_from_slice(row);
            })?;
            while self.held_bytes() > memory_bytes {
                let largest = (0..partitions).max_by_key(|&p| self.memory[p].words.len()).unwrap_or(0);
                self.spill(largest, spill)?;
            }
        }
        Ok(())
    }

    /// Every row of `partition`: the spilled segments, opened, then those in memory.
    fn take(&mut self, partition: usize, spill: &Spill) -> anyhow::Result<Rows> {
        let mut rows = Rows::default();
        for &(offset, length, counter) in &self.spilled[partition] {
            let file = self.file.as_mut().context("the spill file")?;
            file.seek(SeekFrom::Start(offset)).context("seeking in a spill file")?;
            let mut buffer = vec![0u8; length];
            file.read_exact(&mut buffer).context("reading a spill file")?;
            spill
                .key
                .open(Spill::nonce(self.side, counter), &Spill::aad(partition), &mut buffer)
                .map_err(|_| anyhow::anyhow!("a spilled segment of partition {partition} failed authentication"))?;
            rows.words
                .extend(buffer.chunks_exact(8).map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]))));
            buffer.zeroize();
        }
        rows.words.extend_from_slice(&std::mem::take(&mut self.memory[partition]).words);
        debug_assert_eq!(rows.words.len() % self.width, 0);
        Ok(rows)
    }
}

/// Appends each row of `batch` (key first) to `out`: key, validity mask, words.
fn push_rows(batch: &Batch, types: &[ColumnType], side: &str, out: &mut impl FnMut(&[u64])) -> anyhow::Result<()> {
    if batch.columns.len() != types.len() + 1 {
        bail!("the {side} side gave {} columns, the join expected its key and {}", batch.columns.len(), types.len());
    }
    let mut row = vec![0u64; types.len() + 2];
    for index in 0..batch.rows {
        let key = &batch.columns[0];
        let ColumnValues::I64(keys) = &key.values else { bail!("the {side} side's key is not an integer column") };
        // A null key matches nothing: it is kept with a mask bit saying so.
        row[0] = keys[index] as u64;
        let mut mask = u64::from(!key.valid[index]) << 63;
        for (column, field) in batch.columns[1..].iter().enumerate() {
            if field.valid[index] {
                mask |= 1 << column;
            }
            row[2 + column] = match &field.values {
                ColumnValues::F64(values) => values[index].to_bits(),
                ColumnValues::I64(values) => values[index] as u64,
            };
        }
        row[1] = mask;
        out(&row);
    }
    row.zeroize();
    Ok(())
}

const NULL_KEY: u64 = 1 << 63;

/// Builds batches of joined rows: the left's columns, then each right side's in turn.
struct Output {
    left: Vec<ColumnType>,
    /// Every right side's column types, one after the other.
    right: Vec<ColumnType>,
    /// Where each right side's columns start among `right`, and one past the last side's.
    right_starts: Vec<usize>,
    values: Vec<Vec<u64>>,
    valid: Vec<Vec<bool>>,
    rows: usize,
}

impl Output {
    fn new(left: &[ColumnType], rights: &[&[ColumnType]]) -> Self {
        let mut right_starts = vec![0];
        for types in rights {
            right_starts.push(right_starts.last().copied().unwrap_or(0) + types.len());
        }
        let right: Vec<ColumnType> = rights.iter().flat_map(|types| types.iter().copied()).collect();
        let columns = left.len() + right.len();
        Self {
            left: left.to_vec(),
            right,
            right_starts,
            values: vec![Vec::with_capacity(BATCH_ROWS); columns],
            valid: vec![Vec::with_capacity(BATCH_ROWS); columns],
            rows: 0,
        }
    }

    /// One joined row: `left` is a row as stored (key, mask, words), and `right(side)` each
    /// right side's matching row as stored, `None` where the side has no match.
    fn push<'a>(&mut self, left: &[u64], right: impl Fn(usize) -> Option<&'a [u64]>) {
        let left_columns = self.left.len();
        for column in 0..left_columns {
            self.values[column].push(left[2 + column]);
            self.valid[column].push(left[1] & (1 << column) != 0);
        }
        for side in 0..self.right_starts.len() - 1 {
            let row = right(side);
            let (start, end) = (self.right_starts[side], self.right_starts[side + 1]);
            for column in 0..end - start {
                let (word, present) = match row {
                    Some(row) => (row[2 + column], row[1] & (1 << column) != 0),
                    None => (0, false),
                };
                let at = left_columns + start + column;
                self.values[at].push(if present { word } else { 0 });
                self.valid[at].push(present);
            }
        }
        self.rows += 1;
    }

    fn full(&self) -> bool {
        self.rows >= BATCH_ROWS
    }

    fn take(&mut self) -> Option<Batch> {
        if self.rows == 0 {
            return None;
        }
        let types = self.left.iter().chain(&self.right);
        let columns = types
            .zip(self.values.iter_mut().zip(self.valid.iter_mut()))
            .map(|(column_type, (words, valid))| {
                let values = match column_type {
                    ColumnType::F64 => ColumnValues::F64(words.iter().map(|word| f64::from_bits(*word)).collect()),
                    ColumnType::I64 | ColumnType::Category | ColumnType::Bool | ColumnType::Date => {
                        ColumnValues::I64(words.iter().map(|word| *word as i64).collect())
                    }
                };
                words.zeroize();
                words.clear();
                Column { values, valid: std::mem::take(valid) }
            })
            .collect();
        let rows = std::mem::take(&mut self.rows);
        Some(Batch { rows, columns })
    }
}

/// No further row in a chain.
const END: u32 = u32::MAX;

/// The right side's rows of one partition (or all of them), by key: per key its first row
/// and how many joined rows it has given, each row linked to the next of its key (one
/// table entry per key and no allocation per key).
struct Build {
    rows: Rows,
    width: usize,
    by_key: HashMap<u64, (u32, u32), std::hash::RandomState>,
    next: Vec<u32>,
}

impl Build {
    fn new(rows: Rows, width: usize) -> anyhow::Result<Self> {
        let count = rows.words.len() / width;
        if count >= END as usize {
            bail!("a partition of a join holds more than {} rows: use more partitions", END - 1);
        }
        let mut by_key: HashMap<u64, (u32, u32), std::hash::RandomState> =
            HashMap::with_capacity_and_hasher(count, std::hash::RandomState::new());
        let mut next = vec![END; count];
        // Linked from the last row back, so a key's chain runs in the rows' order.
        for index in (0..count).rev() {
            let row = &rows.words[index * width..(index + 1) * width];
            if row[1] & NULL_KEY == 0 {
                let head = by_key.entry(row[0]).or_insert((END, 0));
                next[index] = head.0;
                head.0 = index as u32;
            }
        }
        Ok(Self { rows, width, by_key, next })
    }

    fn row(&self, index: u32) -> &[u64] {
        let index = index as usize;
        &self.rows.words[index * self.width..(index + 1) * self.width]
    }
}

/// Joins every row of `probe` (left rows as stored) against each right side's `builds`,
/// bounding each key's joined rows, into `output`; hands each batch to `each` as it fills.
///
/// A left row meets every combination of its key's rows on the right sides (a side without
/// a match gives nulls in a left join, and drops the row in an inner one), in the rights'
/// order, the last side's rows varying fastest; all left rows of one key together give at
/// most `plan.max_rows_per_key` joined rows. The count is kept in the key's entry of the
/// first right side that holds it (which side that is does not depend on the left row).
fn probe_rows(
    probe: &[u64],
    width: usize,
    builds: &mut [Build],
    plan: &JoinPlan,
    output: &mut Output,
    each: &mut impl FnMut(Batch) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let sides = builds.len();
    // Per right side: the first row of the key (or `END`: no match), and the row now joined.
    let mut heads = vec![END; sides];
    let mut cursor = vec![END; sides];
    for left in probe.chunks_exact(width) {
        let null_key = left[1] & NULL_KEY != 0;
        let mut counted: Option<(usize, u32)> = None;
        // A null key matches nothing.
        let mut unmatched = null_key;
        heads.fill(END);
        for (side, build) in builds.iter().enumerate().filter(|_| !null_key) {
            match build.by_key.get(&left[0]) {
                Some(&(head, count)) => {
                    heads[side] = head;
                    counted.get_or_insert((side, count));
                }
                None => unmatched = true,
            }
        }
        match counted {
            _ if unmatched && plan.kind == JoinKind::Inner => continue,
            // No side holds the key: a left join keeps the row. Its key's rows are the left
            // dataset's own, bounded at its ingest by no more than the plan's bound (the
            // caller's to ensure).
            None => output.push(left, |_| None),
            Some((counter, mut count)) => {
                // Each left row of the key meets its matches from the first, and adds what
                // is left of the key's bound.
                cursor.copy_from_slice(&heads);
                while count < plan.max_rows_per_key {
                    count += 1;
                    output.push(left, |side| match cursor[side] {
                        END => None,
                        row => Some(builds[side].row(row)),
                    });
                    if output.full()
                        && let Some(batch) = output.take()
                    {
                        each(batch)?;
                    }
                    if !advance(&mut cursor, &heads, builds) {
                        break;
                    }
                }
                if let Some(entry) = builds[counter].by_key.get_mut(&left[0]) {
                    entry.1 = count;
                }
            }
        }
        if output.full()
            && let Some(batch) = output.take()
        {
            each(batch)?;
        }
    }
    Ok(())
}

/// Moves `cursor` to the next combination of the right sides' rows of one key, the last
/// side fastest (a side without a match stays without); `false` once every combination
/// has been given.
fn advance(cursor: &mut [u32], heads: &[u32], builds: &[Build]) -> bool {
    for side in (0..cursor.len()).rev() {
        if cursor[side] == END {
            continue;
        }
        let next = builds[side].next[cursor[side] as usize];
        if next != END {
            cursor[side] = next;
            return true;
        }
        cursor[side] = heads[side];
    }
    false
}

/// Joins `left` to `right` on their keys by `plan`, spilling sealed partitions under
/// `spill_dir` when a side does not fit the plan's memory. Calls `each` with every
/// batch of joined rows (left columns, then right columns; never the key), in batches of
/// at most [`BATCH_ROWS`] rows.
pub fn join<L, R>(
    left: JoinSide<L>,
    right: JoinSide<R>,
    plan: &JoinPlan,
    spill_dir: &Path,
    each: impl FnMut(Batch) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    L: Iterator<Item = anyhow::Result<Batch>>,
    R: Iterator<Item = anyhow::Result<Batch>> + Send,
{
    join_many(left, vec![right], plan, spill_dir, each)
}

/// Joins `left` to every one of `rights` on their keys by `plan` (one pass: each side is
/// read and partitioned once), spilling sealed partitions under `spill_dir` when a side
/// does not fit the plan's memory. Calls `each` with every batch of joined rows (the left's
/// columns, then each right side's in order; never the key), in batches of at most
/// [`BATCH_ROWS`] rows. With right sides of at most one row per key, a left join gives
/// exactly one joined row per left row.
pub fn join_many<L, R>(
    left: JoinSide<L>,
    rights: Vec<JoinSide<R>>,
    plan: &JoinPlan,
    spill_dir: &Path,
    mut each: impl FnMut(Batch) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    L: Iterator<Item = anyhow::Result<Batch>>,
    R: Iterator<Item = anyhow::Result<Batch>> + Send,
{
    if rights.is_empty() || rights.len() > MAX_RIGHT_SIDES {
        bail!("a join takes 1 to {MAX_RIGHT_SIDES} right sides, not {}", rights.len());
    }
    if left.types.len() > MAX_COLUMNS || rights.iter().any(|right| right.types.len() > MAX_COLUMNS) {
        bail!("a side of a join gives the model at most {MAX_COLUMNS} columns");
    }
    if plan.max_rows_per_key == 0 || plan.partitions == 0 {
        bail!("a join needs a contribution bound and at least one partition");
    }
    let left_width = left.types.len() + 2;
    let spill = Spill::new(spill_dir)?;
    let partitions = plan.partitions;
    let right_types: Vec<&[ColumnType]> = rights.iter().map(|right| right.types.as_slice()).collect();
    let mut output = Output::new(&left.types, &right_types);
    let names: Vec<String> = (0..rights.len())
        .map(|side| if rights.len() == 1 { "right".to_owned() } else { format!("right {}", side + 1) })
        .collect();

    // Every side by partition (a hash of the key, salted per join), held in memory up to
    // the budget and sealed to disk past it; then one partition at a time, whose rows fit
    // a processor's caches far better than one table of every key (measured on 1,000,000
    // keys a side: 0.20 s against 0.76 s).
    let mut builds: Vec<Partitioned> = rights
        .iter()
        .enumerate()
        .map(|(side, right)| Partitioned::new(side as u8, right.types.len() + 2, partitions))
        .collect();
    let mut probe = Partitioned::new(rights.len() as u8, left_width, partitions);
    let right_sides: Vec<(R, Vec<ColumnType>)> = rights.into_iter().map(|right| (right.batches, right.types)).collect();
    if plan.parallel {
        std::thread::scope(|scope| {
            let readers: Vec<_> = builds
                .iter_mut()
                .zip(right_sides)
                .zip(&names)
                .map(|((build, (batches, types)), name)| {
                    let spill = &spill;
                    scope.spawn(move || build.fill(batches, &types, name, spill, plan.memory_bytes))
                })
                .collect();
            let left_outcome = probe.fill(left.batches, &left.types, "left", &spill, plan.memory_bytes);
            let mut outcome = Ok(());
            for reader in readers {
                let read = reader.join().map_err(|_| anyhow::anyhow!("reading a right side of a join panicked"))?;
                outcome = outcome.and(read);
            }
            outcome.and(left_outcome)
        })?;
    } else {
        for ((build, (batches, types)), name) in builds.iter_mut().zip(right_sides).zip(&names) {
            build.fill(batches, &types, name, &spill, plan.memory_bytes)?;
        }
        probe.fill(left.batches, &left.types, "left", &spill, plan.memory_bytes)?;
    }
    for partition in 0..partitions {
        let mut tables = builds
            .iter_mut()
            .map(|build| {
                let width = build.width;
                Build::new(build.take(partition, &spill)?, width)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let rows = probe.take(partition, &spill)?;
        probe_rows(&rows.words, left_width, &mut tables, plan, &mut output, &mut each)?;
    }
    if let Some(batch) = output.take() {
        each(batch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

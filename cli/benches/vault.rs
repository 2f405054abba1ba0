//! Vault benchmarks: `cargo bench -p sluice --bench vault`.
//!
//! - AES-256-GCM decryption of 1 MiB, ring (what Sluice uses) against RustCrypto's aes-gcm;
//! - ingest of the 100,000-row vehicles CSV: parse, validate, encode and seal (MB/s of CSV);
//! - ingest of 100,000 enterprises' tax records keyed by unified social credit codes (each
//!   checked and pseudonymised under the deployment's secret), against the same rows keyed by
//!   an integer id taken as written;
//! - decrypt and decode the sealed version back into sandbox batches (rows/s, GB/s);
//! - a join of two 1,000,000-row sides on a key (公共数据融合) in memory and spilled
//!   (sealed partitions on disk), each with its sides read one after the other and at once,
//!   against handing the same rows over unjoined.

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::examples::{ENTERPRISE_TAX_SCHEMA, VEHICLES_SCHEMA, enterprise_csvs, vehicles_csv};
use sluice_vault::chunks::{ChunkContext, IngestKeys, VersionReader, ingest};
use sluice_vault::keys::AeadKey;
use sluice_vault::pseudonym::PseudonymKey;
use sluice_vault::schema::DatasetSchema;

const MIB: usize = 1 << 20;

fn aead(criterion: &mut Criterion) {
    let key_bytes = [7u8; 32];
    let nonce = [1u8; 12];
    let ring_key = AeadKey::from_bytes(key_bytes);
    let mut sealed = vec![0x5a; MIB];
    ring_key.seal(nonce, b"aad", &mut sealed).expect("seal");
    let rust_crypto = aes_gcm::Aes256Gcm::new_from_slice(&key_bytes).expect("key");

    let mut group = criterion.benchmark_group("AES-256-GCM decrypt 1 MiB");
    group.throughput(Throughput::Bytes(MIB as u64)).measurement_time(Duration::from_secs(3));
    group.bench_function("ring", |bench| {
        bench.iter(|| {
            let mut buffer = sealed.clone();
            ring_key.open(nonce, b"aad", &mut buffer).expect("opens");
            black_box(buffer)
        })
    });
    group.bench_function("aes-gcm (RustCrypto)", |bench| {
        bench.iter(|| {
            let mut buffer = sealed.clone();
            let tag = buffer.split_off(MIB);
            rust_crypto
                .decrypt_in_place_detached((&nonce).into(), b"aad", &mut buffer, tag.as_slice().into())
                .expect("opens");
            black_box(buffer)
        })
    });
    group.bench_function("copy only (baseline for the clone above)", |bench| bench.iter(|| black_box(sealed.clone())));
    group.finish();
}

/// Fresh keys and a local object store in a temporary directory (kept while it is held).
fn vault_under_test() -> (AeadKey, PseudonymKey, tempfile::TempDir, std::sync::Arc<dyn sluice_vault::ChunkIo>) {
    use sluice_gateway::chunk_store::{ChunkStore, Location};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(ChunkStore::open(&Location::Local(dir.path().to_path_buf())).expect("store"));
    (AeadKey::generate().expect("key"), PseudonymKey::generate().expect("key"), dir, store)
}

fn ingest_and_read(criterion: &mut Criterion) {
    let schema = DatasetSchema::from_toml(VEHICLES_SCHEMA).expect("schema");
    let rows = 100_000;
    let csv = vehicles_csv(rows, 9);
    let (master, pseudonyms, _dir, store) = vault_under_test();
    let keys = IngestKeys { master: &master, pseudonyms: &pseudonyms };
    let mut version = 0;

    let mut group = criterion.benchmark_group("vault");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    group.throughput(Throughput::Bytes(csv.len() as u64));
    group.bench_function("ingest vehicles CSV (100,000 rows)", |bench| {
        bench.iter(|| {
            version += 1;
            let context = ChunkContext { dataset_id: 1, version, schema_hash: schema.hash() };
            ingest(csv.as_bytes(), &schema, context, keys, store.as_ref(), false, |_| {}).expect("ingest")
        })
    });

    let context = ChunkContext { dataset_id: 2, version: 1, schema_hash: schema.hash() };
    let report = ingest(csv.as_bytes(), &schema, context, keys, store.as_ref(), false, |_| {}).expect("ingest");
    let columns: Vec<String> = schema.columns.iter().map(|column| column.name.clone()).collect();
    // Plaintext bytes decoded per pass: 8 value bytes and 1 validity byte per cell.
    group.throughput(Throughput::Bytes((rows * columns.len() * 9) as u64));
    group.bench_function("decrypt + decode all 7 columns into batches", |bench| {
        bench.iter(|| {
            let key = master.unwrap_key(&report.wrapped_key, &context.key_context()).expect("unwrap");
            let reader =
                VersionReader::open(store.clone(), context, report.chunks, key, &schema, &columns).expect("open");
            let mut seen = 0;
            for batch in reader {
                seen += batch.expect("batch").rows;
            }
            assert_eq!(seen, rows);
        })
    });
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("decrypt + decode (rows)", |bench| {
        bench.iter(|| {
            let key = master.unwrap_key(&report.wrapped_key, &context.key_context()).expect("unwrap");
            VersionReader::open(store.clone(), context, report.chunks, key, &schema, &columns).expect("open").count()
        })
    });
    group.finish();
}

/// One side of the join bench: `rows` rows of (key, a number, a code), keys shuffled by
/// `stride` (coprime with `rows`), in sandbox batches.
fn join_side(rows: usize, stride: usize) -> Vec<sluice_sandbox::Batch> {
    use sluice_sandbox::{Batch, Column, ColumnValues};
    let keys: Vec<i64> = (0..rows).map(|index| ((index * stride) % rows) as i64 * 7 + 1_000_000_007).collect();
    keys.chunks(sluice_sandbox::abi::BATCH_ROWS)
        .map(|chunk| Batch {
            rows: chunk.len(),
            columns: vec![
                Column { values: ColumnValues::I64(chunk.to_vec()), valid: vec![true; chunk.len()] },
                Column {
                    values: ColumnValues::F64(chunk.iter().map(|key| (key % 977) as f64).collect()),
                    valid: vec![true; chunk.len()],
                },
                Column {
                    values: ColumnValues::I64(chunk.iter().map(|key| key % 5).collect()),
                    valid: vec![true; chunk.len()],
                },
            ],
        })
        .collect()
}

fn join(criterion: &mut Criterion) {
    use sluice_sandbox::ColumnType;
    use sluice_vault::join::{JoinKind, JoinPlan, JoinSide, join, join_many};
    let rows = 1_000_000;
    let left = join_side(rows, 1);
    let right = join_side(rows, 7_919);
    let dir = tempfile::tempdir().expect("tempdir");
    let types = vec![ColumnType::F64, ColumnType::Category];
    let side = |batches: &Vec<sluice_sandbox::Batch>| JoinSide {
        batches: batches.clone().into_iter().map(Ok),
        types: types.clone(),
    };

    let mut group = criterion.benchmark_group("join 1,000,000 × 1,000,000 rows");
    group.measurement_time(Duration::from_secs(10)).sample_size(10);
    group.throughput(Throughput::Elements((2 * rows) as u64));
    group.bench_function("baseline: the same rows handed over unjoined", |bench| {
        bench.iter(|| {
            let seen: usize = left.clone().into_iter().chain(right.clone()).map(|batch| black_box(batch).rows).sum();
            assert_eq!(seen, 2 * rows);
        })
    });
    for (name, memory_bytes, parallel) in [
        ("inner join, in memory (256 MiB budget), sides one after the other", 256 << 20, false),
        ("inner join, in memory (256 MiB budget), both sides at once", 256 << 20, true),
        ("inner join, spilled, sealed (16 MiB budget), sides one after the other", 16 << 20, false),
        ("inner join, spilled, sealed (16 MiB budget), both sides at once", 16 << 20, true),
    ] {
        let plan = JoinPlan { memory_bytes, parallel, ..JoinPlan::new(JoinKind::Inner, 1) };
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let mut joined = 0;
                join(side(&left), side(&right), &plan, dir.path(), |batch| {
                    joined += black_box(batch).rows;
                    Ok(())
                })
                .expect("joined");
                assert_eq!(joined, rows);
            })
        });
    }
    group.finish();

    // Three departments (seed 002 item 16): the first side left-joined to two others of one
    // row per key in one pass, against the same left join to one of them.
    let third = join_side(rows, 104_729);
    let mut group = criterion.benchmark_group("left join of 1,000,000 rows, in memory, both cores");
    group.measurement_time(Duration::from_secs(10)).sample_size(10);
    group.throughput(Throughput::Elements(rows as u64));
    let plan = JoinPlan::new(JoinKind::Left, 1);
    for (name, sides) in [("to one other dataset", 1), ("to two other datasets in one pass", 2)] {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let rights = [&right, &third][..sides].iter().map(|batches| side(batches)).collect();
                let mut joined = 0;
                join_many(side(&left), rights, &plan, dir.path(), |batch| {
                    joined += black_box(batch).rows;
                    Ok(())
                })
                .expect("joined");
                assert_eq!(joined, rows);
            })
        });
    }
    group.finish();
}

/// What checking and pseudonymising text codes costs an ingest: the tax bureau's records
/// keyed by unified social credit codes, against the same records keyed by integer ids.
fn pseudonymised_ingest(criterion: &mut Criterion) {
    let rows = 100_000;
    let (coded, _) = enterprise_csvs(rows, 9);
    let numbered: String = coded
        .lines()
        .enumerate()
        .map(|(index, line)| match (index, line.split_once(',')) {
            (0, _) | (_, None) => format!("{line}\n"),
            (_, Some((_, rest))) => format!("{index},{rest}\n"),
        })
        .collect();
    let coded_schema = DatasetSchema::from_toml(ENTERPRISE_TAX_SCHEMA).expect("schema");
    let numbered_schema =
        DatasetSchema::from_toml(&ENTERPRISE_TAX_SCHEMA.replace("pseudonym_of = \"uscc\"", "")).expect("schema");
    assert!(numbered_schema.key_format().is_none());
    let (master, pseudonyms, _dir, store) = vault_under_test();
    let keys = IngestKeys { master: &master, pseudonyms: &pseudonyms };
    let mut version = 0;
    let mut group = criterion.benchmark_group("ingest 100,000 enterprises");
    group.measurement_time(Duration::from_secs(5)).sample_size(20).throughput(Throughput::Elements(rows as u64));
    for (name, schema, csv) in [
        ("keyed by integer ids (baseline)", &numbered_schema, &numbered),
        ("keyed by unified social credit codes, pseudonymised", &coded_schema, &coded),
    ] {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                version += 1;
                let context = ChunkContext { dataset_id: 3, version, schema_hash: schema.hash() };
                ingest(csv.as_bytes(), schema, context, keys, store.as_ref(), false, |_| {}).expect("ingest")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, aead, ingest_and_read, pseudonymised_ingest, join);
criterion_main!(benches);

//! Audit log benchmarks: `cargo bench -p sluice --bench audit`.
//!
//! - durable appends: one entry per transaction into SQLite (WAL, synchronous=FULL), the
//!   way every audited action commits;
//! - offline verification of a 1,000,000-entry export: parse, canonical check, hash chain,
//!   content rules, Merkle root, checkpoint signature (goal: under 3 s).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_audit::{Act, AuditEvent, AuditOutcome, Detail, KeyTrust, LogWriter, SigningKey, verify_export};
use sluice_gateway::store::Store;

const ENTRIES: u64 = 1_000_000;

fn event(index: u64) -> AuditEvent {
    let mut event = AuditEvent::new(
        [Act::CatalogueRead, Act::BudgetRead, Act::ResultRead][(index % 3) as usize],
        format!("run:{index}"),
        AuditOutcome::Ok,
    )
    .detail(Detail::Authorisation, index % 97);
    event.actor_id = Some((index % 13) as i64);
    event.role = "operator".into();
    event.request_id = format!("{index:016x}");
    event
}

fn appends(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = runtime.block_on(Store::open_sqlite(&dir.path().join("bench.db"), true)).expect("store");
    let mut index = 0;
    let mut group = criterion.benchmark_group("audit");
    group.throughput(Throughput::Elements(1)).measurement_time(Duration::from_secs(5));
    group.bench_function("durable append (one transaction, synchronous=FULL)", |bench| {
        bench.iter(|| {
            index += 1;
            runtime.block_on(async {
                let mut tx = store.begin().await.expect("begin");
                Store::append_audit(&mut tx, event(index), time::OffsetDateTime::now_utc()).await.expect("append");
                tx.commit().await.expect("commit");
            })
        })
    });
    group.finish();
}

fn export(key: &SigningKey) -> String {
    let mut log = LogWriter::default();
    for index in 0..ENTRIES {
        log.append(event(index), "2026-11-23T12:00:00Z");
    }
    log.export(key)
}

fn verification(criterion: &mut Criterion) {
    let key = SigningKey::generate().expect("key");
    let text = export(&key);
    let public = key.public_key();
    let mut group = criterion.benchmark_group("audit");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(ENTRIES));
    group.bench_function("verify a 1,000,000-entry export offline", |bench| {
        bench.iter(|| {
            let summary = verify_export(&text, KeyTrust::Pinned(&public), None).expect("verifies");
            assert_eq!(summary.entries, ENTRIES);
        })
    });
    group.finish();
}

criterion_group!(benches, appends, verification);
criterion_main!(benches);

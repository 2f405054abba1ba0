//! Vault tests: round trips and the tampering the associated data must catch.

use super::*;

const SCHEMA: &str = r#"
name = "t"
privacy_unit = "row_per_person"
[[columns]]
name = "value"
type = "f64"
classification = 2
[[columns]]
name = "count"
type = "i64"
classification = 2
nullable = true
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    schema: DatasetSchema,
    master: AeadKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("blobs");
    Fixture {
        root,
        _dir: dir,
        schema: DatasetSchema::from_toml(SCHEMA).expect("valid"),
        master: AeadKey::generate().expect("key"),
    }
}

fn context(dataset_id: i64, fixture: &Fixture) -> ChunkContext {
    ChunkContext { dataset_id, version: 1, schema_hash: fixture.schema.hash() }
}

fn csv(rows: usize) -> String {
    let mut text = String::from("count,value\n");
    for row in 0..rows {
        let count = if row % 7 == 0 { String::new() } else { row.to_string() };
        text.push_str(&format!("{count},{}.5\n", row));
    }
    text
}

fn read_all(fixture: &Fixture, context: ChunkContext, report: &IngestReport) -> anyhow::Result<Vec<Batch>> {
    let key = fixture.master.unwrap_key(&report.wrapped_key, &context.key_context()).expect("unwrap");
    let columns = ["value".to_string(), "count".to_string()];
    VersionReader::open(&fixture.root, context, report.chunks, key, &fixture.schema, &columns)?.collect()
}

#[test]
fn ingest_round_trips_across_chunks() {
    let fixture = fixture();
    let context = context(1, &fixture);
    let rows = CHUNK_ROWS + 10;
    let report =
        ingest(csv(rows).as_bytes(), &fixture.schema, context, &fixture.master, &fixture.root, |_| {}).expect("ingest");
    assert_eq!((report.rows, report.chunks), (rows as u64, 2));
    let batches = read_all(&fixture, context, &report).expect("read");
    assert_eq!(batches.iter().map(|batch| batch.rows).sum::<usize>(), rows);
    let first = &batches[0];
    assert_eq!(first.columns[0].values, ColumnValues::F64((0..BATCH_ROWS).map(|row| row as f64 + 0.5).collect()));
    assert!(!first.columns[1].valid[0] && first.columns[1].valid[1]);
    assert_eq!(
        first.columns[1].values,
        ColumnValues::I64((0..BATCH_ROWS as i64).map(|row| if row % 7 == 0 { 0 } else { row }).collect())
    );
}

#[test]
fn tampering_is_refused() {
    let fixture = fixture();
    let context = context(1, &fixture);
    let report =
        ingest(csv(CHUNK_ROWS * 2 + 5).as_bytes(), &fixture.schema, context, &fixture.master, &fixture.root, |_| {})
            .expect("ingest");
    assert_eq!(report.chunks, 3);
    let dir = version_dir(&fixture.root, 1, 1);
    let chunk = |index: u64| chunk_path(&dir, index);
    let original: Vec<Vec<u8>> = (0..3).map(|index| fs::read(chunk(index)).expect("read")).collect();
    let restore = || {
        for (index, bytes) in original.iter().enumerate() {
            fs::write(chunk(index as u64), bytes).expect("restore");
        }
    };
    let expect_refused = |what: &str, report: &IngestReport, context: ChunkContext| {
        let error = read_all(&fixture, context, report).expect_err(what);
        let message = format!("{error:#}");
        assert!(message.contains("failed authentication") || message.contains("missing"), "{what}: {message}");
    };

    // A flipped bit anywhere in a chunk.
    for position in [0, 17, original[1].len() / 2, original[1].len() - 1] {
        let mut bytes = original[1].clone();
        bytes[position] ^= 0x01;
        fs::write(chunk(1), &bytes).expect("write");
        expect_refused("flipped bit", &report, context);
        restore();
    }
    // Two chunks swapped.
    fs::write(chunk(0), &original[1]).expect("write");
    fs::write(chunk(1), &original[0]).expect("write");
    expect_refused("swapped chunks", &report, context);
    restore();
    // Truncated: the last chunk removed and the count lowered to hide it.
    let truncated = IngestReport { chunks: 2, ..report.clone() };
    expect_refused("truncated", &truncated, context);
    // A chunk deleted outright.
    fs::remove_file(chunk(2)).expect("remove");
    expect_refused("deleted chunk", &report, context);
    restore();
    // Read under another dataset's identity: the associated data differs.
    let foreign = ChunkContext { dataset_id: 2, ..context };
    fs::create_dir_all(version_dir(&fixture.root, 2, 1)).expect("mkdir");
    for index in 0..3 {
        fs::copy(chunk(index), chunk_path(&version_dir(&fixture.root, 2, 1), index)).expect("copy");
    }
    let key = fixture.master.unwrap_key(&report.wrapped_key, &context.key_context()).expect("unwrap");
    let columns = ["value".to_string()];
    let mut reader = VersionReader::open(&fixture.root, foreign, 3, key, &fixture.schema, &columns).expect("open");
    assert!(reader.next().expect("one item").is_err(), "a chunk replayed into another dataset must fail");
    // Untouched, everything still reads.
    read_all(&fixture, context, &report).expect("intact");
}

#[test]
fn invalid_rows_store_nothing_and_are_reported_by_line_and_column() {
    let fixture = fixture();
    let mut text = csv(100);
    text.push_str("3,not-a-number\n");
    text.push_str("x,4.0\n");
    let error = ingest(text.as_bytes(), &fixture.schema, context(1, &fixture), &fixture.master, &fixture.root, |_| {})
        .expect_err("invalid");
    let IngestError::InvalidRows(rows) = &error else { panic!("{error}") };
    assert_eq!(rows[0], RowError { line: 102, column: "value".into(), problem: "is not a number".into() });
    assert_eq!(rows[1].line, 103);
    assert!(!error.to_string().contains("not-a-number"), "errors must not echo values");
    let leftovers: Vec<_> = fs::read_dir(&fixture.root)
        .expect("root")
        .flatten()
        .flat_map(|dataset| fs::read_dir(dataset.path()).expect("dir").flatten())
        .collect();
    assert!(leftovers.is_empty(), "nothing may be left behind: {leftovers:?}");

    let header_error =
        ingest("value\n1\n".as_bytes(), &fixture.schema, context(1, &fixture), &fixture.master, &fixture.root, |_| {})
            .expect_err("wrong header");
    assert!(header_error.to_string().contains("header has 1 columns"), "{header_error}");
}

#[test]
fn plaintext_never_reaches_the_blob_directory() {
    let fixture = fixture();
    let canary = "987654321.123";
    let text = format!("count,value\n1,{canary}\n2,{canary}\n");
    ingest(text.as_bytes(), &fixture.schema, context(1, &fixture), &fixture.master, &fixture.root, |_| {})
        .expect("ingest");
    let canary_bits = 987654321.123f64.to_le_bytes();
    for entry in fs::read_dir(version_dir(&fixture.root, 1, 1)).expect("dir").flatten() {
        let bytes = fs::read(entry.path()).expect("read");
        assert!(!bytes.windows(8).any(|window| window == canary_bits), "plaintext value found on disk");
        assert!(!bytes.windows(canary.len()).any(|window| window == canary.as_bytes()));
    }
}

//! Vault tests: round trips and the tampering the associated data must catch.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// The gateway's local store, as the vault sees it: a file per key under a directory (the
/// real one goes through `object_store`; these tests tamper with the files).
#[derive(Debug)]
struct DirChunks(PathBuf);

impl ChunkIo for DirChunks {
    fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let path = self.0.join(key);
        fs::create_dir_all(path.parent().expect("a key has a directory"))?;
        Ok(fs::write(path, bytes)?)
    }

    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match fs::read(self.0.join(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> anyhow::Result<u64> {
        let dir = self.0.join(prefix);
        let count = fs::read_dir(&dir).map(|entries| entries.count() as u64).unwrap_or(0);
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        Ok(count)
    }
}

fn version_dir(root: &Path, dataset_id: i64, version: i64) -> PathBuf {
    root.join(version_prefix(dataset_id, version))
}

fn chunk_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:08}.chunk"))
}

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
    /// A store of files under `root`, which the tests tamper with.
    store: Arc<DirChunks>,
    schema: DatasetSchema,
    master: AeadKey,
    pseudonyms: PseudonymKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("blobs");
    fs::create_dir_all(&root).expect("mkdir");
    Fixture {
        store: Arc::new(DirChunks(root.clone())),
        root,
        _dir: dir,
        schema: DatasetSchema::from_toml(SCHEMA).expect("valid"),
        master: AeadKey::generate().expect("key"),
        pseudonyms: PseudonymKey::generate().expect("key"),
    }
}

impl Fixture {
    fn keys(&self) -> IngestKeys<'_> {
        IngestKeys { master: &self.master, pseudonyms: &self.pseudonyms }
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
    VersionReader::open(fixture.store.clone(), context, report.chunks, key, &fixture.schema, &columns)?.collect()
}

#[test]
fn ingest_round_trips_across_chunks() {
    let fixture = fixture();
    let context = context(1, &fixture);
    let rows = CHUNK_ROWS + 10;
    let report =
        ingest(csv(rows).as_bytes(), &fixture.schema, context, fixture.keys(), fixture.store.as_ref(), false, |_| {})
            .expect("ingest");
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
fn a_split_reader_reads_the_same_batches_in_parts() {
    let fixture = fixture();
    let context = context(1, &fixture);
    let rows = 3 * CHUNK_ROWS + 10;
    let report =
        ingest(csv(rows).as_bytes(), &fixture.schema, context, fixture.keys(), fixture.store.as_ref(), false, |_| {})
            .expect("ingest");
    assert_eq!(report.chunks, 4);
    let whole = read_all(&fixture, context, &report).expect("read");
    let key = fixture.master.unwrap_key(&report.wrapped_key, &context.key_context()).expect("unwrap");
    let columns = ["value".to_string(), "count".to_string()];
    let open =
        || VersionReader::open(fixture.store.clone(), context, report.chunks, key.clone(), &fixture.schema, &columns);
    for parts in [1, 2, 3, 4, 9] {
        let readers = open().expect("open").split(parts);
        assert_eq!(readers.len(), parts.min(4), "{parts} parts");
        let joined: Vec<Batch> =
            readers.into_iter().flatten().collect::<anyhow::Result<_>>().expect("every part reads");
        assert_eq!(joined, whole, "{parts} parts read other batches");
    }
    // The last chunk is still authenticated as the last one when read alone: a part that
    // ends early cannot pass a truncated version off as whole.
    let last_part = open().expect("open").split(4).pop().expect("a part");
    assert_eq!(last_part.map(|batch| batch.expect("reads").rows).sum::<usize>(), 10);
}

#[test]
fn tampering_is_refused() {
    let fixture = fixture();
    let context = context(1, &fixture);
    let report = ingest(
        csv(CHUNK_ROWS * 2 + 5).as_bytes(),
        &fixture.schema,
        context,
        fixture.keys(),
        fixture.store.as_ref(),
        false,
        |_| {},
    )
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
    let mut reader =
        VersionReader::open(fixture.store.clone(), foreign, 3, key, &fixture.schema, &columns).expect("open");
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
    let error = ingest(
        text.as_bytes(),
        &fixture.schema,
        context(1, &fixture),
        fixture.keys(),
        fixture.store.as_ref(),
        false,
        |_| {},
    )
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

    let header_error = ingest(
        "value\n1\n".as_bytes(),
        &fixture.schema,
        context(1, &fixture),
        fixture.keys(),
        fixture.store.as_ref(),
        false,
        |_| {},
    )
    .expect_err("wrong header");
    assert!(header_error.to_string().contains("header has 1 columns"), "{header_error}");
}

#[test]
fn plaintext_never_reaches_the_blob_directory() {
    let fixture = fixture();
    let canary = "987654321.123";
    let text = format!("count,value\n1,{canary}\n2,{canary}\n");
    ingest(
        text.as_bytes(),
        &fixture.schema,
        context(1, &fixture),
        fixture.keys(),
        fixture.store.as_ref(),
        false,
        |_| {},
    )
    .expect("ingest");
    let canary_bits = 987654321.123f64.to_le_bytes();
    for entry in fs::read_dir(version_dir(&fixture.root, 1, 1)).expect("dir").flatten() {
        let bytes = fs::read(entry.path()).expect("read");
        assert!(!bytes.windows(8).any(|window| window == canary_bits), "plaintext value found on disk");
        assert!(!bytes.windows(canary.len()).any(|window| window == canary.as_bytes()));
    }
}

/// A small deterministic generator for the randomised tests below.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// Thousands of random mutations of sealed chunks — bit flips, byte overwrites,
/// truncations, extensions, swaps between positions — are all refused.
#[test]
fn random_mutations_of_sealed_chunks_are_all_refused() {
    let fixture = fixture();
    let context = context(1, &fixture);
    let report =
        ingest(csv(300).as_bytes(), &fixture.schema, context, fixture.keys(), fixture.store.as_ref(), false, |_| {})
            .expect("ingest");
    let dir = version_dir(&fixture.root, 1, 1);
    let path = chunk_path(&dir, 0);
    let original = fs::read(&path).expect("read");
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    for attempt in 0..3_000 {
        let mut bytes = original.clone();
        match attempt % 4 {
            0 => {
                let position = random.below(bytes.len());
                bytes[position] ^= 1 << random.below(8);
            }
            1 => {
                let position = random.below(bytes.len());
                bytes[position] = bytes[position].wrapping_add(1 + random.below(255) as u8);
            }
            2 => bytes.truncate(random.below(bytes.len())),
            _ => bytes.extend((0..1 + random.below(32)).map(|_| random.next() as u8)),
        }
        fs::write(&path, &bytes).expect("write");
        assert!(read_all(&fixture, context, &report).is_err(), "mutation {attempt} was accepted");
    }
    fs::write(&path, &original).expect("restore");
    read_all(&fixture, context, &report).expect("the original still reads");
}

/// Encoding then decoding a chunk gives back exactly the rows, for random shapes and
/// values, including NaN payloads, infinities, extremes and nulls.
#[test]
fn chunk_encoding_round_trips() {
    let mut random = Xorshift(42);
    for _ in 0..500 {
        let columns = 1 + random.below(8);
        let rows = random.below(300);
        let mut chunk = ColumnarRows::new(columns);
        let specials = [0u64, u64::MAX, f64::NAN.to_bits() | 0x1234, f64::INFINITY.to_bits(), i64::MIN as u64, 1];
        for _ in 0..rows {
            let fields: Vec<Field> = (0..columns)
                .map(|_| match random.below(4) {
                    0 => Field::Null,
                    1 => Field::I64(random.next() as i64),
                    2 => Field::F64(f64::from_bits(specials[random.below(specials.len())])),
                    _ => Field::F64(f64::from_bits(random.next())),
                })
                .collect();
            chunk.push(&fields);
        }
        let decoded = ColumnarRows::decode(&chunk.encode(), columns).expect("decodes");
        assert_eq!((decoded.rows, &decoded.values, &decoded.valid), (chunk.rows, &chunk.values, &chunk.valid));
        assert!(ColumnarRows::decode(&chunk.encode(), columns + 1).is_err(), "a wrong column count is refused");
    }
}

/// Regression: a dataset of exactly CHUNK_ROWS rows ends in an empty last chunk, which
/// decoding once refused by panicking.
#[test]
fn a_dataset_filling_whole_chunks_reads_back() {
    let fixture = fixture();
    let context = context(1, &fixture);
    let report = ingest(
        csv(CHUNK_ROWS).as_bytes(),
        &fixture.schema,
        context,
        fixture.keys(),
        fixture.store.as_ref(),
        false,
        |_| {},
    )
    .expect("ingest");
    assert_eq!(report.chunks, 2);
    let rows: usize = read_all(&fixture, context, &report).expect("reads").iter().map(|batch| batch.rows).sum();
    assert_eq!(rows, CHUNK_ROWS);
}

/// With a person-id column, a person's rows past the schema's maximum are refused (or left
/// out with `skip_invalid`), so every person's contribution is bounded.
#[test]
fn contributions_per_person_are_bounded_at_ingest() {
    let fixture = fixture();
    let schema = DatasetSchema::from_toml(
        &SCHEMA.replace("\"row_per_person\"", "{ person_id = \"person\", max_rows_per_person = 2 }").replace(
            "[[columns]]\nname = \"value\"",
            "[[columns]]\nname = \"person\"\ntype = \"i64\"\nclassification = 4\n\n[[columns]]\nname = \"value\"",
        ),
    )
    .expect("schema");
    assert_eq!(schema.rows_per_person(), 2);
    let csv = "person,value,count\n1,1.0,1\n1,2.0,1\n2,3.0,1\n1,4.0,1\n";
    let context = ChunkContext { dataset_id: 1, version: 1, schema_hash: schema.hash() };
    let error = ingest(csv.as_bytes(), &schema, context, fixture.keys(), fixture.store.as_ref(), false, |_| {})
        .expect_err("third row");
    let IngestError::InvalidRows(rows) = error else { panic!("{error}") };
    assert_eq!((rows[0].line, rows[0].column.as_str()), (5, "person"));
    let report =
        ingest(csv.as_bytes(), &schema, context, fixture.keys(), fixture.store.as_ref(), true, |_| {}).expect("skips");
    assert_eq!((report.rows, report.skipped), (3, 1));
}

const ENTERPRISES: &str = r#"
name = "e"
privacy_unit = { person_id = "code", max_rows_per_person = 1 }
[[columns]]
name = "code"
type = "i64"
classification = 4
pseudonym_of = "uscc"
[[columns]]
name = "value"
type = "f64"
classification = 2
"#;

/// Reads the key column back: what a join compares.
fn stored_keys(fixture: &Fixture, schema: &DatasetSchema, csv: &str, pseudonyms: &PseudonymKey) -> Vec<i64> {
    let context = ChunkContext { dataset_id: 7, version: 1, schema_hash: schema.hash() };
    let report = ingest(
        csv.as_bytes(),
        schema,
        context,
        IngestKeys { master: &fixture.master, pseudonyms },
        fixture.store.as_ref(),
        false,
        |_| {},
    )
    .expect("ingest");
    let key = fixture.master.unwrap_key(&report.wrapped_key, &context.key_context()).expect("unwrap");
    let reader = VersionReader::open(fixture.store.clone(), context, report.chunks, key, schema, &["code".to_string()])
        .expect("open");
    let mut keys = Vec::new();
    for batch in reader {
        let ColumnValues::I64(values) = &batch.expect("reads").columns[0].values else { panic!("an i64 column") };
        keys.extend(values);
    }
    keys
}

/// Codes are stored as keyed pseudonyms: two departments' copies of one code (in any
/// spelling) store the same value under one deployment's secret and different values under
/// another's; a malformed code is refused by line and column without its value; neither a
/// code nor its digits reach the sealed chunks.
#[test]
fn text_codes_are_stored_as_pseudonyms_shared_across_datasets_and_never_as_written() {
    let fixture = fixture();
    let schema = DatasetSchema::from_toml(ENTERPRISES).expect("schema");
    let tax = "code,value\n91350100M000100Y43,1.0\n91110000802100433B,2.0\n";
    let insured = "value,code\n3.0, 91110000802100433b \n4.0,91350100M000100Y43\n";
    let tax_keys = stored_keys(&fixture, &schema, tax, &fixture.pseudonyms);
    for chunk in fs::read_dir(version_dir(&fixture.root, 7, 1)).expect("dir").flatten() {
        let bytes = fs::read(chunk.path()).expect("read");
        for needle in [&b"91350100M000100Y43"[..], b"M000100Y", &tax_keys[0].to_le_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle),
                "a code or its pseudonym in the clear"
            );
        }
    }
    let mut insured_keys = stored_keys(&fixture, &schema, insured, &fixture.pseudonyms);
    insured_keys.reverse();
    assert_eq!(tax_keys, insured_keys, "one code, one pseudonym, whichever department holds it");
    assert_eq!(tax_keys[0], fixture.pseudonyms.pseudonym("91350100M000100Y43").value);
    let elsewhere = PseudonymKey::generate().expect("key");
    let other_keys = stored_keys(&fixture, &schema, tax, &elsewhere);
    assert!(other_keys.iter().all(|key| !tax_keys.contains(key)), "another deployment's pseudonyms differ");

    let bad = "code,value\n91350100M000100Y44,1.0\n";
    let context = ChunkContext { dataset_id: 8, version: 1, schema_hash: schema.hash() };
    let error = ingest(bad.as_bytes(), &schema, context, fixture.keys(), fixture.store.as_ref(), false, |_| {})
        .expect_err("wrong check character");
    let IngestError::InvalidRows(rows) = &error else { panic!("{error}") };
    assert_eq!((rows[0].line, rows[0].column.as_str()), (2, "code"));
    assert!(rows[0].problem.contains("check character"), "{error}");
    assert!(!error.to_string().contains("M000100Y"), "errors must not echo codes: {error}");

    // The same code twice is two rows of one enterprise: past its bound.
    let twice = "code,value\n91350100M000100Y43,1.0\n91350100m000100y43,2.0\n";
    let error = ingest(twice.as_bytes(), &schema, context, fixture.keys(), fixture.store.as_ref(), false, |_| {})
        .expect_err("one row per enterprise");
    assert!(error.to_string().contains("line 3, column `code` adds a row past the 1"), "{error}");
}

/// Two different codes with one 64-bit pseudonym are refused, not merged into one person.
#[test]
fn a_pseudonym_collision_is_refused_rather_than_merged() {
    let schema = DatasetSchema::from_toml(ENTERPRISES).expect("schema");
    let mut contributions = Contributions::new(&schema);
    let fields = [Field::I64(42), Field::F64(1.0)];
    contributions.admit(&fields, 7, 2).expect("first code");
    let error = contributions.admit(&fields, 8, 3).expect_err("another code, same pseudonym");
    assert_eq!((error.line, error.column.as_str()), (3, "code"));
    assert!(error.problem.contains("same 64-bit pseudonym"), "{}", error.problem);
}

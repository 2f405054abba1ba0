//! `sluice-bench`: the end-to-end benchmark of the reference job at one dataset size.
//! `bench/run.sh` calls it for each size, runs the Python peer on the same CSV and prints
//! the table; see the `bench/` section of ARCHITECTURE.md.
//!
//! In one process, on a fresh data directory: generate the synthetic vehicles CSV
//! (deterministic), set up the scenario through the API (organisations, principals under
//! the two-person rule, dataset, application and both reviews, the reference model and
//! its review), then measure, each with its own peak RSS:
//! - `ingest`: the provider's upload, sealed into AES-256-GCM chunks;
//! - `run`: `POST /v1/runs` as the operator sees it (authorise, charge, decrypt, sandbox,
//!   DP release, audit, receipt), answered at its `visible_at`, whose delay is reported;
//! - `work`: the same decryption, sandbox and release without the API, the ledger or the
//!   visibility delay (what the run's cores spend);
//! - `floor`: decrypting the same chunks and computing the job natively, without sandbox
//!   or DP, on one core;
//! - `joined`: the inclusive-finance job (the enterprise-credit example) over as many
//!   enterprises, the tax bureau's and the social-insurance bureau's datasets joined inside
//!   the host (`work_s`: decrypt both, join, sandbox, release), against the same job over
//!   one table holding the same rows already joined (`prejoined_work_s`), and the joined
//!   run through the API (`run_s`, answered at its visibility time).
//!
//! It prints one JSON object. It must not be used as a test: times are measured, never
//! asserted.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sluice::client::InProcessClient;
use sluice::examples::{
    ENTERPRISE_TAX_SCHEMA, EXAMPLE_MODELS, SOCIAL_INSURANCE_SCHEMA, VEHICLE_RISK_WASM, VEHICLES_SCHEMA,
    enterprise_csvs, write_vehicles_csv,
};
use sluice_bench::{REFERENCE_MANIFEST, approve_model, scenario};
use sluice_gateway::api::router;
use sluice_gateway::config::Config;
use sluice_gateway::runner::{JoinLayout, ReleaseFacts, run_and_release, run_joined_and_release, run_parts};
use sluice_gateway::service::{App, Clock};
use sluice_sandbox::{ColumnValues, Manifest, Runtime, RuntimeLimits};
use sluice_vault::chunks::{ChunkContext, VersionReader};
use sluice_vault::schema::DatasetSchema;
use time::OffsetDateTime;

#[path = "../../examples/models/vehicle-risk/src/score.rs"]
mod score;

const SEED: u64 = 2026;

struct Args {
    rows: usize,
    /// Where the CSV is (generated there if missing), so the peer reads the same bytes.
    csv: Option<PathBuf>,
    /// Where the data directory goes (a temporary directory under it).
    work_dir: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args { rows: 0, csv: None, work_dir: std::env::temp_dir() };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => args.rows = value()?.parse().context("--rows is a whole number")?,
            "--csv" => args.csv = Some(value()?.into()),
            "--work-dir" => args.work_dir = value()?.into(),
            other => bail!("unknown argument {other}; usage: sluice-bench --rows N [--csv PATH] [--work-dir DIR]"),
        }
    }
    if args.rows == 0 {
        bail!("usage: sluice-bench --rows N [--csv PATH] [--work-dir DIR]");
    }
    Ok(args)
}

/// Resets the process's peak resident set size (Linux: `clear_refs` 5), so each phase
/// reports its own.
fn reset_peak() {
    // On a kernel without it the peaks only grow: reported as measured.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last reset, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

/// The native floor: decrypt the same chunks on one core and compute the job per district
/// without sandbox or noise. Returns the per-district high-risk counts (so the work is not
/// optimised away).
fn floor(reader: VersionReader) -> anyhow::Result<Vec<f64>> {
    let mut high_risk = vec![0.0; 64];
    let mut scores = vec![0.0; 64];
    let mut claims = vec![0.0; 64];
    for batch in reader {
        let batch = batch?;
        let [age, violations, accidents, value, district] = &batch.columns[..] else {
            bail!("five columns expected");
        };
        let (ColumnValues::F64(age), ColumnValues::I64(violations), ColumnValues::I64(accidents)) =
            (&age.values, &violations.values, &accidents.values)
        else {
            bail!("column types");
        };
        let (ColumnValues::F64(value), ColumnValues::I64(district)) = (&value.values, &district.values) else {
            bail!("column types");
        };
        for row in 0..batch.rows {
            let [risk, score, claim] =
                score::score(age[row], violations[row] as f64, accidents[row] as f64, value[row], f64::exp);
            let group = (district[row].clamp(0, 63)) as usize;
            high_risk[group] += risk;
            scores[group] += score.clamp(0.0, 1.0);
            claims[group] += claim.clamp(0.0, 20_000.0);
        }
    }
    Ok(high_risk.iter().zip(&scores).zip(&claims).map(|((a, b), c)| a + b + c).collect())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    std::fs::create_dir_all(&args.work_dir).with_context(|| format!("creating {}", args.work_dir.display()))?;
    let dir = tempfile::tempdir_in(&args.work_dir).context("a temporary directory")?;
    let csv = args.csv.clone().unwrap_or_else(|| dir.path().join("vehicles.csv"));
    if !csv.exists() {
        let started = Instant::now();
        let mut out = BufWriter::new(std::fs::File::create(&csv).with_context(|| format!("{}", csv.display()))?);
        write_vehicles_csv(&mut out, args.rows, SEED)?;
        out.flush()?;
        eprintln!("generated {} rows in {:.1}s", args.rows, started.elapsed().as_secs_f64());
    }
    let result = measure(&args, dir.path(), &csv).await?;
    println!("{result}");
    Ok(())
}

async fn measure(args: &Args, dir: &Path, csv: &Path) -> anyhow::Result<Value> {
    let data = dir.join("data");
    let config = Config::new(&data);
    config.data_dir.init(true, &config.database, &config.objects).await?;
    let chunks: std::sync::Arc<dyn sluice_vault::ChunkIo> =
        std::sync::Arc::new(sluice_gateway::chunk_store::ChunkStore::open(&config.objects)?);
    let master_key = config.data_dir.master_key();
    let app = App::open(config, Clock::System).await?;
    let api = InProcessClient::new(router(app.clone()));
    let scenario = scenario(&app, &api).await?;

    // Ingest.
    let provider =
        app.authenticate(Some(&scenario.provider), "bench").await.map_err(|error| anyhow::anyhow!("{error}"))?;
    let file = std::fs::File::open(csv).with_context(|| format!("{}", csv.display()))?;
    reset_peak();
    let started = Instant::now();
    let ingested = app
        .ingest(&provider, scenario.dataset_id, std::io::BufReader::new(file), false, |_| {})
        .await
        .map_err(|error| anyhow::anyhow!("ingest: {error}"))?;
    let ingest_s = started.elapsed().as_secs_f64();
    let ingest_mib = peak_mib();
    if ingested.rows as usize != args.rows {
        bail!("ingested {} rows of {}", ingested.rows, args.rows);
    }

    let (authorisation_id, model_id) = approve_model(&api, &scenario, REFERENCE_MANIFEST).await?;

    // The run, as the operator sees it.
    let operator =
        app.authenticate(Some(&scenario.operator), "bench").await.map_err(|error| anyhow::anyhow!("{error}"))?;
    reset_peak();
    let started_at = OffsetDateTime::now_utc();
    let started = Instant::now();
    let run = app.run(&operator, authorisation_id, model_id).await.map_err(|error| anyhow::anyhow!("run: {error}"))?;
    let run_s = started.elapsed().as_secs_f64();
    let run_mib = peak_mib();
    let visible_at = run.visible_at.map(sluice_gateway::timestamp::Timestamp::time);
    let delay_s = visible_at.map_or(f64::NAN, |at| (at - started_at).as_seconds_f64());

    // The same work without the API: decrypt, sandbox, release.
    let facts = app.store().run_facts(authorisation_id, model_id).await?;
    let version = facts.version.context("the ingested version")?;
    let schema = DatasetSchema::from_toml(VEHICLES_SCHEMA).map_err(|error| anyhow::anyhow!("{error}"))?;
    let context =
        ChunkContext { dataset_id: version.dataset_id.0, version: version.version, schema_hash: schema.hash() };
    let master = sluice_vault::keys::read_key_file(&master_key)?;
    let key =
        master.unwrap_key(&version.wrapped_key, &context.key_context()).map_err(|_| anyhow::anyhow!("data key"))?;
    let manifest = Manifest::from_toml(REFERENCE_MANIFEST).map_err(|error| anyhow::anyhow!("{error}"))?;
    let columns: Vec<String> = manifest.inputs().iter().map(|input| input.name.clone()).collect();
    let open =
        || VersionReader::open(chunks.clone(), context, version.chunk_count as u64, key.clone(), &schema, &columns);
    let runtime = Runtime::new(RuntimeLimits::default())?;
    let compiled = runtime.compile(VEHICLE_RISK_WASM, manifest)?;
    let release_facts = ReleaseFacts::new(compiled.manifest(), &schema, args.rows, 10);
    let parts = run_parts(runtime.limits().workers_per_run, version.chunk_count);
    reset_peak();
    let started = Instant::now();
    run_and_release(&runtime, &compiled, open()?.split(parts), &release_facts)
        .map_err(|error| anyhow::anyhow!("work: {error}"))?;
    let work_s = started.elapsed().as_secs_f64();
    let work_mib = peak_mib();

    // The floor.
    reset_peak();
    let started = Instant::now();
    // On a blocking thread: the chunk store's synchronous reads may not block the runtime.
    let reader = open()?;
    let checksum = tokio::task::spawn_blocking(move || floor(reader)).await.context("the floor panicked")??;
    let floor_s = started.elapsed().as_secs_f64();
    let floor_mib = peak_mib();
    std::hint::black_box(checksum);

    let joined = joined(&app, &api, &scenario, &chunks, &master_key, args.rows).await?;

    Ok(json!({
        "joined": joined,
        "rows": args.rows,
        "chunks": version.chunk_count,
        "parts": parts,
        "ingest_s": ingest_s, "ingest_peak_mib": ingest_mib,
        "run_s": run_s, "run_delay_s": delay_s, "run_peak_mib": run_mib,
        "work_s": work_s, "work_peak_mib": work_mib,
        "floor_s": floor_s, "floor_peak_mib": floor_mib,
        "released_outputs": run.outputs.len(),
    }))
}

/// The social-insurance bureau's columns, as a table already joined to the tax bureau's
/// holds them (null where an enterprise has no account): the baseline's schema.
const PREJOINED_COLUMNS: &str = r#"
[[columns]]
name = "employees"
type = "i64"
classification = 2
nullable = true
lower = 0.0
upper = 20000.0

[[columns]]
name = "social_insurance_arrears_months"
type = "i64"
classification = 3
nullable = true
lower = 0.0
upper = 60.0
"#;

/// The two departments' CSVs joined outside Sluice (what the platform exists to avoid):
/// the baseline the join is measured against.
fn prejoined_csv(tax: &str, insurance: &str) -> String {
    let accounts: std::collections::HashMap<&str, &str> =
        insurance.lines().skip(1).filter_map(|line| line.split_once(',')).collect();
    let mut out = String::with_capacity(tax.len() + tax.len() / 4);
    for (index, line) in tax.lines().enumerate() {
        out.push_str(line);
        if index == 0 {
            out.push_str(",employees,social_insurance_arrears_months");
        } else {
            let code = line.split_once(',').map_or("", |(code, _)| code);
            out.push(',');
            out.push_str(accounts.get(code).copied().unwrap_or(","));
        }
        out.push('\n');
    }
    out
}

/// A data key unwrapped under the master key, and the reader of `columns` of `version`.
fn reader(
    chunks: &std::sync::Arc<dyn sluice_vault::ChunkIo>,
    master: &sluice_vault::keys::AeadKey,
    version: &sluice_gateway::store::VersionRow,
    schema: &DatasetSchema,
    columns: &[String],
) -> anyhow::Result<VersionReader> {
    let context =
        ChunkContext { dataset_id: version.dataset_id.0, version: version.version, schema_hash: schema.hash() };
    let key =
        master.unwrap_key(&version.wrapped_key, &context.key_context()).map_err(|_| anyhow::anyhow!("data key"))?;
    VersionReader::open(chunks.clone(), context, version.chunk_count as u64, key, schema, columns)
}

/// The joined scenario at `rows` enterprises: set up through the API (two departments'
/// datasets and a table of the same rows already joined, their applications with every
/// department's review, the enterprise-credit model), then the joined work against the
/// pre-joined work, each with its peak RSS, and the joined run as the operator sees it.
async fn joined(
    app: &std::sync::Arc<App>,
    api: &InProcessClient,
    scenario: &sluice_bench::Scenario,
    chunks: &std::sync::Arc<dyn sluice_vault::ChunkIo>,
    master_key: &Path,
    rows: usize,
) -> anyhow::Result<Value> {
    let (tax, insurance) = enterprise_csvs(rows, SEED);
    let prejoined = prejoined_csv(&tax, &insurance);
    let prejoined_schema = ENTERPRISE_TAX_SCHEMA.replace("zunyi-enterprise-tax", "bench-prejoined") + PREJOINED_COLUMNS;
    let mut datasets = Vec::new();
    for (token, schema, csv) in [
        (&scenario.tax_provider, ENTERPRISE_TAX_SCHEMA, tax),
        (&scenario.insurance_provider, SOCIAL_INSURANCE_SCHEMA, insurance),
        (&scenario.tax_provider, prejoined_schema.as_str(), prejoined),
    ] {
        let dataset =
            api.post("/v1/datasets", token, &json!({"schema": schema, "epsilon_total": 1000.0})).await.ok()?;
        let id = dataset["id"].as_i64().context("dataset id")?;
        let provider = app.authenticate(Some(token), "bench").await.map_err(|error| anyhow::anyhow!("{error}"))?;
        app.ingest(
            &provider,
            sluice_gateway::ids::DatasetId(id),
            std::io::Cursor::new(csv.into_bytes()),
            false,
            |_| {},
        )
        .await
        .map_err(|error| anyhow::anyhow!("ingest: {error}"))?;
        datasets.push(id);
    }
    let model = EXAMPLE_MODELS.iter().find(|model| model.name == "enterprise-credit").context("example")?;
    let now = OffsetDateTime::now_utc();
    let mut authorised = Vec::new();
    for (dataset, join, reviewers) in [
        (
            datasets[0],
            Some(json!({"dataset_id": datasets[1], "columns": ["employees", "social_insurance_arrears_months"]})),
            vec![&scenario.tax_reviewer, &scenario.insurance_reviewer],
        ),
        (datasets[2], None, vec![&scenario.tax_reviewer]),
    ] {
        let mut columns = vec!["industry", "years_operating", "annual_tax_paid_cny", "tax_violation"];
        if join.is_none() {
            columns.extend(["employees", "social_insurance_arrears_months"]);
        }
        let application = api
            .post(
                "/v1/applications",
                &scenario.operator,
                &json!({
                    "dataset_id": dataset, "purpose": "benchmark", "use_scope": "benchmark",
                    "security_measures": "sandbox", "epsilon": 1000.0, "columns": columns, "join": join,
                    "valid_from": sluice_bench::time(now - time::Duration::hours(1)),
                    "valid_until": sluice_bench::time(now + time::Duration::days(1)),
                }),
            )
            .await
            .ok()?;
        let reviews = format!("/v1/applications/{}/reviews", application["id"]);
        let mut outcome = api.post(&reviews, &scenario.bureau, &json!({"approve": true})).await.ok()?;
        for reviewer in reviewers {
            outcome = api.post(&reviews, reviewer, &json!({"approve": true})).await.ok()?;
        }
        let authorisation = outcome["authorisation_id"].as_i64().context("authorisation id")?;
        let model_id = sluice::demo::submit_approved_model(
            api,
            &scenario.operator,
            &scenario.bureau,
            authorisation,
            model.wasm,
            model.manifest,
        )
        .await?;
        authorised.push((authorisation, model_id));
    }

    let master = sluice_vault::keys::read_key_file(master_key)?;
    let runtime = Runtime::new(RuntimeLimits::default())?;
    let manifest = Manifest::from_toml(model.manifest).map_err(|error| anyhow::anyhow!("{error}"))?;
    let compiled = runtime.compile(model.wasm, manifest)?;
    let schema_of = |text: &str| DatasetSchema::from_toml(text).map_err(|error| anyhow::anyhow!("{error}"));
    let (tax_schema, insurance_schema) = (schema_of(ENTERPRISE_TAX_SCHEMA)?, schema_of(SOCIAL_INSURANCE_SCHEMA)?);
    let view = tax_schema.joined(&insurance_schema).map_err(|error| anyhow::anyhow!("{error}"))?;
    let facts = app
        .store()
        .run_facts(sluice_gateway::ids::AuthorisationId(authorised[0].0), sluice_gateway::ids::ModelId(authorised[0].1))
        .await?;
    let insurance_version = facts.joined.into_iter().next().and_then(|(_, version)| version);
    let (tax_version, insurance_version) =
        (facts.version.context("tax version")?, insurance_version.context("social-insurance version")?);
    let layout = JoinLayout::new(compiled.manifest(), &tax_schema, &[&insurance_schema])
        .context("the model's columns split between the two")?;
    let release_facts = ReleaseFacts::new(compiled.manifest(), &view, rows, 10);
    reset_peak();
    let started = Instant::now();
    let first = sluice_vault::join::JoinSide {
        batches: reader(chunks, &master, &tax_version, &tax_schema, &layout.first_columns)?,
        types: JoinLayout::types(&layout.first_columns, &tax_schema),
    };
    let other = sluice_vault::join::JoinSide {
        batches: reader(chunks, &master, &insurance_version, &insurance_schema, &layout.joined_columns[0])?,
        types: JoinLayout::types(&layout.joined_columns[0], &insurance_schema),
    };
    run_joined_and_release(&runtime, &compiled, first, vec![other], &layout, &release_facts)
        .map_err(|error| anyhow::anyhow!("joined work: {error}"))?;
    let work_s = started.elapsed().as_secs_f64();
    let work_mib = peak_mib();

    let prejoined = app
        .store()
        .run_facts(sluice_gateway::ids::AuthorisationId(authorised[1].0), sluice_gateway::ids::ModelId(authorised[1].1))
        .await?
        .version
        .context("pre-joined version")?;
    let prejoined_schema = schema_of(&prejoined_schema)?;
    let columns: Vec<String> = compiled.manifest().inputs().iter().map(|input| input.name.clone()).collect();
    let parts = run_parts(runtime.limits().workers_per_run, prejoined.chunk_count);
    reset_peak();
    let started = Instant::now();
    let prejoined_reader = reader(chunks, &master, &prejoined, &prejoined_schema, &columns)?;
    run_and_release(&runtime, &compiled, prejoined_reader.split(parts), &release_facts)
        .map_err(|error| anyhow::anyhow!("pre-joined work: {error}"))?;
    let prejoined_work_s = started.elapsed().as_secs_f64();
    let prejoined_work_mib = peak_mib();

    let operator =
        app.authenticate(Some(&scenario.operator), "bench").await.map_err(|error| anyhow::anyhow!("{error}"))?;
    let started = Instant::now();
    let run = app
        .run(
            &operator,
            sluice_gateway::ids::AuthorisationId(authorised[0].0),
            sluice_gateway::ids::ModelId(authorised[0].1),
        )
        .await
        .map_err(|error| anyhow::anyhow!("joined run: {error}"))?;
    let run_s = started.elapsed().as_secs_f64();
    if run.rows as usize != rows {
        bail!("the joined run mapped {} rows of {rows}", run.rows);
    }
    Ok(json!({
        "insured": insurance_version.row_count,
        "work_s": work_s, "work_peak_mib": work_mib,
        "prejoined_work_s": prejoined_work_s, "prejoined_parts": parts, "prejoined_work_peak_mib": prejoined_work_mib,
        "run_s": run_s,
    }))
}

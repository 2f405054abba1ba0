//! The `sluice` command line: argument parsing and glue, nothing else.
//!
//! Each subcommand parses its input into validated values and calls the library. Errors
//! print as one line with their context chain and exit non-zero. It must not contain
//! business logic.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use sluice_audit::tool::{Verdict, verify_export_file, verify_receipt_file};
use sluice_gateway::config::Config;
use sluice_gateway::runner::{CheckReport, check};
use sluice_gateway::service::AuditQuery;
use sluice_gateway::service::{App, Clock};

use crate::remote::{self, Connection, Remote};

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "A trusted development sandbox for public data: usable, not visible")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: database, master key, audit signing key, first admin.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// The database: `postgres://…` for PostgreSQL (its tables are created; the data
        /// directory keeps the keys); default the data directory's SQLite file. Overrides
        /// `$SLUICE_DATABASE_URL` and the settings file's `database_url`.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Where sealed chunks are kept: `s3://bucket/prefix?endpoint=URL&region=NAME` for an
        /// S3-compatible store (it must be empty; credentials from `$AWS_ACCESS_KEY_ID` and
        /// `$AWS_SECRET_ACCESS_KEY`), or a directory; default the data directory's `blobs/`.
        /// Overrides `$SLUICE_OBJECTS_URL` and the settings file's `objects_url`.
        #[arg(long, value_name = "URL")]
        objects: Option<String>,
    },
    /// Start the HTTP gateway.
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The database, as for `init` (every node of one platform names the same one).
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// The object store, as for `init` (every node of one platform names the same one).
        #[arg(long, value_name = "URL")]
        objects: Option<String>,
        /// A settings file (TOML); default `DATA_DIR/sluice.toml` when it exists. The
        /// environment overrides it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the whole lifecycle end to end in a temporary directory.
    Demo {
        /// Keep the demo's data directory here instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Audit log tools for regulators.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write a new model crate for a dataset schema (it builds and passes `dev check` as it is).
    New {
        /// The model's name: a-z, 0-9 and `-`; also the directory created.
        name: String,
        /// The dataset schema the model is written for.
        #[arg(long)]
        schema: PathBuf,
        /// Where to create the crate's directory.
        #[arg(long, default_value = ".")]
        directory: PathBuf,
    },
    /// The operator's development loop: static review and runs on dummy data.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Dataset tools that need no server.
    Dataset {
        #[command(subcommand)]
        command: DatasetCommand,
    },
    /// Administrators, created at the host (the trust root the API's two-person rule
    /// starts from).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Master key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Example files for the README walkthrough.
    Examples {
        #[command(subcommand)]
        command: ExamplesCommand,
    },
    /// Save a gateway's URL and your token as a profile for the client commands below. The
    /// token is read from `--token`, `$SLUICE_TOKEN` or the first line of standard input.
    Login {
        #[arg(long)]
        server: String,
        #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, env = "SLUICE_PROFILE", default_value = "default")]
        profile: String,
    },
    /// Apply for a scenario: submit the application a TOML or JSON file describes (the fields
    /// of `POST /v1/applications`).
    Apply {
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Models on a gateway: submit one for review, see its review state.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run an approved model under an authorisation and print its release; `run wait ID`
    /// waits for a run started elsewhere.
    #[command(args_conflicts_with_subcommands = true)]
    Run {
        #[command(subcommand)]
        command: Option<RunCommand>,
        #[arg(long, required = true)]
        authorisation: Option<u64>,
        #[arg(long, required = true)]
        model: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// A run's stored result, with its receipt (`--json` to save it for verifying).
    Result {
        run: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// An authorisation's privacy budget: ε spent and left, and its dataset's.
    Budget {
        authorisation: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Release receipts, checked offline (the same check as `sluice audit verify-receipt`).
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ReceiptCommand {
    /// Verify a receipt (or a run result holding one, as `sluice result --json` writes it)
    /// against the public key you pinned: the checkpoint's signature and the inclusion proof.
    Verify {
        receipt: PathBuf,
        #[arg(long)]
        public_key: String,
    },
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Upload a module and its manifest for review under an authorisation (read from files,
    /// sent with a progress bar; nothing passes through the command line).
    Submit {
        #[arg(long)]
        authorisation: u64,
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        manifest: PathBuf,
    },
    /// A model's review state.
    Status { id: u64 },
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    /// Wait until a run has ended, then print it.
    Wait {
        run: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

/// `sluice audit search`'s flags: the service's `AuditQuery`, every field optional.
#[derive(Debug, Clone, Default, clap::Args)]
struct AuditSearchArgs {
    #[arg(long)]
    actor_id: Option<i64>,
    #[arg(long)]
    action: Option<String>,
    /// Prefix match on the object, e.g. `authorisation:3` or `dataset:`.
    #[arg(long)]
    object: Option<String>,
    /// ok, denied or failed.
    #[arg(long)]
    outcome: Option<String>,
    /// RFC 3339 bounds on the entry's time.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// Entries whose details or object name this authorisation.
    #[arg(long)]
    authorisation: Option<i64>,
    /// Entries whose details or object name this dataset.
    #[arg(long)]
    dataset: Option<i64>,
    #[arg(long)]
    limit: Option<usize>,
}

impl From<AuditSearchArgs> for AuditQuery {
    fn from(args: AuditSearchArgs) -> Self {
        AuditQuery {
            actor_id: args.actor_id,
            action: args.action,
            object: args.object,
            outcome: args.outcome,
            since: args.since,
            until: args.until,
            authorisation: args.authorisation,
            dataset: args.dataset,
            limit: args.limit,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an audit export offline: every leaf, the Merkle root, the signed checkpoint.
    Verify {
        export: PathBuf,
        /// The public key you pinned out of band (base64, from `GET /v1/audit/public-key`).
        #[arg(long, required_unless_present = "trust_embedded_key", conflicts_with = "trust_embedded_key")]
        public_key: Option<String>,
        /// Use the key the export names instead: checks only that the log is consistent with
        /// itself (a re-signed forgery passes), and says so.
        #[arg(long)]
        trust_embedded_key: bool,
        /// A checkpoint you kept from before (a file holding the signed note): the export
        /// must extend it, so a rolled-back or rewritten log is caught.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// Require a checkpoint cosigned by this witness (its C2SP vkey); repeat for more.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
    },
    /// A witness on the regulator's own machine: keeps the latest checkpoint it saw, checks
    /// each new one extends it, and cosigns it (C2SP tlog-witness / tlog-cosignature).
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Export the log (entries and signed checkpoints) as a regulator, for `audit verify`.
    Export {
        #[command(flatten)]
        acting: Acting,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Search the log as a regulator; prints matching entries as JSON lines.
    Search {
        #[command(flatten)]
        acting: Acting,
        #[command(flatten)]
        query: AuditSearchArgs,
    },
    /// Verify a release receipt offline: the checkpoint signature and the inclusion proof.
    VerifyReceipt {
        /// A file holding the receipt (JSON), or a run result that contains one.
        receipt: PathBuf,
        /// The public key you pinned (base64).
        #[arg(long)]
        public_key: String,
    },
}

#[derive(Debug, clap::Args)]
struct ModelFiles {
    /// The WebAssembly module.
    #[arg(long)]
    model: PathBuf,
    /// The model's manifest (TOML).
    #[arg(long)]
    manifest: PathBuf,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Run the server's static review on a model (and its columns against a schema).
    Check {
        #[command(flatten)]
        files: ModelFiles,
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Another department's dataset schema joined to `--schema` on their ids, as an
        /// authorisation joining them would have it; repeat it for a third department's, and so on.
        #[arg(long, requires = "schema")]
        join: Vec<PathBuf>,
    },
    /// Run a model on dummy rows made from a schema, with the server's limits and release.
    Run {
        #[command(flatten)]
        files: ModelFiles,
        #[arg(long)]
        schema: PathBuf,
        /// Another department's dataset schema joined to `--schema` on their ids (repeat it
        /// for more): the dummy rows follow the joined schema (the joined columns are
        /// sometimes null).
        #[arg(long)]
        join: Vec<PathBuf>,
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Acting on a data directory directly, as a principal identified by its API token.
#[derive(Debug, clap::Args)]
struct Acting {
    #[arg(long)]
    data_dir: PathBuf,
    /// The acting principal's API token.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Create a witness in DIR: its Ed25519 key (0600) and name; prints its vkey, which the
    /// gateway's `witnesses` setting and `audit verify --witness` take.
    Init {
        #[arg(long)]
        state: PathBuf,
        /// The witness's name, a schema-less URL such as `cac.zunyi.gov.cn/witness`.
        #[arg(long)]
        name: String,
    },
    /// Check an `add-checkpoint` request (`GET /v1/audit/witness?old=SIZE`, from a file or
    /// standard input) against the kept checkpoint and cosign it: prints the cosignature
    /// line and keeps the new checkpoint. A fork is reported (exit 3) with both notes kept
    /// as evidence in DIR; a stale request (exit 4) says which size to ask from.
    AddCheckpoint {
        #[arg(long)]
        state: PathBuf,
        /// The log's public key, pinned out of band.
        #[arg(long)]
        log_key: String,
        /// The request; standard input when absent.
        #[arg(long)]
        request: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Add another administrator (audited as `principal.bootstrap`). Under the two-person
    /// rule a second administrator approves the reviewers, operators and administrators
    /// the first creates through the API.
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Its organisation's name; created if no organisation has that name (normalised).
        #[arg(long, default_value = "platform")]
        organisation: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-wrap every data key under a new master key (no data is re-encrypted). Run it
    /// with the gateway stopped, or use `POST /v1/keys/rotate` while it serves. Admin only.
    Rotate {
        #[command(flatten)]
        acting: Acting,
    },
}

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Validate and encrypt a CSV file as a dataset's next version, with progress.
    Ingest {
        #[command(flatten)]
        acting: Acting,
        #[arg(long)]
        dataset: i64,
        #[arg(long)]
        csv: PathBuf,
        /// Store the valid rows and report the invalid ones, instead of refusing the file.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Crypto-shred a dataset: delete its data keys and chunks. Irreversible.
    Destroy {
        #[command(flatten)]
        acting: Acting,
        #[arg(long)]
        dataset: i64,
    },
    /// Write synthetic rows that follow a schema (deterministic for a seed) as CSV.
    Dummy {
        #[arg(long)]
        schema: PathBuf,
        #[arg(long, default_value_t = 1_000)]
        rows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ExamplesCommand {
    /// Write the vehicles CSV and schema and the vehicle-risk model and manifest.
    Write { dir: PathBuf },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    let out = &mut std::io::stdout();
    let done = |()| ExitCode::SUCCESS;
    match command {
        Command::Login { server, token, profile } => {
            let token = match token {
                Some(token) => token,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the token from standard input")?;
                    line.trim().to_owned()
                }
            };
            if token.is_empty() {
                anyhow::bail!("no token: pass --token, set $SLUICE_TOKEN or give it on standard input");
            }
            let path = remote::profile_path()?;
            remote::save_profile(&path, &profile, &server, &token)?;
            writeln!(out, "saved profile `{profile}` in {} (readable by you only)", path.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply { file, remote } => remote::apply(&Connection::open(&remote)?, &file, out).await.map(done),
        Command::Model { command, remote } => {
            let connection = Connection::open(&remote)?;
            match command {
                ModelCommand::Submit { authorisation, module, manifest } => {
                    remote::submit_model(&connection, authorisation, &module, &manifest, out).await.map(done)
                }
                ModelCommand::Status { id } => remote::model_status(&connection, id, out).await.map(done),
            }
        }
        Command::Run { command: Some(RunCommand::Wait { run, timeout }), remote, .. } => {
            let timeout = std::time::Duration::from_secs(timeout);
            remote::wait(&Connection::open(&remote)?, run, timeout, out).await.map(done)
        }
        Command::Run { command: None, authorisation, model, remote } => {
            let (Some(authorisation), Some(model)) = (authorisation, model) else {
                anyhow::bail!("`sluice run` needs --authorisation and --model");
            };
            remote::run(&Connection::open(&remote)?, authorisation, model, out).await.map(done)
        }
        Command::Result { run, remote } => remote::result(&Connection::open(&remote)?, run, out).await.map(done),
        Command::Budget { authorisation, remote } => {
            remote::budget(&Connection::open(&remote)?, authorisation, out).await.map(done)
        }
        Command::Init { data_dir, database, objects } => init(data_dir, database, objects).await,
        Command::Serve { data_dir, listen, database, objects, config } => {
            serve(data_dir, listen, database, objects, config).await
        }
        Command::Demo { keep } => demo(keep).await,
        Command::Audit {
            command: AuditCommand::Verify { export, public_key, trust_embedded_key, trusted_checkpoint, witnesses },
        } => verify(export, public_key, trust_embedded_key, trusted_checkpoint, &witnesses),
        Command::Audit { command: AuditCommand::VerifyReceipt { receipt, public_key } }
        | Command::Receipt { command: ReceiptCommand::Verify { receipt, public_key } } => {
            verify_receipt(receipt, public_key)
        }
        Command::Audit { command: AuditCommand::Export { acting, output } } => {
            let (app, caller) = open_as(&acting).await?;
            let text = app.export_audit(&caller).await.map_err(service_error)?;
            match output {
                Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout().lock().write_all(text.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Search { acting, query } } => {
            let (app, caller) = open_as(&acting).await?;
            let mut stdout = std::io::stdout().lock();
            for entry in app.search_audit(&caller, query.into()).await.map_err(service_error)? {
                writeln!(stdout, "{}", entry.canonical())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::New { name, schema, directory } => {
            let parsed = read_schema(&schema)?;
            let files = crate::scaffold::new_model(&directory, &name, &parsed, &schema.display().to_string())?;
            for file in &files {
                println!("wrote {}", file.display());
            }
            println!("next: cd {} and follow README.md", directory.join(&name).display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev { command: DevCommand::Check { files, schema, join } } => {
            let schema = schema.map(|schema| read_joined_schema(&schema, &join)).transpose()?;
            dev_check(&files, schema.as_ref())
        }
        Command::Dev { command: DevCommand::Run { files, schema, join, rows, seed } } => {
            dev_run(&files, &read_joined_schema(&schema, &join)?, rows, seed)
        }
        Command::Dataset { command: DatasetCommand::Dummy { schema, rows, seed, output } } => {
            let schema = read_schema(&schema)?;
            let csv = sluice_vault::dummy::dummy_csv(&schema, rows, seed);
            match output {
                Some(path) => std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout().lock().write_all(csv.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dataset { command: DatasetCommand::Ingest { acting, dataset, csv, skip_invalid } } => {
            ingest(acting, dataset, csv, skip_invalid).await
        }
        Command::Dataset { command: DatasetCommand::Destroy { acting, dataset } } => {
            let (app, caller) = open_as(&acting).await?;
            let summary =
                app.destroy_dataset(&caller, sluice_gateway::ids::DatasetId(dataset)).await.map_err(service_error)?;
            println!("dataset {dataset} destroyed: {} data keys deleted, chunks removed", summary.data_keys_deleted);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Witness { command: WitnessCommand::Init { state, name } } } => {
            crate::witness::init(&state, &name)
        }
        Command::Audit {
            command: AuditCommand::Witness { command: WitnessCommand::AddCheckpoint { state, log_key, request } },
        } => crate::witness::add_checkpoint(&state, &log_key, request.as_deref()),
        Command::Admin { command: AdminCommand::Add { data_dir, name, organisation } } => {
            let app = open_app(&data_dir, None).await?;
            let admin = app.add_host_admin(&name, &organisation).await?;
            println!("administrator {} created", admin.id);
            println!("token: {}", admin.token);
            println!("(the token is shown once; Sluice stores only its hash)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command: KeysCommand::Rotate { acting } } => {
            let (app, caller) = open_as(&acting).await?;
            let summary = app.rotate_master_key(&caller).await.map_err(service_error)?;
            println!(
                "master key rotated: {} data keys re-wrapped; new key {}…",
                summary.data_keys_rewrapped,
                &summary.new_fingerprint[..16]
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Examples { command: ExamplesCommand::Write { dir } } => {
            for path in crate::examples::write_examples(&dir)? {
                println!("wrote {path}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn init(dir: PathBuf, database: Option<String>, objects: Option<String>) -> anyhow::Result<ExitCode> {
    let config = with_stores(load_config(&dir, None)?, database, objects)?;
    config.data_dir.init(config.master_key_from_environment.is_none(), &config.database, &config.objects).await?;
    let app = App::open(config, Clock::System).await?;
    let admin = app.bootstrap_admin("admin", "platform").await?;
    println!("initialised {}", dir.display());
    println!("audit public key: {}", app.public_key());
    println!("admin token: {}", admin.token);
    println!("(the token is shown once; Sluice stores only its hash)");
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    dir: PathBuf,
    listen: SocketAddr,
    database: Option<String>,
    objects: Option<String>,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = with_stores(load_config(&dir, config.as_deref())?, database, objects)?;
    let chunks_at = config.objects.describe();
    let (grace, drain) = (config.shutdown_grace, config.shutdown_drain);
    let app = open_with(config, &dir).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, database = %app.store().database().describe(), objects = %chunks_at, "sluice gateway listening");
    let (stop_checkpointer, stop) = tokio::sync::watch::channel(false);
    let checkpointer = app.spawn_checkpointer(stop);
    // Runs other nodes charged but had no sandbox slot for (or died before running) are
    // claimed from the database's queue whenever this node has a slot free.
    let dispatcher = app.spawn_run_dispatcher();
    let stopping = {
        let app = app.clone();
        async move {
            shutdown_signal().await;
            // Readiness answers 503 from here; new requests are still served for the grace
            // period, so a load balancer can move traffic away before the listener closes.
            app.in_flight().stop_begun();
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "stop requested: not ready; accepting for the grace period"
            );
            tokio::time::sleep(grace).await;
        }
    };
    axum::serve(listener, sluice_gateway::api::router(app.clone()))
        .with_graceful_shutdown(stopping)
        .await
        .context("serving")?;
    // The listener is closed; requests already begun run to their end even where their
    // clients have gone (the API detaches them), so wait for them before closing the store.
    tracing::info!(under_way = app.in_flight().now(), "shutting down: draining requests under way");
    if let Err(left) = app.in_flight().drained(drain).await {
        tracing::warn!(left, "requests still under way after the drain period; closing anyway");
    }
    // The dispatcher claims nothing once the stop began; what it claimed has been drained.
    dispatcher.abort();
    let _ = stop_checkpointer.send(true);
    if let Err(error) = checkpointer.await {
        tracing::error!(error = %error, "the checkpointer failed");
    }
    app.store().close().await;
    tracing::info!("sluice gateway stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM (what a service manager or an orchestrator sends).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn demo(keep: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let temporary = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = keep.unwrap_or_else(|| temporary.path().join("sluice-demo"));
    let mut stdout = std::io::stdout().lock();
    crate::demo::run_demo(&dir, &mut stdout).await?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn verify(
    export: PathBuf,
    public_key: Option<String>,
    trust_embedded_key: bool,
    trusted: Option<PathBuf>,
    witnesses: &[String],
) -> anyhow::Result<ExitCode> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let verdict = verify_export_file(
        &export,
        public_key.as_deref(),
        trust_embedded_key,
        trusted.as_deref(),
        witnesses,
        &mut out,
        &mut err,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(if verdict == Verdict::Verified { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn verify_receipt(path: PathBuf, public_key: String) -> anyhow::Result<ExitCode> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let verdict = verify_receipt_file(&path, &public_key, &mut out, &mut err).map_err(anyhow::Error::msg)?;
    Ok(if verdict == Verdict::Verified { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Opens the gateway over `dir` with its configuration read once (`DATA_DIR/sluice.toml`,
/// or `config`, then the environment).
async fn open_app(dir: &std::path::Path, config: Option<&std::path::Path>) -> anyhow::Result<std::sync::Arc<App>> {
    open_with(load_config(dir, config)?, dir).await
}

/// The configuration for `dir`, read once (`DATA_DIR/sluice.toml`, or `file`, then the
/// environment).
fn load_config(dir: &std::path::Path, file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(dir, file).context("reading the configuration")
}

/// `config` with the database `--database` and the object store `--objects` name, if they do.
fn with_stores(mut config: Config, database: Option<String>, objects: Option<String>) -> anyhow::Result<Config> {
    if let Some(url) = database {
        config.database = sluice_gateway::store::Database::parse(&url).context("--database")?;
    }
    if let Some(url) = objects {
        config.objects = sluice_gateway::chunk_store::Location::parse(&url).context("--objects")?;
    }
    Ok(config)
}

/// Opens the gateway over `dir` with a configuration already read.
async fn open_with(config: Config, dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<App>> {
    App::open(config, Clock::System).await.with_context(|| format!("opening {}", dir.display()))
}

fn read_schema(path: &std::path::Path) -> anyhow::Result<sluice_vault::schema::DatasetSchema> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    sluice_vault::schema::DatasetSchema::from_toml(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

/// A schema, or it joined with others in turn as an authorisation joining them sees their
/// rows.
fn read_joined_schema(
    path: &std::path::Path,
    joins: &[PathBuf],
) -> anyhow::Result<sluice_vault::schema::DatasetSchema> {
    let schema = read_schema(path)?;
    let joined = joins.iter().map(|join| read_schema(join)).collect::<anyhow::Result<Vec<_>>>()?;
    let names: Vec<String> = joins.iter().map(|join| join.display().to_string()).collect();
    schema
        .joined_all(&joined)
        .map_err(|error| anyhow::anyhow!("{} joined with {}: {error}", path.display(), names.join(" and ")))
}

fn read_model(files: &ModelFiles) -> anyhow::Result<(Vec<u8>, String)> {
    let module = std::fs::read(&files.model).with_context(|| format!("reading {}", files.model.display()))?;
    let manifest =
        std::fs::read_to_string(&files.manifest).with_context(|| format!("reading {}", files.manifest.display()))?;
    Ok((module, manifest))
}

fn checked_model(
    runtime: &sluice_sandbox::Runtime,
    files: &ModelFiles,
    schema: Option<&sluice_vault::schema::DatasetSchema>,
) -> anyhow::Result<Option<sluice_sandbox::CompiledModel>> {
    let (module, manifest) = read_model(files)?;
    match check(runtime, &module, &manifest, schema) {
        Ok((compiled, report)) => {
            let report: CheckReport = report;
            println!("ok: {} {} passed the static review", report.name, report.version);
            println!("digest: {}", report.digest);
            println!("reads: {}", report.inputs.join(", "));
            println!("outputs: {}", report.outputs.join(", "));
            println!("epsilon per run: {}", report.epsilon_per_run);
            println!("fuel per row: {}", report.fuel_per_row);
            match report.fuel_bound {
                Some(bound) => println!(
                    "worst row by its code: {bound} fuel (runs are priced from {})",
                    bound.min(report.fuel_per_row)
                ),
                None => println!(
                    "worst row by its code: unbounded (it loops or recurses; runs are priced from fuel per row)"
                ),
            }
            Ok(Some(compiled))
        }
        Err(refusal) => {
            eprintln!("refused: {refusal}");
            Ok(None)
        }
    }
}

fn dev_check(files: &ModelFiles, schema: Option<&sluice_vault::schema::DatasetSchema>) -> anyhow::Result<ExitCode> {
    let runtime = sluice_sandbox::Runtime::new(sluice_sandbox::RuntimeLimits::default())?;
    Ok(if checked_model(&runtime, files, schema)?.is_some() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn dev_run(
    files: &ModelFiles,
    schema: &sluice_vault::schema::DatasetSchema,
    rows: usize,
    seed: u64,
) -> anyhow::Result<ExitCode> {
    let runtime = sluice_sandbox::Runtime::new(sluice_sandbox::RuntimeLimits::default())?;
    let Some(compiled) = checked_model(&runtime, files, Some(schema))? else { return Ok(ExitCode::FAILURE) };
    let progress = indicatif::ProgressBar::new_spinner().with_message(format!("running on {rows} dummy rows"));
    progress.enable_steady_tick(std::time::Duration::from_millis(100));
    let outcome = crate::dev::run(&runtime, &compiled, schema, rows, seed);
    progress.finish_and_clear();
    let crate::dev::DevRun { outputs, fallbacks } = match outcome {
        Ok(run) => run,
        Err(error) => {
            // Dummy data is not secret, so the developer sees the full detail here.
            eprintln!("run failed: {error:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("\n{rows} dummy rows (seed {seed}); the server would release the noisy column:");
    println!("{:<24} {:>18} {:>18} {:>14}", "output", "exact on dummy", "noisy release", "± 95%");
    for output in outputs {
        let released = &output.released;
        let value = released.value.map_or_else(|| "per group".to_owned(), |value| format!("{value:.6}"));
        println!("{:<24} {:>18.6} {value:>18} {:>14.6}", released.name, output.exact, released.ci95_half_width);
        for group in released.groups.iter().flatten() {
            let noisy = group.value.map_or_else(|| "suppressed".to_owned(), |value| format!("{value:.6}"));
            println!("  {:<22} {:>18} {noisy:>18}", group.label, "");
        }
        for (bin, exact) in released.bins.iter().flatten().zip(output.exact_bins.iter().flatten()) {
            let noisy = bin.count.map_or_else(|| "suppressed".to_owned(), |count| format!("{count:.0}"));
            println!("  {:<22} {exact:>18.0} {noisy:>18}", bin.label);
        }
    }
    if fallbacks.total() > 0 {
        // On real data nobody but the audit log learns this; on dummy rows it is harmless,
        // and a model with any fallback on dummy rows cannot be approved.
        eprintln!(
            "\nthe model failed on {} dummy rows (trap {}, fuel {}, stack {}, non-finite output {}); \
             they contributed their outputs' defaults. Fix the model: review refuses it as it is.",
            fallbacks.total(),
            fallbacks.trap,
            fallbacks.fuel,
            fallbacks.stack,
            fallbacks.non_finite
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the data directory and authenticates the token, as the HTTP API would.
async fn open_as(acting: &Acting) -> anyhow::Result<(std::sync::Arc<App>, sluice_gateway::service::Caller)> {
    let app = open_app(&acting.data_dir, None).await?;
    let caller = app
        .authenticate(Some(&acting.token), &sluice_gateway::service::new_request_id())
        .await
        .map_err(service_error)?;
    Ok((app, caller))
}

/// A service error as a one-line CLI error: its code and message.
fn service_error(error: sluice_gateway::error::ServiceError) -> anyhow::Error {
    match error {
        sluice_gateway::error::ServiceError::Internal(detail) => detail,
        other => anyhow::anyhow!("{} ({})", other, other.code()),
    }
}

async fn ingest(acting: Acting, dataset: i64, csv: PathBuf, skip_invalid: bool) -> anyhow::Result<ExitCode> {
    let (app, caller) = open_as(&acting).await?;
    let file = std::fs::File::open(&csv).with_context(|| format!("opening {}", csv.display()))?;
    let size = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(size).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} ingest [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let reader = bar.wrap_read(file);
    let rows_bar = bar.clone();
    let outcome = app
        .ingest(&caller, sluice_gateway::ids::DatasetId(dataset), reader, skip_invalid, move |rows| {
            rows_bar.set_message(format!("{rows} rows sealed"))
        })
        .await;
    bar.finish_and_clear();
    let summary = outcome.map_err(service_error)?;
    println!(
        "dataset {} version {}: {} rows sealed in {} chunks",
        summary.dataset_id, summary.version, summary.rows, summary.chunks
    );
    if summary.skipped > 0 {
        println!("{} invalid rows left out; the first:", summary.skipped);
        for example in &summary.skipped_examples {
            println!("  {example}");
        }
    }
    app.store().close().await;
    Ok(ExitCode::SUCCESS)
}

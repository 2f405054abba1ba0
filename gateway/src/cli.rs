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

use crate::audit::verify_export;
use crate::datadir::DataDir;
use crate::keys::PublicKey;
use crate::service::{App, Clock};

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
    },
    /// Start the HTTP gateway.
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
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
    /// Example files for the README walkthrough.
    Examples {
        #[command(subcommand)]
        command: ExamplesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an audit export offline: every leaf, the Merkle root, the signed checkpoint.
    Verify {
        export: PathBuf,
        /// The public key you pinned (base64); without it the export's own key is used.
        #[arg(long)]
        public_key: Option<String>,
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
    match command {
        Command::Init { data_dir } => init(data_dir).await,
        Command::Serve { data_dir, listen } => serve(data_dir, listen).await,
        Command::Demo { keep } => demo(keep).await,
        Command::Audit { command: AuditCommand::Verify { export, public_key } } => verify(export, public_key),
        Command::Examples { command: ExamplesCommand::Write { dir } } => {
            for path in crate::examples::write_examples(&dir)? {
                println!("wrote {path}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn init(dir: PathBuf) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::new(&dir);
    data_dir.init().await?;
    let app = App::open(data_dir, Clock::System).await?;
    let admin = app.bootstrap_admin("admin", "platform").await?;
    println!("initialised {}", dir.display());
    println!("audit public key: {}", app.public_key());
    println!("admin token: {}", admin.token);
    println!("(the token is shown once; Sluice stores only its hash)");
    Ok(ExitCode::SUCCESS)
}

async fn serve(dir: PathBuf, listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let app =
        App::open(DataDir::new(&dir), Clock::System).await.with_context(|| format!("opening {}", dir.display()))?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, "sluice gateway listening");
    axum::serve(listener, crate::api::router(app.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    app.store().close().await;
    Ok(ExitCode::SUCCESS)
}

async fn demo(keep: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let temporary = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = keep.unwrap_or_else(|| temporary.path().join("sluice-demo"));
    let mut stdout = std::io::stdout().lock();
    crate::demo::run_demo(&dir, &mut stdout).await?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn verify(export: PathBuf, public_key: Option<String>) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&export).with_context(|| format!("reading {}", export.display()))?;
    let pinned = public_key.as_deref().map(PublicKey::parse).transpose().context("--public-key")?;
    match verify_export(&text, pinned.as_ref()) {
        Ok(summary) => {
            println!("ok: {} entries verified", summary.entries);
            println!("merkle root: {}", summary.root_hex);
            let pinning = if summary.key_pinned { "pinned" } else { "taken from the export; pin it with --public-key" };
            println!("signed by: {} ({pinning})", summary.public_key);
            println!("denied: {}, failed: {}", summary.denied, summary.failed);
            for (action, count) in &summary.by_action {
                println!("  {action:<24} {count}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: audit export does not verify: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

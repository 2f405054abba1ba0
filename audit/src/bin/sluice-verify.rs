//! `sluice-verify`: the regulator's offline verifier, built from the audit crate alone.
//!
//! ```text
//! sluice-verify export FILE (--public-key BASE64 | --trust-embedded-key) [--trusted-checkpoint FILE] [--witness VKEY]...
//! sluice-verify receipt FILE --public-key BASE64
//! ```
//!
//! Exit status: 0 verified, 1 refused (the reason is printed), 2 unusable arguments or files.
//! It must not need a server, a database or any part of Sluice beyond this crate.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice_audit::tool::{Verdict, verify_export_file, verify_receipt_file};

const USAGE: &str = "usage:
  sluice-verify export FILE (--public-key BASE64 | --trust-embedded-key) [--trusted-checkpoint FILE] [--witness VKEY]...
  sluice-verify receipt FILE --public-key BASE64";

struct Arguments {
    command: String,
    file: PathBuf,
    public_key: Option<String>,
    trust_embedded_key: bool,
    trusted_checkpoint: Option<PathBuf>,
    witnesses: Vec<String>,
}

fn parse(mut arguments: impl Iterator<Item = String>) -> Result<Arguments, String> {
    let command = arguments.next().ok_or("missing command")?;
    let mut file = None;
    let (mut public_key, mut trusted_checkpoint, mut trust_embedded_key) = (None, None, false);
    let mut witnesses = Vec::new();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--trust-embedded-key" => trust_embedded_key = true,
            "--witness" => witnesses.push(arguments.next().ok_or("--witness needs a vkey")?),
            "--public-key" => public_key = Some(arguments.next().ok_or("--public-key needs a value")?),
            "--trusted-checkpoint" => {
                trusted_checkpoint = Some(PathBuf::from(arguments.next().ok_or("--trusted-checkpoint needs a file")?))
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if file.is_none() => file = Some(PathBuf::from(argument)),
            _ => return Err(format!("unexpected argument {argument}")),
        }
    }
    Ok(Arguments {
        command,
        file: file.ok_or("missing FILE")?,
        public_key,
        trust_embedded_key,
        trusted_checkpoint,
        witnesses,
    })
}

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|argument| argument == "--help" || argument == "-h") {
        println!(
            "sluice-verify: check a Sluice audit export or a run's receipt offline\n{USAGE}\n\nexit status: 0 verified, 1 refused, 2 unusable arguments or files"
        );
        return ExitCode::SUCCESS;
    }
    let arguments = match parse(std::env::args().skip(1)) {
        Ok(arguments) => arguments,
        Err(problem) => {
            eprintln!("error: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let verdict = match (arguments.command.as_str(), arguments.public_key.as_deref()) {
        ("export", key) => verify_export_file(
            &arguments.file,
            key,
            arguments.trust_embedded_key,
            arguments.trusted_checkpoint.as_deref(),
            &arguments.witnesses,
            &mut out,
            &mut err,
        ),
        ("receipt", Some(key)) => verify_receipt_file(&arguments.file, key, &mut out, &mut err),
        ("receipt", None) => Err("a receipt is checked against the key you pinned: pass --public-key".into()),
        (other, _) => Err(format!("unknown command {other}")),
    };
    match verdict {
        Ok(Verdict::Verified) => ExitCode::SUCCESS,
        Ok(Verdict::Refused) => ExitCode::FAILURE,
        Err(problem) => {
            eprintln!("error: {problem}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

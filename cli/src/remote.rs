//! `sluice` as a client of a running gateway, for operators: a profile file (the server's
//! URL and a token), the HTTP calls behind `login`, `apply`, `model submit|status`, `run`,
//! `run wait`, `result` and `budget`, and their output — a short table for people, the
//! server's JSON as it came with `--json`.
//!
//! It owns no rule: every decision is the gateway's, and its JSON errors are printed as they
//! came. It must not print a token, nor keep one anywhere but the profile file, which it
//! writes readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

/// Where the server and the token come from: flags, then `$SLUICE_SERVER`/`$SLUICE_TOKEN`,
/// then the named profile of the profile file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Remote {
    /// The gateway's URL, e.g. `https://sluice.example.gov:8443`.
    #[arg(long, env = "SLUICE_SERVER", global = true)]
    pub server: Option<String>,
    /// A bearer token (prefer the profile file or `$SLUICE_TOKEN`: a flag shows in `ps`).
    #[arg(long, env = "SLUICE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The profile to use from the profile file.
    #[arg(long, env = "SLUICE_PROFILE", default_value = "default", global = true)]
    pub profile: String,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The profile file: `$SLUICE_CONFIG`, else `$XDG_CONFIG_HOME/sluice/profiles.toml`, else
/// `~/.config/sluice/profiles.toml`.
pub fn profile_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|value| !value.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("neither $XDG_CONFIG_HOME nor $HOME is set")?)
            .join(".config"),
    };
    Ok(base.join("sluice").join("profiles.toml"))
}

fn read_profiles(path: &Path) -> anyhow::Result<toml::Table> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse().with_context(|| format!("reading the profile file {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(error) => Err(error).with_context(|| format!("reading the profile file {}", path.display())),
    }
}

/// Saves `server` and `token` as profile `name`, keeping the file's other profiles. The
/// file is written beside itself and renamed into place, readable by its owner only.
pub fn save_profile(path: &Path, name: &str, server: &str, token: &str) -> anyhow::Result<()> {
    let server = normalise_server(server)?;
    let mut profiles = read_profiles(path)?;
    let mut profile = toml::Table::new();
    profile.insert("server".into(), server.into());
    profile.insert("token".into(), token.into());
    let section = profiles.entry("profiles").or_insert(toml::Value::Table(toml::Table::new()));
    let Some(section) = section.as_table_mut() else {
        bail!("{}: `profiles` is not a table", path.display());
    };
    section.insert(name.into(), profile.into());
    let dir = path.parent().context("the profile file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).context("writing the profile file")?;
    // NamedTempFile creates the file with mode 0600 on Unix: the token is never readable by others.
    file.write_all(toml::to_string(&profiles).context("encoding the profile file")?.as_bytes())?;
    file.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn normalise_server(server: &str) -> anyhow::Result<String> {
    let server = server.trim_end_matches('/');
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        bail!("the server must be an http:// or https:// URL, not `{server}`");
    }
    Ok(server.to_owned())
}

/// A gateway to talk to, with the token to talk with (never shown by `Debug`).
#[derive(Clone)]
pub struct Connection {
    server: String,
    token: String,
    http: reqwest::Client,
    pub json: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connection")
            .field("server", &self.server)
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Resolves the server and token from `remote` (see [`Remote`]).
    pub fn open(remote: &Remote) -> anyhow::Result<Self> {
        Self::open_with(remote, &profile_path()?)
    }

    /// [`Connection::open`] with the profile file at `path`.
    pub fn open_with(remote: &Remote, path: &Path) -> anyhow::Result<Self> {
        let profiles = read_profiles(path)?;
        let profile = profiles.get("profiles").and_then(|section| section.get(&remote.profile));
        let field = |name: &str| profile.and_then(|profile| profile.get(name)).and_then(|value| value.as_str());
        let server = match (&remote.server, field("server")) {
            (Some(server), _) => server.clone(),
            (None, Some(server)) => server.to_owned(),
            (None, None) => bail!(
                "no server: pass --server, set $SLUICE_SERVER, or run `sluice login` (profile `{}` in {})",
                remote.profile,
                path.display()
            ),
        };
        let token = match (&remote.token, field("token")) {
            (Some(token), _) => token.clone(),
            (None, Some(token)) => token.to_owned(),
            (None, None) => bail!("no token: pass --token, set $SLUICE_TOKEN, or run `sluice login`"),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("starting the HTTP client")?;
        Ok(Self { server: normalise_server(&server)?, token, http, json: remote.json })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("could not reach {}", self.server))?;
        let status = response.status();
        let body = response.bytes().await.context("reading the answer")?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .with_context(|| format!("the server answered {status} with a body that is not JSON"))?
        };
        if !status.is_success() {
            let error = &value["error"];
            let message = error["message"].as_str().unwrap_or("no message");
            let code = error["code"].as_str().unwrap_or("unknown");
            let request = value["request_id"].as_str().unwrap_or("-");
            bail!("{message} ({status}, {code}, request {request})");
        }
        Ok(value)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(body).context("encoding the request")?;
        let request = self.http.post(self.url(path)).header(reqwest::header::CONTENT_TYPE, "application/json");
        self.send(request.body(body)).await
    }

    /// Posts a large JSON body in pieces, showing how much has gone (on a terminal).
    async fn post_with_progress(&self, path: &str, body: Vec<u8>, what: &str) -> anyhow::Result<Value> {
        const PIECE: usize = 64 * 1024;
        let bar = indicatif::ProgressBar::new(body.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(what.to_owned());
        let total = body.len();
        let body = bytes::Bytes::from(body);
        let progress = bar.clone();
        let pieces = futures_util::stream::iter((0..total).step_by(PIECE).map(move |start| {
            let piece = body.slice(start..(start + PIECE).min(total));
            progress.inc(piece.len() as u64);
            Ok::<_, std::io::Error>(piece)
        }));
        let request = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_LENGTH, total)
            .body(reqwest::Body::wrap_stream(pieces));
        let answer = self.send(request).await;
        bar.finish_and_clear();
        answer
    }
}

/// `sluice apply FILE`: submits an application described by a TOML or JSON file (the fields
/// of `POST /v1/applications`).
pub async fn apply(connection: &Connection, file: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let body: Value = if file.extension().is_some_and(|extension| extension == "json") {
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?
    } else {
        let table: toml::Table = text.parse().with_context(|| format!("{} is not TOML", file.display()))?;
        json_of(toml::Value::Table(table))
    };
    let view = connection.post("/v1/applications", &body).await?;
    print(connection, out, &view, |out| {
        writeln!(out, "application {}: {}", view["id"], text_of(&view["state"]))?;
        writeln!(out, "dataset {}, columns {}", view["dataset_id"], list_of(&view["columns"]))
    })
}

/// `sluice model submit`: reads the module and manifest from files and uploads them.
pub async fn submit_model(
    connection: &Connection,
    authorisation: u64,
    module: &Path,
    manifest: &Path,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let manifest = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let body = json!({
        "authorisation_id": authorisation,
        "module_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "manifest": manifest,
    });
    let body = serde_json::to_vec(&body).context("encoding the model")?;
    let view = connection.post_with_progress("/v1/models", body, "uploading").await?;
    print(connection, out, &view, |out| {
        writeln!(out, "model {} ({} bytes): {}", view["id"], bytes.len(), text_of(&view["state"]))?;
        writeln!(out, "digest {}", text_of(&view["digest"]))
    })
}

/// `sluice model status ID`.
pub async fn model_status(connection: &Connection, id: u64, out: &mut impl Write) -> anyhow::Result<()> {
    let view = connection.get(&format!("/v1/models/{id}")).await?;
    print(connection, out, &view, |out| {
        writeln!(out, "model {} `{}`: {}", view["id"], text_of(&view["name"]), text_of(&view["state"]))?;
        writeln!(out, "authorisation {}, digest {}", view["authorisation_id"], text_of(&view["digest"]))
    })
}

/// `sluice run`: starts a run and waits for its release (the gateway answers at its
/// visibility time).
pub async fn run(connection: &Connection, authorisation: u64, model: u64, out: &mut impl Write) -> anyhow::Result<()> {
    let view = connection.post("/v1/runs", &json!({"authorisation_id": authorisation, "model_id": model})).await?;
    print_run(connection, out, &view)
}

/// `sluice run wait ID`: asks for a run until it has ended, then prints it.
pub async fn wait(connection: &Connection, id: u64, timeout: Duration, out: &mut impl Write) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let view = connection.get(&format!("/v1/runs/{id}")).await?;
        if !matches!(view["state"].as_str(), Some("pending" | "queued" | "running")) {
            return print_run(connection, out, &view);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("run {id} is still {} after {} s", text_of(&view["state"]), timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `sluice result ID`: a run's stored result.
pub async fn result(connection: &Connection, id: u64, out: &mut impl Write) -> anyhow::Result<()> {
    let view = connection.get(&format!("/v1/runs/{id}")).await?;
    print_run(connection, out, &view)
}

/// `sluice budget AUTHORISATION`.
pub async fn budget(connection: &Connection, authorisation: u64, out: &mut impl Write) -> anyhow::Result<()> {
    let view = connection.get(&format!("/v1/authorisations/{authorisation}/budget")).await?;
    print(connection, out, &view, |out| {
        writeln!(
            out,
            "authorisation {}: ε spent {} of {}, {} left",
            view["authorisation_id"], view["epsilon_spent"], view["epsilon_total"], view["epsilon_remaining"]
        )?;
        writeln!(out, "dataset: ε spent {} of {}", view["dataset_epsilon_spent"], view["dataset_epsilon_total"])
    })
}

fn print_run(connection: &Connection, out: &mut impl Write, view: &Value) -> anyhow::Result<()> {
    print(connection, out, view, |out| {
        writeln!(
            out,
            "run {}: {} ({} rows, ε {})",
            view["run_id"],
            text_of(&view["state"]),
            view["rows"],
            view["epsilon_charged"]
        )?;
        for output in view["outputs"].as_array().into_iter().flatten() {
            let interval = output["ci95_half_width"].as_f64().map(|half| format!(" ± {half:.4}")).unwrap_or_default();
            match output["value"].as_f64() {
                Some(value) => writeln!(out, "  {:<24} {value:.4}{interval}", text_of(&output["name"]))?,
                None => writeln!(out, "  {:<24} (per group)", text_of(&output["name"]))?,
            }
            for group in output["groups"].as_array().into_iter().flatten() {
                match group["value"].as_f64() {
                    Some(value) => writeln!(out, "    {:<22} {value:.4}", text_of(&group["label"]))?,
                    None => writeln!(out, "    {:<22} suppressed", text_of(&group["label"]))?,
                }
            }
        }
        if view.get("receipt").is_some_and(|receipt| !receipt.is_null()) {
            writeln!(
                out,
                "receipt: audit entry {} (save with --json; check with `sluice audit verify-receipt`)",
                view["receipt"]["seq"]
            )?;
        }
        Ok(())
    })
}

fn print(
    connection: &Connection,
    out: &mut impl Write,
    view: &Value,
    table: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    if connection.json {
        writeln!(out, "{}", serde_json::to_string_pretty(view)?)?;
    } else {
        table(out)?;
    }
    Ok(())
}

/// A TOML value as JSON; a TOML date-time becomes its RFC 3339 text, as the API takes it.
fn json_of(value: toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::String(text),
        toml::Value::Integer(number) => Value::from(number),
        toml::Value::Float(number) => Value::from(number),
        toml::Value::Boolean(flag) => Value::Bool(flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(json_of).collect()),
        toml::Value::Table(table) => {
            Value::Object(table.into_iter().map(|(key, value)| (key, json_of(value))).collect())
        }
    }
}

fn text_of(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

fn list_of(value: &Value) -> String {
    value.as_array().map_or_else(String::new, |items| items.iter().map(text_of).collect::<Vec<_>>().join(", "))
}

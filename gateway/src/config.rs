//! The gateway's configuration, read once: an optional TOML file (`DATA_DIR/sluice.toml`,
//! or the one `--config` names), then the environment, then what the caller sets (flags).
//! [`crate::service::App::open`] takes a finished `Config`; nothing else in the gateway
//! reads the environment.
//!
//! It owns the names, defaults and validation of every setting. It must not keep a secret
//! where it can be printed: the master key from the environment is held zeroized and
//! `Debug` shows only whether it is set.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use sluice_policies::{DEFAULT_MIN_EPSILON_PER_RUN, Epsilon};
use zeroize::Zeroizing;

use crate::chunk_store::Location;
use crate::datadir::DataDir;
use crate::store::Database;

/// Environment variable that sets how many runs an authorisation allows in any hour.
pub const MAX_RUNS_PER_HOUR_ENV: &str = "SLUICE_MAX_RUNS_PER_HOUR";
/// Environment variable that sets the model review quorum (1 or 2).
pub const MODEL_REVIEW_QUORUM_ENV: &str = "SLUICE_MODEL_REVIEW_QUORUM";
/// Environment variable that sets the least ε a run may spend.
pub const MIN_EPSILON_PER_RUN_ENV: &str = "SLUICE_MIN_EPSILON_PER_RUN";
/// Environment variable that sets the fixed part of a run's visibility delay, in ms.
pub const RUN_VISIBILITY_BASE_ENV: &str = "SLUICE_RUN_VISIBILITY_BASE_MS";
/// Environment variable naming an administrator's Cedar policy file.
pub const POLICY_FILE_ENV: &str = "SLUICE_POLICY_FILE";
/// How many days a newly issued API token is valid.
pub const TOKEN_LIFETIME_DAYS_ENV: &str = "SLUICE_TOKEN_LIFETIME_DAYS";
pub const TWO_PERSON_RULE_ENV: &str = "SLUICE_TWO_PERSON_RULE";
pub const WITNESSES_ENV: &str = "SLUICE_WITNESSES";
/// Seconds `sluice serve` answers readiness with 503 before it stops accepting, on a stop.
pub const SHUTDOWN_GRACE_ENV: &str = "SLUICE_SHUTDOWN_GRACE_SECONDS";
/// Seconds `sluice serve` waits for requests under way, on a stop, before closing anyway.
pub const SHUTDOWN_DRAIN_ENV: &str = "SLUICE_SHUTDOWN_DRAIN_SECONDS";
/// The database URL: `postgres://…` for PostgreSQL; unset, the data directory's SQLite file.
pub const DATABASE_URL_ENV: &str = "SLUICE_DATABASE_URL";
/// Where sealed chunks are kept: `s3://bucket/prefix?endpoint=…&region=…` for an
/// S3-compatible store; unset, the data directory's `blobs/`.
pub const OBJECTS_URL_ENV: &str = "SLUICE_OBJECTS_URL";
pub use sluice_vault::keys::MASTER_KEY_ENV;

/// The file a data directory may carry its settings in.
pub const CONFIG_FILE: &str = "sluice.toml";

/// Every setting the gateway reads, with its defaults.
#[derive(Clone)]
pub struct Config {
    pub data_dir: DataDir,
    /// The database: the data directory's SQLite file by default, or PostgreSQL (several
    /// nodes then share it; the URL may hold a password, so `Debug` shows only where).
    pub database: Database,
    /// Where the sealed chunks are: the data directory's `blobs/` by default, or an
    /// S3-compatible bucket (several nodes then share it; credentials come from the
    /// environment, never from here).
    pub objects: Location,
    /// The Cedar policy file; none means `DATA_DIR/policies.cedar` if present, else the
    /// shipped default.
    pub policy_file: Option<PathBuf>,
    /// Runs an authorisation allows in any hour (default 60).
    pub max_runs_per_hour: u64,
    /// Independent approvals a model needs: 1 or 2 (default 1).
    pub model_review_quorum: u64,
    /// The least ε a run may spend (default 0.05).
    pub min_epsilon_per_run: Epsilon,
    /// The fixed part of a run's visibility delay (default 250 ms).
    pub run_visibility_base: std::time::Duration,
    /// How long an issued API token is valid (1 to 400 days).
    pub token_lifetime: time::Duration,
    /// Whether a reviewer, an operator (a licence) or an administrator created through the
    /// API waits for a second administrator's approval before it gets a token (default on).
    pub two_person_rule: bool,
    /// Witnesses whose cosignatures the gateway accepts, as C2SP vkeys (type 0x04).
    pub witnesses: Vec<String>,
    /// On a stop, how long readiness answers 503 while requests are still accepted, so a
    /// load balancer moves traffic away first (default 0 s; at most 300 s).
    pub shutdown_grace: std::time::Duration,
    /// On a stop, how long to wait for requests under way before closing anyway (default
    /// 90 s: longer than a run's default deadline, so a run begun is released, not cut;
    /// 1 to 3600 s).
    pub shutdown_drain: std::time::Duration,
    /// The master key's hex text when it comes from the environment, not a file.
    pub master_key_from_environment: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database", &self.database)
            .field("objects", &self.objects)
            .field("policy_file", &self.policy_file)
            .field("max_runs_per_hour", &self.max_runs_per_hour)
            .field("model_review_quorum", &self.model_review_quorum)
            .field("min_epsilon_per_run", &self.min_epsilon_per_run.as_f64())
            .field("run_visibility_base", &self.run_visibility_base)
            .field("token_lifetime", &self.token_lifetime)
            .field("two_person_rule", &self.two_person_rule)
            .field("witnesses", &self.witnesses)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("shutdown_drain", &self.shutdown_drain)
            .field("master_key_from_environment", &self.master_key_from_environment.is_some())
            .finish()
    }
}

/// The file's shape: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    database_url: Option<String>,
    objects_url: Option<String>,
    policy_file: Option<PathBuf>,
    max_runs_per_hour: Option<u64>,
    model_review_quorum: Option<u64>,
    min_epsilon_per_run: Option<f64>,
    run_visibility_base_ms: Option<u64>,
    token_lifetime_days: Option<u64>,
    two_person_rule: Option<bool>,
    witnesses: Option<Vec<String>>,
    shutdown_grace_seconds: Option<u64>,
    shutdown_drain_seconds: Option<u64>,
}

impl Config {
    /// The defaults for `data_dir`, reading nothing.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = DataDir::new(data_dir);
        Self {
            database: Database::Sqlite(data_dir.database()),
            objects: Location::Local(data_dir.blobs()),
            data_dir,
            policy_file: None,
            max_runs_per_hour: 60,
            model_review_quorum: 1,
            min_epsilon_per_run: DEFAULT_MIN_EPSILON_PER_RUN,
            run_visibility_base: std::time::Duration::from_millis(250),
            token_lifetime: time::Duration::days(90),
            two_person_rule: true,
            witnesses: Vec::new(),
            shutdown_grace: std::time::Duration::ZERO,
            shutdown_drain: std::time::Duration::from_secs(90),
            master_key_from_environment: None,
        }
    }

    /// The configuration for `data_dir` from the process environment and the file: `file`
    /// if given, else `DATA_DIR/sluice.toml` if it exists.
    pub fn load(data_dir: impl Into<PathBuf>, file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_with(data_dir, file, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the environment given as a lookup (tests pass their own).
    pub fn load_with(
        data_dir: impl Into<PathBuf>,
        file: Option<&Path>,
        environment: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut config = Self::new(data_dir);
        let default_file = config.data_dir.root().join(CONFIG_FILE);
        let file = match file {
            Some(path) => Some(path.to_path_buf()),
            None => default_file.exists().then_some(default_file),
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let parsed: ConfigFile =
                toml::from_str(&text).with_context(|| format!("{} is not a valid configuration", path.display()))?;
            config.apply_file(parsed).with_context(|| format!("in {}", path.display()))?;
        }
        config.apply_environment(&environment)?;
        Ok(config)
    }

    fn apply_file(&mut self, file: ConfigFile) -> anyhow::Result<()> {
        if let Some(url) = file.database_url {
            self.database = Database::parse(&url).context("database_url")?;
        }
        if let Some(url) = file.objects_url {
            self.objects = Location::parse(&url).context("objects_url")?;
        }
        if let Some(path) = file.policy_file {
            self.policy_file = Some(path);
        }
        if let Some(limit) = file.max_runs_per_hour {
            self.max_runs_per_hour = check_max_runs(limit).context("max_runs_per_hour")?;
        }
        if let Some(quorum) = file.model_review_quorum {
            self.model_review_quorum = check_quorum(quorum).context("model_review_quorum")?;
        }
        if let Some(epsilon) = file.min_epsilon_per_run {
            self.min_epsilon_per_run = check_epsilon(epsilon).context("min_epsilon_per_run")?;
        }
        if let Some(millis) = file.run_visibility_base_ms {
            self.run_visibility_base = std::time::Duration::from_millis(millis);
        }
        if let Some(days) = file.token_lifetime_days {
            self.token_lifetime = check_token_days(days).context("token_lifetime_days")?;
        }
        if let Some(rule) = file.two_person_rule {
            self.two_person_rule = rule;
        }
        if let Some(witnesses) = file.witnesses {
            self.witnesses = witnesses;
        }
        if let Some(seconds) = file.shutdown_grace_seconds {
            self.shutdown_grace = check_seconds(seconds, 0, 300).context("shutdown_grace_seconds")?;
        }
        if let Some(seconds) = file.shutdown_drain_seconds {
            self.shutdown_drain = check_seconds(seconds, 1, 3600).context("shutdown_drain_seconds")?;
        }
        Ok(())
    }

    fn apply_environment(&mut self, environment: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(url) = environment(DATABASE_URL_ENV).filter(|url| !url.trim().is_empty()) {
            self.database = Database::parse(&url).with_context(|| format!("${DATABASE_URL_ENV}"))?;
        }
        if let Some(url) = environment(OBJECTS_URL_ENV).filter(|url| !url.trim().is_empty()) {
            self.objects = Location::parse(&url).with_context(|| format!("${OBJECTS_URL_ENV}"))?;
        }
        if let Some(path) = environment(POLICY_FILE_ENV) {
            self.policy_file = Some(PathBuf::from(path));
        }
        let number = |name: &str| -> anyhow::Result<Option<u64>> {
            environment(name)
                .map(|text| text.trim().parse::<u64>().with_context(|| format!("${name} must be a whole number")))
                .transpose()
        };
        if let Some(limit) = number(MAX_RUNS_PER_HOUR_ENV)? {
            self.max_runs_per_hour = check_max_runs(limit).with_context(|| format!("${MAX_RUNS_PER_HOUR_ENV}"))?;
        }
        if let Some(quorum) = number(MODEL_REVIEW_QUORUM_ENV)? {
            self.model_review_quorum = check_quorum(quorum).with_context(|| format!("${MODEL_REVIEW_QUORUM_ENV}"))?;
        }
        if let Some(text) = environment(MIN_EPSILON_PER_RUN_ENV) {
            let epsilon = text.trim().parse::<f64>().unwrap_or(f64::NAN);
            self.min_epsilon_per_run = check_epsilon(epsilon).with_context(|| format!("${MIN_EPSILON_PER_RUN_ENV}"))?;
        }
        if let Some(millis) = number(RUN_VISIBILITY_BASE_ENV)? {
            self.run_visibility_base = std::time::Duration::from_millis(millis);
        }
        if let Some(days) = number(TOKEN_LIFETIME_DAYS_ENV)? {
            self.token_lifetime = check_token_days(days).with_context(|| format!("${TOKEN_LIFETIME_DAYS_ENV}"))?;
        }
        if let Some(seconds) = number(SHUTDOWN_GRACE_ENV)? {
            self.shutdown_grace = check_seconds(seconds, 0, 300).with_context(|| format!("${SHUTDOWN_GRACE_ENV}"))?;
        }
        if let Some(seconds) = number(SHUTDOWN_DRAIN_ENV)? {
            self.shutdown_drain = check_seconds(seconds, 1, 3600).with_context(|| format!("${SHUTDOWN_DRAIN_ENV}"))?;
        }
        if let Some(text) = environment(WITNESSES_ENV) {
            self.witnesses =
                text.split(',').map(str::trim).filter(|vkey| !vkey.is_empty()).map(str::to_owned).collect();
        }
        if let Some(text) = environment(TWO_PERSON_RULE_ENV) {
            self.two_person_rule = match text.trim() {
                "1" | "true" | "on" => true,
                "0" | "false" | "off" => false,
                _ => anyhow::bail!("${TWO_PERSON_RULE_ENV} must be true or false"),
            };
        }
        self.master_key_from_environment = environment(MASTER_KEY_ENV).map(Zeroizing::new);
        Ok(())
    }

    /// The policy file to load, if any: the configured one, else `DATA_DIR/policies.cedar`.
    pub fn policy_path(&self) -> Option<PathBuf> {
        let in_data_dir = self.data_dir.root().join("policies.cedar");
        self.policy_file.clone().or_else(|| in_data_dir.exists().then_some(in_data_dir))
    }
}

fn check_max_runs(limit: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(limit > 0, "must be a whole number above 0");
    Ok(limit)
}

fn check_token_days(days: u64) -> anyhow::Result<time::Duration> {
    anyhow::ensure!((1..=400).contains(&days), "must be a whole number of days from 1 to 400");
    Ok(time::Duration::days(days as i64))
}

fn check_seconds(seconds: u64, least: u64, most: u64) -> anyhow::Result<std::time::Duration> {
    anyhow::ensure!((least..=most).contains(&seconds), "must be a whole number of seconds from {least} to {most}");
    Ok(std::time::Duration::from_secs(seconds))
}

fn check_quorum(quorum: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(matches!(quorum, 1 | 2), "must be 1 or 2");
    Ok(quorum)
}

fn check_epsilon(epsilon: f64) -> anyhow::Result<Epsilon> {
    Epsilon::from_f64(epsilon).map_err(|_| anyhow::anyhow!("must be a number above 0 and at most 1000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::load_with(dir.path(), None, environment(&[])).expect("defaults");
        assert_eq!((config.max_runs_per_hour, config.model_review_quorum), (60, 1));
        assert_eq!(config.min_epsilon_per_run, DEFAULT_MIN_EPSILON_PER_RUN);
        std::fs::write(dir.path().join(CONFIG_FILE), "max_runs_per_hour = 5\nmodel_review_quorum = 2\n")
            .expect("write");
        let config = Config::load_with(dir.path(), None, environment(&[])).expect("file");
        assert_eq!((config.max_runs_per_hour, config.model_review_quorum), (5, 2));
        let config =
            Config::load_with(dir.path(), None, environment(&[(MAX_RUNS_PER_HOUR_ENV, "7")])).expect("environment");
        assert_eq!((config.max_runs_per_hour, config.model_review_quorum), (7, 2), "the environment wins");
    }

    #[test]
    fn token_lifetime_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::load_with(dir.path(), None, environment(&[])).expect("defaults");
        assert_eq!(config.token_lifetime, time::Duration::days(90));
        let config = Config::load_with(dir.path(), None, environment(&[(TOKEN_LIFETIME_DAYS_ENV, "30")])).expect("30");
        assert_eq!(config.token_lifetime, time::Duration::days(30));
        for bad in ["0", "401", "-1", "a month"] {
            let lookup = move |name: &str| (name == TOKEN_LIFETIME_DAYS_ENV).then(|| bad.to_owned());
            let error = Config::load_with(dir.path(), None, lookup).expect_err("refused");
            assert!(format!("{error:#}").contains(TOKEN_LIFETIME_DAYS_ENV), "{error:#}");
        }
        std::fs::write(dir.path().join(CONFIG_FILE), "token_lifetime_days = 7\n").expect("write");
        let config = Config::load_with(dir.path(), None, environment(&[])).expect("file");
        assert_eq!(config.token_lifetime, time::Duration::days(7));
    }

    #[test]
    fn shutdown_periods_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::load_with(dir.path(), None, environment(&[])).expect("defaults");
        assert_eq!((config.shutdown_grace.as_secs(), config.shutdown_drain.as_secs()), (0, 90));
        std::fs::write(dir.path().join(CONFIG_FILE), "shutdown_grace_seconds = 5\nshutdown_drain_seconds = 120\n")
            .expect("write");
        let config = Config::load_with(dir.path(), None, environment(&[])).expect("file");
        assert_eq!((config.shutdown_grace.as_secs(), config.shutdown_drain.as_secs()), (5, 120));
        let config =
            Config::load_with(dir.path(), None, environment(&[(SHUTDOWN_GRACE_ENV, "0")])).expect("environment");
        assert_eq!(config.shutdown_grace.as_secs(), 0, "the environment wins");
        for (name, bad) in [(SHUTDOWN_GRACE_ENV, "301"), (SHUTDOWN_DRAIN_ENV, "0"), (SHUTDOWN_DRAIN_ENV, "soon")] {
            let lookup = move |key: &str| (key == name).then(|| bad.to_owned());
            let error = Config::load_with(dir.path(), None, lookup).expect_err("refused");
            assert!(format!("{error:#}").contains(name), "{error:#}");
        }
    }

    #[test]
    fn bad_settings_are_refused_by_name_and_secrets_are_not_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let refused = |pairs: &'static [(&'static str, &'static str)]| {
            format!("{:#}", Config::load_with(dir.path(), None, environment(pairs)).expect_err("refused"))
        };
        assert!(refused(&[(MODEL_REVIEW_QUORUM_ENV, "3")]).contains("1 or 2"));
        assert!(refused(&[(MAX_RUNS_PER_HOUR_ENV, "0")]).contains(MAX_RUNS_PER_HOUR_ENV));
        assert!(refused(&[(MIN_EPSILON_PER_RUN_ENV, "-1")]).contains(MIN_EPSILON_PER_RUN_ENV));
        std::fs::write(dir.path().join(CONFIG_FILE), "max_runs = 5\n").expect("write");
        assert!(refused(&[]).contains("not a valid configuration"));
        std::fs::remove_file(dir.path().join(CONFIG_FILE)).expect("remove");
        let secret = "ab".repeat(32);
        let leaked: &'static str = Box::leak(secret.clone().into_boxed_str());
        let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([(MASTER_KEY_ENV, leaked)]));
        let config = Config::load_with(dir.path(), None, environment(pairs)).expect("loads");
        assert!(!format!("{config:?}").contains(&secret));
        assert!(config.master_key_from_environment.is_some());
    }
}

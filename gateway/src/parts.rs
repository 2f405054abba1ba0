//! The parts an [`crate::service::App`] is composed of, each with one job: the [`Sealed`]
//! data at rest (the data directory, the object store of sealed chunks, the master key and the
//! key pseudonym secret), the [`AuditLog`]'s signing key,
//! and the [`Gate`] (the Cedar policies and the configured limits). The fourth part, the
//! sandbox [`crate::runner::Runner`], lives in its own module.
//!
//! It owns the state each part guards and the locks that guard it. It must not decide
//! anything (the gate's decisions are `sluice_policies`'), touch the store, or read the
//! environment (that was `Config`'s job, once).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use sluice_audit::SigningKey;
use sluice_policies::{Epsilon, PolicyGate};
use sluice_vault::keys::AeadKey;
use sluice_vault::pseudonym::PseudonymKey;

use crate::chunk_store::ChunkStore;
use crate::config::Config;
use crate::datadir::DataDir;

/// The data at rest: where sealed chunks live and the master key that wraps their keys.
pub struct Sealed {
    pub(crate) data_dir: DataDir,
    /// The sealed chunks: a local directory or an S3-compatible bucket.
    pub(crate) chunks: ChunkStore,
    /// Held for reading while a data key is wrapped or unwrapped, for writing during a
    /// rotation, so no operation mixes the old and the new master key.
    pub(crate) master: tokio::sync::RwLock<AeadKey>,
    /// One ingest at a time per dataset (its next version number is bound into every
    /// chunk before the version row exists). Nothing else waits for an ingest: a rotation
    /// or a destruction only waits for the short moment an ingest commits.
    ingest_locks:
        std::sync::Mutex<std::collections::HashMap<crate::ids::DatasetId, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    /// The master key came from the environment, so it is rotated where it is kept.
    pub(crate) master_from_environment: bool,
    /// The deployment's secret for pseudonymising text keys at ingest; it never changes
    /// (only its wrapping does, when the master key rotates).
    pub(crate) pseudonyms: PseudonymKey,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("data_dir", &self.data_dir).field("chunks", &self.chunks).finish_non_exhaustive()
    }
}

impl Sealed {
    pub(crate) fn new(
        data_dir: DataDir,
        chunks: ChunkStore,
        master: AeadKey,
        pseudonyms: PseudonymKey,
        master_from_environment: bool,
    ) -> Self {
        Self {
            pseudonyms,
            data_dir,
            chunks,
            master: tokio::sync::RwLock::new(master),
            ingest_locks: std::sync::Mutex::default(),
            master_from_environment,
        }
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// The object store of sealed chunks.
    pub fn chunks(&self) -> &ChunkStore {
        &self.chunks
    }

    /// The lock that orders ingests of `dataset_id`.
    pub(crate) fn ingest_lock(&self, dataset_id: crate::ids::DatasetId) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.ingest_locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(dataset_id).or_default().clone()
    }
}

/// The audit log's signing key, and the lock that keeps two checkpoints from racing to
/// sign the same size. Entries themselves are appended by the store, in the transaction of
/// the change they record.
#[derive(Debug)]
pub struct AuditLog {
    pub(crate) signing: SigningKey,
    pub(crate) checkpoint_lock: tokio::sync::Mutex<()>,
    /// The witnesses whose cosignatures the gateway accepts: (name, Ed25519 key).
    witnesses: std::sync::RwLock<Vec<(String, sluice_audit::PublicKey)>>,
    /// When a caller last had a checkpoint issued on demand (`?fresh=true`).
    pub(crate) last_fresh: std::sync::Mutex<Option<time::OffsetDateTime>>,
    /// The tree so far, as its frontier: a checkpoint reads only the leaves logged since the
    /// last one (the log is append-only, so the frontier never has to be rebuilt).
    pub(crate) tree: tokio::sync::Mutex<sluice_audit::RootBuilder>,
}

impl AuditLog {
    pub(crate) fn new(signing: SigningKey, witnesses: Vec<(String, sluice_audit::PublicKey)>) -> Self {
        Self {
            signing,
            checkpoint_lock: tokio::sync::Mutex::new(()),
            witnesses: std::sync::RwLock::new(witnesses),
            last_fresh: std::sync::Mutex::new(None),
            tree: tokio::sync::Mutex::new(sluice_audit::RootBuilder::default()),
        }
    }

    /// The key of witness `name`, if the gateway accepts its cosignatures.
    pub fn witness(&self, name: &str) -> Option<sluice_audit::PublicKey> {
        let witnesses = self.witnesses.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        witnesses.iter().find(|(known, _)| known == name).map(|(_, key)| *key)
    }

    /// The names of the witnesses the gateway accepts, in the order they were configured.
    pub fn witness_names(&self) -> Vec<String> {
        let witnesses = self.witnesses.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        witnesses.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Accepts cosignatures from the witness a C2SP vkey names (type 0x04).
    pub fn add_witness(&self, vkey: &str) -> anyhow::Result<()> {
        let witness = parse_witness(vkey)?;
        self.witnesses.write().unwrap_or_else(|poisoned| poisoned.into_inner()).push(witness);
        Ok(())
    }

    pub fn public_key(&self) -> sluice_audit::PublicKey {
        self.signing.public_key()
    }
}

/// A witness's C2SP vkey (`name+keyid+base64(0x04 ‖ key)`) as (name, key).
pub(crate) fn parse_witness(vkey: &str) -> anyhow::Result<(String, sluice_audit::PublicKey)> {
    let (name, kind, key) = sluice_audit::PublicKey::parse_vkey(vkey).map_err(|error| anyhow::anyhow!(error))?;
    anyhow::ensure!(
        kind == sluice_audit::witness::ED25519_COSIGNATURE,
        "witness `{name}`'s vkey is not of an Ed25519 cosigner (type 0x04)"
    );
    Ok((name, key))
}

/// Who may attempt what (the Cedar policy set, validated when the gateway opened) and the
/// limits the procedure applies. The limits start from the `Config`; an administrator's
/// tooling and the tests may change them while the gateway runs.
#[derive(Debug)]
pub struct Gate {
    pub(crate) policies: PolicyGate,
    max_runs_per_hour: AtomicU64,
    model_review_quorum: AtomicU64,
    /// In millionths of ε.
    min_epsilon_units: AtomicU64,
    visibility_base_ms: AtomicU64,
    token_lifetime_seconds: AtomicU64,
    two_person_rule: AtomicBool,
    /// Each principal's recent use of each expensive endpoint: (when, cost), oldest first.
    usage: std::sync::Mutex<HashMap<(i64, Expensive), Spent>>,
}

/// What a principal spent on one expensive endpoint within its window: (when, cost),
/// oldest first.
type Spent = VecDeque<(time::OffsetDateTime, u64)>;

/// Endpoints whose cost a principal could turn against everyone else's, each with its
/// per-principal budget over a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expensive {
    /// Each submission compiles the module and runs it on 1,000 dummy rows.
    ModelSubmission,
    /// Rows of dummy data generated (a request may ask for a million).
    DummyRows,
    /// Each export reads and formats the whole log.
    AuditExport,
}

impl Expensive {
    /// (what is counted, the limit, the window, the window's name).
    fn budget(self) -> (&'static str, u64, time::Duration, &'static str) {
        match self {
            Expensive::ModelSubmission => ("model submissions", 30, time::Duration::hours(1), "hour"),
            Expensive::DummyRows => ("dummy rows", 5_000_000, time::Duration::minutes(1), "minute"),
            Expensive::AuditExport => ("audit exports", 30, time::Duration::minutes(1), "minute"),
        }
    }
}

impl Gate {
    pub(crate) fn new(config: &Config) -> anyhow::Result<Self> {
        let policies = match config.policy_path() {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the policy file {}", path.display()))?;
                PolicyGate::new(&text).with_context(|| format!("the policy file {} is refused", path.display()))?
            }
            None => PolicyGate::default_policies().context("the default policies")?,
        };
        Ok(Self {
            policies,
            max_runs_per_hour: AtomicU64::new(config.max_runs_per_hour),
            model_review_quorum: AtomicU64::new(config.model_review_quorum),
            min_epsilon_units: AtomicU64::new(config.min_epsilon_per_run.units()),
            visibility_base_ms: AtomicU64::new(
                u64::try_from(config.run_visibility_base.as_millis()).unwrap_or(u64::MAX),
            ),
            token_lifetime_seconds: AtomicU64::new(config.token_lifetime.whole_seconds().max(1) as u64),
            two_person_rule: AtomicBool::new(config.two_person_rule),
            usage: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Spends `cost` of `principal`'s budget for `kind` at `now`, or refuses (the decision
    /// is `sluice_policies::check_principal_rate`'s) and spends nothing.
    pub(crate) fn use_expensive(
        &self,
        principal: i64,
        kind: Expensive,
        cost: u64,
        now: time::OffsetDateTime,
    ) -> Result<(), sluice_policies::Denial> {
        let (what, limit, window, per) = kind.budget();
        let mut usage = self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let recent = usage.entry((principal, kind)).or_default();
        while recent.front().is_some_and(|(at, _)| *at + window <= now) {
            recent.pop_front();
        }
        let used: u64 = recent.iter().map(|(_, cost)| cost).sum();
        let retry = recent.front().map_or(0, |(at, _)| (*at + window - now).whole_seconds().max(1));
        sluice_policies::check_principal_rate(what, used, cost, limit, per, retry)?;
        recent.push_back((now, cost));
        Ok(())
    }

    pub fn max_runs_per_hour(&self) -> u64 {
        self.max_runs_per_hour.load(Ordering::Relaxed)
    }

    pub fn model_review_quorum(&self) -> u64 {
        self.model_review_quorum.load(Ordering::Relaxed)
    }

    pub fn min_epsilon_per_run(&self) -> Epsilon {
        Epsilon::from_units(self.min_epsilon_units.load(Ordering::Relaxed))
    }

    pub fn visibility_base(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.visibility_base_ms.load(Ordering::Relaxed))
    }

    /// How long a token issued now stays valid.
    pub fn token_lifetime(&self) -> time::Duration {
        time::Duration::seconds(self.token_lifetime_seconds.load(Ordering::Relaxed) as i64)
    }

    /// Sets how long tokens issued from now on stay valid (at least a second).
    pub fn set_token_lifetime(&self, lifetime: time::Duration) {
        self.token_lifetime_seconds.store(lifetime.whole_seconds().max(1) as u64, Ordering::Relaxed);
    }

    /// Whether reviewers, operators and administrators created through the API wait for a
    /// second administrator's approval.
    pub fn two_person_rule(&self) -> bool {
        self.two_person_rule.load(Ordering::Relaxed)
    }

    pub fn set_two_person_rule(&self, on: bool) {
        self.two_person_rule.store(on, Ordering::Relaxed);
    }

    /// Sets how many independent approvals a model needs: 1 or 2.
    pub fn set_model_review_quorum(&self, quorum: u64) {
        self.model_review_quorum.store(quorum.clamp(1, 2), Ordering::Relaxed);
    }

    /// Changes how many runs an authorisation allows in any hour (at least 1).
    pub fn set_max_runs_per_hour(&self, limit: u64) {
        self.max_runs_per_hour.store(limit.max(1), Ordering::Relaxed);
    }

    /// Sets the least ε a run may spend.
    pub fn set_min_epsilon_per_run(&self, epsilon: Epsilon) {
        self.min_epsilon_units.store(epsilon.units(), Ordering::Relaxed);
    }

    /// Sets the fixed part of every run's visibility delay (tests shorten it).
    pub fn set_visibility_base(&self, base: std::time::Duration) {
        self.visibility_base_ms.store(u64::try_from(base.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

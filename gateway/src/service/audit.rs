//! The audit log as a service: signed checkpoints (every N entries or T seconds, and on
//! demand), inclusion and consistency proofs, receipts for releases, search and export.
//!
//! It reads the log and signs tree heads; it must not write entries other than its own
//! access records, and it never changes one.

use sluice_audit::{Act, Detail};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sluice_policies::{Action, Resource};

use super::{App, Caller};
use crate::error::{ServiceError, ServiceResult};
use crate::store::parse_time;
use crate::timestamp::Timestamp;
use sluice_audit::{
    AuditEntry, AuditOutcome, Checkpoint, NeededSubtrees, ORIGIN, Receipt, consistency_proof_from, export_text,
    inclusion_proof_from,
};

/// A checkpoint is issued once this many entries are not covered by the latest one…
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 256;
/// …or once any entry has waited this long.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
/// How often a serving node settles the runs of nodes that died
/// ([`App::settle_interrupted_runs`]).
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How often a serving gateway computes alerts from the log and records new ones.
pub const ALERT_SCAN_EVERY: Duration = Duration::from_secs(300);
/// Checkpoints issued on demand (`?fresh=true`) are at most one this often.
pub const FRESH_CHECKPOINT_EVERY: time::Duration = time::Duration::seconds(5);

/// One witness as a regulator sees it: whether the gateway accepts it, and how far the
/// checkpoints it cosigned reach.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WitnessStatus {
    pub name: String,
    /// The gateway is configured to accept its cosignatures (`witnesses`); a witness that
    /// cosigned in the past but is no longer configured is listed with `false`.
    pub accepted: bool,
    /// Checkpoints it cosigned.
    pub cosignatures: u64,
    /// The largest checkpoint it cosigned, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub latest_at: Option<Timestamp>,
    /// Entries the latest checkpoint holds that no checkpoint it cosigned covers: 0 when it
    /// cosigned the latest one.
    pub entries_behind: u64,
}

/// The witnesses against the latest checkpoint (`GET /v1/audit/witnesses`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WitnessReport {
    /// The size of the latest checkpoint (0 before the first).
    pub checkpoint_size: u64,
    pub witnesses: Vec<WitnessStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CheckpointView {
    pub size: u64,
    /// The signed note (C2SP signed-note shape), to store and compare.
    pub checkpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ProofView {
    pub proof: Vec<String>,
}

/// Filters for searching the log; every field is optional. The API takes them as query
/// parameters and `sluice audit search` as flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor_id: Option<i64>,
    pub action: Option<String>,
    /// Prefix match on the object, e.g. `authorisation:3` or `dataset:`.
    pub object: Option<String>,
    /// ok, denied or failed.
    pub outcome: Option<String>,
    /// RFC 3339 bounds on the entry's time.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Entries whose details or object name this authorisation.
    pub authorisation: Option<i64>,
    /// Entries whose details or object name this dataset.
    pub dataset: Option<i64>,
    pub limit: Option<usize>,
}

impl App {
    /// Signs and stores a checkpoint of the whole log, unless the latest already covers it.
    /// It reads only the leaves logged since the previous call: the tree's frontier is kept.
    pub async fn issue_checkpoint(&self) -> anyhow::Result<CheckpointView> {
        self.checkpoint_covering(None).await
    }

    /// A checkpoint covering at least the first `at_least` entries (the whole log without
    /// it): the latest if it does, otherwise a fresh one of the whole log. Reads the latest
    /// checkpoint once, and the leaves logged since the tree's kept frontier.
    async fn checkpoint_covering(&self, at_least: Option<u64>) -> anyhow::Result<CheckpointView> {
        let _one_at_a_time = self.log.checkpoint_lock.lock().await;
        let latest = self.store.latest_checkpoint().await?;
        if let (Some(at_least), Some((size, note))) = (at_least, &latest)
            && *size as u64 >= at_least
        {
            return Ok(CheckpointView { size: *size as u64, checkpoint: note.clone() });
        }
        let mut tree = self.log.tree.lock().await;
        if tree.size() == 0 {
            // First checkpoint since the gateway started: resume the frontier from the
            // stored subtrees of the log's size (O(log n) rows) instead of every leaf.
            let size = self.store.audit_size().await?;
            *tree = self.store.tree(size).await?;
        }
        for leaf in self.store.leaf_hashes_after(tree.size()).await? {
            tree.push(leaf);
        }
        let size = tree.size();
        if let Some((latest, note)) = latest
            && latest as u64 == size
        {
            return Ok(CheckpointView { size, checkpoint: note });
        }
        let checkpoint = self.sign_checkpoint(size, tree.root()).await?;
        Ok(CheckpointView { size, checkpoint })
    }

    /// Signs the tree head of `size` entries with `root`, dated now, and stores it: the one
    /// place a checkpoint is made. Call it holding `checkpoint_lock`.
    async fn sign_checkpoint(&self, size: u64, root: [u8; 32]) -> anyhow::Result<String> {
        let (note, now) = self.signed_head(size, root);
        self.store.insert_checkpoint(size, &root, &note, now).await?;
        Ok(note)
    }

    fn signed_head(&self, size: u64, root: [u8; 32]) -> (String, time::OffsetDateTime) {
        let now = self.now();
        let checkpoint = Checkpoint { origin: ORIGIN.into(), size, root, time: Some(crate::store::format_time(now)) };
        (checkpoint.sign(&self.log.signing), now)
    }

    /// Signs a checkpoint of the whole log inside `tx`, which appended its last entries and
    /// holds the write lock, so the log has exactly `size` entries: the root comes from the
    /// stored subtrees of that size (O(log n) rows, the transaction's own included), and
    /// the checkpoint commits with the entries it covers, in one wait for the disk. Call it
    /// holding `checkpoint_lock` ([`App::checkpoint_turn`]).
    pub(crate) async fn seal_in(&self, tx: &mut crate::store::Tx, size: u64) -> anyhow::Result<CheckpointView> {
        let root = crate::store::Store::tree_in(tx, size).await?.root();
        let (note, now) = self.signed_head(size, root);
        crate::store::Store::insert_checkpoint_in(tx, size, &root, &note, now).await?;
        Ok(CheckpointView { size, checkpoint: note })
    }

    /// The turn at making checkpoints, to take before a write transaction that seals one
    /// ([`App::seal_in`]): checkpoints are made one at a time, in the order of their sizes.
    pub(crate) async fn checkpoint_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.log.checkpoint_lock.lock().await
    }

    /// The receipt of entry `seq` under a checkpoint of `checkpoint.size` entries.
    pub(crate) async fn receipt_under(
        &self,
        seq: u64,
        entry: String,
        checkpoint: CheckpointView,
    ) -> anyhow::Result<Receipt> {
        let inclusion_proof = self.stored_inclusion_proof(seq, checkpoint.size).await?;
        Ok(Receipt { seq, entry, checkpoint: checkpoint.checkpoint, inclusion_proof })
    }

    /// PATH(seq - 1, D[size]) from the stored subtrees: O(log n) rows.
    async fn stored_inclusion_proof(&self, seq: u64, size: u64) -> anyhow::Result<Vec<String>> {
        let needed = NeededSubtrees::default();
        inclusion_proof_from(&needed, seq - 1, size);
        let stored = self.store.subtrees(&needed.into_keys()).await?;
        Ok(inclusion_proof_from(&stored, seq - 1, size).iter().map(hex::encode).collect())
    }

    /// PROOF(old, D[size]) from the stored subtrees: O(log n) rows.
    async fn stored_consistency_proof(&self, old: u64, size: u64) -> anyhow::Result<Vec<[u8; 32]>> {
        let needed = NeededSubtrees::default();
        consistency_proof_from(&needed, old, size);
        let stored = self.store.subtrees(&needed.into_keys()).await?;
        Ok(consistency_proof_from(&stored, old, size))
    }

    /// Issues checkpoints in the background while the gateway serves: whenever
    /// [`CHECKPOINT_EVERY_ENTRIES`] entries or [`CHECKPOINT_EVERY`] have passed. When
    /// `stop` turns true it ends between two rounds (never inside one), after sealing a
    /// last checkpoint over every entry not yet covered, so a stopped gateway leaves its
    /// whole log signed. Every [`SWEEP_EVERY`] it also settles the runs of dead nodes, and
    /// every [`ALERT_SCAN_EVERY`] it records the alerts the log raises.
    pub fn spawn_checkpointer(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_issued = tokio::time::Instant::now();
            let mut last_swept = tokio::time::Instant::now();
            let mut last_scanned = tokio::time::Instant::now();
            loop {
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => false,
                    _ = stop.wait_for(|stop| *stop) => true,
                };
                // One round: seal when due, or, on a stop, whatever is not yet covered.
                let round = async {
                    let size = app.store.audit_size().await?;
                    let covered = app.store.latest_checkpoint().await?.map_or(0, |(size, _)| size as u64);
                    let due = size > covered
                        && (stopping
                            || size - covered >= CHECKPOINT_EVERY_ENTRIES
                            || last_issued.elapsed() >= CHECKPOINT_EVERY);
                    anyhow::Ok(if due { Some(app.issue_checkpoint().await?) } else { None })
                };
                match round.await {
                    Ok(Some(view)) => {
                        last_issued = tokio::time::Instant::now();
                        tracing::info!(size = view.size, last = stopping, "audit checkpoint issued");
                    }
                    Ok(None) => {}
                    Err(error) => tracing::error!(error = %format!("{error:#}"), "issuing an audit checkpoint failed"),
                }
                if stopping {
                    return;
                }
                if last_scanned.elapsed() >= ALERT_SCAN_EVERY {
                    last_scanned = tokio::time::Instant::now();
                    match app.scan_alerts(&sluice_audit::alerts::AlertRules::default()).await {
                        Ok(0) => {}
                        Ok(raised) => tracing::warn!(raised, "alerts raised from the audit log"),
                        Err(error) => {
                            tracing::error!(error = %format!("{error:#}"), "scanning the log for alerts failed")
                        }
                    }
                }
                if last_swept.elapsed() >= SWEEP_EVERY {
                    last_swept = tokio::time::Instant::now();
                    if let Err(error) = app.settle_interrupted_runs().await {
                        tracing::error!(error = %format!("{error:#}"), "settling the runs of dead nodes failed");
                    }
                }
            }
        })
    }

    /// The latest checkpoint; with `fresh`, a new one covering everything logged so far —
    /// at most one every [`FRESH_CHECKPOINT_EVERY`] for all callers together, since each
    /// signs over the whole tree (receipts get theirs regardless).
    pub async fn checkpoint(&self, caller: &Caller, fresh: bool) -> ServiceResult<CheckpointView> {
        if fresh {
            let now = self.now();
            let wait = {
                let mut last = self.log.last_fresh.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match *last {
                    Some(issued) if now < issued + FRESH_CHECKPOINT_EVERY => {
                        Some((issued + FRESH_CHECKPOINT_EVERY - now).whole_seconds().max(1))
                    }
                    _ => {
                        *last = Some(now);
                        None
                    }
                }
            };
            if let Err(denial) = sluice_policies::check_fresh_checkpoint(wait, FRESH_CHECKPOINT_EVERY.whole_seconds()) {
                return Err(self.deny(caller, Act::AuditCheckpoint, "audit_log", denial).await);
            }
        }
        let view = match (fresh, self.store.latest_checkpoint().await?) {
            (false, Some((size, note))) => CheckpointView { size: size as u64, checkpoint: note },
            _ => self.issue_checkpoint().await?,
        };
        self.record(
            Self::event(caller, Act::AuditCheckpoint, "audit_log", AuditOutcome::Ok).detail(Detail::Size, view.size),
        )
        .await?;
        Ok(view)
    }

    /// The proof that entry `seq` is in the tree of the first `size` entries.
    pub async fn inclusion(&self, caller: &Caller, seq: u64, size: u64) -> ServiceResult<ProofView> {
        let log_size = self.store.audit_size().await?;
        if seq == 0 || seq > size || size > log_size {
            return Err(ServiceError::invalid(format!("need 1 <= seq <= size <= {log_size} (the log's size)")));
        }
        let proof = self.stored_inclusion_proof(seq, size).await?;
        self.record(
            Self::event(caller, Act::AuditProof, format!("audit:{seq}"), AuditOutcome::Ok).detail(Detail::Size, size),
        )
        .await?;
        Ok(ProofView { proof })
    }

    /// The proof that the tree of `to` entries extends the tree of `from` entries.
    pub async fn consistency(&self, caller: &Caller, from: u64, to: u64) -> ServiceResult<ProofView> {
        let log_size = self.store.audit_size().await?;
        if from == 0 || from > to || to > log_size {
            return Err(ServiceError::invalid(format!("need 1 <= from <= to <= {log_size} (the log's size)")));
        }
        let proof = self.stored_consistency_proof(from, to).await?.iter().map(hex::encode).collect();
        self.record(
            Self::event(caller, Act::AuditProof, "audit_log", AuditOutcome::Ok)
                .detail(Detail::From, from)
                .detail(Detail::To, to),
        )
        .await?;
        Ok(ProofView { proof })
    }

    /// A C2SP tlog-witness `add-checkpoint` request for a witness that keeps the tree of
    /// `old` entries (0 before its first): the consistency proof from `old` to the latest
    /// checkpoint, and that checkpoint's note. A regulator's witness checks and cosigns it.
    pub async fn witness_request(&self, caller: &Caller, old: u64) -> ServiceResult<String> {
        self.guard(caller, Action::ExportAudit, "audit_log", &Resource::Platform).await?;
        let latest = self.checkpoint_covering(None).await?;
        if old > latest.size {
            return Err(ServiceError::Conflict(format!(
                "the witness keeps {old} entries but the latest checkpoint has {}: a fork or a rollback, keep the evidence",
                latest.size
            )));
        }
        let proof = if old == 0 || old == latest.size {
            Vec::new()
        } else {
            self.stored_consistency_proof(old, latest.size).await?
        };
        let note = self.store.checkpoint_note(latest.size).await?.context("the latest checkpoint's note")?;
        self.record(
            Self::event(caller, Act::AuditWitness, "audit_log", AuditOutcome::Ok)
                .detail(Detail::From, old)
                .detail(Detail::To, latest.size),
        )
        .await?;
        Ok(sluice_audit::witness::add_checkpoint_request(old, &proof, &note))
    }

    /// Which witnesses the gateway accepts and how far each one's cosignatures reach, against
    /// the latest checkpoint: a witness that stopped cosigning shows as entries behind.
    pub async fn witness_status(&self, caller: &Caller) -> ServiceResult<WitnessReport> {
        let checkpoint_size = self.store.latest_checkpoint().await?.map_or(0, |(size, _)| size as u64);
        let accepted = self.log.witness_names();
        let cosigned = self.store.cosignature_summary().await?;
        let mut witnesses: Vec<WitnessStatus> = accepted
            .iter()
            .map(|name| WitnessStatus {
                name: name.clone(),
                accepted: true,
                cosignatures: 0,
                latest_size: None,
                latest_at: None,
                entries_behind: checkpoint_size,
            })
            .collect();
        for (name, count, size, at) in cosigned {
            let size = u64::try_from(size).context("a stored checkpoint size")?;
            let status = WitnessStatus {
                accepted: accepted.contains(&name),
                name,
                cosignatures: u64::try_from(count).context("a count")?,
                latest_size: Some(size),
                latest_at: Some(Timestamp::parse(&at).context("a stored cosignature's time")?),
                entries_behind: checkpoint_size.saturating_sub(size),
            };
            match witnesses.iter_mut().find(|known| known.name == status.name) {
                Some(known) => *known = status,
                None => witnesses.push(status),
            }
        }
        self.record(
            Self::event(caller, Act::AuditWitnesses, "audit_log", AuditOutcome::Ok)
                .detail(Detail::Returned, witnesses.len()),
        )
        .await?;
        Ok(WitnessReport { checkpoint_size, witnesses })
    }

    /// Stores a witness's cosignature on the checkpoint of `size`, once it verifies against
    /// the key of a witness the gateway is configured to accept.
    pub async fn add_cosignature(&self, caller: &Caller, size: u64, line: &str) -> ServiceResult<()> {
        let action = Action::ExportAudit;
        self.guard(caller, action, "audit_log", &Resource::Platform).await?;
        let line = line.trim_end_matches('\n');
        let name = sluice_audit::signature_line(line)
            .map(|(name, _)| name)
            .filter(|_| !line.contains('\n'))
            .ok_or_else(|| ServiceError::invalid("a cosignature is one line: `— <witness name> <base64>`"))?;
        let Some(key) = self.log.witness(name) else {
            return Err(ServiceError::invalid(format!("`{name}` is not a witness this gateway accepts (`witnesses`)")));
        };
        let Some(note) = self.store.checkpoint_note(size).await? else {
            return Err(self.not_found(caller, Act::AuditCosign, "checkpoint", size as i64).await);
        };
        let (_, body, _) = Checkpoint::parse(&note).map_err(|error| anyhow::anyhow!("a stored checkpoint: {error}"))?;
        if sluice_audit::witness::cosigned_at(&body, line, name, &key).is_none() {
            return Err(ServiceError::invalid(format!(
                "the cosignature does not verify with witness `{name}`'s key over the checkpoint of size {size}"
            )));
        }
        if !self.store.insert_cosignature(size, name, line, self.now()).await? {
            return Err(ServiceError::Conflict(format!(
                "witness `{name}` already cosigned the checkpoint of size {size}"
            )));
        }
        self.record(
            Self::event(caller, Act::AuditCosign, format!("checkpoint:{size}"), AuditOutcome::Ok)
                .detail(Detail::Witness, name),
        )
        .await?;
        Ok(())
    }

    /// A receipt for entry `seq`: the entry, a checkpoint covering it, the inclusion proof.
    pub(crate) async fn receipt(&self, seq: u64) -> anyhow::Result<Receipt> {
        let entry = self.store.audit_entry(seq).await?.context("the receipt's entry")?;
        self.receipt_for(seq, entry).await
    }

    /// A receipt for entry `seq` whose canonical text the caller already holds (it just
    /// wrote it).
    pub(crate) async fn receipt_for(&self, seq: u64, entry: String) -> anyhow::Result<Receipt> {
        let view = self.checkpoint_covering(Some(seq)).await?;
        self.receipt_under(seq, entry, view).await
    }

    /// Searches the log (regulators only).
    pub async fn search_audit(&self, caller: &Caller, query: AuditQuery) -> ServiceResult<Vec<AuditEntry>> {
        self.guard(caller, Action::ExportAudit, "audit_log", &Resource::Platform).await?;
        let since = query
            .since
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|error| ServiceError::invalid(format!("{error:#}")))?;
        let until = query
            .until
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|error| ServiceError::invalid(format!("{error:#}")))?;
        let limit = query.limit.unwrap_or(1_000).min(100_000);
        let names = |key: &str, id: Option<i64>, entry: &AuditEntry, prefix: &str| {
            id.is_none_or(|id| {
                entry.details.get(key).is_some_and(|value| *value == id.to_string())
                    || entry.object == format!("{prefix}:{id}")
            })
        };
        let mut found = Vec::new();
        for text in self.store.audit_entries().await? {
            let entry: AuditEntry = serde_json::from_str(&text).context("a stored audit entry")?;
            let time = parse_time(&entry.time)?;
            let matches = query.actor_id.is_none_or(|actor| entry.actor_id == Some(actor))
                && query.action.as_ref().is_none_or(|action| entry.action == *action)
                && query.object.as_ref().is_none_or(|object| entry.object.starts_with(object.as_str()))
                && query.outcome.as_ref().is_none_or(|outcome| {
                    serde_json::to_value(entry.outcome).is_ok_and(|value| value == outcome.as_str())
                })
                && since.is_none_or(|since| time >= since)
                && until.is_none_or(|until| time < until)
                && names("authorisation", query.authorisation, &entry, "authorisation")
                && names("dataset", query.dataset, &entry, "dataset");
            if matches {
                found.push(entry);
                if found.len() == limit {
                    break;
                }
            }
        }
        self.record(
            Self::event(caller, Act::AuditSearch, "audit_log", AuditOutcome::Ok).detail(Detail::Results, found.len()),
        )
        .await?;
        Ok(found)
    }

    /// The regulator's export: header, every entry, and every checkpoint, the last one
    /// issued now over all of them. The export records itself first, so it appears in it.
    pub async fn export_audit(&self, caller: &Caller) -> ServiceResult<String> {
        let action = Action::ExportAudit;
        self.guard(caller, action, "audit_log", &Resource::Platform).await?;
        self.spend(caller, crate::parts::Expensive::AuditExport, 1, action.audit(), "audit_log").await?;
        self.record(Self::event(caller, action.audit(), "audit_log", AuditOutcome::Ok)).await?;
        Ok(self.audit_export_text().await?)
    }

    /// The export text, for the regulator endpoint.
    pub async fn audit_export_text(&self) -> anyhow::Result<String> {
        let latest = self.issue_checkpoint().await?;
        let entries = self.store.audit_entries().await?;
        let checkpoints = self.store.checkpoints().await?;
        let text = export_text(
            &self.public_key(),
            entries.iter().take(latest.size as usize).map(String::as_str),
            checkpoints.iter().filter(|(size, _)| *size as u64 <= latest.size).map(|(_, note)| note.as_str()),
        );
        Ok(text)
    }
}

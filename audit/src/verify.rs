//! Offline verification of an audit export and of release receipts: what
//! `sluice audit verify` and `sluice audit verify-receipt` run, with no server and no
//! database.
//!
//! It owns the export format and every check on it. It must not trust anything in the
//! export it can recompute: leaf hashes, the hash chain, every checkpoint's root and the
//! sequence numbers are all recomputed, and only signatures tie the result to Sluice's key.
//! It never panics on any input.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;
use crate::merkle::{Hash, RootBuilder, verify_inclusion};
use crate::{Act, AuditEntry, AuditOutcome, Checkpoint, Detail, ENTRY_VERSION, leaf_hash};

pub const EXPORT_FORMAT: &str = "sluice-audit-export/1";

/// The first line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub origin: String,
    pub public_key: String,
}

/// A checkpoint line of an export (after the entries).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportCheckpoint {
    pub checkpoint: String,
}

/// The first problem found, with the 1-based line of the export it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub line: usize,
    pub problem: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for VerifyError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub entries: u64,
    pub checkpoints: u64,
    pub root_hex: String,
    pub public_key: String,
    /// Whether the key was pinned by the caller rather than taken from the export.
    pub key_pinned: bool,
    /// The size of the caller's trusted checkpoint, when one was given and is consistent.
    pub trusted_size: Option<u64>,
    pub denied: u64,
    pub failed: u64,
    pub by_action: BTreeMap<String, u64>,
}

fn fail(line: usize, problem: impl Into<String>) -> VerifyError {
    VerifyError { line, problem: problem.into() }
}

/// Which key an export must be signed by. There is no default: a caller names the key it
/// pinned out of band, or says out loud that it trusts the one inside the export (which a
/// forger who re-signs the whole log also controls).
#[derive(Debug, Clone, Copy)]
pub enum KeyTrust<'a> {
    /// The key the regulator pinned (from `GET /v1/audit/public-key`, kept out of band).
    Pinned(&'a PublicKey),
    /// The key the export names: proves only that the log is self-consistent.
    Embedded,
}

/// Verifies a whole export, signed by the key `trust` names. With `trusted_checkpoint` (a
/// signed note the regulator kept from before), the export must extend the log that
/// checkpoint describes: a rolled-back or rewritten log is caught.
pub fn verify_export(
    export: &str,
    trust: KeyTrust<'_>,
    trusted_checkpoint: Option<&str>,
) -> Result<VerifySummary, VerifyError> {
    let pinned_key = match trust {
        KeyTrust::Pinned(key) => Some(key),
        KeyTrust::Embedded => None,
    };
    let lines: Vec<&str> = export.lines().collect();
    if lines.len() < 2 {
        return Err(fail(lines.len().max(1), "an export needs a header line and a checkpoint line"));
    }
    let header: ExportHeader =
        serde_json::from_str(lines[0]).map_err(|error| fail(1, format!("header is not valid: {error}")))?;
    if header.format != EXPORT_FORMAT {
        return Err(fail(1, format!("format `{}` is not {EXPORT_FORMAT}", header.format)));
    }
    let exported_key = PublicKey::parse(&header.public_key).map_err(|error| fail(1, format!("{error:#}")))?;
    if pinned_key.is_some_and(|pinned| *pinned != exported_key) {
        return Err(fail(1, "the export names a different public key than the one you pinned"));
    }
    let key = pinned_key.unwrap_or(&exported_key);

    // Entries come first, then one or more checkpoint lines.
    let first_checkpoint = lines.iter().position(|line| line.starts_with("{\"checkpoint\"")).unwrap_or(lines.len());
    let entry_lines = &lines[1..first_checkpoint.max(1)];
    let checkpoints = parse_checkpoints(&lines, first_checkpoint, &header, key)?;
    let trusted = trusted_checkpoint
        .map(|note| Checkpoint::verify(note, key).map_err(|problem| fail(1, format!("trusted checkpoint: {problem}"))))
        .transpose()?;

    let mut summary = VerifySummary {
        entries: entry_lines.len() as u64,
        checkpoints: checkpoints.len() as u64,
        root_hex: String::new(),
        public_key: key.to_string(),
        key_pinned: pinned_key.is_some(),
        trusted_size: trusted.as_ref().map(|checkpoint| checkpoint.size),
        denied: 0,
        failed: 0,
        by_action: BTreeMap::new(),
    };
    let mut builder = RootBuilder::default();
    let mut previous: Hash = [0; 32];
    let mut rules = ContentRules::default();
    let mut pending = checkpoints.iter().peekable();
    // A checkpoint that does not match is reported after the pass, unless an entry error
    // names the altered entry more precisely first (the chain usually does, one line on).
    let mut checkpoint_mismatch: Option<VerifyError> = None;
    // The latest entry time so far: a checkpoint is signed after every entry it covers.
    let mut latest_entry: Option<Timestamp> = None;
    for (index, text) in entry_lines.iter().enumerate() {
        let line = index + 2;
        let entry = check_entry(text, line, index as u64 + 1, &previous)?;
        rules.check(&entry).map_err(|problem| fail(line, problem))?;
        latest_entry = latest_entry.max(timestamp(&entry.time));
        previous = leaf_hash(text.as_bytes());
        builder.push(previous);
        *summary.by_action.entry(entry.action.clone()).or_default() += 1;
        match entry.outcome {
            AuditOutcome::Denied => summary.denied += 1,
            AuditOutcome::Failed => summary.failed += 1,
            AuditOutcome::Ok => {}
        }
        if let Some(trusted) = &trusted
            && trusted.size == builder.size()
            && trusted.root != builder.root()
        {
            return Err(fail(line, "the log was rewritten: it no longer matches your trusted checkpoint at this size"));
        }
        while let Some((checkpoint_line, checkpoint)) = pending.peek() {
            if checkpoint.size != builder.size() {
                break;
            }
            if checkpoint.root != builder.root() && checkpoint_mismatch.is_none() {
                checkpoint_mismatch = Some(fail(
                    *checkpoint_line,
                    format!("the checkpoint at size {} does not match the entries", checkpoint.size),
                ));
            }
            if checkpoint.time.as_deref().and_then(timestamp).is_some_and(|signed| Some(signed) < latest_entry) {
                return Err(fail(
                    *checkpoint_line,
                    format!("the checkpoint at size {} is dated before an entry it covers", checkpoint.size),
                ));
            }
            pending.next();
        }
    }
    if let Some(mismatch) = checkpoint_mismatch {
        return Err(mismatch);
    }
    // Sizes are checked after the entries, so a missing entry is named where it is missing.
    let entries = entry_lines.len() as u64;
    if let Some(trusted) = &trusted
        && trusted.size > entries
    {
        return Err(fail(
            lines.len(),
            format!(
                "the log was rolled back: your trusted checkpoint covers {} entries, the export only {entries}",
                trusted.size
            ),
        ));
    }
    let (line, last) = checkpoints.last().expect("at least one checkpoint");
    if last.size != entries {
        return Err(fail(
            *line,
            format!("the last checkpoint covers {} entries but the export has {entries}", last.size),
        ));
    }
    summary.root_hex = hex::encode(builder.root());
    Ok(summary)
}

/// Parses and checks every checkpoint line: signature, origin, increasing sizes.
fn parse_checkpoints(
    lines: &[&str],
    first: usize,
    header: &ExportHeader,
    key: &PublicKey,
) -> Result<Vec<(usize, Checkpoint)>, VerifyError> {
    if first >= lines.len() {
        return Err(fail(lines.len(), "the export has no checkpoint"));
    }
    let mut checkpoints: Vec<(usize, Checkpoint)> = Vec::new();
    for (offset, text) in lines[first..].iter().enumerate() {
        let line = first + offset + 1;
        let parsed: ExportCheckpoint =
            serde_json::from_str(text).map_err(|error| fail(line, format!("checkpoint line is not valid: {error}")))?;
        let checkpoint = Checkpoint::verify(&parsed.checkpoint, key).map_err(|problem| fail(line, problem))?;
        if checkpoint.origin != header.origin {
            return Err(fail(line, "checkpoint origin differs from the export's"));
        }
        if checkpoints.last().is_some_and(|(_, last)| last.size >= checkpoint.size) {
            return Err(fail(line, "checkpoints must grow in size"));
        }
        if let Some(time) = &checkpoint.time {
            let Some(time) = timestamp(time) else {
                return Err(fail(line, "a checkpoint time the verifier cannot read"));
            };
            let earlier = checkpoints.iter().rev().find_map(|(_, last)| last.time.as_deref().and_then(timestamp));
            if earlier.is_some_and(|earlier| time < earlier) {
                return Err(fail(line, "a checkpoint signed before the one before it (its time went backwards)"));
            }
        }
        checkpoints.push((line, checkpoint));
    }
    Ok(checkpoints)
}

fn check_entry(text: &str, line: usize, expected_seq: u64, previous: &Hash) -> Result<AuditEntry, VerifyError> {
    let entry: AuditEntry =
        serde_json::from_str(text).map_err(|error| fail(line, format!("entry is not valid: {error}")))?;
    if entry.canonical() != text {
        return Err(fail(line, "entry is not in canonical form (it was edited)"));
    }
    if entry.v != ENTRY_VERSION {
        return Err(fail(line, format!("entry version {} is not supported", entry.v)));
    }
    if entry.seq != expected_seq {
        return Err(fail(line, format!("sequence number {} where {expected_seq} was expected", entry.seq)));
    }
    if entry.prev != hex::encode(previous) {
        // Either the entry before was altered after this one was logged, or this entry's
        // link was. Name the earlier line; it is the first that can be wrong.
        return Err(fail(
            (line - 1).max(2),
            format!("the hash chain breaks between this entry and the next (line {line}): one was altered"),
        ));
    }
    Ok(entry)
}

/// What the log itself must show, whatever the server says. Each rule here was once
/// accepted on a genuinely signed but dishonest log:
/// - an actor acts only in the role it was created with, and the actions that belong to a
///   role (a review, a run, a registration) are done by that role;
/// - an authorisation is created once, for an application whose last review approved it;
/// - a model runs only under the authorisation it was submitted for, once a review left it
///   `approved` there (a quorum shows as the resulting state), and not after it was revoked
///   there; revoked bytes are never approved again for that authorisation;
/// - nobody reviews their own application or model;
/// - a run is started by the authorisation's operator, inside its window, never after a
///   revocation, and its charge counts whatever outcome the entry claims; neither the
///   authorisation's nor any dataset's budget is overspent (a run over joined datasets is
///   charged to each, and names the datasets its authorisation joins, no other);
/// - a release follows its run's start, once;
/// - ε is written as exact millionths (digits, at most six decimals, nothing else);
/// - every principal belongs to an organisation the log created; separation of duties is
///   by organisation id: nobody reviews an application, a model or a result of their own
///   organisation, the second demand review and a held result's review are the providing
///   department's (for a scenario joining several departments' data, each department
///   reviews once, and it is approved only when all have), the first is the data bureau's;
/// - an operator acts only inside its licence's window;
/// - a reviewer, an operator or an administrator created through the API acts only after a
///   second administrator (not its creator) approved it: the two-person rule.
#[derive(Debug, Default)]
struct ContentRules {
    /// Principal id → what its creation recorded.
    principals: HashMap<i64, PrincipalFacts>,
    /// Organisations the log created.
    organisations: HashSet<String>,
    /// Principals an administrator disabled: they act no more.
    disabled: HashSet<i64>,
    /// Application id → (applicant, the state its last review left, its dataset).
    applications: HashMap<String, (Option<i64>, String, Option<String>)>,
    /// Dataset id → the organisation of the provider that registered it.
    providers: HashMap<String, String>,
    /// Application id → the datasets it joins to its first one (ids separated by `,`).
    joins: HashMap<String, String>,
    /// Application id → the providing departments' organisations that approved it.
    provider_approvals: HashMap<String, HashSet<String>>,
    /// Run id → (the datasets it read, operator).
    runs: HashMap<String, (Vec<String>, Option<i64>)>,
    authorisations: HashMap<String, Authorisation>,
    /// Dataset id → (total, spent) in millionths of ε.
    datasets: HashMap<String, (u64, u64)>,
    /// Model id → (authorisation, digest, submitter).
    models: HashMap<String, (String, String, Option<i64>)>,
    /// (authorisation, digest) pairs approved, and those revoked for good.
    approved: HashSet<(String, String)>,
    revoked: HashSet<(String, String)>,
    /// Runs started with a charge, and those released.
    started: HashSet<String>,
    released: HashSet<String>,
}

/// A principal as `principal.create` (or `principal.bootstrap`) recorded it.
#[derive(Debug)]
struct PrincipalFacts {
    role: String,
    organisation: String,
    reviewer_kind: Option<String>,
    /// An operator's licence window.
    licence: Option<(Timestamp, Timestamp)>,
    created_by: Option<i64>,
    /// Waits for a second administrator's `principal.approve`.
    pending: bool,
}

/// The roles the two-person rule holds: created through the API, they wait for a second
/// administrator.
const SECOND_ADMIN_ROLES: [&str; 3] = ["reviewer", "operator", "admin"];

/// The operator's actions that need a licence valid at the time.
const LICENSED_ACTIONS: [Act; 4] = [Act::ApplicationSubmit, Act::ApplicationWithdraw, Act::ModelSubmit, Act::RunStart];

#[derive(Debug)]
struct Authorisation {
    operator: Option<i64>,
    dataset: Option<String>,
    /// The datasets joined to the first, if it joins any (ids separated by `,`).
    joined: Option<String>,
    valid_until: Option<Timestamp>,
    total: u64,
    spent: u64,
    revoked: bool,
}

/// ε as the gateway writes it: digits, optionally a point and one to six digits, no sign,
/// exponent or padding; returned in millionths, exactly.
pub(crate) fn micro_epsilon(text: Option<&String>) -> Option<u64> {
    let text = text?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > 6
        || (whole.len() > 1 && whole.starts_with('0'))
    {
        return None;
    }
    if text.contains('.') && (fraction.is_empty() || fraction.ends_with('0')) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let fraction: u64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<6}").parse().ok()? };
    whole.checked_mul(1_000_000)?.checked_add(fraction)
}

/// An RFC 3339 UTC time (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`) as a comparable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp(
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
);

pub(crate) fn timestamp(text: &str) -> Option<Timestamp> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let number = |part: &str, width: usize| -> Option<u64> {
        (part.len() == width && part.bytes().all(|byte| byte.is_ascii_digit())).then(|| part.parse().ok()).flatten()
    };
    let mut date = date.split('-');
    let (year, month, day) = (number(date.next()?, 4)?, number(date.next()?, 2)?, number(date.next()?, 2)?);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock = clock.split(':');
    let (hour, minute, second) = (number(clock.next()?, 2)?, number(clock.next()?, 2)?, number(clock.next()?, 2)?);
    if date.next().is_some()
        || clock.next().is_some()
        || fraction.len() > 9
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let nanos = if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().ok()? };
    Some(Timestamp(year, month, day, hour, minute, second, nanos))
}

/// At most 16 characters of a value, for a message (never splits a character).
fn short(text: &str) -> String {
    text.chars().take(16).collect()
}

fn id_of<'a>(object: &'a str, kind: &str) -> Result<&'a str, String> {
    object
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("`{}` names no {kind}", short(object)))
}

impl ContentRules {
    fn check(&mut self, entry: &AuditEntry) -> Result<(), String> {
        let Some(act) = Act::parse(&entry.action) else {
            return Err(format!("`{}` is not an action of the audit vocabulary", short(&entry.action)));
        };
        let detail = |key: Detail| entry.details.get(key.as_str());
        let need = |key: Detail| detail(key).ok_or_else(|| format!("a {} entry without its {key}", entry.action));
        // A charge is a charge, whatever outcome the entry claims.
        if act == Act::RunStart && entry.outcome != AuditOutcome::Ok && detail(Detail::EpsilonCharged).is_some() {
            return self.charge(entry);
        }
        if entry.outcome != AuditOutcome::Ok {
            return Ok(());
        }
        if let Some(actor) = entry.actor_id
            && let Some(created) = self.principals.get(&actor)
        {
            if created.role != entry.role {
                return Err(format!(
                    "principal {actor} acts as {} but was created as {}",
                    short(&entry.role),
                    short(&created.role)
                ));
            }
            if created.pending {
                return Err(format!("principal {actor} acted before a second administrator approved it"));
            }
            if let Some((from, until)) = created.licence
                && LICENSED_ACTIONS.contains(&act)
                && timestamp(&entry.time).is_none_or(|time| time < from || time >= until)
            {
                return Err(format!("operator {actor} did {} outside its licence's window", entry.action));
            }
        }
        if let Some(actor) = entry.actor_id
            && self.disabled.contains(&actor)
        {
            return Err(format!("principal {actor} acted after it was disabled"));
        }
        if let Some(role) = act.required_role() {
            let Some(actor) = entry.actor_id else {
                return Err(format!("a {} entry with no actor", entry.action));
            };
            if !self.principals.contains_key(&actor) {
                return Err(format!("principal {actor}, whom the log never created, did {}", entry.action));
            }
            if entry.role != role {
                return Err(format!("{} done as {}, not by a {role}", entry.action, short(&entry.role)));
            }
        }
        match act {
            Act::OrganisationCreate => {
                let id = id_of(&entry.object, "organisation")?.to_owned();
                if !self.organisations.insert(id.clone()) {
                    return Err(format!("organisation {} created twice", short(&id)));
                }
            }
            Act::PrincipalBootstrap | Act::PrincipalCreate => self.create_principal(entry)?,
            Act::PrincipalApprove => {
                let id: i64 =
                    id_of(&entry.object, "principal")?.parse().map_err(|_| "a principal id that is not a number")?;
                let Some(principal) = self.principals.get_mut(&id) else {
                    return Err(format!("an approval of principal {id}, whom the log never created"));
                };
                if !principal.pending {
                    return Err(format!("an approval of principal {id}, which was not waiting for one"));
                }
                if principal.created_by == entry.actor_id {
                    return Err(format!("principal {id} approved by the administrator who created it"));
                }
                principal.pending = false;
            }
            Act::PrincipalDisable => {
                let id: i64 =
                    id_of(&entry.object, "principal")?.parse().map_err(|_| "a principal id that is not a number")?;
                self.disabled.insert(id);
            }
            Act::DatasetRegister => {
                let id = id_of(&entry.object, "dataset")?.to_owned();
                let total = micro_epsilon(Some(need(Detail::EpsilonTotal)?))
                    .ok_or("a dataset budget that is not exact millionths of ε")?;
                if self.datasets.insert(id.clone(), (total, 0)).is_some() {
                    return Err(format!("dataset {id} registered twice"));
                }
                if let Some(provider) = self.organisation_of(entry.actor_id) {
                    self.providers.insert(id, provider);
                }
            }
            Act::ApplicationSubmit => {
                let id = id_of(&entry.object, "application")?.to_owned();
                let dataset = detail(Detail::Dataset).cloned();
                if let Some(joined) = detail(Detail::JoinedDataset) {
                    self.joins.insert(id.clone(), joined.clone());
                }
                let state = self.applications.entry(id).or_insert((entry.actor_id, "submitted".into(), None));
                state.1 = "submitted".into();
                if dataset.is_some() {
                    state.2 = dataset;
                }
            }
            Act::ApplicationReview => {
                let id = id_of(&entry.object, "application")?.to_owned();
                let Some((applicant, state, dataset)) = self.applications.get(&id).cloned() else {
                    return Err(format!("a review of application {id}, which was never submitted"));
                };
                if entry.actor_id.is_some() && applicant == entry.actor_id {
                    return Err(format!("application {id} reviewed by its own applicant"));
                }
                let reviewer = self.organisation_of(entry.actor_id);
                if reviewer.is_some() && reviewer == self.organisation_of(applicant) {
                    return Err(format!("application {id} reviewed from its applicant's own organisation"));
                }
                let kind =
                    entry.actor_id.and_then(|actor| self.principals.get(&actor)).and_then(|p| p.reviewer_kind.clone());
                match state.as_str() {
                    "submitted" if kind.as_deref() != Some("data_bureau") => {
                        return Err(format!("application {id}'s first review was not the data bureau's"));
                    }
                    "bureau_approved" => {
                        let providers: HashSet<String> = dataset
                            .iter()
                            .map(String::as_str)
                            .chain(self.joins.get(&id).into_iter().flat_map(|joined| joined_ids(joined)))
                            .filter_map(|dataset| self.providers.get(dataset).cloned())
                            .collect();
                        let approvals = self.provider_approvals.entry(id.clone()).or_default();
                        let Some(reviewer) = reviewer.filter(|reviewer| {
                            kind.as_deref() == Some("providing_department") && providers.contains(reviewer)
                        }) else {
                            return Err(format!(
                                "application {id}'s second review was not by the department providing the data"
                            ));
                        };
                        if approvals.contains(&reviewer) {
                            return Err(format!("application {id} reviewed twice by one providing department"));
                        }
                        // What the review left decides: `bureau_approved` (others wait) or
                        // `approved` after an approval, `rejected` after a rejection.
                        let next = need(Detail::State)?;
                        if next != "rejected" {
                            approvals.insert(reviewer);
                        }
                        if next == "approved" && !providers.is_subset(approvals) {
                            return Err(format!(
                                "application {id} approved before every department providing its data had"
                            ));
                        }
                    }
                    _ => {}
                }
                if let Some(application) = self.applications.get_mut(&id) {
                    application.1 = need(Detail::State)?.clone();
                }
            }
            Act::AuthorisationCreate => {
                let id = id_of(&entry.object, "authorisation")?.to_owned();
                let application = need(Detail::Application)?;
                if self.applications.get(application.as_str()).map(|(_, state, _)| state.as_str()) != Some("approved") {
                    return Err(format!(
                        "authorisation {id} for application {}, which no review approved",
                        short(application)
                    ));
                }
                let total = micro_epsilon(Some(need(Detail::EpsilonTotal)?))
                    .ok_or("an authorisation budget that is not exact millionths of ε")?;
                let valid_until = match detail(Detail::ValidUntil) {
                    Some(text) => Some(timestamp(text).ok_or("an authorisation window the verifier cannot read")?),
                    None => None,
                };
                let operator = detail(Detail::Operator).and_then(|text| text.parse().ok());
                let joined = detail(Detail::JoinedDataset).cloned();
                if joined.as_ref() != self.joins.get(application.as_str()) {
                    return Err(format!(
                        "authorisation {id} joins another dataset than application {} asked for",
                        short(application)
                    ));
                }
                let authorisation = Authorisation {
                    operator,
                    joined,
                    dataset: detail(Detail::Dataset).cloned(),
                    valid_until,
                    total,
                    spent: 0,
                    revoked: false,
                };
                if self.authorisations.insert(id.clone(), authorisation).is_some() {
                    return Err(format!("authorisation {id} created twice (its budget would start again)"));
                }
            }
            Act::AuthorisationRevoke => {
                let id = id_of(&entry.object, "authorisation")?;
                if let Some(authorisation) = self.authorisations.get_mut(id) {
                    authorisation.revoked = true;
                }
            }
            Act::ModelSubmit => {
                let id = id_of(&entry.object, "model")?.to_owned();
                self.models
                    .insert(id, (need(Detail::Authorisation)?.clone(), need(Detail::Digest)?.clone(), entry.actor_id));
            }
            Act::ModelReview => {
                let id = id_of(&entry.object, "model")?;
                let Some((authorisation, digest, submitter)) = self.models.get(id) else {
                    return Err(format!("a review of model {id}, which was never submitted"));
                };
                if need(Detail::Digest)? != digest {
                    return Err(format!("a review of model {id} names other bytes than were submitted"));
                }
                if entry.actor_id.is_some() && *submitter == entry.actor_id {
                    return Err(format!("model {id} reviewed by its own submitter"));
                }
                let reviewer = self.organisation_of(entry.actor_id);
                if reviewer.is_some() && reviewer == self.organisation_of(*submitter) {
                    return Err(format!("model {id} reviewed from its submitter's own organisation"));
                }
                if need(Detail::State)? == "approved" {
                    let key = (authorisation.clone(), digest.clone());
                    if self.revoked.contains(&key) {
                        return Err(format!("model {}… approved again after it was revoked", short(digest)));
                    }
                    self.approved.insert(key);
                }
            }
            Act::ModelRevoke => {
                let id = id_of(&entry.object, "model")?;
                let digest = need(Detail::Digest)?;
                let Some((authorisation, submitted, submitter)) = self.models.get(id) else {
                    return Err(format!("a revocation of model {id}, which was never submitted"));
                };
                let reviewer = self.organisation_of(entry.actor_id);
                if reviewer.is_some() && reviewer == self.organisation_of(*submitter) {
                    return Err(format!("model {id} revoked from its submitter's own organisation"));
                }
                if digest != submitted {
                    return Err(format!("a revocation of model {id} names other bytes than were submitted"));
                }
                let key = (authorisation.clone(), digest.clone());
                self.approved.remove(&key);
                self.revoked.insert(key);
            }
            Act::RunStart => self.charge(entry)?,
            Act::RunRelease => {
                let run = id_of(&entry.object, "run")?.to_owned();
                if !self.started.contains(&run) {
                    return Err(format!("a release of run {run}, which never started with a charge"));
                }
                if !self.released.insert(run.clone()) {
                    return Err(format!("run {run} released twice"));
                }
            }
            Act::ResultReview => {
                let run = id_of(&entry.object, "run")?.to_owned();
                let Some((datasets, operator)) = self.runs.get(&run).cloned() else {
                    return Err(format!("a review of run {run}'s result, which never started with a charge"));
                };
                let reviewer = self.organisation_of(entry.actor_id);
                if reviewer.is_some() && reviewer == self.organisation_of(operator) {
                    return Err(format!("run {run}'s result reviewed from its operator's own organisation"));
                }
                if reviewer.is_none()
                    || !datasets.iter().any(|dataset| self.providers.get(dataset).cloned() == reviewer)
                {
                    return Err(format!(
                        "run {run}'s result reviewed by another than the department providing the data"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The organisation principal `id` was created in.
    fn organisation_of(&self, id: Option<i64>) -> Option<String> {
        id.and_then(|id| self.principals.get(&id)).map(|principal| principal.organisation.clone())
    }

    /// `principal.bootstrap` (an administrator made at the host, perhaps with its new
    /// organisation) or `principal.create` (through the API, by an administrator).
    fn create_principal(&mut self, entry: &AuditEntry) -> Result<(), String> {
        let need = |key: Detail| {
            entry.details.get(key.as_str()).ok_or_else(|| format!("a {} entry without its {key}", entry.action))
        };
        let id: i64 = id_of(&entry.object, "principal")?.parse().map_err(|_| "a principal id that is not a number")?;
        let role = need(Detail::Role)?.clone();
        let organisation = need(Detail::Organisation)?.clone();
        let bootstrap = entry.action == Act::PrincipalBootstrap.as_str();
        if bootstrap && entry.details.contains_key(Detail::OrganisationName.as_str()) {
            if !self.organisations.insert(organisation.clone()) {
                return Err(format!("organisation {} created twice", short(&organisation)));
            }
        } else if !self.organisations.contains(&organisation) {
            return Err(format!(
                "principal {id} belongs to organisation {}, which the log never created",
                short(&organisation)
            ));
        }
        let pending = !bootstrap && need(Detail::Approval)? == "pending";
        if !bootstrap && !pending && SECOND_ADMIN_ROLES.contains(&role.as_str()) {
            return Err(format!("{} {id} created without a second administrator's approval", short(&role)));
        }
        let reviewer_kind = entry.details.get(Detail::ReviewerKind.as_str()).cloned();
        if role == "reviewer" && reviewer_kind.is_none() {
            return Err(format!("reviewer {id} created without its kind"));
        }
        let licence = if role == "operator" {
            let window = |key: Detail| {
                need(key).and_then(|text| {
                    timestamp(text).ok_or_else(|| format!("operator {id}'s {key} the verifier cannot read"))
                })
            };
            need(Detail::Licence)?;
            Some((window(Detail::LicenceValidFrom)?, window(Detail::LicenceValidUntil)?))
        } else {
            None
        };
        let facts = PrincipalFacts {
            role,
            organisation,
            reviewer_kind,
            licence,
            created_by: if bootstrap { None } else { entry.actor_id },
            pending,
        };
        if self.principals.insert(id, facts).is_some() {
            return Err(format!("principal {id} created twice"));
        }
        Ok(())
    }

    /// A run's start: who, under what, when, with which model, and what it costs.
    fn charge(&mut self, entry: &AuditEntry) -> Result<(), String> {
        let need =
            |key: Detail| entry.details.get(key.as_str()).ok_or_else(|| format!("a run.start entry without its {key}"));
        let id = need(Detail::Authorisation)?;
        let digest = need(Detail::Digest)?;
        let charged = micro_epsilon(entry.details.get(Detail::EpsilonCharged.as_str()))
            .ok_or("a run charge that is not exact millionths of ε")?;
        let run = id_of(&entry.object, "run")?.to_owned();
        if !self.started.insert(run.clone()) {
            return Err(format!("run {run} started twice"));
        }
        let Some(authorisation) = self.authorisations.get_mut(id.as_str()) else {
            return Err(format!("a run under authorisation {}, which the log never created", short(id)));
        };
        if authorisation.revoked {
            return Err(format!("a run under authorisation {id} after it was revoked"));
        }
        if authorisation.operator.is_some() && authorisation.operator != entry.actor_id {
            return Err(format!("a run under authorisation {id} by someone other than its operator"));
        }
        if let Some(until) = authorisation.valid_until
            && timestamp(&entry.time).is_none_or(|time| time > until)
        {
            return Err(format!("a run under authorisation {id} after its window closed"));
        }
        if !self.approved.contains(&(id.clone(), digest.clone())) {
            return Err(format!("a run of model {}… that no review approved for authorisation {id}", short(digest)));
        }
        authorisation.spent = authorisation.spent.saturating_add(charged);
        if authorisation.spent > authorisation.total {
            return Err(format!("authorisation {id} spent more than its budget"));
        }
        let dataset = entry.details.get(Detail::Dataset.as_str()).or(authorisation.dataset.as_ref());
        let joined = entry.details.get(Detail::JoinedDataset.as_str());
        if joined != authorisation.joined.as_ref() {
            return Err(format!("a run under authorisation {id} joined another dataset than it grants"));
        }
        if authorisation.dataset.as_ref().zip(dataset).is_some_and(|(granted, dataset)| granted != dataset) {
            return Err(format!("a run under authorisation {id} read another dataset than it grants"));
        }
        let datasets: Vec<String> = dataset
            .into_iter()
            .map(String::as_str)
            .chain(joined.into_iter().flat_map(|joined| joined_ids(joined)))
            .map(str::to_owned)
            .collect();
        if datasets.iter().collect::<HashSet<_>>().len() != datasets.len() {
            return Err(format!("a run under authorisation {id} names one dataset twice"));
        }
        self.runs.insert(run.clone(), (datasets.clone(), entry.actor_id));
        for dataset in &datasets {
            let Some((total, spent)) = self.datasets.get_mut(dataset.as_str()) else {
                return Err(format!("a run on dataset {}, which the log never registered", short(dataset)));
            };
            *spent = spent.saturating_add(charged);
            if *spent > *total {
                return Err(format!("dataset {dataset} spent more than its lifetime budget"));
            }
        }
        Ok(())
    }
}

/// Proof that a release was logged: its entry, a signed checkpoint, and the inclusion
/// proof of the entry in the tree that checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub seq: u64,
    pub entry: String,
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
}

/// Checks a receipt against `key`: the checkpoint's signature, and that the entry is leaf
/// `seq - 1` of the tree it signs. Returns the entry.
pub fn verify_receipt(receipt: &Receipt, key: &PublicKey) -> Result<AuditEntry, String> {
    let checkpoint = Checkpoint::verify(&receipt.checkpoint, key)?;
    let entry: AuditEntry =
        serde_json::from_str(&receipt.entry).map_err(|error| format!("entry is not valid: {error}"))?;
    if entry.canonical() != receipt.entry || entry.seq != receipt.seq || receipt.seq == 0 {
        return Err("the entry is not the canonical entry at that sequence number".into());
    }
    let proof: Vec<Hash> = receipt
        .inclusion_proof
        .iter()
        .map(|text| hex::decode(text).ok().and_then(|bytes| bytes.try_into().ok()))
        .collect::<Option<_>>()
        .ok_or("the inclusion proof is not a list of 32-byte hex hashes")?;
    verify_inclusion(&leaf_hash(receipt.entry.as_bytes()), receipt.seq - 1, checkpoint.size, &proof, &checkpoint.root)
        .map_err(|error| format!("the entry is not in the signed log: {error}"))?;
    Ok(entry)
}

/// The ids in a `joined_dataset` detail: one, or several separated by `,` (a scenario over
/// several departments' data).
fn joined_ids(detail: &str) -> impl Iterator<Item = &str> {
    detail.split(',')
}

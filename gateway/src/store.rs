//! Storage: every table Sluice keeps, behind one `Store` with two back ends chosen by the
//! database URL: SQLite (the embedded default) and PostgreSQL (for several nodes).
//!
//! It owns SQL, transactions and how domain values are stored: entity ids
//! ([`crate::ids`]) as integer columns, [`RunState`] and the policies' application and
//! model states as their lowercase names. The SQL is kept portable (numbered `$n`
//! parameters, `RETURNING`, no SQLite-only functions in queries), so both back ends run the
//! same statements over their own migration sets; nothing outside this module and
//! `migrations/` sees SQL. It must not make policy decisions, and it must not update or
//! delete audit entries (the database refuses that too).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;

use sluice_audit::{AuditEntry, AuditEvent, RootBuilder, leaf_hash};
use sluice_policies::{ApplicationState, ModelState, OrganisationId};

use crate::ids::{ApplicationId, AuthorisationId, DatasetId, ModelId, NodeId, PrincipalId, RunId};
use crate::timestamp::Timestamp;

/// A transaction. One from [`Store::begin`] or [`Store::begin_unsynced`] holds this
/// process's turn at the write lock — writers wait for it in the order they asked (a fair
/// async queue) instead of in SQLite's busy handler, whose sleeps grow to 100 ms — and the
/// database's own write lock (SQLite's `BEGIN IMMEDIATE`; on PostgreSQL one transaction
/// advisory lock that every node's writers take, so writes are serialised across nodes as
/// they are on one SQLite file). One from [`Store::read`] is a consistent snapshot and
/// takes no lock. [`Tx::commit`] ends it; dropping it rolls back and passes the turn on.
pub struct Tx {
    inner: TxInner,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// Commits. A transaction from [`Store::begin`] waits for the disk (SQLite's
    /// `synchronous = FULL`, PostgreSQL's `synchronous_commit = on`): what is acknowledged
    /// survives a crash. One from [`Store::begin_unsynced`] does not.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Sqlite(inner) => inner.commit().await,
            TxInner::Postgres(inner) => inner.commit().await,
        }
    }

    /// Rolls back now. Dropping a transaction rolls it back too, but on PostgreSQL the
    /// `ROLLBACK` is only sent when the pool next tends the connection (a task of its own),
    /// and until then the transaction holds its locks, the write lock among them.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Sqlite(inner) => inner.rollback().await,
            TxInner::Postgres(inner) => inner.rollback().await,
        }
    }
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

/// Runs `$body` with `$c` bound to the transaction's connection. The body is compiled
/// once per back end, so one query text and one set of binds serve both: the SQL in this
/// module is the dialect SQLite and PostgreSQL share.
macro_rules! in_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match &mut ($tx).inner {
            TxInner::Sqlite(inner) => {
                let $c = &mut **inner;
                $body
            }
            TxInner::Postgres(inner) => {
                let $c = &mut **inner;
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the store's pool (counting a round trip), once per
/// back end, like [`in_tx`].
macro_rules! in_pool {
    ($store:expr, |$c:ident| $body:expr) => {
        match $store.pool() {
            Pools::Sqlite { pool, .. } => {
                let $c = pool;
                $body
            }
            Pools::Postgres { pool } => {
                let $c = pool;
                $body
            }
        }
    };
}

/// Where the database is: a SQLite file (the embedded default, in the data directory) or
/// a PostgreSQL server, chosen by the URL's scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL (it may carry a password: never printed).
    Postgres(String),
}

impl Database {
    /// `postgres://…`/`postgresql://…` is PostgreSQL, `sqlite://PATH` (or `sqlite:PATH`) a
    /// SQLite file; anything else is refused.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).context("the PostgreSQL URL is not valid")?;
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            anyhow::ensure!(!path.is_empty(), "the SQLite URL names no file");
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else {
            anyhow::bail!("a database URL starts with postgres://, postgresql:// or sqlite://")
        }
    }

    /// What may be shown of it: the file, or the server and database without credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("SQLite {}", path.display()),
            Self::Postgres(url) => match PgConnectOptions::from_str(url) {
                Ok(options) => format!(
                    "PostgreSQL {}:{}/{}",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or("(default database)")
                ),
                Err(_) => "PostgreSQL".to_owned(),
            },
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Formats a time the way every table stores it ([`Timestamp`]'s written form).
pub fn format_time(time: OffsetDateTime) -> String {
    Timestamp::new(time).to_string()
}

pub fn parse_time(text: &str) -> anyhow::Result<OffsetDateTime> {
    Timestamp::parse(text).map(Timestamp::time)
}

#[derive(Debug, Clone, FromRow)]
pub struct PrincipalRow {
    pub id: PrincipalId,
    pub name: String,
    pub role: String,
    #[sqlx(try_from = "i64")]
    pub organisation_id: OrganisationId,
    pub reviewer_kind: Option<String>,
    pub licence_number: Option<String>,
    pub licence_valid_from: Option<Timestamp>,
    pub licence_valid_until: Option<Timestamp>,
    pub token_expires_at: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
    pub created_by: Option<PrincipalId>,
    pub pending_approval: bool,
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct OrganisationRow {
    #[sqlx(try_from = "i64")]
    pub id: OrganisationId,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewPrincipal {
    pub name: String,
    pub role: String,
    pub organisation_id: OrganisationId,
    pub reviewer_kind: Option<String>,
    pub licence: Option<(String, String, String)>,
    pub token_hash: String,
    pub token_expires_at: OffsetDateTime,
    /// The administrator who created it (none when bootstrapped at the host).
    pub created_by: Option<PrincipalId>,
    /// Waits for a second administrator's approval before its token works.
    pub pending_approval: bool,
}

#[derive(Debug, Clone, FromRow)]
pub struct DatasetRow {
    pub id: DatasetId,
    pub name: String,
    pub provider_id: PrincipalId,
    pub description: String,
    pub schema_toml: String,
    pub schema_hash: String,
    pub epsilon_total: i64,
    pub epsilon_spent: i64,
    pub created_at: Timestamp,
    pub destroyed_at: Option<Timestamp>,
    pub min_group_size: i64,
}

#[derive(Clone, FromRow)]
pub struct VersionRow {
    pub dataset_id: DatasetId,
    pub version: i64,
    pub row_count: i64,
    pub chunk_count: i64,
    pub wrapped_key: Vec<u8>,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for VersionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRow")
            .field("dataset_id", &self.dataset_id)
            .field("version", &self.version)
            .field("row_count", &self.row_count)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct ApplicationRow {
    pub id: ApplicationId,
    pub operator_id: PrincipalId,
    pub dataset_id: DatasetId,
    pub purpose: String,
    pub use_scope: String,
    pub security_measures: String,
    pub columns_json: String,
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
    pub epsilon_requested: i64,
    #[sqlx(try_from = "String")]
    pub state: ApplicationState,
    pub bureau_reviewer_id: Option<PrincipalId>,
    /// Other departments' datasets joined to the first on their ids, in order, and their
    /// columns asked for ([`JoinedColumns`] as JSON; none for one dataset).
    #[sqlx(default)]
    pub joins_json: Option<String>,
}

/// A dataset joined to a scenario's first one, and the columns of it asked for or granted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinedColumns {
    pub dataset_id: DatasetId,
    pub columns: Vec<String>,
}

/// The joins stored as `joins_json` (none when absent).
fn parse_joins(json: Option<&str>) -> anyhow::Result<Vec<JoinedColumns>> {
    json.map_or(Ok(Vec::new()), |json| serde_json::from_str(json).context("stored joined datasets"))
}

/// A scenario's datasets: its first, then those joined to it, in order.
fn first_and_joined(first: DatasetId, joins: Vec<JoinedColumns>) -> Vec<DatasetId> {
    std::iter::once(first).chain(joins.into_iter().map(|join| join.dataset_id)).collect()
}

/// `joins` as stored: `None` for none.
pub fn encode_joins(joins: &[JoinedColumns]) -> anyhow::Result<Option<String>> {
    if joins.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_string(joins).context("encoding joined datasets")?))
}

#[derive(Debug, Clone, FromRow)]
pub struct AuthorisationRow {
    pub id: AuthorisationId,
    pub application_id: ApplicationId,
    pub operator_id: PrincipalId,
    pub dataset_id: DatasetId,
    pub purpose: String,
    pub columns_json: String,
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
    pub epsilon_total: i64,
    pub epsilon_spent: i64,
    pub revoked_at: Option<Timestamp>,
    pub hold_outputs: bool,
    /// The datasets joined to the first one, in order, and the columns of each granted.
    pub joins_json: Option<String>,
}

impl ApplicationRow {
    /// The datasets joined to the first, in order, with the columns asked of each.
    pub fn joins(&self) -> anyhow::Result<Vec<JoinedColumns>> {
        parse_joins(self.joins_json.as_deref())
    }

    /// The datasets it applies for: the first, then the joined ones.
    pub fn datasets(&self) -> anyhow::Result<Vec<DatasetId>> {
        Ok(first_and_joined(self.dataset_id, self.joins()?))
    }
}

impl AuthorisationRow {
    /// The datasets joined to the first, in order, with the columns granted of each.
    pub fn joins(&self) -> anyhow::Result<Vec<JoinedColumns>> {
        parse_joins(self.joins_json.as_deref())
    }

    /// Every column granted: the first dataset's, then each joined one's (their names differ).
    pub fn granted_columns(&self) -> anyhow::Result<Vec<String>> {
        let mut columns: Vec<String> = serde_json::from_str(&self.columns_json).context("stored columns")?;
        for join in self.joins()? {
            columns.extend(join.columns);
        }
        Ok(columns)
    }

    /// The datasets it reads: the first, then the joined ones.
    pub fn datasets(&self) -> anyhow::Result<Vec<DatasetId>> {
        Ok(first_and_joined(self.dataset_id, self.joins()?))
    }
}

#[derive(Clone, FromRow)]
pub struct ModelRow {
    pub id: ModelId,
    pub authorisation_id: AuthorisationId,
    pub submitter_id: PrincipalId,
    pub name: String,
    pub digest: String,
    pub module: Vec<u8>,
    pub manifest_toml: String,
    #[sqlx(try_from = "String")]
    pub state: ModelState,
}

impl std::fmt::Debug for ModelRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRow").field("id", &self.id).field("digest", &self.digest).finish_non_exhaustive()
    }
}

/// Where a run is in its life, stored as its lowercase name. A run is `queued` from its
/// charge until a node with a free sandbox slot claims it, `running` from the claim until
/// it ends once: `released` (or `held` for data product review, then `released` or
/// `withheld`), `failed`, or `interrupted` (its node died; settled by another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(utoipa::ToSchema)]
pub enum RunState {
    Queued,
    Running,
    Released,
    Held,
    Withheld,
    Failed,
    Interrupted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Released => "released",
            Self::Held => "held",
            Self::Withheld => "withheld",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    const ALL: [Self; 7] =
        [Self::Queued, Self::Running, Self::Released, Self::Held, Self::Withheld, Self::Failed, Self::Interrupted];

    /// Whether the run has ended (it will not change again, but for data product review).
    pub fn ended(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

/// Stores each of these types as a TEXT column on either back end (sqlx's derive would
/// make an enum a PostgreSQL type of its own); their `Encode` and `Decode` say how.
macro_rules! text_column {
    ($($type:ty),*) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $type
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }
    )*};
}

text_column!(RunState, Timestamp);

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for RunState
where
    &'q str: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&'q str as sqlx::Encode<'q, DB>>::encode_by_ref(&self.as_str(), buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for RunState
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
        Self::parse(text).ok_or_else(|| format!("`{text}` is not a run state").into())
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stores each entity id ([`crate::ids`]) as the integer column it is on either back end.
macro_rules! integer_column {
    ($($id:ty),*) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $id
        where
            i64: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <i64 as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <i64 as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $id
        where
            i64: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <i64 as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $id
        where
            i64: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                <i64 as sqlx::Decode<'r, DB>>::decode(value).map(Self)
            }
        }
    )*};
}

integer_column!(PrincipalId, DatasetId, ApplicationId, AuthorisationId, ModelId, RunId, NodeId);

// A time is stored in its written form (see [`Timestamp`]).
impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Timestamp
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, DB>>::encode(self.to_string(), buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Timestamp
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(Timestamp::parse(text)?)
    }
}

/// What other nodes are told of at once about runs ([`Store::run_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEvent {
    /// Charged and waiting for a node with a free sandbox slot.
    Queued,
    /// Ended: released, held, failed or interrupted.
    Ended,
}

impl RunEvent {
    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ended => "ended",
        }
    }
}

/// PostgreSQL's notification channel for [`RunEvent`]s.
const RUN_EVENTS_CHANNEL: &str = "sluice_runs";

/// A subscription to this database's [`RunEvent`]s (PostgreSQL's `LISTEN`).
pub struct RunEvents {
    listener: sqlx::postgres::PgListener,
    schema: String,
}

impl std::fmt::Debug for RunEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEvents").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl RunEvents {
    /// The next event. `Ok(None)` when the connection was lost: it reconnects on the next
    /// call, but what was announced meanwhile is not heard, so a listener must look for
    /// itself then (and now and again anyway).
    pub async fn next(&mut self) -> anyhow::Result<Option<(RunEvent, RunId)>> {
        loop {
            let Some(notification) = self.listener.try_recv().await? else { return Ok(None) };
            let mut words = notification.payload().split(' ');
            let (Some(schema), Some(event), Some(id), None) = (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            let event = match event {
                "queued" => RunEvent::Queued,
                "ended" => RunEvent::Ended,
                _ => continue,
            };
            if schema == self.schema
                && let Ok(id) = id.parse()
            {
                return Ok(Some((event, RunId(id))));
            }
        }
    }
}

/// The columns of a [`RunRow`], for every statement that reads or returns one.
macro_rules! run_columns {
    () => {
        "id, authorisation_id, model_id, operator_id, dataset_id, dataset_version, epsilon, state, outcome, \
         result_json, visible_at, node, joined_versions_json"
    };
}

/// Runs of one authorisation in one month (`YYYY-MM` of their start) and one state.
#[derive(Debug, Clone, FromRow)]
pub struct RunUsageRow {
    pub authorisation_id: AuthorisationId,
    pub month: String,
    pub state: String,
    pub runs: i64,
    /// ε charged, in the budget's units.
    pub epsilon_units: i64,
    /// Rows of the dataset versions the runs read.
    pub rows_read: i64,
    /// The versions of the joined datasets each of these runs read (a JSON array in the
    /// authorisation's order; none for one dataset): runs are grouped by it too.
    pub joined_versions_json: Option<String>,
}

/// A model submission and its first review, for review turnaround.
#[derive(Debug, Clone, FromRow)]
pub struct ModelUsageRow {
    pub authorisation_id: AuthorisationId,
    pub submitted_at: String,
    pub first_review_at: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct RunRow {
    pub id: RunId,
    pub authorisation_id: AuthorisationId,
    pub model_id: ModelId,
    pub operator_id: PrincipalId,
    pub dataset_id: DatasetId,
    pub dataset_version: i64,
    pub epsilon: i64,
    pub state: RunState,
    pub outcome: Option<String>,
    pub result_json: Option<String>,
    /// When the operator may see the outcome, fixed before any data was read.
    pub visible_at: Option<Timestamp>,
    /// The node (gateway process) that claimed it ([`Store::node`]); none while it is
    /// queued, and on rows from before nodes were recorded.
    #[sqlx(default)]
    pub node: Option<NodeId>,
    /// The version of each of the authorisation's joined datasets the run read, in the
    /// authorisation's order (a JSON array; none for one dataset).
    #[sqlx(default)]
    pub joined_versions_json: Option<String>,
}

impl RunRow {
    /// The versions of the joined datasets it read, in the authorisation's order.
    pub fn joined_versions(&self) -> anyhow::Result<Vec<i64>> {
        parse_joined_versions(self.joined_versions_json.as_deref())
    }
}

impl RunUsageRow {
    /// The versions of the joined datasets these runs read, in the authorisation's order.
    pub fn joined_versions(&self) -> anyhow::Result<Vec<i64>> {
        parse_joined_versions(self.joined_versions_json.as_deref())
    }
}

/// The versions stored as `joined_versions_json` (none when absent).
fn parse_joined_versions(json: Option<&str>) -> anyhow::Result<Vec<i64>> {
    json.map_or(Ok(Vec::new()), |json| serde_json::from_str(json).context("stored joined versions"))
}

/// `versions` as stored: `None` for none.
pub fn encode_joined_versions(versions: &[i64]) -> anyhow::Result<Option<String>> {
    if versions.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_string(versions).context("encoding joined versions")?))
}

/// The facts of one run decision, read together ([`Store::run_facts`]).
#[derive(Debug)]
pub struct RunFactsRows {
    pub authorisation: Option<AuthorisationRow>,
    pub model: Option<ModelRow>,
    pub dataset: Option<DatasetRow>,
    pub version: Option<VersionRow>,
    /// The authorisation's joined datasets and the latest version of each, in its order.
    pub joined: Vec<(Option<DatasetRow>, Option<VersionRow>)>,
    /// The organisations of the authorisation's operator and of the datasets' providers
    /// (the first's, then the joined ones'), for the policy set's decision.
    pub operator_organisation: Option<OrganisationId>,
    pub provider_organisations: Vec<OrganisationId>,
}

/// The facts a charge is checked against ([`Store::charge_facts`]).
#[derive(Debug, Clone, Copy, FromRow)]
pub struct ChargeFactsRow {
    pub revoked: bool,
    pub authorisation_total: i64,
    pub authorisation_spent: i64,
    pub dataset_total: i64,
    pub dataset_spent: i64,
    pub runs_since: i64,
}

/// What a charge re-reads under the write lock. The run-rate count must use the
/// `runs_by_authorisation` index: a scan would grow every run's cost with every run made.
const CHARGE_FACTS_SQL: &str = "SELECT a.revoked_at IS NOT NULL AS revoked, a.epsilon_total AS authorisation_total, \
     a.epsilon_spent AS authorisation_spent, d.epsilon_total AS dataset_total, d.epsilon_spent AS dataset_spent, \
     (SELECT COUNT(*) FROM runs r WHERE r.authorisation_id = a.id AND r.created_at >= $3) AS runs_since \
     FROM authorisations a JOIN datasets d ON d.id = a.dataset_id \
     WHERE a.id = $1 AND d.id = $2";

/// Ends an ingest's version reservation ([`Store::release_reservation`] and its
/// in-transaction twin).
const RELEASE_RESERVATION_SQL: &str = "DELETE FROM ingest_reservations WHERE dataset_id = $1 AND version = $2";

const INSERT_CHECKPOINT_SQL: &str = "INSERT INTO audit_checkpoints (size, root, note, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING";

/// A node's claim to be alive. SQLite: an exclusive lock on a file of its own next to the
/// database (other processes on the host see it). PostgreSQL: a session advisory lock held
/// on a connection of its own (every node sees it; the server drops it when the connection
/// goes, as when the process dies).
enum NodeLease {
    /// The open file; the lock goes with it.
    Sqlite(#[allow(dead_code, reason = "held for its lock")] std::fs::File),
    Postgres(sqlx::PgConnection),
}

impl std::fmt::Debug for NodeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "NodeLease(lock file)",
            Self::Postgres(_) => "NodeLease(advisory lock)",
        })
    }
}

impl NodeLease {
    /// Takes `(1936487781, node)` if free ("sluice" is 0x736c7569 6365; the two-key form
    /// is a lock space of its own, apart from the write lock's one-key form).
    const POSTGRES_TRY: &str = "SELECT pg_try_advisory_lock(1936487781, $1)";

    /// A random free node number and its lease.
    async fn claim(database: &Database) -> anyhow::Result<(NodeId, Self)> {
        for _ in 0..16 {
            let node = Self::random_node()?;
            match database {
                Database::Sqlite(path) => {
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(Self::sqlite_lock_file(path, node)?)?;
                    if file.try_lock().is_ok() {
                        return Ok((node, Self::Sqlite(file)));
                    }
                }
                Database::Postgres(url) => {
                    let options = PgConnectOptions::from_str(url)?;
                    let mut connection = sqlx::ConnectOptions::connect(&options).await?;
                    let taken: bool =
                        sqlx::query_scalar(Self::POSTGRES_TRY).bind(node.0 as i32).fetch_one(&mut connection).await?;
                    if taken {
                        return Ok((node, Self::Postgres(connection)));
                    }
                }
            }
        }
        anyhow::bail!("no free node number after 16 tries")
    }

    fn random_node() -> anyhow::Result<NodeId> {
        let mut bytes = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| anyhow::anyhow!("the system's random generator failed"))?;
        // 1 to i32::MAX: PostgreSQL's advisory lock keys are int4.
        Ok(NodeId(i64::from(u32::from_le_bytes(bytes) % (i32::MAX as u32)) + 1))
    }

    /// `DIR/sluice-nodes/NODE.lock` beside the database file.
    fn sqlite_lock_file(database: &Path, node: NodeId) -> anyhow::Result<PathBuf> {
        let directory = database.parent().unwrap_or(Path::new(".")).join("sluice-nodes");
        std::fs::create_dir_all(&directory).with_context(|| format!("creating {}", directory.display()))?;
        Ok(directory.join(format!("{node}.lock")))
    }

    fn sqlite_node_alive(database: &Database, node: NodeId) -> anyhow::Result<bool> {
        let Database::Sqlite(path) = database else { anyhow::bail!("not a SQLite database") };
        let path = Self::sqlite_lock_file(path, node)?;
        let file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error).with_context(|| format!("opening {}", path.display())),
        };
        match file.try_lock() {
            Ok(()) => {
                // Dead: its file is of no more use (the lock goes as the file closes).
                let _ = std::fs::remove_file(&path);
                Ok(false)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(true),
            Err(std::fs::TryLockError::Error(error)) => Err(error).context("locking a node's lease file"),
        }
    }
}

/// The database. Cheap to clone (pool handles).
#[derive(Debug, Clone)]
pub struct Store {
    pools: Pools,
    database: Database,
    /// This process's node number, unique among the live nodes of the database.
    node: NodeId,
    /// What shows the node is alive, held until [`Store::close`] (or the process ends).
    lease: Arc<std::sync::Mutex<Option<NodeLease>>>,
    round_trips: Arc<AtomicU64>,
    /// This process's turn at the write lock (see [`Tx`]).
    write_turn: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Clone)]
enum Pools {
    Sqlite {
        pool: SqlitePool,
        /// One connection with `synchronous = NORMAL`, for [`Store::begin_unsynced`] only,
        /// so no commit on the main pool can ever skip the disk by accident.
        unsynced: SqlitePool,
    },
    Postgres {
        pool: PgPool,
    },
}

/// The key of the PostgreSQL transaction advisory lock every write transaction takes
/// (`pg_advisory_xact_lock`, released at commit or rollback): "sluice" in ASCII,
/// 0x736c75696365.
macro_rules! postgres_write_lock {
    () => {
        "126909663503205"
    };
}

/// How a write transaction begins on PostgreSQL: one round trip, the lock taken before
/// anything is read, so what a writer reads (the last audit entry, a budget) no other
/// node's writer can change before it commits.
const POSTGRES_BEGIN_WRITE: &str =
    concat!("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(", postgres_write_lock!(), ")");

/// [`POSTGRES_BEGIN_WRITE`] whose commit does not wait for the disk.
const POSTGRES_BEGIN_UNSYNCED: &str = concat!(
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(",
    postgres_write_lock!(),
    "); SET LOCAL synchronous_commit = off"
);

/// A read of several statements that must agree with each other.
const POSTGRES_BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

impl Store {
    /// Opens the database and runs its migrations. With `create`, the database must not
    /// hold Sluice's tables yet (a SQLite file is created); without, it must.
    pub async fn open(database: &Database, create: bool) -> anyhow::Result<Self> {
        match database {
            Database::Sqlite(path) => Self::open_sqlite(path, create).await,
            Database::Postgres(url) => Self::open_postgres(url, create).await,
        }
    }

    /// Opens (and with `create`, creates) the SQLite database and runs migrations.
    /// WAL with synchronous=FULL: a committed audit entry survives a crash (except what
    /// [`Store::begin_unsynced`] commits, until the next commit that waits).
    pub async fn open_sqlite(path: &Path, create: bool) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening the database {}", path.display()))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.context("migrating the database")?;
        let unsynced = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await
            .with_context(|| format!("opening the database {}", path.display()))?;
        Self::finish_opening(Pools::Sqlite { pool, unsynced }, Database::Sqlite(path.to_path_buf())).await
    }

    /// Connects to PostgreSQL and runs its migrations (sqlx holds an advisory lock while
    /// it migrates, so nodes starting together migrate once).
    async fn open_postgres(url: &str, create: bool) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url).context("the PostgreSQL URL is not valid")?;
        let described = Database::Postgres(url.to_owned()).describe();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to {described}"))?;
        let initialised: bool = sqlx::query_scalar("SELECT to_regclass('audit_log') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .with_context(|| format!("reading {described}"))?;
        if create && initialised {
            anyhow::bail!("{described} already holds a Sluice database");
        }
        if !create && !initialised {
            anyhow::bail!("{described} holds no Sluice database: run `sluice init` with it first");
        }
        sqlx::migrate!("./migrations/postgres").run(&pool).await.context("migrating the database")?;
        Self::finish_opening(Pools::Postgres { pool }, Database::Postgres(url.to_owned())).await
    }

    async fn finish_opening(pools: Pools, database: Database) -> anyhow::Result<Self> {
        let (node, lease) = NodeLease::claim(&database).await.context("claiming a node number")?;
        let lease = Arc::new(std::sync::Mutex::new(Some(lease)));
        let store = Self { pools, database, node, lease, round_trips: Arc::default(), write_turn: Arc::default() };
        // A log written before the subtrees were kept gets them now, before anything is
        // appended (an append reads its left siblings).
        let written = store.backfill_subtrees().await.context("filling the log's Merkle subtrees")?;
        if written > 0 {
            tracing::info!(subtrees = written, "filled the audit log's Merkle subtrees");
        }
        Ok(store)
    }

    /// Which back end this is: "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres { .. } => "postgres",
        }
    }

    /// Starts a write transaction: waits for this process's turn, then takes the database's
    /// write lock up front (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's advisory lock), so
    /// concurrent writers queue instead of failing halfway (another process — the CLI on
    /// the same data directory, another node — waits in the database).
    pub async fn begin(&self) -> anyhow::Result<Tx> {
        let turn = self.write_turn().await?;
        let inner = match self.pool() {
            Pools::Sqlite { pool, .. } => TxInner::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pools::Postgres { pool } => TxInner::Postgres(pool.begin_with(POSTGRES_BEGIN_WRITE).await?),
        };
        Ok(Tx { inner, _turn: Some(turn) })
    }

    /// A write transaction whose commit does not wait for the disk (SQLite: a connection of
    /// its own with `synchronous = NORMAL`; PostgreSQL: `synchronous_commit = off` for this
    /// transaction): atomic and visible at once, and durable with the next commit that
    /// waits, since the write-ahead log is flushed in order. Only for a change nobody is
    /// told of before such a commit (a run's charge, made durable by its release): a crash
    /// in between loses it with everything that depended on it.
    pub async fn begin_unsynced(&self) -> anyhow::Result<Tx> {
        let turn = self.write_turn().await?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let inner = match &self.pools {
            Pools::Sqlite { unsynced, .. } => TxInner::Sqlite(unsynced.begin_with("BEGIN IMMEDIATE").await?),
            Pools::Postgres { pool } => TxInner::Postgres(pool.begin_with(POSTGRES_BEGIN_UNSYNCED).await?),
        };
        Ok(Tx { inner, _turn: Some(turn) })
    }

    /// A read-only snapshot for several statements that must agree; no write lock.
    pub async fn read(&self) -> anyhow::Result<Tx> {
        let inner = match self.pool() {
            Pools::Sqlite { pool, .. } => TxInner::Sqlite(pool.begin().await?),
            Pools::Postgres { pool } => TxInner::Postgres(pool.begin_with(POSTGRES_BEGIN_READ).await?),
        };
        Ok(Tx { inner, _turn: None })
    }

    /// This process's turn at the write lock. As long as SQLite's own busy timeout: a
    /// writer that never gives its turn back (a bug) makes the others fail, not hang.
    async fn write_turn(&self) -> anyhow::Result<tokio::sync::OwnedMutexGuard<()>> {
        tokio::time::timeout(Duration::from_secs(30), self.write_turn.clone().lock_owned())
            .await
            .context("waited 30 s for the write lock")
    }

    /// The pools, counting one round trip: every read and every transaction goes through
    /// here, so [`Store::round_trips`] is how many times a request went to the database.
    fn pool(&self) -> &Pools {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        &self.pools
    }

    /// How many reads and transactions this store (and its clones) has started. Tests use
    /// it to hold the run path to its designed number of round trips.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Whether the database answers a trivial query on every pool (readiness). It takes no
    /// write turn and does not count as a round trip.
    pub async fn ping(&self) -> anyhow::Result<()> {
        match &self.pools {
            Pools::Sqlite { pool, unsynced } => {
                sqlx::query("SELECT 1").execute(pool).await?;
                sqlx::query("SELECT 1").execute(unsynced).await?;
            }
            Pools::Postgres { pool } => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// This process's node number: the runs it starts carry it.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Whether node `node` is alive: some open store holds its lease (this one, or another
    /// process's — on PostgreSQL, any machine's). Exact, not a timeout: a process that dies
    /// loses its lease with it (the kernel closes its lock file and its connection).
    pub async fn node_alive(&self, node: NodeId) -> anyhow::Result<bool> {
        if node == self.node {
            return Ok(self.lease.lock().map_or(true, |lease| lease.is_some()));
        }
        match &self.pools {
            Pools::Sqlite { .. } => NodeLease::sqlite_node_alive(&self.database, node),
            Pools::Postgres { pool } => {
                let mut connection = pool.acquire().await?;
                let taken: bool =
                    sqlx::query_scalar(NodeLease::POSTGRES_TRY).bind(node.0 as i32).fetch_one(&mut *connection).await?;
                if taken {
                    sqlx::query("SELECT pg_advisory_unlock(1936487781, $1)")
                        .bind(node.0 as i32)
                        .execute(&mut *connection)
                        .await?;
                }
                Ok(!taken)
            }
        }
    }

    /// Closes the pools and gives up the node's lease: from here its runs count as cut off.
    pub async fn close(&self) {
        let lease = self.lease.lock().ok().and_then(|mut lease| lease.take());
        if let Some(NodeLease::Postgres(connection)) = lease {
            let _ = sqlx::Connection::close(connection).await;
        }
        match &self.pools {
            Pools::Sqlite { pool, unsynced } => {
                unsynced.close().await;
                pool.close().await;
            }
            Pools::Postgres { pool } => pool.close().await,
        }
    }

    // ----- principals -----

    pub async fn insert_principal(tx: &mut Tx, new: &NewPrincipal, now: OffsetDateTime) -> anyhow::Result<PrincipalId> {
        let (number, from, until) =
            new.licence.clone().map_or((None, None, None), |(n, f, u)| (Some(n), Some(f), Some(u)));
        let id = in_tx!(tx, |c| {
            sqlx::query_scalar(
            "INSERT INTO principals (name, role, organisation, reviewer_kind, licence_number, licence_valid_from, \
             licence_valid_until, token_hash, created_at, token_expires_at, organisation_id, created_by, \
             pending_approval) \
             VALUES ($1, $2, (SELECT name FROM organisations WHERE id = $3), $4, $5, $6, $7, $8, $9, $10, $3, $11, $12) \
             RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.role)
        .bind(new.organisation_id.0)
        .bind(&new.reviewer_kind)
        .bind(number)
        .bind(from)
        .bind(until)
        .bind(&new.token_hash)
        .bind(format_time(now))
        .bind(format_time(new.token_expires_at))
        .bind(new.created_by)
        .bind(new.pending_approval)
        .fetch_one(c)
        .await
        })?;
        Ok(id)
    }

    const PRINCIPAL_COLUMNS: &str = "id, name, role, organisation_id, reviewer_kind, licence_number, licence_valid_from, \
         licence_valid_until, token_expires_at, disabled_at, created_by, pending_approval";

    /// A second administrator's approval: the principal gets its first working token.
    /// False if it does not exist or is not waiting for approval.
    pub async fn approve_principal(
        tx: &mut Tx,
        id: PrincipalId,
        token_hash: &str,
        expires_at: OffsetDateTime,
    ) -> anyhow::Result<bool> {
        let updated = in_tx!(tx, |c| sqlx::query(
            "UPDATE principals SET pending_approval = FALSE, token_hash = $1, token_expires_at = $2 \
             WHERE id = $3 AND pending_approval = TRUE AND disabled_at IS NULL",
        )
        .bind(token_hash)
        .bind(format_time(expires_at))
        .bind(id)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(updated == 1)
    }

    // ----- organisations -----

    /// Creates an organisation keyed by `name_key`; `Err(id)` names the organisation that
    /// already has that key.
    pub async fn insert_organisation(
        tx: &mut Tx,
        name: &str,
        name_key: &str,
        created_by: Option<PrincipalId>,
        now: OffsetDateTime,
    ) -> anyhow::Result<Result<OrganisationId, OrganisationId>> {
        if let Some(existing) =
            in_tx!(tx, |c| sqlx::query_scalar::<_, i64>("SELECT id FROM organisations WHERE name_key = $1")
                .bind(name_key)
                .fetch_optional(c)
                .await)?
        {
            return Ok(Err(OrganisationId(existing)));
        }
        let id = in_tx!(tx, |c| {
            sqlx::query_scalar::<_, i64>(
            "INSERT INTO organisations (name, name_key, created_by, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(name_key)
        .bind(created_by)
        .bind(format_time(now))
        .fetch_one(c)
        .await
        })?;
        Ok(Ok(OrganisationId(id)))
    }

    /// Renames organisation `id`; `Err(other)` if another organisation has that key,
    /// `Ok(false)` if there is no organisation `id`.
    pub async fn rename_organisation(
        tx: &mut Tx,
        id: OrganisationId,
        name: &str,
        name_key: &str,
    ) -> anyhow::Result<Result<bool, OrganisationId>> {
        if let Some(existing) =
            in_tx!(tx, |c| sqlx::query_scalar::<_, i64>("SELECT id FROM organisations WHERE name_key = $1")
                .bind(name_key)
                .fetch_optional(c)
                .await)?
            && existing != id.0
        {
            return Ok(Err(OrganisationId(existing)));
        }
        let updated = in_tx!(tx, |c| sqlx::query("UPDATE organisations SET name = $1, name_key = $2 WHERE id = $3")
            .bind(name)
            .bind(name_key)
            .bind(id.0)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        in_tx!(tx, |c| sqlx::query("UPDATE principals SET organisation = $1 WHERE organisation_id = $2")
            .bind(name)
            .bind(id.0)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(Ok(updated == 1))
    }

    pub async fn organisation(&self, id: OrganisationId) -> anyhow::Result<Option<OrganisationRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as("SELECT id, name, created_at FROM organisations WHERE id = $1")
            .bind(id.0)
            .fetch_optional(c)
            .await)?)
    }

    pub async fn organisations(&self) -> anyhow::Result<Vec<OrganisationRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as("SELECT id, name, created_at FROM organisations ORDER BY id")
            .fetch_all(c)
            .await)?)
    }

    /// Why a token that no principal holds any more stopped working (`rotated`, `revoked`).
    pub async fn revoked_token(&self, token_hash: &str) -> anyhow::Result<Option<String>> {
        Ok(in_pool!(self, |c| sqlx::query_scalar("SELECT reason FROM revoked_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(c)
            .await)?)
    }

    /// Gives principal `id` a new token hash and expiry; the old hash is kept as revoked
    /// for `reason`. False if there is no such principal.
    pub async fn replace_token(
        tx: &mut Tx,
        id: PrincipalId,
        new_hash: &str,
        expires_at: OffsetDateTime,
        reason: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<bool> {
        let inserted = in_tx!(tx, |c| sqlx::query(
            "INSERT INTO revoked_tokens (token_hash, principal_id, reason, revoked_at) \
             SELECT token_hash, id, $2, $3 FROM principals WHERE id = $1",
        )
        .bind(id)
        .bind(reason)
        .bind(format_time(now))
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        if inserted == 0 {
            return Ok(false);
        }
        in_tx!(tx, |c| sqlx::query("UPDATE principals SET token_hash = $1, token_expires_at = $2 WHERE id = $3")
            .bind(new_hash)
            .bind(format_time(expires_at))
            .bind(id)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(true)
    }

    /// Disables principal `id` for good. False if it does not exist or already was.
    pub async fn disable_principal(tx: &mut Tx, id: PrincipalId, now: OffsetDateTime) -> anyhow::Result<bool> {
        let updated = in_tx!(tx, |c| sqlx::query(
            "UPDATE principals SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL"
        )
        .bind(format_time(now))
        .bind(id)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(updated == 1)
    }

    pub async fn principal_by_token_hash(&self, token_hash: &str) -> anyhow::Result<Option<PrincipalRow>> {
        let sql = format!("SELECT {} FROM principals WHERE token_hash = $1", Self::PRINCIPAL_COLUMNS);
        Ok(in_pool!(self, |c| sqlx::query_as(&sql).bind(token_hash).fetch_optional(c).await)?)
    }

    /// Up to `limit` principals with ids above `after`, in id order (a page of
    /// `GET /v1/principals`).
    pub async fn principals_after(&self, after: PrincipalId, limit: u32) -> anyhow::Result<Vec<PrincipalRow>> {
        let sql = format!("SELECT {} FROM principals WHERE id > $1 ORDER BY id LIMIT $2", Self::PRINCIPAL_COLUMNS);
        Ok(in_pool!(self, |c| sqlx::query_as(&sql).bind(after).bind(i64::from(limit)).fetch_all(c).await)?)
    }

    pub async fn principal(&self, id: PrincipalId) -> anyhow::Result<Option<PrincipalRow>> {
        let sql = format!("SELECT {} FROM principals WHERE id = $1", Self::PRINCIPAL_COLUMNS);
        Ok(in_pool!(self, |c| sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
    }

    pub async fn principal_count(&self) -> anyhow::Result<i64> {
        Ok(in_pool!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM principals").fetch_one(c).await)?)
    }

    // ----- datasets -----

    #[allow(clippy::too_many_arguments, reason = "one column each, named at the call site")]
    pub async fn insert_dataset(
        tx: &mut Tx,
        name: &str,
        provider_id: PrincipalId,
        description: &str,
        schema_toml: &str,
        schema_hash: &str,
        epsilon_total: i64,
        min_group_size: i64,
        now: OffsetDateTime,
    ) -> anyhow::Result<DatasetId> {
        Ok(in_tx!(tx, |c| sqlx::query_scalar(
            "INSERT INTO datasets (name, provider_id, description, schema_toml, schema_hash, epsilon_total, \
             min_group_size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(name)
        .bind(provider_id)
        .bind(description)
        .bind(schema_toml)
        .bind(schema_hash)
        .bind(epsilon_total)
        .bind(min_group_size)
        .bind(format_time(now))
        .fetch_one(c)
        .await)?)
    }

    pub async fn dataset_name_taken(&self, name: &str) -> anyhow::Result<bool> {
        let count: i64 = in_pool!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM datasets WHERE name = $1")
            .bind(name)
            .fetch_one(c)
            .await)?;
        Ok(count > 0)
    }

    pub async fn dataset(&self, id: DatasetId) -> anyhow::Result<Option<DatasetRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as("SELECT * FROM datasets WHERE id = $1").bind(id).fetch_optional(c).await)?)
    }

    pub async fn datasets(&self) -> anyhow::Result<Vec<DatasetRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as("SELECT * FROM datasets ORDER BY id").fetch_all(c).await)?)
    }

    /// Reserves the dataset's next version number for an ingest by node `node`: higher
    /// than every version and every reservation, so no two ingests on any nodes seal the
    /// same one. The reservation goes when the version commits or the ingest fails
    /// ([`Store::release_reservation`]), or when its node is found dead.
    pub async fn reserve_version(
        tx: &mut Tx,
        dataset_id: DatasetId,
        node: NodeId,
        now: OffsetDateTime,
    ) -> anyhow::Result<i64> {
        let version: i64 = in_tx!(tx, |c| sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM (SELECT version FROM dataset_versions WHERE dataset_id = $1 \
             UNION ALL SELECT version FROM ingest_reservations WHERE dataset_id = $1) v"
        )
        .bind(dataset_id)
        .fetch_one(c)
        .await)?;
        in_tx!(tx, |c| sqlx::query(
            "INSERT INTO ingest_reservations (dataset_id, version, node, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(dataset_id)
        .bind(version)
        .bind(node)
        .bind(format_time(now))
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(version)
    }

    /// Removes a version's reservation (in the transaction that commits the version, or
    /// when the ingest failed).
    pub async fn release_reservation_in(tx: &mut Tx, dataset_id: DatasetId, version: i64) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query(RELEASE_RESERVATION_SQL)
            .bind(dataset_id)
            .bind(version)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// [`Store::release_reservation_in`] on its own.
    pub async fn release_reservation(&self, dataset_id: DatasetId, version: i64) -> anyhow::Result<()> {
        in_pool!(self, |c| sqlx::query(RELEASE_RESERVATION_SQL)
            .bind(dataset_id)
            .bind(version)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// The dataset's reserved versions with the node of each.
    pub async fn reservations(&self, dataset_id: DatasetId) -> anyhow::Result<Vec<(i64, NodeId)>> {
        Ok(in_pool!(self, |c| sqlx::query_as(
            "SELECT version, node FROM ingest_reservations WHERE dataset_id = $1 ORDER BY version"
        )
        .bind(dataset_id)
        .fetch_all(c)
        .await)?)
    }

    /// Adds a version, unless its dataset was destroyed meanwhile (false then).
    pub async fn insert_version(tx: &mut Tx, row: &VersionRow) -> anyhow::Result<bool> {
        let inserted = in_tx!(tx, |c| sqlx::query(
            "INSERT INTO dataset_versions (dataset_id, version, row_count, chunk_count, wrapped_key, created_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS \
             (SELECT 1 FROM datasets WHERE id = $1 AND destroyed_at IS NULL)",
        )
        .bind(row.dataset_id)
        .bind(row.version)
        .bind(row.row_count)
        .bind(row.chunk_count)
        .bind(&row.wrapped_key)
        .bind(row.created_at)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(inserted == 1)
    }

    pub async fn versions(&self, dataset_id: DatasetId) -> anyhow::Result<Vec<VersionRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as("SELECT * FROM dataset_versions WHERE dataset_id = $1 ORDER BY version")
            .bind(dataset_id)
            .fetch_all(c)
            .await)?)
    }

    /// Crypto-shredding: deletes every data key of the dataset (the wrapped keys are the
    /// only copies) and marks it destroyed. Returns how many versions lost their key.
    pub async fn shred_dataset(tx: &mut Tx, dataset_id: DatasetId, now: OffsetDateTime) -> anyhow::Result<u64> {
        let shredded =
            in_tx!(tx, |c| sqlx::query("UPDATE dataset_versions SET wrapped_key = $2 WHERE dataset_id = $1")
                .bind(dataset_id)
                .bind(Vec::<u8>::new())
                .execute(c)
                .await
                .map(|done| done.rows_affected()))?;
        in_tx!(tx, |c| sqlx::query("UPDATE datasets SET destroyed_at = $1 WHERE id = $2")
            .bind(format_time(now))
            .bind(dataset_id)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(shredded)
    }

    /// After a shred, gets rid of the old versions of the rows it overwrote, as far as the
    /// back end allows. SQLite: moves every committed page out of the write-ahead log into
    /// the database (where `secure_delete` has zeroed freed content) and truncates the log,
    /// so no old page image survives in the WAL file. PostgreSQL: vacuums the data keys'
    /// table, so the overwritten row versions are gone from every query and their space is
    /// reused; their bytes may stay on disk and in the server's WAL archive until
    /// overwritten (SECURITY.md says what to do about that).
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        match self.pool() {
            Pools::Sqlite { pool, .. } => {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
            }
            Pools::Postgres { pool } => {
                sqlx::query("VACUUM dataset_versions").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Every stored data key: (dataset id, version, wrapped key).
    pub async fn wrapped_keys(tx: &mut Tx) -> anyhow::Result<Vec<(DatasetId, i64, Vec<u8>)>> {
        Ok(in_tx!(tx, |c| sqlx::query_as(
            "SELECT dataset_id, version, wrapped_key FROM dataset_versions WHERE length(wrapped_key) > 0",
        )
        .fetch_all(c)
        .await)?)
    }

    pub async fn replace_wrapped_key(
        tx: &mut Tx,
        dataset_id: DatasetId,
        version: i64,
        wrapped: &[u8],
    ) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query(
            "UPDATE dataset_versions SET wrapped_key = $1 WHERE dataset_id = $2 AND version = $3"
        )
        .bind(wrapped)
        .bind(dataset_id)
        .bind(version)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(())
    }

    pub async fn meta(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(in_pool!(self, |c| sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(c)
            .await)?)
    }

    pub async fn set_meta(tx: &mut Tx, name: &str, value: &str) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// Sets `name` unless it is set already (another node may have set it first); the
    /// value stored afterwards is read with [`Store::meta`].
    pub async fn insert_meta_if_absent(tx: &mut Tx, name: &str, value: &str) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// A meta entry as this transaction sees it.
    pub async fn meta_in(tx: &mut Tx, name: &str) -> anyhow::Result<Option<String>> {
        Ok(in_tx!(tx, |c| sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(c)
            .await)?)
    }

    // ----- applications and authorisations -----

    pub async fn insert_application(
        tx: &mut Tx,
        row: &ApplicationRow,
        now: OffsetDateTime,
    ) -> anyhow::Result<ApplicationId> {
        Ok(in_tx!(tx, |c| sqlx::query_scalar(
            "INSERT INTO applications (operator_id, dataset_id, purpose, use_scope, security_measures, columns_json, \
             valid_from, valid_until, epsilon_requested, state, created_at, joins_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(row.operator_id)
        .bind(row.dataset_id)
        .bind(&row.purpose)
        .bind(&row.use_scope)
        .bind(&row.security_measures)
        .bind(&row.columns_json)
        .bind(row.valid_from)
        .bind(row.valid_until)
        .bind(row.epsilon_requested)
        .bind(row.state.as_str())
        .bind(format_time(now))
        .bind(&row.joins_json)
        .fetch_one(c)
        .await)?)
    }

    /// The organisations whose providing-department reviewers approved an application at
    /// the departments' stage (`bureau_approved`), read in the reviewing transaction.
    pub async fn provider_approvals(tx: &mut Tx, application_id: ApplicationId) -> anyhow::Result<Vec<OrganisationId>> {
        let organisations: Vec<i64> = in_tx!(tx, |c| {
            sqlx::query_scalar(
            "SELECT DISTINCT p.organisation_id FROM application_reviews r JOIN principals p ON p.id = r.reviewer_id \
             WHERE r.application_id = $1 AND r.stage = 'bureau_approved' AND r.approved ORDER BY p.organisation_id",
        )
        .bind(application_id)
        .fetch_all(c)
        .await
        })?;
        Ok(organisations.into_iter().map(OrganisationId).collect())
    }

    /// [`Store::provider_approvals`] outside a write.
    pub async fn provider_approvals_now(&self, application_id: ApplicationId) -> anyhow::Result<Vec<OrganisationId>> {
        let mut tx = self.read().await.context("starting a read")?;
        let approvals = Self::provider_approvals(&mut tx, application_id).await?;
        tx.commit().await.context("finishing a read")?;
        Ok(approvals)
    }

    /// Up to `limit` applications with ids above `after`, in id order, for one dataset if
    /// given (a page of `GET /v1/applications`).
    pub async fn applications_after(
        &self,
        after: ApplicationId,
        dataset: Option<DatasetId>,
        limit: u32,
    ) -> anyhow::Result<Vec<ApplicationRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as(
            "SELECT * FROM applications WHERE id > $1 AND ($2 IS NULL OR dataset_id = $2) ORDER BY id LIMIT $3"
        )
        .bind(after)
        .bind(dataset)
        .bind(i64::from(limit))
        .fetch_all(c)
        .await)?)
    }

    pub async fn application(&self, id: ApplicationId) -> anyhow::Result<Option<ApplicationRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as("SELECT * FROM applications WHERE id = $1")
            .bind(id)
            .fetch_optional(c)
            .await)?)
    }

    pub async fn application_in(tx: &mut Tx, id: ApplicationId) -> anyhow::Result<Option<ApplicationRow>> {
        Ok(in_tx!(tx, |c| sqlx::query_as("SELECT * FROM applications WHERE id = $1").bind(id).fetch_optional(c).await)?)
    }

    #[allow(clippy::too_many_arguments, reason = "one review's fields, named at the call site")]
    pub async fn record_application_review(
        tx: &mut Tx,
        application_id: ApplicationId,
        reviewer_id: PrincipalId,
        stage: &str,
        approved: bool,
        comment: &str,
        next_state: ApplicationState,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query(
            "INSERT INTO application_reviews (application_id, reviewer_id, stage, approved, comment, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(application_id)
        .bind(reviewer_id)
        .bind(stage)
        .bind(approved)
        .bind(comment)
        .bind(format_time(now))
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        let bureau_reviewer = (stage == "submitted" && approved).then_some(reviewer_id);
        in_tx!(tx, |c| sqlx::query(
            "UPDATE applications SET state = $1, bureau_reviewer_id = COALESCE($2, bureau_reviewer_id) WHERE id = $3",
        )
        .bind(next_state.as_str())
        .bind(bureau_reviewer)
        .bind(application_id)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(())
    }

    pub async fn insert_authorisation(
        tx: &mut Tx,
        application: &ApplicationRow,
        hold_outputs: bool,
        now: OffsetDateTime,
    ) -> anyhow::Result<AuthorisationId> {
        Ok(in_tx!(tx, |c| sqlx::query_scalar(
            "INSERT INTO authorisations (application_id, operator_id, dataset_id, purpose, columns_json, valid_from, \
             valid_until, epsilon_total, hold_outputs, created_at, joins_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(application.id)
        .bind(application.operator_id)
        .bind(application.dataset_id)
        .bind(&application.purpose)
        .bind(&application.columns_json)
        .bind(application.valid_from)
        .bind(application.valid_until)
        .bind(application.epsilon_requested)
        .bind(hold_outputs)
        .bind(format_time(now))
        .bind(&application.joins_json)
        .fetch_one(c)
        .await)?)
    }

    const AUTHORISATION_COLUMNS: &str = "id, application_id, operator_id, dataset_id, purpose, columns_json, valid_from, \
         valid_until, epsilon_total, epsilon_spent, revoked_at, hold_outputs, joins_json";

    pub async fn authorisation(&self, id: AuthorisationId) -> anyhow::Result<Option<AuthorisationRow>> {
        let sql = format!("SELECT {} FROM authorisations WHERE id = $1", Self::AUTHORISATION_COLUMNS);
        Ok(in_pool!(self, |c| sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
    }

    pub async fn authorisation_for_application(
        &self,
        application_id: ApplicationId,
    ) -> anyhow::Result<Option<AuthorisationId>> {
        Ok(in_pool!(self, |c| sqlx::query_scalar("SELECT id FROM authorisations WHERE application_id = $1")
            .bind(application_id)
            .fetch_optional(c)
            .await)?)
    }

    /// Every authorisation that reads `dataset_id`, first or joined (the joined ones are
    /// found among the authorisations that join any: a list in a column has no index, and
    /// this is read when a dataset is destroyed, not on a request's path).
    pub async fn authorisations_for_dataset(&self, dataset_id: DatasetId) -> anyhow::Result<Vec<AuthorisationRow>> {
        let sql = format!(
            "SELECT {} FROM authorisations WHERE dataset_id = $1 OR joins_json IS NOT NULL ORDER BY id",
            Self::AUTHORISATION_COLUMNS
        );
        let rows: Vec<AuthorisationRow> = in_pool!(self, |c| sqlx::query_as(&sql).bind(dataset_id).fetch_all(c).await)?;
        let mut reading = Vec::with_capacity(rows.len());
        for row in rows {
            if row.datasets()?.contains(&dataset_id) {
                reading.push(row);
            }
        }
        Ok(reading)
    }

    /// Revokes an authorisation at once; false when it already was.
    pub async fn revoke_authorisation(tx: &mut Tx, id: AuthorisationId, now: OffsetDateTime) -> anyhow::Result<bool> {
        let result = in_tx!(tx, |c| sqlx::query(
            "UPDATE authorisations SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"
        )
        .bind(format_time(now))
        .bind(id)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(result == 1)
    }

    pub async fn set_application_state(tx: &mut Tx, id: ApplicationId, state: ApplicationState) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query("UPDATE applications SET state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(id)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    pub async fn set_model_state(tx: &mut Tx, id: ModelId, state: ModelState) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query("UPDATE models SET state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(id)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    // ----- models -----

    pub async fn insert_model(tx: &mut Tx, row: &ModelRow, now: OffsetDateTime) -> anyhow::Result<ModelId> {
        Ok(in_tx!(tx, |c| {
            sqlx::query_scalar(
            "INSERT INTO models (authorisation_id, submitter_id, name, digest, module, manifest_toml, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(row.authorisation_id)
        .bind(row.submitter_id)
        .bind(&row.name)
        .bind(&row.digest)
        .bind(&row.module)
        .bind(&row.manifest_toml)
        .bind(row.state.as_str())
        .bind(format_time(now))
        .fetch_one(c)
        .await
        })?)
    }

    /// Up to `limit` models with ids above `after`, in id order, of one authorisation if
    /// given, without their modules (a page of `GET /v1/models`).
    pub async fn models_after(
        &self,
        after: ModelId,
        authorisation: Option<AuthorisationId>,
        limit: u32,
    ) -> anyhow::Result<Vec<ModelRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as(
            "SELECT id, authorisation_id, submitter_id, name, digest, $4 AS module, manifest_toml, state FROM models \
             WHERE id > $1 AND ($2 IS NULL OR authorisation_id = $2) ORDER BY id LIMIT $3"
        )
        .bind(after)
        .bind(authorisation)
        .bind(i64::from(limit))
        .bind(Vec::<u8>::new())
        .fetch_all(c)
        .await)?)
    }

    pub async fn model(&self, id: ModelId) -> anyhow::Result<Option<ModelRow>> {
        Ok(in_pool!(self, |c| {
            sqlx::query_as(
            "SELECT id, authorisation_id, submitter_id, name, digest, module, manifest_toml, state FROM models WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(c)
        .await
        })?)
    }

    /// Whether a model with these bytes was revoked under this authorisation.
    pub async fn digest_revoked(tx: &mut Tx, authorisation_id: AuthorisationId, digest: &str) -> anyhow::Result<bool> {
        Ok(in_tx!(tx, |c| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM models WHERE authorisation_id = $1 AND digest = $2 AND state = $3)",
        )
        .bind(authorisation_id)
        .bind(digest)
        .bind(ModelState::Revoked.as_str())
        .fetch_one(c)
        .await)?)
    }

    /// Reviewers who have approved a model so far.
    pub async fn model_approvers(tx: &mut Tx, model_id: ModelId) -> anyhow::Result<Vec<PrincipalId>> {
        Ok(in_tx!(tx, |c| sqlx::query_scalar(
            "SELECT reviewer_id FROM model_reviews WHERE model_id = $1 AND approved = TRUE"
        )
        .bind(model_id)
        .fetch_all(c)
        .await)?)
    }

    pub async fn set_automated_results(&self, id: ModelId, results: &str) -> anyhow::Result<()> {
        in_pool!(self, |c| sqlx::query("UPDATE models SET automated_results = $1 WHERE id = $2")
            .bind(results)
            .bind(id)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    pub async fn automated_results(&self, id: ModelId) -> anyhow::Result<Option<String>> {
        let results: Option<Option<String>> =
            in_pool!(self, |c| sqlx::query_scalar("SELECT automated_results FROM models WHERE id = $1")
                .bind(id)
                .fetch_optional(c)
                .await)?;
        Ok(results.flatten())
    }

    pub async fn model_state_in(tx: &mut Tx, id: ModelId) -> anyhow::Result<Option<ModelState>> {
        let state: Option<String> = in_tx!(tx, |c| sqlx::query_scalar("SELECT state FROM models WHERE id = $1")
            .bind(id)
            .fetch_optional(c)
            .await)?;
        state.map(|state| ModelState::try_from(state).map_err(anyhow::Error::msg)).transpose()
    }

    #[allow(clippy::too_many_arguments, reason = "one review's fields, named at the call site")]
    pub async fn record_model_review(
        tx: &mut Tx,
        model_id: ModelId,
        reviewer_id: PrincipalId,
        approved: bool,
        comment: &str,
        checklist: &str,
        next_state: ModelState,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query(
            "INSERT INTO model_reviews (model_id, reviewer_id, approved, comment, checklist, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(model_id)
        .bind(reviewer_id)
        .bind(approved)
        .bind(comment)
        .bind(checklist)
        .bind(format_time(now))
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        in_tx!(tx, |c| sqlx::query("UPDATE models SET state = $1 WHERE id = $2 AND state = $3")
            .bind(next_state.as_str())
            .bind(model_id)
            .bind(ModelState::Submitted.as_str())
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    // ----- the run path -----

    /// Every fact a run decision needs, read in one snapshot: the authorisation, the model,
    /// the authorisation's dataset and that dataset's latest version.
    pub async fn run_facts(
        &self,
        authorisation_id: AuthorisationId,
        model_id: ModelId,
    ) -> anyhow::Result<RunFactsRows> {
        let mut tx = self.read().await.context("starting a read")?;
        let sql = format!("SELECT {} FROM authorisations WHERE id = $1", Self::AUTHORISATION_COLUMNS);
        let authorisation: Option<AuthorisationRow> =
            in_tx!(tx, |c| sqlx::query_as(&sql).bind(authorisation_id).fetch_optional(c).await)?;
        let model: Option<ModelRow> = in_tx!(tx, |c| {
            sqlx::query_as(
            "SELECT id, authorisation_id, submitter_id, name, digest, module, manifest_toml, state FROM models WHERE id = $1",
        )
        .bind(model_id)
        .fetch_optional(c)
        .await
        })?;
        let (dataset, version) = match &authorisation {
            Some(authorisation) => Self::dataset_and_latest_version(&mut tx, authorisation.dataset_id).await?,
            None => (None, None),
        };
        let mut joined = Vec::new();
        for join in authorisation.as_ref().map(AuthorisationRow::joins).transpose()?.unwrap_or_default() {
            joined.push(Self::dataset_and_latest_version(&mut tx, join.dataset_id).await?);
        }
        let operator_organisation =
            Self::organisation_of(&mut tx, authorisation.as_ref().map(|row| row.operator_id)).await?;
        let mut provider_organisations = Vec::new();
        for dataset in dataset.iter().chain(joined.iter().filter_map(|(dataset, _)| dataset.as_ref())) {
            provider_organisations.extend(Self::organisation_of(&mut tx, Some(dataset.provider_id)).await?);
        }
        tx.commit().await.context("finishing a read")?;
        Ok(RunFactsRows {
            authorisation,
            model,
            dataset,
            version,
            joined,
            operator_organisation,
            provider_organisations,
        })
    }

    /// A dataset and its latest version, in a read.
    async fn dataset_and_latest_version(
        tx: &mut Tx,
        dataset_id: DatasetId,
    ) -> anyhow::Result<(Option<DatasetRow>, Option<VersionRow>)> {
        let dataset: Option<DatasetRow> = in_tx!(tx, |c| sqlx::query_as("SELECT * FROM datasets WHERE id = $1")
            .bind(dataset_id)
            .fetch_optional(c)
            .await)?;
        let version: Option<VersionRow> = in_tx!(tx, |c| sqlx::query_as(
            "SELECT * FROM dataset_versions WHERE dataset_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(dataset_id)
        .fetch_optional(c)
        .await)?;
        Ok((dataset, version))
    }

    async fn organisation_of(tx: &mut Tx, principal: Option<PrincipalId>) -> anyhow::Result<Option<OrganisationId>> {
        let Some(principal) = principal else { return Ok(None) };
        let organisation: Option<i64> =
            in_tx!(tx, |c| sqlx::query_scalar("SELECT organisation_id FROM principals WHERE id = $1")
                .bind(principal)
                .fetch_optional(c)
                .await)?;
        Ok(organisation.map(OrganisationId))
    }

    /// What may have changed since a run was decided, read under the charging
    /// transaction's write lock: revocation, both budgets and the runs since `since`.
    pub async fn charge_facts(
        tx: &mut Tx,
        authorisation_id: AuthorisationId,
        dataset_id: DatasetId,
        since: OffsetDateTime,
    ) -> anyhow::Result<Option<ChargeFactsRow>> {
        Ok(in_tx!(tx, |c| sqlx::query_as(CHARGE_FACTS_SQL)
            .bind(authorisation_id)
            .bind(dataset_id)
            .bind(format_time(since))
            .fetch_optional(c)
            .await)?)
    }

    /// A joined dataset's lifetime budget (total, spent), read in a charging transaction
    /// beside [`Store::charge_facts`]; `None` if the dataset is gone.
    pub async fn dataset_budget(tx: &mut Tx, dataset_id: DatasetId) -> anyhow::Result<Option<(i64, i64)>> {
        Ok(in_tx!(tx, |c| sqlx::query_as("SELECT epsilon_total, epsilon_spent FROM datasets WHERE id = $1")
            .bind(dataset_id)
            .fetch_optional(c)
            .await)?)
    }

    /// Writes a charge the policy allowed: the budgets' new spent totals (the authorisation's,
    /// its dataset's and each joined dataset's). The caller read them with
    /// [`Store::charge_facts`] and [`Store::dataset_budget`] in the same transaction.
    pub async fn apply_charge(
        tx: &mut Tx,
        authorisation_id: AuthorisationId,
        authorisation_spent: i64,
        dataset_id: DatasetId,
        dataset_spent: i64,
        joined: &[(DatasetId, i64)],
    ) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query("UPDATE authorisations SET epsilon_spent = $1 WHERE id = $2")
            .bind(authorisation_spent)
            .bind(authorisation_id)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        for &(id, spent) in std::iter::once(&(dataset_id, dataset_spent)).chain(joined) {
            in_tx!(tx, |c| sqlx::query("UPDATE datasets SET epsilon_spent = $1 WHERE id = $2")
                .bind(spent)
                .bind(id)
                .execute(c)
                .await
                .map(|done| done.rows_affected()))?;
        }
        Ok(())
    }

    // ----- runs -----

    pub async fn insert_run(tx: &mut Tx, row: &RunRow, now: OffsetDateTime) -> anyhow::Result<RunId> {
        let id = in_tx!(tx, |c| {
            sqlx::query_scalar(
            "INSERT INTO runs (authorisation_id, model_id, operator_id, dataset_id, dataset_version, epsilon, state, created_at, \
             visible_at, node, joined_versions_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(row.authorisation_id)
        .bind(row.model_id)
        .bind(row.operator_id)
        .bind(row.dataset_id)
        .bind(row.dataset_version)
        .bind(row.epsilon)
        .bind(row.state)
        .bind(format_time(now))
        .bind(row.visible_at)
        .bind(row.node)
        .bind(&row.joined_versions_json)
        .fetch_one(c)
        .await
        })?;
        if row.state == RunState::Queued {
            Self::announce(tx, RunEvent::Queued, id).await?;
        }
        Ok(id)
    }

    /// Tells every node listening ([`Store::run_events`]) of `event` once `tx` commits
    /// (PostgreSQL's `NOTIFY` is transactional: a rolled-back change announces nothing).
    /// On SQLite it does nothing: nodes there look ([`RunEvents`] is PostgreSQL's only).
    async fn announce(tx: &mut Tx, event: RunEvent, run_id: RunId) -> anyhow::Result<()> {
        if let TxInner::Postgres(inner) = &mut tx.inner {
            // The channel is the database's; the payload names the schema, so deployments
            // sharing a database in schemas of their own do not hear each other.
            sqlx::query("SELECT pg_notify($1, current_schema() || ' ' || $2)")
                .bind(RUN_EVENTS_CHANNEL)
                .bind(format!("{} {run_id}", event.as_str()))
                .execute(&mut **inner)
                .await?;
        }
        Ok(())
    }

    /// Listens for run events of this database ([`Store::announce`]): `None` on SQLite.
    pub async fn run_events(&self) -> anyhow::Result<Option<RunEvents>> {
        let Pools::Postgres { pool } = &self.pools else { return Ok(None) };
        let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(pool).await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(RUN_EVENTS_CHANNEL).await?;
        Ok(Some(RunEvents { listener, schema }))
    }

    /// Ends a run that is `running`; false (and nothing written) if it is not — another
    /// node settled it as interrupted, so it must not end a second time.
    pub async fn finish_run(
        tx: &mut Tx,
        run_id: RunId,
        state: RunState,
        outcome: &str,
        result_json: Option<&str>,
        now: OffsetDateTime,
    ) -> anyhow::Result<bool> {
        let updated = in_tx!(tx, |c| sqlx::query(
            "UPDATE runs SET state = $1, outcome = $2, result_json = $3, finished_at = $4 \
             WHERE id = $5 AND state = $6"
        )
        .bind(state)
        .bind(outcome)
        .bind(result_json)
        .bind(format_time(now))
        .bind(run_id)
        .bind(RunState::Running)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        if updated == 1 {
            Self::announce(tx, RunEvent::Ended, run_id).await?;
        }
        Ok(updated == 1)
    }

    /// Moves a held run to `released` or `withheld`; false when it was not held.
    pub async fn review_held_run(tx: &mut Tx, run_id: RunId, state: RunState) -> anyhow::Result<bool> {
        let result = in_tx!(tx, |c| sqlx::query("UPDATE runs SET state = $1 WHERE id = $2 AND state = $3")
            .bind(state)
            .bind(run_id)
            .bind(RunState::Held)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(result == 1)
    }

    /// Claims queued run `run_id` for node `node`. `Some` if it was queued and is now this
    /// node's to run, carrying whether its authorisation is revoked (read in the same
    /// statement, as the run leaves the queue); `None` if another node claimed it first (or
    /// it is not queued).
    pub async fn claim_run(&self, run_id: RunId, node: NodeId) -> anyhow::Result<Option<bool>> {
        // The claim does not wait for the disk: a claim lost with the machine's power
        // leaves the run queued, to be claimed again, and nothing of it was released (the
        // release's commit waits for the disk, and makes the claim durable with it).
        let mut tx = self.begin_unsynced().await?;
        let revoked = in_tx!(tx, |c| sqlx::query_scalar(
            "UPDATE runs SET state = $1, node = $2 WHERE id = $3 AND state = $4 RETURNING \
             (SELECT a.revoked_at IS NOT NULL FROM authorisations a WHERE a.id = runs.authorisation_id)"
        )
        .bind(RunState::Running)
        .bind(node)
        .bind(run_id)
        .bind(RunState::Queued)
        .fetch_optional(c)
        .await)?;
        tx.commit().await.context("committing the claim")?;
        Ok(revoked)
    }

    /// The oldest queued run, if any: a read, so nodes with nothing to do poll cheaply.
    pub async fn oldest_queued_run(&self) -> anyhow::Result<Option<RunId>> {
        Ok(in_pool!(self, |c| sqlx::query_scalar("SELECT id FROM runs WHERE state = $1 ORDER BY id LIMIT 1")
            .bind(RunState::Queued)
            .fetch_optional(c)
            .await)?)
    }

    /// Claims the oldest queued run for node `node` and returns it. On PostgreSQL the row is
    /// chosen `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take different runs
    /// instead of queueing behind one another's row lock; on SQLite the statement runs
    /// under the database's single writer. Either way a run is claimed once.
    pub async fn claim_next_run(&self, node: NodeId) -> anyhow::Result<Option<RunRow>> {
        macro_rules! claim_sql {
            ($lock:literal) => {
                concat!(
                    "UPDATE runs SET state = $1, node = $2 WHERE id = \
                     (SELECT id FROM runs WHERE state = $3 ORDER BY id LIMIT 1",
                    $lock,
                    ") RETURNING ",
                    run_columns!()
                )
            };
        }
        let sql = match self.pools {
            Pools::Sqlite { .. } => claim_sql!(""),
            Pools::Postgres { .. } => claim_sql!(" FOR UPDATE SKIP LOCKED"),
        };
        Ok(in_pool!(self, |c| sqlx::query_as(sql)
            .bind(RunState::Running)
            .bind(node)
            .bind(RunState::Queued)
            .fetch_optional(c)
            .await)?)
    }

    /// Runs still marked `running`, with the node running each (none on old rows).
    pub async fn running_runs(&self) -> anyhow::Result<Vec<(RunId, Option<NodeId>)>> {
        Ok(in_pool!(self, |c| sqlx::query_as("SELECT id, node FROM runs WHERE state = $1 ORDER BY id")
            .bind(RunState::Running)
            .fetch_all(c)
            .await)?)
    }

    /// Marks a run that never finished as `interrupted`; false if it is not `running`.
    pub async fn interrupt_run(tx: &mut Tx, run_id: RunId, now: OffsetDateTime) -> anyhow::Result<bool> {
        let updated = in_tx!(tx, |c| sqlx::query(
            // The outcome code of an interrupted run is the state's own name.
            "UPDATE runs SET state = $1, outcome = $1, finished_at = $2 WHERE id = $3 AND state = $4",
        )
        .bind(RunState::Interrupted)
        .bind(format_time(now))
        .bind(run_id)
        .bind(RunState::Running)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        if updated == 1 {
            Self::announce(tx, RunEvent::Ended, run_id).await?;
        }
        Ok(updated == 1)
    }

    /// Up to `limit` runs with ids above `after`, in id order, of one authorisation if
    /// given (a page of `GET /v1/runs`, before the policy set picks what its caller sees).
    pub async fn runs_after(
        &self,
        after: RunId,
        authorisation: Option<AuthorisationId>,
        limit: u32,
    ) -> anyhow::Result<Vec<RunRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id > $1 AND ($2 IS NULL OR authorisation_id = $2) ORDER BY id LIMIT $3"
        ))
        .bind(after)
        .bind(authorisation)
        .bind(i64::from(limit))
        .fetch_all(c)
        .await)?)
    }

    /// Runs counted per authorisation, month and state, with the ε they were charged and
    /// the rows they read (what usage figures and metering are made of).
    pub async fn run_usage(&self) -> anyhow::Result<Vec<RunUsageRow>> {
        Ok(in_pool!(self, |c| {
            sqlx::query_as(
                "SELECT r.authorisation_id, substr(r.created_at, 1, 7) AS month, r.state, \
             CAST(COUNT(*) AS BIGINT) AS runs, CAST(SUM(r.epsilon) AS BIGINT) AS epsilon_units, \
             CAST(COALESCE(SUM(v.row_count), 0) AS BIGINT) AS rows_read, r.joined_versions_json \
             FROM runs r LEFT JOIN dataset_versions v ON v.dataset_id = r.dataset_id AND v.version = r.dataset_version \
             GROUP BY r.authorisation_id, substr(r.created_at, 1, 7), r.state, r.joined_versions_json \
             ORDER BY month, r.authorisation_id, r.state, r.joined_versions_json",
            )
            .fetch_all(c)
            .await
        })?)
    }

    /// Every model submission with the time of its first review, if any.
    pub async fn model_usage(&self) -> anyhow::Result<Vec<ModelUsageRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as(
            "SELECT m.authorisation_id, m.created_at AS submitted_at, MIN(r.created_at) AS first_review_at \
             FROM models m LEFT JOIN model_reviews r ON r.model_id = m.id \
             GROUP BY m.id, m.authorisation_id, m.created_at ORDER BY m.id"
        )
        .fetch_all(c)
        .await)?)
    }

    pub async fn run(&self, id: RunId) -> anyhow::Result<Option<RunRow>> {
        Ok(in_pool!(self, |c| sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"),)
            .bind(id)
            .fetch_optional(c)
            .await)?)
    }

    // ----- audit -----

    /// Appends one entry inside `tx`, so it commits or rolls back with the change it
    /// records. The write lock held by the transaction serialises sequence numbers.
    pub async fn append_audit(tx: &mut Tx, event: AuditEvent, now: OffsetDateTime) -> anyhow::Result<u64> {
        Ok(Self::append_audit_entry(tx, event, now).await?.0)
    }

    /// [`Store::append_audit`], also giving back the entry's canonical text (for a receipt,
    /// so the entry just written need not be read back).
    pub async fn append_audit_entry(
        tx: &mut Tx,
        event: AuditEvent,
        now: OffsetDateTime,
    ) -> anyhow::Result<(u64, String)> {
        let last: Option<(i64, Vec<u8>)> =
            in_tx!(tx, |c| sqlx::query_as("SELECT seq, leaf_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(c)
                .await)?;
        let (seq, prev) = match last {
            Some((seq, hash)) => {
                (seq + 1, hash.try_into().map_err(|_| anyhow::anyhow!("stored leaf hash is not 32 bytes"))?)
            }
            None => (1, [0u8; 32]),
        };
        let entry = AuditEntry::from_event(event, seq as u64, prev, format_time(now));
        let canonical = entry.canonical();
        let leaf = leaf_hash(canonical.as_bytes());
        in_tx!(tx, |c| sqlx::query("INSERT INTO audit_log (seq, entry, leaf_hash) VALUES ($1, $2, $3)")
            .bind(seq)
            .bind(&canonical)
            .bind(leaf.to_vec())
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Self::append_subtrees(tx, seq as u64 - 1, leaf).await?;
        Ok((seq as u64, canonical))
    }

    /// Writes the perfect subtrees the leaf at `index` completes (one on average, at most
    /// log₂ n), each from its stored left sibling: `sluice_audit::completed_subtrees` names
    /// the siblings (they depend on the index alone), they are read, then it hashes.
    async fn append_subtrees(tx: &mut Tx, index: u64, leaf: [u8; 32]) -> anyhow::Result<()> {
        let mut siblings = Vec::new();
        sluice_audit::completed_subtrees(index, leaf, |level, position| {
            siblings.push((level, position));
            [0; 32]
        });
        let mut left = std::collections::HashMap::with_capacity(siblings.len());
        for (level, position) in siblings {
            left.insert((level, position), Self::read_subtree(tx, level, position).await?);
        }
        for (level, position, hash) in sluice_audit::completed_subtrees(index, leaf, |level, position| {
            left.get(&(level, position)).copied().unwrap_or_default()
        }) {
            in_tx!(tx, |c| sqlx::query("INSERT INTO audit_subtrees (level, idx, hash) VALUES ($1, $2, $3)")
                .bind(i64::from(level))
                .bind(position as i64)
                .bind(hash.to_vec())
                .execute(c)
                .await
                .map(|done| done.rows_affected()))?;
        }
        Ok(())
    }

    /// One stored perfect subtree (level 0: the leaf of entry `index + 1`).
    async fn read_subtree(tx: &mut Tx, level: u32, index: u64) -> anyhow::Result<[u8; 32]> {
        let hash: Option<Vec<u8>> = if level == 0 {
            in_tx!(tx, |c| sqlx::query_scalar("SELECT leaf_hash FROM audit_log WHERE seq = $1")
                .bind(index as i64 + 1)
                .fetch_optional(c)
                .await)?
        } else {
            in_tx!(tx, |c| sqlx::query_scalar("SELECT hash FROM audit_subtrees WHERE level = $1 AND idx = $2")
                .bind(i64::from(level))
                .bind(index as i64)
                .fetch_optional(c)
                .await)?
        };
        hash.with_context(|| format!("the log's subtree ({level}, {index}) is missing"))?
            .try_into()
            .map_err(|_| anyhow::anyhow!("a stored subtree hash is not 32 bytes"))
    }

    /// The stored perfect subtrees `keys` names ((level, index); level 0 the leaves), read
    /// in one snapshot.
    pub async fn subtrees(
        &self,
        keys: &[(u32, u64)],
    ) -> anyhow::Result<std::collections::HashMap<(u32, u64), [u8; 32]>> {
        let mut read = self.read().await.context("starting a read")?;
        let found = Self::subtrees_in(&mut read, keys).await?;
        read.commit().await.context("finishing a read")?;
        Ok(found)
    }

    /// The tree of the log's first `size` entries, resumed from its frontier's stored
    /// subtrees (O(log n) rows) in `tx` — a transaction sees its own appends.
    pub async fn tree_in(tx: &mut Tx, size: u64) -> anyhow::Result<RootBuilder> {
        let keys = RootBuilder::frontier_of(size);
        let stored = Self::subtrees_in(tx, &keys).await?;
        Ok(RootBuilder::resume(size, keys.iter().map(|key| (key.0, stored[key])).collect()))
    }

    /// [`Store::tree_in`] in a read of its own.
    pub async fn tree(&self, size: u64) -> anyhow::Result<RootBuilder> {
        let mut read = self.read().await.context("starting a read")?;
        let tree = Self::tree_in(&mut read, size).await?;
        read.commit().await.context("finishing a read")?;
        Ok(tree)
    }

    /// [`Store::subtrees`] inside a transaction, which sees its own appends.
    async fn subtrees_in(
        tx: &mut Tx,
        keys: &[(u32, u64)],
    ) -> anyhow::Result<std::collections::HashMap<(u32, u64), [u8; 32]>> {
        let mut found = std::collections::HashMap::with_capacity(keys.len());
        for &(level, index) in keys {
            found.insert((level, index), Self::read_subtree(tx, level, index).await?);
        }
        Ok(found)
    }

    /// Fills `audit_subtrees` for a log written before it existed (an entry and its
    /// subtrees are written in one transaction, so a log written since is never behind).
    /// Streams the leaves a page at a time, keeping only the left siblings on the way up.
    /// Returns how many subtrees it wrote.
    pub async fn backfill_subtrees(&self) -> anyhow::Result<u64> {
        const PAGE: u64 = 65_536;
        let size = self.audit_size().await?;
        let pairs: i64 = in_pool!(self, |c| sqlx::query_scalar("SELECT COUNT(*) FROM audit_subtrees WHERE level = 1")
            .fetch_one(c)
            .await)?;
        if pairs as u64 == size / 2 {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        // The last even-positioned subtree at each level: the left sibling the next odd one
        // at that level completes a parent with.
        let mut left: Vec<[u8; 32]> = Vec::new();
        fn remember(left: &mut Vec<[u8; 32]>, level: u32, position: u64, hash: [u8; 32]) {
            if position.is_multiple_of(2) {
                if left.len() <= level as usize {
                    left.resize(level as usize + 1, [0; 32]);
                }
                left[level as usize] = hash;
            }
        }
        let mut written = 0;
        let mut index = 0u64;
        while index < size {
            let page: Vec<Vec<u8>> = in_tx!(tx, |c| sqlx::query_scalar(
                "SELECT leaf_hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            )
            .bind(index as i64)
            .bind(PAGE as i64)
            .fetch_all(c)
            .await)?;
            if page.is_empty() {
                break;
            }
            for leaf in page {
                let leaf: [u8; 32] =
                    leaf.try_into().map_err(|_| anyhow::anyhow!("a stored leaf hash is not 32 bytes"))?;
                let completed = sluice_audit::completed_subtrees(index, leaf, |level, _| left[level as usize]);
                remember(&mut left, 0, index, leaf);
                for (level, position, hash) in completed {
                    remember(&mut left, level, position, hash);
                    in_tx!(tx, |c| sqlx::query(
                        "INSERT INTO audit_subtrees (level, idx, hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(i64::from(level))
                    .bind(position as i64)
                    .bind(hash.to_vec())
                    .execute(c)
                    .await
                    .map(|done| done.rows_affected()))?;
                    written += 1;
                }
                index += 1;
            }
        }
        tx.commit().await.context("committing the log's subtrees")?;
        Ok(written)
    }

    /// Every entry's canonical text, in sequence order.
    pub async fn audit_entries(&self) -> anyhow::Result<Vec<String>> {
        Ok(in_pool!(self, |c| sqlx::query_scalar("SELECT entry FROM audit_log ORDER BY seq").fetch_all(c).await)?)
    }

    /// The entries after the first `after`, in order, read inside `tx` (which holds the
    /// write lock, so nothing is appended meanwhile).
    pub async fn audit_entries_after(tx: &mut Tx, after: u64) -> anyhow::Result<Vec<String>> {
        Ok(in_tx!(tx, |c| sqlx::query_scalar("SELECT entry FROM audit_log WHERE seq > $1 ORDER BY seq")
            .bind(after as i64)
            .fetch_all(c)
            .await)?)
    }

    /// The leaf hashes of the entries after the first `after`, in order.
    pub async fn leaf_hashes_after(&self, after: u64) -> anyhow::Result<Vec<[u8; 32]>> {
        let rows: Vec<Vec<u8>> =
            in_pool!(self, |c| sqlx::query_scalar("SELECT leaf_hash FROM audit_log WHERE seq > $1 ORDER BY seq")
                .bind(after as i64)
                .fetch_all(c)
                .await)?;
        rows.into_iter()
            .map(|hash| hash.try_into().map_err(|_| anyhow::anyhow!("a stored leaf hash is not 32 bytes")))
            .collect()
    }

    pub async fn audit_size(&self) -> anyhow::Result<u64> {
        let size: i64 =
            in_pool!(self, |c| sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log").fetch_one(c).await)?;
        Ok(size as u64)
    }

    pub async fn audit_entry(&self, seq: u64) -> anyhow::Result<Option<String>> {
        Ok(in_pool!(self, |c| sqlx::query_scalar("SELECT entry FROM audit_log WHERE seq = $1")
            .bind(seq as i64)
            .fetch_optional(c)
            .await)?)
    }

    pub async fn insert_checkpoint(
        &self,
        size: u64,
        root: &[u8; 32],
        note: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        in_pool!(self, |c| sqlx::query(INSERT_CHECKPOINT_SQL)
            .bind(size as i64)
            .bind(root.to_vec())
            .bind(note)
            .bind(format_time(now))
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// [`Store::insert_checkpoint`] in `tx`, e.g. the transaction that appended the
    /// entries it covers.
    pub async fn insert_checkpoint_in(
        tx: &mut Tx,
        size: u64,
        root: &[u8; 32],
        note: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query(INSERT_CHECKPOINT_SQL)
            .bind(size as i64)
            .bind(root.to_vec())
            .bind(note)
            .bind(format_time(now))
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// A checkpoint's size and note with its witnesses' cosignature lines appended, in
    /// witness order (string aggregation is the one function the two dialects spell
    /// differently).
    fn cosigned_note(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => {
                "c.size, c.note || COALESCE((SELECT group_concat(s.line || char(10), '') \
                 FROM (SELECT line FROM audit_cosignatures WHERE size = c.size ORDER BY witness) s), '')"
            }
            Pools::Postgres { .. } => {
                "c.size, c.note || COALESCE((SELECT string_agg(s.line || chr(10), '' ORDER BY s.witness) \
                 FROM audit_cosignatures s WHERE s.size = c.size), '')"
            }
        }
    }

    /// Stored checkpoints as (size, signed note with cosignatures), oldest first.
    pub async fn checkpoints(&self) -> anyhow::Result<Vec<(i64, String)>> {
        let sql = format!("SELECT {} FROM audit_checkpoints c ORDER BY c.size", self.cosigned_note());
        Ok(in_pool!(self, |c| sqlx::query_as(&sql).fetch_all(c).await)?)
    }

    pub async fn latest_checkpoint(&self) -> anyhow::Result<Option<(i64, String)>> {
        let sql = format!("SELECT {} FROM audit_checkpoints c ORDER BY c.size DESC LIMIT 1", self.cosigned_note());
        Ok(in_pool!(self, |c| sqlx::query_as(&sql).fetch_optional(c).await)?)
    }

    /// The log's own note of the checkpoint of `size`, without cosignatures.
    pub async fn checkpoint_note(&self, size: u64) -> anyhow::Result<Option<String>> {
        Ok(in_pool!(self, |c| sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE size = $1")
            .bind(size as i64)
            .fetch_optional(c)
            .await)?)
    }

    /// Stores witness `witness`'s cosignature line on the checkpoint of `size`; false if it
    /// already cosigned that size.
    pub async fn insert_cosignature(
        &self,
        size: u64,
        witness: &str,
        line: &str,
        now: OffsetDateTime,
    ) -> anyhow::Result<bool> {
        let inserted = in_pool!(self, |c| sqlx::query(
            "INSERT INTO audit_cosignatures (size, witness, line, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (size, witness) DO NOTHING",
        )
        .bind(size as i64)
        .bind(witness)
        .bind(line)
        .bind(format_time(now))
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(inserted == 1)
    }

    /// Every witness that cosigned anything: (name, cosignatures, largest size cosigned,
    /// when it last cosigned), by name.
    pub async fn cosignature_summary(&self) -> anyhow::Result<Vec<(String, i64, i64, String)>> {
        Ok(in_pool!(self, |c| sqlx::query_as(
            "SELECT witness, COUNT(*), MAX(size), MAX(created_at) FROM audit_cosignatures \
             GROUP BY witness ORDER BY witness",
        )
        .fetch_all(c)
        .await)?)
    }

    pub async fn set_release_seq(tx: &mut Tx, run_id: RunId, seq: u64) -> anyhow::Result<()> {
        in_tx!(tx, |c| sqlx::query("UPDATE runs SET release_seq = $1 WHERE id = $2")
            .bind(seq as i64)
            .bind(run_id)
            .execute(c)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    pub async fn release_seq(&self, run_id: RunId) -> anyhow::Result<Option<u64>> {
        let seq: Option<Option<i64>> =
            in_pool!(self, |c| sqlx::query_scalar("SELECT release_seq FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_optional(c)
                .await)?;
        Ok(seq.flatten().map(|seq| seq as u64))
    }

    /// Where this store's database is (tests connect to it on their own, to prove the
    /// database itself refuses edits to the audit log).
    pub fn database(&self) -> &Database {
        &self.database
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The charge, on every run, reads by index only: no query plan step scans a table.
    #[tokio::test]
    async fn the_charge_reads_by_index_whatever_the_number_of_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sqlite(&dir.path().join("sluice.db"), true).await.expect("opens");
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {CHARGE_FACTS_SQL}"))
            .bind(1i64)
            .bind(1i64)
            .bind("2026-01-01T00:00:00Z")
            .fetch_all(match &store.pools {
                Pools::Sqlite { pool, .. } => pool,
                Pools::Postgres { .. } => unreachable!("opened as SQLite"),
            })
            .await
            .expect("plan");
        let steps: Vec<&str> = plan.iter().map(|step| step.3.as_str()).collect();
        assert!(steps.iter().all(|step| !step.starts_with("SCAN")), "{steps:#?}");
        assert!(steps.iter().any(|step| step.contains("runs_by_authorisation")), "{steps:#?}");
    }

    /// Rows as the single-join schema held them (their parties are beside the point, and
    /// the foreign keys are off while they are written).
    const SINGLE_JOIN_ROWS: [&str; 4] = [
        "INSERT INTO applications (id, operator_id, dataset_id, purpose, use_scope, security_measures, \
         columns_json, valid_from, valid_until, epsilon_requested, state, created_at, joined_dataset_id, \
         joined_columns_json) VALUES (1, 3, 1, 'p', 'u', 's', '[\"industry\"]', '2026-01-01T00:00:00Z', \
         '2027-01-01T00:00:00Z', 1000000, 'approved', '2026-01-01T00:00:00Z', 2, '[\"employees\",\"arrears\"]')",
        "INSERT INTO applications (id, operator_id, dataset_id, purpose, use_scope, security_measures, \
         columns_json, valid_from, valid_until, epsilon_requested, state, created_at) VALUES (2, 3, 1, 'p', \
         'u', 's', '[\"industry\"]', '2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z', 1000000, 'submitted', \
         '2026-01-01T00:00:00Z')",
        "INSERT INTO authorisations (id, application_id, operator_id, dataset_id, purpose, columns_json, \
         valid_from, valid_until, epsilon_total, created_at, joined_dataset_id, joined_columns_json) VALUES \
         (1, 1, 3, 1, 'p', '[\"industry\"]', '2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z', 1000000, \
         '2026-01-01T00:00:00Z', 2, '[\"employees\",\"arrears\"]')",
        "INSERT INTO runs (id, authorisation_id, model_id, operator_id, dataset_id, dataset_version, epsilon, \
         state, created_at, joined_dataset_version) VALUES (1, 1, 1, 3, 1, 4, 500000, 'released', \
         '2026-02-01T00:00:00Z', 7)",
    ];

    /// What the migration must have made of [`SINGLE_JOIN_ROWS`].
    async fn single_join_carried_into_lists(store: &Store) {
        let joined =
            vec![JoinedColumns { dataset_id: DatasetId(2), columns: vec!["employees".into(), "arrears".into()] }];
        let application = store.application(ApplicationId(1)).await.expect("reads").expect("kept");
        assert_eq!(application.joins().expect("parses"), joined);
        assert_eq!(application.datasets().expect("parses"), [DatasetId(1), DatasetId(2)]);
        let single = store.application(ApplicationId(2)).await.expect("reads").expect("kept");
        assert_eq!(single.joins().expect("parses"), []);
        let authorisation = store.authorisation(AuthorisationId(1)).await.expect("reads").expect("kept");
        assert_eq!(authorisation.joins().expect("parses"), joined);
        assert_eq!(authorisation.granted_columns().expect("parses"), ["industry", "employees", "arrears"]);
        assert_eq!(store.authorisations_for_dataset(DatasetId(2)).await.expect("reads").len(), 1);
        let run = store.run(RunId(1)).await.expect("reads").expect("kept");
        assert_eq!(run.joined_versions().expect("parses"), [7]);
        let usage = store.run_usage().await.expect("reads");
        assert_eq!(usage[0].joined_versions_json.as_deref().map(|json| json.replace(' ', "")), Some("[7]".into()));
    }

    /// A SQLite database made before several datasets could be joined keeps its
    /// two-department scenario: the application's and the authorisation's join and the
    /// run's joined version are carried into the lists, and the single-join columns go.
    #[tokio::test]
    async fn a_single_join_is_carried_into_the_lists_by_the_migration() {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sluice.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        {
            let mut connection = sqlx::SqliteConnection::connect(&url).await.expect("connects");
            let mut before = sqlx::migrate!("./migrations/sqlite");
            before.migrations = before.migrations.iter().filter(|migration| migration.version <= 15).cloned().collect();
            before.run(&mut connection).await.expect("migrated to the single join");
            sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut connection).await.expect("keys off");
            for statement in SINGLE_JOIN_ROWS {
                sqlx::query(statement).execute(&mut connection).await.expect(statement);
            }
        }
        single_join_carried_into_lists(&Store::open_sqlite(&path, false).await.expect("opens and migrates")).await;
    }

    /// The same on PostgreSQL, in a schema of its own (when `SLUICE_TEST_POSTGRES_URL` names
    /// a server, as CI's does).
    #[tokio::test]
    async fn a_single_join_is_carried_into_the_lists_by_the_postgresql_migration() {
        use sqlx::Connection as _;
        let Some(url) = std::env::var("SLUICE_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty()) else { return };
        let schema = format!("sluice_migration_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connects");
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await.expect("a schema");
        let separator = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{separator}options=-c%20search_path%3D{schema}");
        let outcome = async {
            {
                let mut connection = sqlx::PgConnection::connect(&scoped).await.expect("connects");
                let mut before = sqlx::migrate!("./migrations/postgres");
                before.migrations =
                    before.migrations.iter().filter(|migration| migration.version <= 4).cloned().collect();
                before.run(&mut connection).await.expect("migrated to the single join");
                sqlx::query("SET session_replication_role = replica").execute(&mut connection).await.expect("keys off");
                for statement in SINGLE_JOIN_ROWS {
                    sqlx::query(statement).execute(&mut connection).await.expect(statement);
                }
            }
            let store = Store::open_postgres(&scoped, false).await.expect("opens and migrates");
            single_join_carried_into_lists(&store).await;
        };
        // The schema goes whatever the outcome.
        let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut admin).await.expect("dropped");
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

//! Dataset operations: registration, ingest into the vault, and the catalogue (一本账).
//!
//! It must not return rows: the catalogue is metadata only, whoever asks.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sluice_audit::{Act, Detail};
use sluice_policies::{Action, Epsilon, OrganisationId, Resource};

use super::{App, Caller, stored_epsilon};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{AuthorisationId, DatasetId, PrincipalId};
use crate::store::{DatasetRow, Store, VersionRow};
use crate::timestamp::Timestamp;
use sluice_audit::AuditOutcome;
use sluice_vault::chunks::{self, ChunkContext, IngestError};
use sluice_vault::schema::DatasetSchema;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct NewDataset {
    /// The schema file's text (TOML); its `name` names the dataset.
    pub schema: String,
    /// The dataset's lifetime privacy budget across every scenario.
    pub epsilon_total: f64,
    /// Disclosure rule: histogram bins with a noisy count under this are suppressed.
    #[serde(default = "default_min_group_size")]
    pub min_group_size: u32,
}

fn default_min_group_size() -> u32 {
    10
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestSummary {
    pub dataset_id: DatasetId,
    pub version: i64,
    pub rows: u64,
    pub chunks: u64,
    /// Rows left out with `skip_invalid`, and where the first of them are (never values).
    pub skipped: u64,
    pub skipped_examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DestroySummary {
    pub dataset_id: DatasetId,
    pub data_keys_deleted: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CatalogueColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: &'static str,
    pub classification: u8,
    pub nullable: bool,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub domain: Vec<String>,
    pub description: String,
    /// A key column holding text codes stored as keyed pseudonyms: `uscc`, `resident_id` or
    /// `text` (the schema's `pseudonym_of`); null for every other column.
    pub pseudonym_of: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CatalogueVersion {
    pub version: i64,
    pub rows: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CatalogueAuthorisation {
    pub authorisation_id: AuthorisationId,
    pub operator_organisation: String,
    pub purpose: String,
    pub valid_until: Timestamp,
    pub revoked: bool,
    /// The scenario's own budget (一场景一授权), spent and total.
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
}

/// One dataset as the catalogue lists it: metadata, never rows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CatalogueEntry {
    /// The providing department's organisation id (its name is `provider`).
    #[schema(value_type = i64)]
    pub provider_organisation_id: OrganisationId,
    pub id: DatasetId,
    pub name: String,
    pub description: String,
    pub provider: String,
    pub schema_hash: String,
    pub columns: Vec<CatalogueColumn>,
    pub versions: Vec<CatalogueVersion>,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
    pub destroyed: bool,
    /// Histogram bins with a noisy count under this are suppressed.
    pub min_group_size: i64,
    pub authorisations: Vec<CatalogueAuthorisation>,
}

impl App {
    pub async fn register_dataset(&self, caller: &Caller, request: NewDataset) -> ServiceResult<DatasetId> {
        let action = Action::RegisterDataset;
        self.guard(caller, action, "dataset:new", &Resource::Platform).await?;
        let schema = DatasetSchema::from_toml(&request.schema)
            .map_err(|error| ServiceError::invalid(format!("schema: {error}")))?;
        let epsilon_total =
            Epsilon::from_f64(request.epsilon_total).map_err(|denial| ServiceError::invalid(denial.message))?;
        if !(1..=100_000).contains(&request.min_group_size) {
            return Err(ServiceError::invalid("min_group_size must be 1 to 100,000"));
        }
        if self.store.dataset_name_taken(&schema.name).await? {
            return Err(ServiceError::Conflict(format!("a dataset named `{}` already exists", schema.name)));
        }
        let schema_hash = hex::encode(schema.hash());
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let id = Store::insert_dataset(
            &mut tx,
            &schema.name,
            PrincipalId(caller.principal.id),
            &schema.description,
            &schema.source,
            &schema_hash,
            epsilon_total.units() as i64,
            i64::from(request.min_group_size),
            now,
        )
        .await?;
        let event = Self::event(caller, action.audit(), format!("dataset:{id}"), AuditOutcome::Ok)
            .detail(Detail::SchemaHash, &schema_hash)
            .detail(Detail::EpsilonTotal, epsilon_total);
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the dataset")?;
        Ok(id)
    }

    /// Validates and encrypts `csv` as the dataset's next version. The whole file must be
    /// valid; on any error nothing is stored and the failure is audited.
    pub async fn ingest(
        &self,
        caller: &Caller,
        dataset_id: DatasetId,
        csv: impl std::io::Read + Send + 'static,
        skip_invalid: bool,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> ServiceResult<IngestSummary> {
        let action = Action::IngestDataset.audit();
        let object = format!("dataset:{dataset_id}");
        let Some(dataset) = self.store.dataset(dataset_id).await? else {
            return Err(self.not_found(caller, action, "dataset", dataset_id).await);
        };
        self.guard(caller, Action::IngestDataset, &object, &self.dataset_resource(&dataset).await?).await?;
        let schema = DatasetSchema::from_toml(&dataset.schema_toml)
            .map_err(|error| anyhow::anyhow!("stored schema: {error}"))?;
        // One ingest of this dataset at a time: the version number is bound into every
        // chunk's associated data before the version row exists, so two ingests must not
        // pick the same one. Nothing else waits for the upload: the database write lock
        // and the master key are taken only for the commit at the end.
        let destroyed_meanwhile =
            || ServiceError::Conflict(format!("dataset {dataset_id} was destroyed during the upload"));
        let ingest_lock = self.sealed.ingest_lock(dataset_id);
        let _ingest_guard = ingest_lock.lock().await;
        if dataset.destroyed_at.is_some() {
            return Err(ServiceError::Conflict(format!("dataset {dataset_id} was destroyed")));
        }
        // The version number, reserved in the database every node shares: no ingest on
        // any node seals the same one, and no node's sweep removes these chunks while this
        // node lives.
        let mut tx = self.store.begin().await?;
        let version = Store::reserve_version(&mut tx, dataset_id, self.store.node(), self.now()).await?;
        tx.commit().await.context("reserving a dataset version")?;
        let context = ChunkContext { dataset_id: dataset_id.0, version, schema_hash: schema.hash() };
        // Set when a failed ingest could not delete its chunks: the reservation then stays,
        // so the sweep deletes them once this node is gone.
        let chunks_left = AtomicBool::new(false);
        let outcome: ServiceResult<IngestSummary> = async {
            let master = self.sealed.master.read().await.clone();
            let wrapped_under = master.clone();
            let store = self.sealed.chunks.clone();
            let pseudonyms = self.sealed.pseudonyms.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let keys = chunks::IngestKeys { master: &master, pseudonyms: &pseudonyms };
                chunks::ingest(csv, &schema, context, keys, &store, skip_invalid, progress)
            })
            .await
            .context("the ingest task panicked")?;
            let report = match outcome {
                Ok(report) => report,
                Err(error) => {
                    if matches!(error, IngestError::Storage(_))
                        && self.store.dataset(dataset_id).await?.is_some_and(|dataset| dataset.destroyed_at.is_some())
                    {
                        return Err(destroyed_meanwhile());
                    }
                    if matches!(error, IngestError::Storage(_)) {
                        // Whether the vault's own clean-up removed every chunk is unknown.
                        chunks_left.store(true, Ordering::Relaxed);
                    }
                    let reason = match &error {
                        IngestError::Csv(_) => "csv_invalid",
                        IngestError::InvalidRows(_) => "rows_invalid",
                        IngestError::Storage(_) => "storage_failed",
                    };
                    let event = Self::event(caller, action, &object, AuditOutcome::Failed).reason(reason);
                    self.record(event).await?;
                    return Err(match error {
                        IngestError::Storage(error) => ServiceError::Internal(error),
                        other => ServiceError::InvalidRecorded(other.to_string()),
                    });
                }
            };
            // The master key may have been rotated during the upload: the data key is then
            // wrapped again under the new one, and the read lock is held until the version
            // commits, so a rotation cannot re-wrap the keys between the two.
            let master = self.sealed.master.read().await;
            let wrapped_key = if master.fingerprint() == wrapped_under.fingerprint() {
                report.wrapped_key
            } else {
                let data_key = wrapped_under
                    .unwrap_key(&report.wrapped_key, &context.key_context())
                    .map_err(|_| anyhow::anyhow!("re-wrapping a new data key after a master key rotation"))?;
                master.wrap(&data_key, &context.key_context())?
            };
            let now = self.now();
            let row = VersionRow {
                dataset_id,
                version,
                row_count: report.rows as i64,
                chunk_count: report.chunks as i64,
                wrapped_key,
                created_at: Timestamp::new(now),
            };
            let version_prefix = chunks::version_prefix(dataset_id.0, version);
            // Chunks no version row will ever name are deleted; if that fails the
            // reservation stays (below), so the sweep deletes them once this node is gone.
            let discard = || async {
                if let Err(error) = self.sealed.chunks.delete_prefix_async(&version_prefix).await {
                    tracing::warn!(%dataset_id, version, error = %format!("{error:#}"), "the chunks of a failed ingest stay until the sweep");
                    return false;
                }
                true
            };
            let mut tx = self.store.begin().await?;
            if !Store::insert_version(&mut tx, &row).await? {
                tx.rollback().await.context("rolling back")?;
                chunks_left.store(!discard().await, Ordering::Relaxed);
                return Err(destroyed_meanwhile());
            }
            let event = Self::event(caller, action, &object, AuditOutcome::Ok)
                .detail(Detail::Version, version)
                .detail(Detail::Rows, report.rows)
                .detail(Detail::Chunks, report.chunks)
                .detail(Detail::RowsSkipped, report.skipped);
            Store::append_audit(&mut tx, event, now).await?;
            Store::release_reservation_in(&mut tx, dataset_id, version).await?;
            if let Err(error) = tx.commit().await {
                // The chunks are useless without the wrapped key that was just rolled back.
                chunks_left.store(!discard().await, Ordering::Relaxed);
                return Err(anyhow::Error::from(error).context("committing the dataset version").into());
            }
            drop(master);
            Ok(IngestSummary {
                dataset_id,
                version,
                rows: report.rows,
                chunks: report.chunks,
                skipped: report.skipped,
                skipped_examples: report
                    .skipped_examples
                    .iter()
                    .map(|error| format!("line {}, column `{}` {}", error.line, error.column, error.problem))
                    .collect(),
            })
        }
        .await;
        if outcome.is_err()
            && !chunks_left.load(Ordering::Relaxed)
            && let Err(error) = self.store.release_reservation(dataset_id, version).await
        {
            tracing::warn!(%dataset_id, version, error = %format!("{error:#}"), "a failed ingest's reservation stays until the sweep");
        }
        outcome
    }

    /// Crypto-shreds a dataset: deletes its data keys (the only way to read its chunks),
    /// removes the sealed chunks, and flushes the write-ahead log so no copy of a wrapped
    /// key survives on disk. Audited; later runs are refused with `dataset_destroyed`.
    pub async fn destroy_dataset(&self, caller: &Caller, dataset_id: DatasetId) -> ServiceResult<DestroySummary> {
        let action = Action::DestroyDataset;
        let object = format!("dataset:{dataset_id}");
        let Some(dataset) = self.store.dataset(dataset_id).await? else {
            return Err(self.not_found(caller, action.audit(), "dataset", dataset_id).await);
        };
        self.guard(caller, action, &object, &self.dataset_resource(&dataset).await?).await?;
        if dataset.destroyed_at.is_some() {
            return Err(ServiceError::Conflict(format!("dataset {dataset_id} was already destroyed")));
        }
        // No wait for an ingest under way: it finds the dataset destroyed when it commits.
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let versions = Store::shred_dataset(&mut tx, dataset_id, now).await?;
        let event = Self::event(caller, action.audit(), &object, AuditOutcome::Ok)
            .detail(Detail::DataKeysDeleted, versions)
            .detail(Detail::Method, "crypto-shredding");
        Store::append_audit(&mut tx, event, now).await?;
        tx.commit().await.context("committing the destruction")?;
        // The keys are gone (committed above); the objects go after them.
        self.sealed
            .chunks
            .delete_prefix_async(&chunks::dataset_prefix(dataset_id.0))
            .await
            .with_context(|| format!("deleting the chunks of dataset {dataset_id}"))?;
        self.store.checkpoint().await?;
        Ok(DestroySummary { dataset_id, data_keys_deleted: versions })
    }

    /// Dummy rows for a dataset: made from its schema (public metadata), never its data.
    pub async fn dummy_rows(
        &self,
        caller: &Caller,
        dataset_id: DatasetId,
        rows: usize,
        seed: u64,
    ) -> ServiceResult<String> {
        self.guard(caller, Action::ReadCatalogue, &format!("dataset:{dataset_id}"), &Resource::Platform).await?;
        if rows > 1_000_000 {
            return Err(ServiceError::invalid("at most 1,000,000 dummy rows per request"));
        }
        let object = format!("dataset:{dataset_id}");
        self.spend(caller, crate::parts::Expensive::DummyRows, rows as u64, Act::DatasetDummy, &object).await?;
        let Some(dataset) = self.store.dataset(dataset_id).await? else {
            return Err(self.not_found(caller, Act::DatasetDummy, "dataset", dataset_id).await);
        };
        let schema = DatasetSchema::from_toml(&dataset.schema_toml)
            .map_err(|error| anyhow::anyhow!("stored schema: {error}"))?;
        let event = Self::event(caller, Act::DatasetDummy, format!("dataset:{dataset_id}"), AuditOutcome::Ok)
            .detail(Detail::Rows, rows)
            .detail(Detail::Seed, seed);
        self.record(event).await?;
        Ok(sluice_vault::dummy::dummy_csv(&schema, rows, seed))
    }

    pub async fn catalogue(&self, caller: &Caller) -> ServiceResult<Vec<CatalogueEntry>> {
        self.guard(caller, Action::ReadCatalogue, "catalogue", &Resource::Platform).await?;
        let mut entries = Vec::new();
        for dataset in self.store.datasets().await? {
            entries.push(self.catalogue_entry_of(dataset).await?);
        }
        let event = Self::event(caller, Action::ReadCatalogue.audit(), "catalogue", AuditOutcome::Ok)
            .detail(Detail::Datasets, entries.len());
        self.record(event).await?;
        Ok(entries)
    }

    /// One dataset's catalogue entry, with the same right and audit as the whole catalogue.
    pub async fn catalogue_entry(&self, caller: &Caller, id: DatasetId) -> ServiceResult<CatalogueEntry> {
        self.guard(caller, Action::ReadCatalogue, "catalogue", &Resource::Platform).await?;
        let Some(dataset) = self.store.dataset(id).await? else {
            return Err(self.not_found(caller, Action::ReadCatalogue.audit(), "dataset", id).await);
        };
        let entry = self.catalogue_entry_of(dataset).await?;
        let event = Self::event(caller, Action::ReadCatalogue.audit(), format!("dataset:{id}"), AuditOutcome::Ok)
            .detail(Detail::Datasets, 1);
        self.record(event).await?;
        Ok(entry)
    }

    async fn catalogue_entry_of(&self, dataset: DatasetRow) -> anyhow::Result<CatalogueEntry> {
        let schema = DatasetSchema::from_toml(&dataset.schema_toml)
            .map_err(|error| anyhow::anyhow!("stored schema: {error}"))?;
        let provider = self.principal(dataset.provider_id).await?;
        let versions = self.store.versions(dataset.id).await?;
        let mut authorisations = Vec::new();
        for authorisation in self.store.authorisations_for_dataset(dataset.id).await? {
            let operator = self.principal(authorisation.operator_id).await?;
            authorisations.push(CatalogueAuthorisation {
                authorisation_id: authorisation.id,
                operator_organisation: self.organisation_name(operator.organisation).await?,
                purpose: authorisation.purpose,
                valid_until: authorisation.valid_until,
                revoked: authorisation.revoked_at.is_some(),
                epsilon_total: stored_epsilon(authorisation.epsilon_total),
                epsilon_spent: stored_epsilon(authorisation.epsilon_spent),
            });
        }
        Ok(CatalogueEntry {
            id: dataset.id,
            name: dataset.name,
            description: dataset.description,
            provider: self.organisation_name(provider.organisation).await?,
            provider_organisation_id: provider.organisation,
            schema_hash: dataset.schema_hash,
            columns: schema.columns.iter().map(catalogue_column).collect(),
            versions: versions
                .iter()
                .map(|version| CatalogueVersion {
                    version: version.version,
                    rows: version.row_count,
                    created_at: version.created_at,
                })
                .collect(),
            epsilon_total: stored_epsilon(dataset.epsilon_total),
            epsilon_spent: stored_epsilon(dataset.epsilon_spent),
            destroyed: dataset.destroyed_at.is_some(),
            min_group_size: dataset.min_group_size,
            authorisations,
        })
    }
}

fn catalogue_column(column: &sluice_vault::schema::ColumnSchema) -> CatalogueColumn {
    CatalogueColumn {
        name: column.name.clone(),
        column_type: column.column_type.as_str(),
        classification: column.classification,
        nullable: column.nullable,
        lower: column.lower,
        upper: column.upper,
        domain: column.domain.clone(),
        description: column.description.clone(),
        pseudonym_of: column.pseudonym_of.map(|format| format.as_str()),
    }
}

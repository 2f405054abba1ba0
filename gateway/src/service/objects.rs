//! The objects requests act on, as the policy set sees them: each stored row turned into a
//! [`Resource`] with its owner, organisations and state, for the one decision point
//! ([`App::guard`]).
//!
//! It owns gathering those facts from the store. It must not decide anything (that is
//! `sluice_policies::PolicyGate`'s) or change anything.

use anyhow::Context;
use sluice_policies::{ApplicationState, ModelState, OrganisationId, Resource};

use super::{App, principal_from_row};
use crate::ids::{DatasetId, PrincipalId};
use crate::store::{ApplicationRow, AuthorisationRow, DatasetRow, ModelRow, PrincipalRow, RunRow};

impl App {
    async fn organisation_of(&self, principal_id: PrincipalId) -> anyhow::Result<OrganisationId> {
        Ok(self.principal(principal_id).await?.organisation)
    }

    /// The organisation of the provider of dataset `dataset_id`.
    async fn provider_of(&self, dataset_id: DatasetId) -> anyhow::Result<(PrincipalId, OrganisationId)> {
        let dataset = self.store.dataset(dataset_id).await?.with_context(|| format!("dataset {dataset_id}"))?;
        Ok((dataset.provider_id, self.organisation_of(dataset.provider_id).await?))
    }

    pub(crate) async fn account_resource(&self, row: &PrincipalRow) -> anyhow::Result<Resource> {
        Ok(Resource::Principal { principal: principal_from_row(row)?, created_by: row.created_by.map(i64::from) })
    }

    pub(crate) async fn dataset_resource(&self, dataset: &DatasetRow) -> anyhow::Result<Resource> {
        Ok(Resource::Dataset {
            id: dataset.id.0,
            owner: dataset.provider_id.0,
            organisation: self.organisation_of(dataset.provider_id).await?,
            destroyed: dataset.destroyed_at.is_some(),
        })
    }

    /// An application in `state` (read by the caller where it must be current).
    pub(crate) async fn application_resource(
        &self,
        application: &ApplicationRow,
        state: ApplicationState,
    ) -> anyhow::Result<Resource> {
        let (_, provider_organisation) = self.provider_of(application.dataset_id).await?;
        Ok(Resource::Application {
            id: application.id.0,
            owner: application.operator_id.0,
            organisation: self.organisation_of(application.operator_id).await?,
            provider_organisation,
            state,
            bureau_reviewer: application.bureau_reviewer_id.map(i64::from),
        })
    }

    pub(crate) async fn model_resource(&self, model: &ModelRow, state: ModelState) -> anyhow::Result<Resource> {
        Ok(Resource::Model {
            id: model.id.0,
            owner: model.submitter_id.0,
            organisation: self.organisation_of(model.submitter_id).await?,
            state,
        })
    }

    pub(crate) async fn authorisation_resource(&self, authorisation: &AuthorisationRow) -> anyhow::Result<Resource> {
        let (provider, provider_organisation) = self.provider_of(authorisation.dataset_id).await?;
        let organisation = self.organisation_of(authorisation.operator_id).await?;
        Ok(authorisation_resource(authorisation, organisation, provider, provider_organisation))
    }

    pub(crate) async fn run_resource(
        &self,
        run: &RunRow,
        authorisation: &AuthorisationRow,
    ) -> anyhow::Result<Resource> {
        let (_, provider_organisation) = self.provider_of(run.dataset_id).await?;
        Ok(Resource::Run {
            id: run.id.0,
            owner: run.operator_id.0,
            organisation: self.organisation_of(run.operator_id).await?,
            provider_organisation,
            outputs_held: authorisation.hold_outputs,
            state: run.state.as_str().to_owned(),
        })
    }
}

/// An authorisation as the policy set sees it, from facts already read (the run path reads
/// them in its one snapshot).
pub(crate) fn authorisation_resource(
    authorisation: &AuthorisationRow,
    organisation: OrganisationId,
    provider: PrincipalId,
    provider_organisation: OrganisationId,
) -> Resource {
    Resource::Authorisation {
        id: authorisation.id.0,
        owner: authorisation.operator_id.0,
        organisation,
        provider: provider.0,
        provider_organisation,
        revoked: authorisation.revoked_at.is_some(),
    }
}

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
        let approvals = self.store.provider_approvals_now(application.id).await?;
        self.application_resource_with(application, state, &approvals).await
    }

    /// An application in `state` whose providing departments in `approvals` have approved
    /// it (read in the caller's transaction where it must be current): the others are
    /// pending.
    pub(crate) async fn application_resource_with(
        &self,
        application: &ApplicationRow,
        state: ApplicationState,
        approvals: &[OrganisationId],
    ) -> anyhow::Result<Resource> {
        let mut provider_organisations = Vec::new();
        for dataset in application.datasets()? {
            let (_, organisation) = self.provider_of(dataset).await?;
            if !provider_organisations.contains(&organisation) {
                provider_organisations.push(organisation);
            }
        }
        let pending_providers =
            provider_organisations.iter().copied().filter(|organisation| !approvals.contains(organisation)).collect();
        Ok(Resource::Application {
            id: application.id.0,
            owner: application.operator_id.0,
            organisation: self.organisation_of(application.operator_id).await?,
            provider_organisations,
            pending_providers,
            state,
            bureau_reviewer: application.bureau_reviewer_id.map(i64::from),
        })
    }

    /// The providers of an authorisation's (or a run's) datasets and their organisations.
    async fn providers_of(
        &self,
        authorisation: &AuthorisationRow,
    ) -> anyhow::Result<Vec<(PrincipalId, OrganisationId)>> {
        let mut providers = Vec::new();
        for dataset in authorisation.datasets()? {
            providers.push(self.provider_of(dataset).await?);
        }
        Ok(providers)
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
        let providers = self.providers_of(authorisation).await?;
        let organisation = self.organisation_of(authorisation.operator_id).await?;
        Ok(authorisation_resource(authorisation, organisation, &providers))
    }

    pub(crate) async fn run_resource(
        &self,
        run: &RunRow,
        authorisation: &AuthorisationRow,
    ) -> anyhow::Result<Resource> {
        let provider_organisations = self.providers_of(authorisation).await?.into_iter().map(|(_, org)| org).collect();
        Ok(Resource::Run {
            id: run.id.0,
            owner: run.operator_id.0,
            organisation: self.organisation_of(run.operator_id).await?,
            provider_organisations,
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
    providers: &[(PrincipalId, OrganisationId)],
) -> Resource {
    Resource::Authorisation {
        id: authorisation.id.0,
        owner: authorisation.operator_id.0,
        organisation,
        providers: providers.iter().map(|(provider, _)| provider.0).collect(),
        provider_organisations: providers.iter().map(|(_, organisation)| *organisation).collect(),
        revoked: authorisation.revoked_at.is_some(),
    }
}

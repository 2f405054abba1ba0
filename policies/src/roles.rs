//! Roles and the actions each may take: the static half of access control.
//!
//! It owns the names of roles and actions; who may attempt what is the Cedar policy set in
//! `gate`. It must not look at object state (that is `procedure`).

use sluice_audit::Act;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The platform operator: licences, accounts, keys.
    Admin,
    /// A government department that owns data.
    Provider,
    /// A licensed data operating company.
    Operator,
    /// The data bureau or a providing department's reviewer.
    Reviewer,
    /// Cyberspace or public-security supervisors and auditors.
    Regulator,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Provider, Role::Operator, Role::Reviewer, Role::Regulator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Provider => "provider",
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
            Role::Regulator => "regulator",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// Which of the two demand reviews (一需求一审核) a reviewer may perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewerKind {
    /// The data bureau: reviews the demand and the operator's qualification first.
    DataBureau,
    /// The department providing the data: reviews against classification and use boundaries.
    ProvidingDepartment,
}

impl ReviewerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewerKind::DataBureau => "data_bureau",
            ReviewerKind::ProvidingDepartment => "providing_department",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [ReviewerKind::DataBureau, ReviewerKind::ProvidingDepartment].into_iter().find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    CreatePrincipal,
    RegisterDataset,
    IngestDataset,
    ReadCatalogue,
    SubmitApplication,
    ReviewApplication,
    SubmitModel,
    ReviewModel,
    RunModel,
    ReadResult,
    ReadBudget,
    ExportAudit,
    DestroyDataset,
    RotateKeys,
    WithdrawApplication,
    RevokeAuthorisation,
    RevokeModel,
    ReviewResult,
    IssueToken,
    RevokeToken,
    DisablePrincipal,
    RotateOwnToken,
    ApprovePrincipal,
    CreateOrganisation,
    RenameOrganisation,
    ReadOrganisations,
    ReadApplication,
    ReadModel,
    ReadPrincipal,
}

impl Action {
    pub const ALL: [Action; 29] = [
        Action::CreatePrincipal,
        Action::RegisterDataset,
        Action::IngestDataset,
        Action::ReadCatalogue,
        Action::SubmitApplication,
        Action::ReviewApplication,
        Action::SubmitModel,
        Action::ReviewModel,
        Action::RunModel,
        Action::ReadResult,
        Action::ReadBudget,
        Action::ExportAudit,
        Action::DestroyDataset,
        Action::RotateKeys,
        Action::WithdrawApplication,
        Action::RevokeAuthorisation,
        Action::RevokeModel,
        Action::ReviewResult,
        Action::IssueToken,
        Action::RevokeToken,
        Action::DisablePrincipal,
        Action::RotateOwnToken,
        Action::ApprovePrincipal,
        Action::CreateOrganisation,
        Action::RenameOrganisation,
        Action::ReadOrganisations,
        Action::ReadApplication,
        Action::ReadModel,
        Action::ReadPrincipal,
    ];

    /// The name the audit log records this action under: one vocabulary for the gate,
    /// the writer and the regulator's verifier.
    pub fn audit(self) -> Act {
        match self {
            Action::CreatePrincipal => Act::PrincipalCreate,
            Action::RegisterDataset => Act::DatasetRegister,
            Action::IngestDataset => Act::DatasetIngest,
            Action::ReadCatalogue => Act::CatalogueRead,
            Action::SubmitApplication => Act::ApplicationSubmit,
            Action::ReviewApplication => Act::ApplicationReview,
            Action::SubmitModel => Act::ModelSubmit,
            Action::ReviewModel => Act::ModelReview,
            Action::RunModel => Act::RunStart,
            Action::ReadResult => Act::ResultRead,
            Action::ReadBudget => Act::BudgetRead,
            Action::ExportAudit => Act::AuditExport,
            Action::DestroyDataset => Act::DatasetDestroy,
            Action::RotateKeys => Act::KeysRotate,
            Action::WithdrawApplication => Act::ApplicationWithdraw,
            Action::RevokeAuthorisation => Act::AuthorisationRevoke,
            Action::RevokeModel => Act::ModelRevoke,
            Action::ReviewResult => Act::ResultReview,
            Action::IssueToken => Act::PrincipalTokenIssue,
            Action::RevokeToken => Act::PrincipalTokenRevoke,
            Action::DisablePrincipal => Act::PrincipalDisable,
            Action::RotateOwnToken => Act::TokenRotate,
            Action::ApprovePrincipal => Act::PrincipalApprove,
            Action::CreateOrganisation => Act::OrganisationCreate,
            Action::RenameOrganisation => Act::OrganisationRename,
            Action::ReadOrganisations => Act::OrganisationRead,
            Action::ReadApplication => Act::ApplicationRead,
            Action::ReadModel => Act::ModelRead,
            Action::ReadPrincipal => Act::PrincipalRead,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.audit().as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(ReviewerKind::parse("data_bureau"), Some(ReviewerKind::DataBureau));
    }
}

//! Roles and the actions each may take: the static half of access control.
//!
//! It owns the role × action table. It must not look at object state (that is
//! `procedure`); a permitted action can still be denied by the procedure's checks.

use crate::decision::{Denial, DenialReason};

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
}

impl Action {
    pub const ALL: [Action; 18] = [
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
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreatePrincipal => "principal.create",
            Action::RegisterDataset => "dataset.register",
            Action::IngestDataset => "dataset.ingest",
            Action::ReadCatalogue => "catalogue.read",
            Action::SubmitApplication => "application.submit",
            Action::ReviewApplication => "application.review",
            Action::SubmitModel => "model.submit",
            Action::ReviewModel => "model.review",
            Action::RunModel => "run.start",
            Action::ReadResult => "result.read",
            Action::ReadBudget => "budget.read",
            Action::ExportAudit => "audit.export",
            Action::DestroyDataset => "dataset.destroy",
            Action::RotateKeys => "keys.rotate",
            Action::WithdrawApplication => "application.withdraw",
            Action::RevokeAuthorisation => "authorisation.revoke",
            Action::RevokeModel => "model.revoke",
            Action::ReviewResult => "result.review",
        }
    }

    /// The roles allowed to attempt this action. Everything not listed is denied.
    fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::CreatePrincipal => &[Admin],
            Action::RegisterDataset | Action::IngestDataset => &[Provider],
            Action::ReadCatalogue => &[Admin, Provider, Operator, Reviewer, Regulator],
            Action::SubmitApplication | Action::SubmitModel | Action::RunModel => &[Operator],
            Action::ReadResult => &[Operator, Reviewer],
            Action::ReviewApplication | Action::ReviewModel => &[Reviewer],
            Action::ReadBudget => &[Operator, Provider, Regulator],
            Action::ExportAudit => &[Regulator],
            Action::DestroyDataset => &[Provider],
            Action::RotateKeys => &[Admin],
            Action::WithdrawApplication => &[Operator],
            Action::RevokeAuthorisation => &[Provider, Reviewer],
            Action::RevokeModel | Action::ReviewResult => &[Reviewer],
        }
    }
}

/// May `role` attempt `action` at all?
pub fn permits(role: Role, action: Action) -> Result<(), Denial> {
    if action.allowed_roles().contains(&role) {
        Ok(())
    } else {
        Err(Denial::new(
            DenialReason::WrongRole,
            format!("the {} role may not perform {}", role.as_str(), action.as_str()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cell of the role × action table, written out so a change is a visible diff.
    #[test]
    fn role_action_matrix() {
        let allowed = |role: Role, action: Action| permits(role, action).is_ok();
        let expected: &[(Action, [bool; 5])] = &[
            //                            admin  provider operator reviewer regulator
            (Action::CreatePrincipal, [true, false, false, false, false]),
            (Action::RegisterDataset, [false, true, false, false, false]),
            (Action::IngestDataset, [false, true, false, false, false]),
            (Action::ReadCatalogue, [true, true, true, true, true]),
            (Action::SubmitApplication, [false, false, true, false, false]),
            (Action::ReviewApplication, [false, false, false, true, false]),
            (Action::SubmitModel, [false, false, true, false, false]),
            (Action::ReviewModel, [false, false, false, true, false]),
            (Action::RunModel, [false, false, true, false, false]),
            (Action::ReadResult, [false, false, true, true, false]),
            (Action::ReadBudget, [false, true, true, false, true]),
            (Action::ExportAudit, [false, false, false, false, true]),
            (Action::DestroyDataset, [false, true, false, false, false]),
            (Action::RotateKeys, [true, false, false, false, false]),
            (Action::WithdrawApplication, [false, false, true, false, false]),
            (Action::RevokeAuthorisation, [false, true, false, true, false]),
            (Action::RevokeModel, [false, false, false, true, false]),
            (Action::ReviewResult, [false, false, false, true, false]),
        ];
        assert_eq!(expected.len(), Action::ALL.len());
        for (action, row) in expected {
            for (role, expected) in Role::ALL.iter().zip(row) {
                assert_eq!(allowed(*role, *action), *expected, "{role:?} {action:?}");
            }
        }
        let denial = permits(Role::Regulator, Action::RunModel).expect_err("denied");
        assert_eq!(denial.reason, DenialReason::WrongRole);
        assert_eq!(denial.to_string(), "wrong_role: the regulator role may not perform run.start");
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(ReviewerKind::parse("data_bureau"), Some(ReviewerKind::DataBureau));
    }
}

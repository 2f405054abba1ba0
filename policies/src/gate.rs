//! Who may attempt what, as Cedar policies: the default set ships in `policies/cedar/`,
//! validated against the Cedar schema beside it; an administrator may supply a stricter
//! set, which must validate too or the gateway does not start.
//!
//! It owns loading, validating and evaluating the policy set. It is pure: the caller's role
//! and whether its licence is valid now are passed in. Default deny: a request no policy
//! permits is denied, and so is one where any policy fails to evaluate.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression, Schema,
    ValidationMode, Validator,
};

use time::OffsetDateTime;

use crate::decision::{Denial, DenialReason};
use crate::procedure::{Principal, check_licence};
use crate::roles::{Action, Role};

/// The Cedar schema every policy set is validated against.
pub const CEDAR_SCHEMA: &str = include_str!("../cedar/sluice.cedarschema");
/// Sluice's default policy set.
pub const DEFAULT_POLICIES: &str = include_str!("../cedar/default.cedar");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the Cedar schema does not parse: {0}")]
    Schema(String),
    #[error("the policy set does not parse: {0}")]
    Parse(String),
    #[error("the policy set does not validate against the schema: {0}")]
    Invalid(String),
}

/// A validated policy set and its schema.
#[derive(Debug, Clone)]
pub struct PolicyGate {
    policies: PolicySet,
    schema: Schema,
}

impl PolicyGate {
    /// Parses `policies` and validates it strictly against [`CEDAR_SCHEMA`].
    pub fn new(policies: &str) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(CEDAR_SCHEMA).map_err(|error| PolicyError::Schema(error.to_string()))?;
        let policies: PolicySet =
            policies.parse().map_err(|error: cedar_policy::ParseErrors| PolicyError::Parse(error.to_string()))?;
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation.validation_errors().map(|error| error.to_string()).collect();
            return Err(PolicyError::Invalid(errors.join("; ")));
        }
        Ok(Self { policies, schema })
    }

    /// The shipped default policy set.
    pub fn default_policies() -> Result<Self, PolicyError> {
        Self::new(DEFAULT_POLICIES)
    }

    /// May `principal` attempt `action` at `now`? Cedar decides on its role and whether it
    /// holds a licence valid now; when only the licence stands in the way, the denial is the
    /// licence's own, which says what is wrong with it.
    pub fn decide_for(&self, principal: &Principal, now: OffsetDateTime, action: Action) -> Result<(), Denial> {
        let licence = check_licence(principal, now);
        let licensed = principal.role == Role::Operator && licence.is_ok();
        self.decide(principal.role, licensed, action).map_err(|denial| match (denial.reason, licence) {
            (DenialReason::LicenceExpired, Err(licence)) => licence,
            _ => denial,
        })
    }

    /// May a caller with `role` (and a licence valid now, or not) attempt `action`?
    pub fn decide(&self, role: Role, licensed: bool, action: Action) -> Result<(), Denial> {
        if self.allows(role, licensed, action) {
            return Ok(());
        }
        // Name the rule: when a licence would have allowed it, the licence is the reason.
        let reason = if !licensed && self.allows(role, true, action) {
            DenialReason::LicenceExpired
        } else {
            DenialReason::WrongRole
        };
        let message = match reason {
            DenialReason::LicenceExpired => format!("{} needs a licence valid now", action.as_str()),
            _ => format!("the {} role may not perform {}", role.as_str(), action.as_str()),
        };
        Err(Denial::new(reason, message))
    }

    fn allows(&self, role: Role, licensed: bool, action: Action) -> bool {
        let request = (|| {
            let principal = EntityUid::from_str(r#"Sluice::Principal::"caller""#).ok()?;
            let resource = EntityUid::from_str(r#"Sluice::Resource::"object""#).ok()?;
            let action = EntityUid::from_str(&format!(r#"Sluice::Action::"{}""#, action.as_str())).ok()?;
            let context = Context::from_pairs([
                ("role".to_owned(), RestrictedExpression::new_string(role.as_str().to_owned())),
                ("licensed".to_owned(), RestrictedExpression::new_bool(licensed)),
            ])
            .ok()?;
            Request::new(principal, action, resource, context, Some(&self.schema)).ok()
        })();
        // A request that cannot be formed is denied, like one no policy permits.
        let Some(request) = request else { return false };
        let response = Authorizer::new().is_authorized(&request, &self.policies, &Entities::empty());
        response.decision() == Decision::Allow && response.diagnostics().errors().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cell of the role × action table under the default policies, written out so a
    /// change is a visible diff; operators also without a licence.
    #[test]
    fn role_action_matrix() {
        let gate = PolicyGate::default_policies().expect("the default policies validate");
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
            (Action::IssueToken, [true, false, false, false, false]),
            (Action::RevokeToken, [true, false, false, false, false]),
            (Action::DisablePrincipal, [true, false, false, false, false]),
            (Action::RotateOwnToken, [true, true, true, true, true]),
            (Action::ApprovePrincipal, [true, false, false, false, false]),
            (Action::CreateOrganisation, [true, false, false, false, false]),
            (Action::RenameOrganisation, [true, false, false, false, false]),
            (Action::ReadOrganisations, [true, true, true, true, true]),
            (Action::ReadApplication, [false, false, true, true, false]),
            (Action::ReadModel, [false, false, true, true, false]),
        ];
        assert_eq!(expected.len(), Action::ALL.len());
        for (action, row) in expected {
            for (role, expected) in Role::ALL.iter().zip(row) {
                assert_eq!(gate.decide(*role, true, *action).is_ok(), *expected, "{role:?} {action:?}");
            }
            // Without a licence an operator can do nothing but read the catalogue.
            let unlicensed = gate.decide(Role::Operator, false, *action);
            let keeps = matches!(*action, Action::ReadCatalogue | Action::RotateOwnToken | Action::ReadOrganisations);
            assert_eq!(unlicensed.is_ok(), keeps, "unlicensed operator {action:?}");
            if row[2] && !keeps {
                assert_eq!(unlicensed.expect_err("denied").reason, DenialReason::LicenceExpired);
            }
        }
        let denial = gate.decide(Role::Regulator, true, Action::RunModel).expect_err("denied");
        assert_eq!(denial.to_string(), "wrong_role: the regulator role may not perform run.start");
    }

    #[test]
    fn broken_or_invalid_policy_sets_are_refused() {
        assert!(matches!(PolicyGate::new("permit (principal, action, resource"), Err(PolicyError::Parse(_))));
        let unknown_action = r#"permit (principal, action == Sluice::Action::"data.steal", resource);"#;
        assert!(matches!(PolicyGate::new(unknown_action), Err(PolicyError::Invalid(_))));
        let unknown_attribute =
            r#"permit (principal, action == Sluice::Action::"run.start", resource) when { context.clearance == 4 };"#;
        assert!(matches!(PolicyGate::new(unknown_attribute), Err(PolicyError::Invalid(_))));
        // An empty set validates and denies everything: default deny.
        let nothing = PolicyGate::new("").expect("an empty set is valid");
        assert!(Action::ALL.iter().all(|action| nothing.decide(Role::Admin, true, *action).is_err()));
        // A stricter administrator's set: only regulators may read the catalogue.
        let strict = PolicyGate::new(r#"permit (principal, action == Sluice::Action::"catalogue.read", resource) when { context.role == "regulator" };"#)
            .expect("valid");
        assert!(strict.decide(Role::Regulator, true, Action::ReadCatalogue).is_ok());
        assert!(strict.decide(Role::Operator, true, Action::ReadCatalogue).is_err());
    }
}

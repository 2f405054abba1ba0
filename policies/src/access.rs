//! Who may touch which object, where the answer depends on the object's owner or state:
//! the decisions the service layer used to make inline. Each takes the facts and returns a
//! [`Denial`] naming the rule, so every refusal the gateway gives comes from this crate.
//!
//! It owns these relation checks; it must not read a store or a clock.

use crate::decision::{Denial, DenialReason};
use crate::procedure::Principal;
use crate::roles::Role;

/// Only the provider that registered a dataset changes it (`doing`: "add data to",
/// "destroy").
pub fn check_dataset_provider(caller: &Principal, provider_id: i64, doing: &str) -> Result<(), Denial> {
    if caller.role != Role::Provider || caller.id != provider_id {
        return Err(Denial::new(
            DenialReason::WrongRole,
            format!("only the provider that registered a dataset may {doing} it"),
        ));
    }
    Ok(())
}

/// A column above `max_level` (core data, 核心数据) is never granted.
pub fn check_column_grantable(name: &str, level: u8, max_level: u8) -> Result<(), Denial> {
    if level > max_level {
        return Err(Denial::new(
            DenialReason::ColumnNotAuthorised,
            format!("column `{name}` is classification level {level}, which is never granted"),
        ));
    }
    Ok(())
}

/// A model reads only the columns its authorisation grants.
pub fn check_column_granted(name: &str, granted: bool) -> Result<(), Denial> {
    if !granted {
        return Err(Denial::new(
            DenialReason::ColumnNotAuthorised,
            format!("the manifest reads column `{name}`, which the authorisation does not grant"),
        ));
    }
    Ok(())
}

/// Only the operator an authorisation was granted to submits models under it.
pub fn check_authorisation_holder(caller: &Principal, operator_id: i64) -> Result<(), Denial> {
    if caller.id != operator_id {
        return Err(Denial::new(DenialReason::AuthorisationNotYours, "the authorisation belongs to another operator"));
    }
    Ok(())
}

/// A model that fails on dummy rows is not approved.
pub fn check_dummy_run(passed: bool) -> Result<(), Denial> {
    if !passed {
        return Err(Denial::new(
            DenialReason::DummyRunFailed,
            "the model failed on dummy rows (see its automated results); a model that cannot run is not approved",
        ));
    }
    Ok(())
}

/// A destroyed dataset's data is never read again.
pub fn check_not_destroyed(destroyed: bool) -> Result<(), Denial> {
    if destroyed {
        return Err(Denial::new(
            DenialReason::DatasetDestroyed,
            "the dataset was destroyed; its data can no longer be read",
        ));
    }
    Ok(())
}

/// An operator reads its own runs only (reviewers are decided by `reviewer_reads_result`).
pub fn check_run_reader(caller: &Principal, operator_id: i64) -> Result<(), Denial> {
    if caller.role != Role::Reviewer && caller.id != operator_id {
        return Err(Denial::new(DenialReason::AuthorisationNotYours, "the run belongs to another operator"));
    }
    Ok(())
}

/// An authorisation's budget is read by its operator, the dataset's provider and regulators.
pub fn check_budget_reader(caller: &Principal, operator_id: i64, provider_id: i64) -> Result<(), Denial> {
    let allowed = match caller.role {
        Role::Operator => caller.id == operator_id,
        Role::Provider => caller.id == provider_id,
        Role::Regulator => true,
        _ => false,
    };
    if !allowed {
        return Err(Denial::new(
            DenialReason::AuthorisationNotYours,
            "this budget belongs to another operator or provider",
        ));
    }
    Ok(())
}

/// Checkpoints on demand: refused while one issued less than `every_seconds` ago would have
/// to wait `wait_seconds` more.
pub fn check_fresh_checkpoint(wait_seconds: Option<i64>, every_seconds: i64) -> Result<(), Denial> {
    if let Some(wait) = wait_seconds {
        return Err(Denial::new(
            DenialReason::RateLimited,
            format!(
                "a checkpoint was issued on demand less than {every_seconds}s ago; use the latest or ask again in {wait}s"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organisation::OrganisationId;

    fn principal(id: i64, role: Role) -> Principal {
        Principal { id, role, organisation: OrganisationId(1), reviewer_kind: None, licence: None }
    }

    #[test]
    fn each_relation_names_its_rule() {
        let provider = principal(2, Role::Provider);
        assert!(check_dataset_provider(&provider, 2, "destroy").is_ok());
        assert_eq!(
            check_dataset_provider(&provider, 3, "destroy").expect_err("denied").reason,
            DenialReason::WrongRole
        );
        assert_eq!(check_column_grantable("id", 4, 3).expect_err("denied").reason, DenialReason::ColumnNotAuthorised);
        assert!(check_column_grantable("age", 3, 3).is_ok());
        let operator = principal(5, Role::Operator);
        assert!(check_authorisation_holder(&operator, 5).is_ok());
        assert_eq!(
            check_authorisation_holder(&operator, 6).expect_err("denied").reason,
            DenialReason::AuthorisationNotYours
        );
        assert!(check_run_reader(&principal(9, Role::Reviewer), 5).is_ok());
        assert!(check_run_reader(&operator, 6).is_err());
        assert!(check_budget_reader(&principal(7, Role::Regulator), 5, 2).is_ok());
        assert!(check_budget_reader(&provider, 5, 2).is_ok());
        assert!(check_budget_reader(&principal(8, Role::Admin), 5, 2).is_err());
        assert_eq!(check_fresh_checkpoint(Some(3), 5).expect_err("denied").reason, DenialReason::RateLimited);
        assert_eq!(check_dummy_run(false).expect_err("denied").reason, DenialReason::DummyRunFailed);
        assert_eq!(check_not_destroyed(true).expect_err("denied").reason, DenialReason::DatasetDestroyed);
    }
}

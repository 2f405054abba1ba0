//! The checks on an object's content rather than on who acts (who may act on which object
//! is the policy set's, in `gate`): columns and their classification, the dummy run, a
//! destroyed dataset, the checkpoint rate. Each takes the facts and returns a [`Denial`]
//! naming the rule, so every refusal the gateway gives comes from this crate.
//!
//! It owns these checks; it must not read a store or a clock.

use crate::decision::{Denial, DenialReason};

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

/// A principal's use of an expensive endpoint: `used` of its `limit` spent in the current
/// window (`per`, e.g. "hour"), and this request would cost `cost` more. `retry_seconds` is
/// when enough of the window has passed for it to fit.
pub fn check_principal_rate(
    what: &str,
    used: u64,
    cost: u64,
    limit: u64,
    per: &str,
    retry_seconds: i64,
) -> Result<(), Denial> {
    if used.saturating_add(cost) > limit {
        return Err(Denial::new(
            DenialReason::RateLimited,
            format!("at most {limit} {what} per {per} for each principal; try again in {retry_seconds}s"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_its_rule() {
        assert_eq!(check_column_grantable("id", 4, 3).expect_err("denied").reason, DenialReason::ColumnNotAuthorised);
        assert!(check_column_grantable("age", 3, 3).is_ok());
        assert_eq!(check_column_granted("age", false).expect_err("denied").reason, DenialReason::ColumnNotAuthorised);
        assert_eq!(check_fresh_checkpoint(Some(3), 5).expect_err("denied").reason, DenialReason::RateLimited);
        assert!(check_fresh_checkpoint(None, 5).is_ok());
        assert_eq!(check_dummy_run(false).expect_err("denied").reason, DenialReason::DummyRunFailed);
        assert_eq!(check_not_destroyed(true).expect_err("denied").reason, DenialReason::DatasetDestroyed);
        assert!(check_principal_rate("model submissions", 29, 1, 30, "hour", 5).is_ok());
        let denial = check_principal_rate("dummy rows", 4_500_000, 600_000, 5_000_000, "minute", 12).expect_err("over");
        assert_eq!(denial.reason, DenialReason::RateLimited);
        assert_eq!(denial.message, "at most 5000000 dummy rows per minute for each principal; try again in 12s");
    }
}

//! Privacy budgets in exact integer units, so a ledger never drifts.
//!
//! It owns the arithmetic of ε: parsing, rounding and charging. It must not store a
//! budget; the gateway keeps the ledger and charges it in one transaction with the release.

use std::fmt;

use crate::decision::{Denial, DenialReason};

/// Units of ε per 1.0: budgets are kept in millionths, so sums are exact.
const UNITS_PER_EPSILON: f64 = 1_000_000.0;

/// A non-negative amount of privacy loss, in millionths of ε.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epsilon(u64);

impl Epsilon {
    pub const ZERO: Epsilon = Epsilon(0);

    /// Converts a requested ε, rounding up so a charge is never smaller than the loss.
    /// Refuses zero, negative, NaN, infinite and absurd values (above 1,000).
    pub fn from_f64(epsilon: f64) -> Result<Self, Denial> {
        if !(epsilon.is_finite() && epsilon > 0.0 && epsilon <= 1000.0) {
            return Err(Denial::new(
                DenialReason::InvalidRequest,
                format!("epsilon must be a finite number above 0 and at most 1000, got {epsilon}"),
            ));
        }
        Ok(Epsilon((epsilon * UNITS_PER_EPSILON).ceil() as u64))
    }

    pub const fn from_units(units: u64) -> Self {
        Epsilon(units)
    }

    pub fn units(self) -> u64 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / UNITS_PER_EPSILON
    }
}

impl fmt::Display for Epsilon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_f64())
    }
}

/// A budget: how much ε it allows in total and how much has been spent.
/// Invariant: `spent <= total`, so the remaining budget is never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivacyBudget {
    total: Epsilon,
    spent: Epsilon,
}

impl PrivacyBudget {
    pub fn new(total: Epsilon, spent: Epsilon) -> Result<Self, Denial> {
        if spent > total {
            return Err(Denial::new(DenialReason::InvalidRequest, "a budget cannot have spent more than its total"));
        }
        Ok(Self { total, spent })
    }

    pub fn total(&self) -> Epsilon {
        self.total
    }
    pub fn spent(&self) -> Epsilon {
        self.spent
    }
    pub fn remaining(&self) -> Epsilon {
        Epsilon(self.total.0 - self.spent.0)
    }

    /// The budget after charging `epsilon`, or a denial if it does not fit.
    pub fn charge(&self, epsilon: Epsilon, reason: DenialReason) -> Result<PrivacyBudget, Denial> {
        if epsilon > self.remaining() {
            return Err(Denial::new(
                reason,
                format!("the run needs epsilon {epsilon} but only {} of {} remains", self.remaining(), self.total),
            ));
        }
        Ok(Self { total: self.total, spent: Epsilon(self.spent.0 + epsilon.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_parsing_refuses_bad_values_and_rounds_up() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e6] {
            assert!(Epsilon::from_f64(bad).is_err(), "{bad}");
        }
        assert_eq!(Epsilon::from_f64(0.5).expect("valid").units(), 500_000);
        assert_eq!(Epsilon::from_f64(1e-9).expect("valid").units(), 1);
    }

    #[test]
    fn budget_never_goes_negative() {
        let half = Epsilon::from_f64(0.5).expect("valid");
        let budget = PrivacyBudget::new(Epsilon::from_f64(1.0).expect("valid"), Epsilon::ZERO).expect("valid");
        let once = budget.charge(half, DenialReason::BudgetExhausted).expect("fits");
        let twice = once.charge(half, DenialReason::BudgetExhausted).expect("fits exactly");
        assert_eq!(twice.remaining(), Epsilon::ZERO);
        let denial = twice.charge(Epsilon::from_units(1), DenialReason::BudgetExhausted).expect_err("exhausted");
        assert_eq!(denial.reason, DenialReason::BudgetExhausted);
        assert!(PrivacyBudget::new(Epsilon::ZERO, half).is_err());
    }
}

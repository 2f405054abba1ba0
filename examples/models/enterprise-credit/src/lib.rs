//! SME credit profile for inclusive finance (seed 002, item 16: 普惠金融, 企业信用画像).
//!
//! A credit score per enterprise from years in operation, tax paid, social-insurance
//! arrears and tax violations; the host releases how many SMEs are creditworthy, the mean
//! score, and the tax paid by creditworthy ones, per industry (the manifest's group-by
//! column: the host groups by it, the model need not read it), with differential privacy.
//! It is a pure function of one row and cannot carry a row out.
#![no_std]

use sluice_guest::math::{exp, log10};

/// Enterprises with at most this many employees count as SMEs (小微企业).
const SME_EMPLOYEES: i64 = 300;
const CREDITWORTHY_SCORE: f64 = 0.6;

sluice_guest::model! {
    fn enterprise_credit;
    inputs {
        years_operating: f64,
        employees: i64,
        annual_tax_paid_cny: f64,
        social_insurance_arrears_months: i64,
        tax_violation: bool,
    }
    outputs { creditworthy_smes, mean_credit_score, tax_paid_by_creditworthy_smes }
}

fn enterprise_credit(row: &Inputs) -> Outputs {
    let years = row.years_operating.unwrap_or(0.0);
    let employees = row.employees.unwrap_or(0);
    let tax_paid = row.annual_tax_paid_cny.unwrap_or(0.0);
    let arrears = row.social_insurance_arrears_months.unwrap_or(0) as f64;
    let violation = row.tax_violation.unwrap_or(false);

    // Tax paid enters on a log scale: a tenfold increase adds the same to the score.
    let linear = -1.5 + 0.08 * years.min(20.0) + 0.35 * log10(1.0 + tax_paid)
        - 0.25 * arrears
        - if violation { 1.5 } else { 0.0 };
    let score = 1.0 / (1.0 + exp(-linear));
    let creditworthy_sme = employees <= SME_EMPLOYEES && score >= CREDITWORTHY_SCORE;

    Outputs {
        creditworthy_smes: if creditworthy_sme { 1.0 } else { 0.0 },
        mean_credit_score: score,
        tax_paid_by_creditworthy_smes: if creditworthy_sme { tax_paid } else { 0.0 },
    }
}

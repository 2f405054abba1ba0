//! SME credit profile for inclusive finance (seed 002, item 16: 普惠金融, 企业信用画像).
//!
//! A credit score per enterprise from years in operation, tax paid, social-insurance
//! arrears and tax violations; the host releases how many SMEs are creditworthy, the mean
//! score, and the tax paid by creditworthy ones, with differential privacy. Inputs, in
//! manifest order: years_operating (f64), employees (i64), annual_tax_paid_cny (f64),
//! social_insurance_arrears_months (i64), tax_violation (bool), industry (category, the
//! manifest's group-by column: the host groups by it, the model need not read it). It must
//! not carry a row out.

use sluice_guest::Row;

/// Enterprises with at most this many employees count as SMEs (小微企业).
const SME_EMPLOYEES: i64 = 300;
const CREDITWORTHY_SCORE: f64 = 0.6;

fn enterprise_credit(row: &Row, out: &mut [f64]) {
    let years = row.f64(0).unwrap_or(0.0);
    let employees = row.i64(1).unwrap_or(0);
    let tax_paid = row.f64(2).unwrap_or(0.0);
    let arrears = row.i64(3).unwrap_or(0) as f64;
    let violation = row.bool(4).unwrap_or(false);

    // Tax paid enters on a log scale: a tenfold increase adds the same to the score.
    let linear = -1.5 + 0.08 * years.min(20.0) + 0.35 * (1.0 + tax_paid).log10()
        - 0.25 * arrears
        - if violation { 1.5 } else { 0.0 };
    let score = 1.0 / (1.0 + (-linear).exp());
    let creditworthy_sme = employees <= SME_EMPLOYEES && score >= CREDITWORTHY_SCORE;

    out[0] = if creditworthy_sme { 1.0 } else { 0.0 }; // creditworthy_smes
    out[1] = score; // mean_credit_score
    out[2] = if creditworthy_sme { tax_paid } else { 0.0 }; // tax_paid_by_creditworthy_smes
}

sluice_guest::model!(enterprise_credit);

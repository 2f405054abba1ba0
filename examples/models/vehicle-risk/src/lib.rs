//! Vehicle risk for the car-owner service (seed 002, item 11: 车主服务, 车辆画像、风险评估).
//!
//! Per vehicle, a logistic risk score from vehicle age, violations in the last twelve
//! months and accidents in the last five years; the host turns the per-row values into
//! differentially private aggregates as `manifest.toml` declares. Inputs, in manifest
//! order: vehicle_age_years (f64), violations_12m (i64), accidents_5y (i64),
//! insured_value_cny (f64). It must not try to carry a row out: only aggregates leave.

use sluice_guest::Row;

/// Above this score a vehicle counts as high risk.
const HIGH_RISK_SCORE: f64 = 0.5;
/// Expected claim as a share of insured value, at a score of 1.
const CLAIM_RATE: f64 = 0.05;

fn vehicle_risk(row: &Row, out: &mut [f64]) {
    let age = row.f64(0).unwrap_or(0.0);
    let violations = row.i64(1).unwrap_or(0) as f64;
    let accidents = row.i64(2).unwrap_or(0) as f64;
    let insured_value = row.f64(3).unwrap_or(0.0);

    let linear = -3.2 + 0.09 * age + 0.22 * violations + 0.65 * accidents;
    let score = 1.0 / (1.0 + (-linear).exp());

    out[0] = if score > HIGH_RISK_SCORE { 1.0 } else { 0.0 }; // high_risk_vehicles
    out[1] = score; // mean_risk_score
    out[2] = score * insured_value * CLAIM_RATE; // expected_claims_cny, clamped by the host
}

sluice_guest::model!(vehicle_risk);

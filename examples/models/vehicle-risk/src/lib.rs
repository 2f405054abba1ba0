//! Vehicle risk for the car-owner service (seed 002, item 11: 车主服务, 车辆画像、风险评估).
//!
//! Per vehicle, a logistic risk score from vehicle age, violations in the last twelve
//! months and accidents in the last five years; the host turns the per-row values into
//! differentially private aggregates as `manifest.toml` declares. It is a pure function of
//! one row: it keeps nothing between rows and cannot carry a row out.
#![no_std]

mod score;

sluice_guest::model! {
    fn vehicle_risk;
    inputs {
        vehicle_age_years: f64,
        violations_12m: i64,
        accidents_5y: i64,
        insured_value_cny: f64,
    }
    outputs { high_risk_vehicles, mean_risk_score, expected_claims_cny }
}

fn vehicle_risk(row: &Inputs) -> Outputs {
    let [high_risk, score, claim] = score::score(
        row.vehicle_age_years.unwrap_or(0.0),
        row.violations_12m.unwrap_or(0) as f64,
        row.accidents_5y.unwrap_or(0) as f64,
        row.insured_value_cny.unwrap_or(0.0),
        sluice_guest::math::exp,
    );
    Outputs { high_risk_vehicles: high_risk, mean_risk_score: score, expected_claims_cny: claim }
}

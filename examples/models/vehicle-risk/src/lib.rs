//! Vehicle risk for the car-owner service (seed 002, item 11: 车主服务, 车辆画像、风险评估).
//!
//! Per vehicle, a logistic risk score from vehicle age, violations in the last twelve
//! months and accidents in the last five years; the host turns the per-row values into
//! differentially private aggregates as `manifest.toml` declares. Inputs, in manifest
//! order: vehicle_age_years (f64), violations_12m (i64), accidents_5y (i64),
//! insured_value_cny (f64). It must not try to carry a row out: only aggregates leave.

mod score;

use sluice_guest::Row;

fn vehicle_risk(row: &Row, out: &mut [f64]) {
    let outputs = score::score(
        row.f64(0).unwrap_or(0.0),
        row.i64(1).unwrap_or(0) as f64,
        row.i64(2).unwrap_or(0) as f64,
        row.f64(3).unwrap_or(0.0),
    );
    out.copy_from_slice(&outputs);
}

sluice_guest::model!(vehicle_risk);

//! Air-quality anomaly screening for the ecological environment scenario (seed 002,
//! item 9: 生态环境, 大气监测).
//!
//! Per hourly reading, the PM2.5 individual air-quality index (HJ 633-2012 breakpoints) and
//! whether the reading breaches the Grade II limits for PM2.5 (75 µg/m³) or SO2 (hourly
//! 500 µg/m³); the host releases the count of anomalies, the mean index, the total PM2.5
//! excess in industrial zones, the median index, and a histogram of readings by air-quality
//! category. It is a pure function of one row and cannot carry a row out.
#![no_std]

sluice_guest::model! {
    fn pollution_anomaly;
    inputs { pm25_ugm3: f64, so2_ugm3: f64, industrial_zone: bool }
    outputs { anomalous_readings, mean_pm25_index, industrial_pm25_excess, median_pm25_index, pm25_category }
}

const PM25_LIMIT: f64 = 75.0;
const SO2_HOURLY_LIMIT: f64 = 500.0;
/// (concentration, index) breakpoints for PM2.5, HJ 633-2012 table 1.
const PM25_BREAKPOINTS: [(f64, f64); 8] = [
    (0.0, 0.0),
    (35.0, 50.0),
    (75.0, 100.0),
    (115.0, 150.0),
    (150.0, 200.0),
    (250.0, 300.0),
    (350.0, 400.0),
    (500.0, 500.0),
];

fn pm25_index(concentration: f64) -> f64 {
    for pair in PM25_BREAKPOINTS.windows(2) {
        let ((c_low, i_low), (c_high, i_high)) = (pair[0], pair[1]);
        if concentration <= c_high {
            return i_low + (i_high - i_low) * (concentration - c_low) / (c_high - c_low);
        }
    }
    500.0
}

fn pollution_anomaly(row: &Inputs) -> Outputs {
    let pm25 = row.pm25_ugm3.unwrap_or(0.0).max(0.0);
    let so2 = row.so2_ugm3.unwrap_or(0.0).max(0.0);
    let industrial = row.industrial_zone.unwrap_or(false);
    let anomaly = pm25 > PM25_LIMIT || so2 > SO2_HOURLY_LIMIT;
    let index = pm25_index(pm25);

    Outputs {
        anomalous_readings: if anomaly { 1.0 } else { 0.0 },
        mean_pm25_index: index,
        industrial_pm25_excess: if industrial { (pm25 - PM25_LIMIT).max(0.0) } else { 0.0 },
        // The host releases the median of these.
        median_pm25_index: index,
        // A bin index of the histogram.
        pm25_category: aqi_category(index),
    }
}

/// The air-quality category of an index (HJ 633-2012): excellent, good, light, moderate,
/// heavy, severe, as bin indexes 0 to 5.
fn aqi_category(index: f64) -> f64 {
    CATEGORY_UPPER_BOUNDS.iter().filter(|upper| index > **upper).count() as f64
}

/// Upper index bounds of the first five categories.
const CATEGORY_UPPER_BOUNDS: [f64; 5] = [50.0, 100.0, 150.0, 200.0, 300.0];

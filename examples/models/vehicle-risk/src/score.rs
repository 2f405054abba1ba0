//! The vehicle-risk scoring function, free of the guest SDK so the same code can be
//! compiled natively for the sandbox-versus-native benchmark. It must stay pure: `exp` is
//! passed in (the host's in the sandbox, the standard library's natively).

/// Above this score a vehicle counts as high risk.
pub const HIGH_RISK_SCORE: f64 = 0.5;
/// Expected claim as a share of insured value, at a score of 1.
pub const CLAIM_RATE: f64 = 0.05;

/// Outputs in manifest order: high-risk indicator, risk score, expected claim.
#[inline(always)]
pub fn score(age: f64, violations: f64, accidents: f64, insured_value: f64, exp: impl Fn(f64) -> f64) -> [f64; 3] {
    let linear = -3.2 + 0.09 * age + 0.22 * violations + 0.65 * accidents;
    let score = 1.0 / (1.0 + exp(-linear));
    let high_risk = if score > HIGH_RISK_SCORE { 1.0 } else { 0.0 };
    [high_risk, score, score * insured_value * CLAIM_RATE]
}

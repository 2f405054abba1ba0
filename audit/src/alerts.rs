//! Alerts for regulators (seed 001 异常风险识别), computed from the log alone: the gateway
//! records each as an `alert.raise` entry, and anyone holding an export can compute them
//! again and compare.
//!
//! It owns the rules and their thresholds. It must not read anything but entries, and its
//! answer for a prefix of a log never changes as the log grows (each alert is raised by
//! one entry, in order), so alerts already recorded are never contradicted later.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::verify::{micro_epsilon, timestamp};
use crate::{AuditEntry, AuditOutcome};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// Many denials of one principal in a short time: probing what it may do.
    DenialBurst,
    /// Many refused tokens (unknown, revoked, expired) in a short time: guessing.
    FailedAuthentication,
    /// An authorisation charged a large share of its ε in a short time.
    BudgetBurn,
    /// The same model run again and again under one authorisation: averaging the noise away.
    RepeatedRuns,
    /// A model submitted under an authorisation whose earlier model was rejected or revoked.
    ResubmissionAfterRejection,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::DenialBurst,
        AlertKind::FailedAuthentication,
        AlertKind::BudgetBurn,
        AlertKind::RepeatedRuns,
        AlertKind::ResubmissionAfterRejection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::DenialBurst => "denial_burst",
            AlertKind::FailedAuthentication => "failed_authentication",
            AlertKind::BudgetBurn => "budget_burn",
            AlertKind::RepeatedRuns => "repeated_runs",
            AlertKind::ResubmissionAfterRejection => "resubmission_after_rejection",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        AlertKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// So many events within so many seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub count: usize,
    pub seconds: u64,
}

/// The thresholds; the defaults are what `sluice serve` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    pub denials: Threshold,
    pub failed_authentication: Threshold,
    pub repeated_runs: Threshold,
    /// Seconds over which charges are summed, and the share of an authorisation's ε that
    /// raises the alert when reached within them.
    pub budget_burn_seconds: u64,
    pub budget_burn_share: f64,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            denials: Threshold { count: 10, seconds: 600 },
            failed_authentication: Threshold { count: 10, seconds: 600 },
            repeated_runs: Threshold { count: 20, seconds: 86_400 },
            budget_burn_seconds: 86_400,
            budget_burn_share: 0.5,
        }
    }
}

/// One alert: what, about whom, and the entries that raised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    /// `principal:7`, `token:unknown`, `authorisation:3`, `authorisation:3/model:9`.
    pub subject: String,
    /// How many events (denials, refusals, runs; ε charged in millionths for a burn).
    pub count: u64,
    /// The first and the last entry of the window; the last raised it.
    pub first_seq: u64,
    pub last_seq: u64,
}

impl Alert {
    /// What makes two records of an alert the same alert.
    pub fn key(&self) -> (AlertKind, String, u64) {
        (self.kind, self.subject.clone(), self.last_seq)
    }
}

/// Seconds since 1970 of an entry's RFC 3339 time.
fn seconds(text: &str) -> Option<u64> {
    let stamp = timestamp(text)?;
    let (year, month, day) = (stamp.0 as i64, stamp.1 as i64, stamp.2 as i64);
    // Days from the civil date (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    u64::try_from(days * 86_400 + (stamp.3 * 3600 + stamp.4 * 60 + stamp.5) as i64).ok()
}

/// A count of events in a sliding window; it fires at the threshold and starts again.
#[derive(Default)]
struct Window {
    events: VecDeque<(u64, u64, u64)>, // (seconds, seq, weight)
    total: u64,
}

impl Window {
    /// Adds an event; returns the window's (first seq, total) when `full` says it is full.
    fn add(
        &mut self,
        at: u64,
        seq: u64,
        weight: u64,
        span: u64,
        full: impl Fn(usize, u64) -> bool,
    ) -> Option<(u64, u64)> {
        while self.events.front().is_some_and(|&(time, _, _)| time + span < at) {
            let (_, _, old) = self.events.pop_front().unwrap_or_default();
            self.total -= old;
        }
        self.events.push_back((at, seq, weight));
        self.total += weight;
        if full(self.events.len(), self.total) {
            let first = self.events.front().map_or(seq, |&(_, first, _)| first);
            let total = self.total;
            self.events.clear();
            self.total = 0;
            return Some((first, total));
        }
        None
    }
}

/// Every alert the rules raise over `entries` (in log order), in the order raised.
pub fn detect(entries: &[AuditEntry], rules: &AlertRules) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let mut windows: HashMap<(AlertKind, String), Window> = HashMap::new();
    let mut budgets: HashMap<String, u64> = HashMap::new();
    let mut model_authorisation: HashMap<String, String> = HashMap::new();
    let mut refused_authorisations: HashSet<String> = HashSet::new();
    for entry in entries {
        let Some(at) = seconds(&entry.time) else { continue };
        let ok = entry.outcome == AuditOutcome::Ok;
        let detail = |key: &str| entry.details.get(key).cloned();
        let mut count =
            |kind: AlertKind, subject: String, weight: u64, span: u64, full: &dyn Fn(usize, u64) -> bool| {
                let window = windows.entry((kind, subject.clone())).or_default();
                if let Some((first_seq, count)) = window.add(at, entry.seq, weight, span, full) {
                    alerts.push(Alert { kind, subject, count, first_seq, last_seq: entry.seq });
                }
            };
        match (entry.action.as_str(), entry.outcome) {
            ("authenticate", AuditOutcome::Denied) => {
                let subject = entry.actor_id.map_or_else(|| "token:unknown".to_owned(), |id| format!("principal:{id}"));
                let threshold = rules.failed_authentication;
                count(AlertKind::FailedAuthentication, subject, 1, threshold.seconds, &|n, _| n >= threshold.count);
            }
            (_, AuditOutcome::Denied) => {
                if let Some(actor) = entry.actor_id {
                    let threshold = rules.denials;
                    let subject = format!("principal:{actor}");
                    count(AlertKind::DenialBurst, subject, 1, threshold.seconds, &|n, _| n >= threshold.count);
                }
            }
            ("authorisation.create", _) if ok => {
                if let Some(total) = micro_epsilon(entry.details.get("epsilon_total")) {
                    budgets.insert(entry.object.clone(), total);
                }
            }
            ("run.start", _) if ok => {
                let (Some(authorisation), Some(model)) = (detail("authorisation"), detail("model")) else { continue };
                let threshold = rules.repeated_runs;
                let subject = format!("authorisation:{authorisation}/model:{model}");
                count(AlertKind::RepeatedRuns, subject, 1, threshold.seconds, &|n, _| n >= threshold.count);
                let subject = format!("authorisation:{authorisation}");
                if let (Some(&total), Some(charged)) =
                    (budgets.get(&subject), micro_epsilon(entry.details.get("epsilon_charged")))
                {
                    let limit = (total as f64 * rules.budget_burn_share).ceil() as u64;
                    count(AlertKind::BudgetBurn, subject, charged, rules.budget_burn_seconds, &|_, sum| sum >= limit);
                }
            }
            ("model.submit", _) if ok => {
                let Some(authorisation) = detail("authorisation") else { continue };
                if refused_authorisations.contains(&authorisation) {
                    alerts.push(Alert {
                        kind: AlertKind::ResubmissionAfterRejection,
                        subject: format!("authorisation:{authorisation}"),
                        count: 1,
                        first_seq: entry.seq,
                        last_seq: entry.seq,
                    });
                }
                model_authorisation.insert(entry.object.clone(), authorisation);
            }
            ("model.review", _) if ok && detail("state").as_deref() == Some("rejected") => {
                if let Some(authorisation) = model_authorisation.get(&entry.object) {
                    refused_authorisations.insert(authorisation.clone());
                }
            }
            ("model.revoke", _) if ok => {
                if let Some(authorisation) = model_authorisation.get(&entry.object) {
                    refused_authorisations.insert(authorisation.clone());
                }
            }
            _ => {}
        }
    }
    alerts
}

/// The alerts recorded in a log (`alert.raise` entries), by key, with their entry's seq.
pub fn recorded(entries: &[AuditEntry]) -> BTreeMap<(AlertKind, String, u64), u64> {
    entries
        .iter()
        .filter(|entry| entry.action == "alert.raise")
        .filter_map(|entry| {
            let kind = AlertKind::parse(entry.details.get("kind")?)?;
            let subject = entry.details.get("subject")?.clone();
            let last: u64 = entry.details.get("to")?.parse().ok()?;
            Some(((kind, subject, last), entry.seq))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        seq: u64,
        second: u64,
        action: &str,
        outcome: AuditOutcome,
        actor: Option<i64>,
        object: &str,
    ) -> AuditEntry {
        AuditEntry {
            v: 1,
            seq,
            prev: String::new(),
            time: format!("2026-11-23T10:{:02}:{:02}Z", second / 60, second % 60),
            request_id: String::new(),
            actor_id: actor,
            role: String::new(),
            action: action.into(),
            object: object.into(),
            outcome,
            reason: String::new(),
            details: BTreeMap::new(),
        }
    }

    fn with(mut entry: AuditEntry, details: &[(&str, &str)]) -> AuditEntry {
        for (key, value) in details {
            entry.details.insert((*key).into(), (*value).into());
        }
        entry
    }

    #[test]
    fn seconds_count_from_1970() {
        assert_eq!(seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(seconds("2000-03-01T00:00:01Z"), Some(951_868_801));
        assert_eq!(seconds("2026-11-23T10:00:00.5Z"), Some(1_795_428_000));
        assert_eq!(seconds("not a time"), None);
    }

    #[test]
    fn a_burst_of_denials_raises_one_alert_and_a_slow_trickle_none() {
        let rules = AlertRules::default();
        let burst: Vec<_> =
            (0..12).map(|i| entry(i, i * 10, "run.start", AuditOutcome::Denied, Some(7), "authorisation:1")).collect();
        let alerts = detect(&burst, &rules);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(
            (alerts[0].kind, alerts[0].subject.as_str(), alerts[0].count),
            (AlertKind::DenialBurst, "principal:7", 10)
        );
        assert_eq!((alerts[0].first_seq, alerts[0].last_seq), (0, 9));
        // One denial every two minutes: never ten within ten minutes.
        let trickle: Vec<_> =
            (0..20).map(|i| entry(i, i * 120, "run.start", AuditOutcome::Denied, Some(7), "x")).collect();
        assert!(detect(&trickle, &rules).is_empty());
    }

    #[test]
    fn failed_tokens_are_counted_apart_from_denials() {
        let rules = AlertRules::default();
        let entries: Vec<_> = (0..10).map(|i| entry(i, i, "authenticate", AuditOutcome::Denied, None, "api")).collect();
        let alerts = detect(&entries, &rules);
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].kind, alerts[0].subject.as_str()), (AlertKind::FailedAuthentication, "token:unknown"));
    }

    #[test]
    fn budget_burn_repeated_runs_and_resubmission_are_seen() {
        let rules = AlertRules { repeated_runs: Threshold { count: 3, seconds: 3600 }, ..AlertRules::default() };
        let mut entries = vec![with(
            entry(0, 0, "authorisation.create", AuditOutcome::Ok, Some(2), "authorisation:1"),
            &[("epsilon_total", "2")],
        )];
        for i in 1..=3 {
            entries.push(with(
                entry(i, i, "run.start", AuditOutcome::Ok, Some(3), &format!("run:{i}")),
                &[("authorisation", "1"), ("model", "4"), ("epsilon_charged", "0.5")],
            ));
        }
        entries
            .push(with(entry(4, 5, "model.submit", AuditOutcome::Ok, Some(3), "model:5"), &[("authorisation", "1")]));
        entries.push(with(entry(5, 6, "model.review", AuditOutcome::Ok, Some(9), "model:5"), &[("state", "rejected")]));
        entries
            .push(with(entry(6, 7, "model.submit", AuditOutcome::Ok, Some(3), "model:6"), &[("authorisation", "1")]));
        let kinds: Vec<_> = detect(&entries, &rules).into_iter().map(|alert| (alert.kind, alert.last_seq)).collect();
        assert_eq!(
            kinds,
            vec![(AlertKind::BudgetBurn, 2), (AlertKind::RepeatedRuns, 3), (AlertKind::ResubmissionAfterRejection, 6)]
        );
    }

    #[test]
    fn a_longer_log_never_changes_the_alerts_of_its_prefix() {
        let rules = AlertRules::default();
        let entries: Vec<_> = (0..40)
            .map(|i| entry(i, i * 7, "dataset.destroy", AuditOutcome::Denied, Some((i % 3) as i64), "dataset:1"))
            .collect();
        let whole = detect(&entries, &rules);
        for cut in 0..entries.len() {
            let prefix = detect(&entries[..cut], &rules);
            assert_eq!(prefix[..], whole[..prefix.len()], "cut at {cut}");
        }
    }
}

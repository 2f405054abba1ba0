//! Figures people ask for: usage per scenario, operator, dataset and month (seed 002 成效评估
//! and 定价: what a data bureau evaluates scenarios by and a provider invoices from), and
//! alerts for regulators (seed 001 异常风险识别), computed from the audit log by
//! `sluice_audit::alerts` and recorded in it.
//!
//! It owns assembling the figures and recording alerts. It must not show a caller a
//! scenario whose budget they may not read ([`Action::ReadBudget`], decided by the policy
//! set for each authorisation), and it shows counts of runs, never anything a run released.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sluice_audit::alerts::{Alert, AlertRules, detect, recorded};
use sluice_audit::{Act, AuditEntry, AuditEvent, AuditOutcome, Detail};
use sluice_policies::{Action, Resource};

use super::{App, Caller, stored_epsilon};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{AuthorisationId, DatasetId};
use crate::store::Store;

/// Which figures: `GET /v1/usage?from=2026-01&until=2026-12&dataset_id=&authorisation_id=`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// First month (`YYYY-MM`), inclusive.
    pub from: Option<String>,
    /// Last month (`YYYY-MM`), inclusive.
    pub until: Option<String>,
    pub dataset_id: Option<DatasetId>,
    pub authorisation_id: Option<AuthorisationId>,
}

/// One scenario's use of one dataset in one month. A scenario over several departments'
/// data has a row for each dataset: the runs, ε and models are the scenario's in each (each
/// run read and was charged to all of them), the rows processed each dataset's own.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct UsageRow {
    pub month: String,
    /// The scenario (一场景一授权).
    pub authorisation_id: AuthorisationId,
    pub purpose: String,
    pub operator_organisation: String,
    pub dataset_id: DatasetId,
    pub dataset: String,
    pub provider_organisation: String,
    /// For a scenario over several departments' data, its other datasets (the first, then
    /// the joined ones, but this row's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_dataset_ids: Vec<DatasetId>,
    /// This row is a joined dataset's: its runs, ε and models are counted in the first
    /// dataset's row as well, so per-scenario sums skip it.
    pub joined_side: bool,
    /// Runs started (each charged).
    pub runs: i64,
    pub runs_released: i64,
    /// Runs that failed, were interrupted or whose result was withheld.
    pub runs_without_release: i64,
    /// Rows of the dataset versions the runs read (metering).
    pub rows_processed: i64,
    pub epsilon_spent: f64,
    pub models_submitted: i64,
    /// Models whose first review fell in this month, and the mean and longest hours from
    /// submission to it.
    pub models_reviewed: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_turnaround_hours_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_turnaround_hours_max: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct UsageReport {
    pub rows: Vec<UsageRow>,
}

/// A field for CSV: quoted when it holds a separator, a quote or a line break, and with a
/// leading `'` when a spreadsheet would take it for a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

fn csv_number(value: Option<f64>) -> String {
    value.map_or_else(String::new, |value| format!("{value}"))
}

impl UsageReport {
    /// The report as CSV, one line a row, with a header.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "month,authorisation_id,purpose,operator_organisation,dataset_id,dataset,provider_organisation,runs,\
             runs_released,runs_without_release,rows_processed,epsilon_spent,models_submitted,models_reviewed,\
             review_turnaround_hours_mean,review_turnaround_hours_max,other_dataset_ids,joined_side\n",
        );
        for row in &self.rows {
            let fields = [
                csv_field(&row.month),
                row.authorisation_id.to_string(),
                csv_field(&row.purpose),
                csv_field(&row.operator_organisation),
                row.dataset_id.to_string(),
                csv_field(&row.dataset),
                csv_field(&row.provider_organisation),
                row.runs.to_string(),
                row.runs_released.to_string(),
                row.runs_without_release.to_string(),
                row.rows_processed.to_string(),
                format!("{}", row.epsilon_spent),
                row.models_submitted.to_string(),
                row.models_reviewed.to_string(),
                csv_number(row.review_turnaround_hours_mean),
                csv_number(row.review_turnaround_hours_max),
                row.other_dataset_ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                row.joined_side.to_string(),
            ];
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }
}

/// A month as `YYYY-MM`, or an error naming the field.
fn month(field: &str, text: &Option<String>) -> ServiceResult<Option<String>> {
    match text {
        None => Ok(None),
        Some(text) => {
            let bytes = text.as_bytes();
            let well_formed = bytes.len() == 7
                && bytes[4] == b'-'
                && bytes.iter().enumerate().all(|(i, b)| i == 4 || b.is_ascii_digit())
                && matches!(
                    &text[5..],
                    "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
                );
            if well_formed {
                Ok(Some(text.clone()))
            } else {
                Err(ServiceError::invalid(format!("`{field}` is a month written YYYY-MM, not `{text}`")))
            }
        }
    }
}

/// Hours between two stored times, if both parse.
fn hours_between(from: &str, to: &str) -> Option<f64> {
    let parse = |text: &str| time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok();
    Some((parse(to)? - parse(from)?).as_seconds_f64() / 3600.0)
}

/// One alert as the API shows it: the entry that recorded it and what it says.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AlertView {
    /// The `alert.raise` entry.
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub subject: String,
    pub count: u64,
    /// The entries of the window that raised it, first and last.
    pub from_seq: u64,
    pub to_seq: u64,
}

impl AlertView {
    fn of(entry: &AuditEntry) -> Option<Self> {
        let number = |key: &str| entry.details.get(key)?.parse().ok();
        Some(Self {
            seq: entry.seq,
            time: entry.time.clone(),
            kind: entry.details.get("kind")?.clone(),
            subject: entry.details.get("subject")?.clone(),
            count: number("count")?,
            from_seq: number("from")?,
            to_seq: number("to")?,
        })
    }
}

/// Alerts as CSV, one line each, with a header.
pub fn alerts_csv(alerts: &[AlertView]) -> String {
    let mut out = String::from("seq,time,kind,subject,count,from_seq,to_seq\n");
    for alert in alerts {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            alert.seq,
            csv_field(&alert.time),
            csv_field(&alert.kind),
            csv_field(&alert.subject),
            alert.count,
            alert.from_seq,
            alert.to_seq
        ));
    }
    out
}

fn parse_entries(texts: &[String]) -> anyhow::Result<Vec<AuditEntry>> {
    texts.iter().map(|text| serde_json::from_str(text).context("a stored audit entry")).collect()
}

impl App {
    /// Usage per scenario and month, for the scenarios whose budget the caller may read
    /// (an operator its own, a provider those on its datasets, a regulator all).
    pub async fn usage(&self, caller: &Caller, query: UsageQuery) -> ServiceResult<UsageReport> {
        let (from, until) = (month("from", &query.from)?, month("until", &query.until)?);
        let in_range = |month: &str| {
            from.as_deref().is_none_or(|from| month >= from) && until.as_deref().is_none_or(|until| month <= until)
        };
        let runs = self.store.run_usage().await?;
        let models = self.store.model_usage().await?;
        // Keyed by month, scenario and the row's dataset's place in the scenario (0 the
        // first, then the joined ones in order).
        let mut rows: BTreeMap<(String, AuthorisationId, usize), UsageRow> = BTreeMap::new();
        // Whether the caller may see each authorisation, and its rows' templates (one per
        // dataset); each looked up once.
        let mut seen: HashMap<AuthorisationId, Vec<UsageRow>> = HashMap::new();
        let mut turnarounds: BTreeMap<(String, AuthorisationId, usize), Vec<f64>> = BTreeMap::new();
        let mut keys = Vec::new();
        for run in &runs {
            keys.push((run.month.clone(), run.authorisation_id));
        }
        for model in &models {
            keys.push((model.submitted_at.chars().take(7).collect(), model.authorisation_id));
            if let Some(reviewed) = &model.first_review_at {
                keys.push((reviewed.chars().take(7).collect(), model.authorisation_id));
            }
        }
        for (month, authorisation) in keys {
            if !in_range(&month) || query.authorisation_id.is_some_and(|wanted| wanted != authorisation) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(authorisation) {
                slot.insert(self.usage_templates(caller, authorisation).await?);
            }
            for (place, template) in seen.get(&authorisation).into_iter().flatten().enumerate() {
                if query.dataset_id.is_some_and(|wanted| wanted != template.dataset_id) {
                    continue;
                }
                rows.entry((month.clone(), authorisation, place))
                    .or_insert_with(|| UsageRow { month: month.clone(), ..template.clone() });
            }
        }
        // Rows of each joined version read, looked up once a dataset.
        let mut row_counts: HashMap<DatasetId, HashMap<i64, i64>> = HashMap::new();
        for run in &runs {
            let places = seen.get(&run.authorisation_id).map_or(0, Vec::len);
            let versions = run.joined_versions()?;
            for place in 0..places {
                let Some(row) = rows.get_mut(&(run.month.clone(), run.authorisation_id, place)) else {
                    continue;
                };
                let rows_read = if place == 0 {
                    run.rows_read
                } else {
                    if let std::collections::hash_map::Entry::Vacant(slot) = row_counts.entry(row.dataset_id) {
                        let versions = self.store.versions(row.dataset_id).await?;
                        slot.insert(versions.into_iter().map(|stored| (stored.version, stored.row_count)).collect());
                    }
                    // A run that recorded no version of this dataset read none of its rows,
                    // yet its start and ε are the scenario's all the same.
                    let counts = row_counts.get(&row.dataset_id);
                    let read =
                        versions.get(place - 1).and_then(|version| counts.and_then(|counts| counts.get(version)));
                    run.runs * read.copied().unwrap_or(0)
                };
                row.runs += run.runs;
                match run.state.as_str() {
                    "released" => row.runs_released += run.runs,
                    "failed" | "interrupted" | "withheld" => row.runs_without_release += run.runs,
                    _ => {}
                }
                row.rows_processed += rows_read;
                row.epsilon_spent += stored_epsilon(run.epsilon_units);
            }
        }
        for model in &models {
            let submitted: String = model.submitted_at.chars().take(7).collect();
            let reviewed: Option<String> = model.first_review_at.as_ref().map(|at| at.chars().take(7).collect());
            for place in 0..seen.get(&model.authorisation_id).map_or(0, Vec::len) {
                if let Some(row) = rows.get_mut(&(submitted.clone(), model.authorisation_id, place)) {
                    row.models_submitted += 1;
                }
                let (Some(month), Some(at)) = (&reviewed, &model.first_review_at) else { continue };
                let key = (month.clone(), model.authorisation_id, place);
                if let Some(row) = rows.get_mut(&key) {
                    row.models_reviewed += 1;
                    if let Some(hours) = hours_between(&model.submitted_at, at) {
                        turnarounds.entry(key).or_default().push(hours);
                    }
                }
            }
        }
        for (key, hours) in turnarounds {
            if let Some(row) = rows.get_mut(&key) {
                row.review_turnaround_hours_mean = Some(hours.iter().sum::<f64>() / hours.len() as f64);
                row.review_turnaround_hours_max = hours.iter().copied().reduce(f64::max);
            }
        }
        let report = UsageReport { rows: rows.into_values().collect() };
        self.record(
            Self::event(caller, Act::UsageRead, "usage", AuditOutcome::Ok).detail(Detail::Returned, report.rows.len()),
        )
        .await?;
        Ok(report)
    }

    /// An authorisation's rows without figures, one per dataset it reads, if the caller may
    /// read its budget (none otherwise).
    async fn usage_templates(&self, caller: &Caller, id: AuthorisationId) -> anyhow::Result<Vec<UsageRow>> {
        let Some(authorisation) = self.store.authorisation(id).await? else { return Ok(Vec::new()) };
        let resource = self.authorisation_resource(&authorisation).await?;
        if self.decide(caller, Action::ReadBudget, &resource).is_err() {
            return Ok(Vec::new());
        }
        let organisation_name = |organisation| async move {
            anyhow::Ok(self.store.organisation(organisation).await?.map_or_else(|| "?".to_owned(), |row| row.name))
        };
        let operator = organisation_name(self.principal(authorisation.operator_id).await?.organisation).await?;
        let datasets = authorisation.datasets()?;
        let mut templates = Vec::new();
        for (index, &dataset_id) in datasets.iter().enumerate() {
            let dataset = self.store.dataset(dataset_id).await?.context("the authorisation's dataset")?;
            let provider = organisation_name(self.principal(dataset.provider_id).await?.organisation).await?;
            let others = datasets.iter().copied().filter(|other| *other != dataset_id).collect();
            templates.push(usage_template(&authorisation, &operator, dataset, provider, others, index > 0));
        }
        Ok(templates)
    }

    /// Computes the alerts over the whole log and records those not yet recorded, each as
    /// an `alert.raise` entry. Two nodes scanning at once record each alert once: the
    /// entries appended since this scan read the log are checked again inside the write.
    /// Returns how many it recorded.
    pub async fn scan_alerts(&self, rules: &AlertRules) -> anyhow::Result<usize> {
        Ok(self.scan_and_list_alerts(rules).await?.0)
    }

    /// [`App::scan_alerts`], also giving back every alert recorded in the log once it is
    /// done, oldest first, from the same read of the log (the log is read once).
    async fn scan_and_list_alerts(&self, rules: &AlertRules) -> anyhow::Result<(usize, Vec<AlertView>)> {
        let alert_views = |entries: &[AuditEntry]| -> Vec<AlertView> {
            entries.iter().filter(|entry| entry.action == Act::AlertRaise.as_str()).filter_map(AlertView::of).collect()
        };
        let entries = parse_entries(&self.store.audit_entries().await?)?;
        let read = entries.last().map_or(0, |entry| entry.seq);
        let mut known = recorded(&entries);
        let mut views = alert_views(&entries);
        let found: Vec<Alert> =
            detect(&entries, rules).into_iter().filter(|alert| !known.contains_key(&alert.key())).collect();
        if found.is_empty() {
            return Ok((0, views));
        }
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let since = parse_entries(&Store::audit_entries_after(&mut tx, read).await?)?;
        known.extend(recorded(&since));
        views.extend(alert_views(&since));
        let mut appended = Vec::new();
        for alert in found.iter().filter(|alert| !known.contains_key(&alert.key())) {
            let event = AuditEvent::new(Act::AlertRaise, format!("alert:{}", alert.kind.as_str()), AuditOutcome::Ok)
                .detail(Detail::Kind, alert.kind.as_str())
                .detail(Detail::Subject, &alert.subject)
                .detail(Detail::Count, alert.count)
                .detail(Detail::From, alert.first_seq)
                .detail(Detail::To, alert.last_seq);
            appended.push(Store::append_audit_entry(&mut tx, event, now).await?.1);
        }
        tx.commit().await.context("committing the alerts")?;
        views.extend(alert_views(&parse_entries(&appended)?));
        Ok((appended.len(), views))
    }

    /// The alerts recorded in the log, newest first, after a scan for new ones: the
    /// regulator's view (the same right as searching the log).
    pub async fn alerts(&self, caller: &Caller) -> ServiceResult<Vec<AlertView>> {
        self.guard(caller, Action::ExportAudit, "audit_log", &Resource::Platform).await?;
        let (_, mut alerts) = self.scan_and_list_alerts(&AlertRules::default()).await?;
        alerts.reverse();
        self.record(
            Self::event(caller, Act::AuditSearch, "alerts", AuditOutcome::Ok).detail(Detail::Results, alerts.len()),
        )
        .await?;
        Ok(alerts)
    }
}

/// A row without figures for one dataset of a scenario.
fn usage_template(
    authorisation: &crate::store::AuthorisationRow,
    operator: &str,
    dataset: crate::store::DatasetRow,
    provider: String,
    other_dataset_ids: Vec<DatasetId>,
    joined_side: bool,
) -> UsageRow {
    UsageRow {
        month: String::new(),
        authorisation_id: authorisation.id,
        purpose: authorisation.purpose.clone(),
        operator_organisation: operator.to_owned(),
        dataset_id: dataset.id,
        dataset: dataset.name,
        provider_organisation: provider,
        other_dataset_ids,
        joined_side,
        runs: 0,
        runs_released: 0,
        runs_without_release: 0,
        rows_processed: 0,
        epsilon_spent: 0.0,
        models_submitted: 0,
        models_reviewed: 0,
        review_turnaround_hours_mean: None,
        review_turnaround_hours_max: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1+2"), "'-1+2");
    }

    #[test]
    fn months_are_checked() {
        assert_eq!(month("from", &Some("2026-11".into())).expect("ok"), Some("2026-11".into()));
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "2026-11-01"] {
            assert!(month("from", &Some(bad.into())).is_err(), "{bad}");
        }
        assert_eq!(hours_between("2026-11-01T00:00:00Z", "2026-11-01T06:30:00Z"), Some(6.5));
    }
}

//! The console's pages and the actions behind their buttons, one role at a time: what a
//! reviewer decides, what an operator runs and reads, what a regulator checks, what a
//! provider holds and what an administrator manages.
//!
//! It owns laying out what the service returns. It must not read the store, decide who
//! may do what (a button shown is a convenience; the service decides and audits), or
//! render anything the JSON API would not give the same caller.

use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use maud::{Markup, html};
use serde::Deserialize;
use sluice_policies::{OrganisationId, ReleasedOutput, ReviewerKind, Role};

use super::{ConsoleError, CsrfOnly, Msg, PageResult, Session, accepted, guarded, role_name, see_other};
use crate::error::ServiceError;
use crate::ids::{ApplicationId, AuthorisationId, DatasetId, ModelId, PrincipalId, RunId};
use crate::service::{
    AlertView, App, ApplicationListQuery, AuditQuery, CatalogueEntry, LicenceRequest, ModelListQuery, ModelView,
    NewDataset, NewPrincipalRequest, PrincipalCreation, PrincipalListQuery, ReviewChecklist, RunListQuery, RunView,
    UsageQuery, UsageReport, UsageRow, WitnessReport,
};

/// How many audit entries the regulator's page shows, newest first.
const AUDIT_SHOWN: usize = 200;

trait ForSession<T> {
    fn or_page(self, session: &Session) -> Result<T, ConsoleError>;
}

impl<T> ForSession<T> for Result<T, ServiceError> {
    fn or_page(self, session: &Session) -> Result<T, ConsoleError> {
        self.map_err(|error| session.error(error))
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{value:.0}") } else { format!("{value:.4}") }
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), number)
}

/// An enum's wire name (`"histogram"`), as the JSON API writes it.
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// A budget as a bar: spent out of total.
fn budget_bar(session: &Session, spent: f64, total: f64) -> Markup {
    let share = if total > 0.0 { (spent / total).clamp(0.0, 1.0) } else { 0.0 };
    let width = (share * 200.0).round();
    html! {
        span.budget {
            svg width="204" height="14" role="img" aria-label={ (number(spent)) " / " (number(total)) } {
                rect x="0" y="0" width="204" height="14" class="bar-back" {}
                rect x="2" y="2" width=(width) height="10" class="bar-spent" {}
            }
            " " (number(spent)) " " (session.t(Msg::Spent)) " · " (number((total - spent).max(0.0))) " "
            (session.t(Msg::Left)) " · " (number(total)) " " (session.t(Msg::Total))
        }
    }
}

/// The home page: each role's main work.
pub(super) async fn home(State(app): State<Arc<App>>, session: Session) -> PageResult {
    let title = role_name(session.role(), session.lang);
    let body = match session.role() {
        Role::Reviewer => reviewer_home(&app, &session).await?,
        Role::Operator => operator_home(&app, &session).await?,
        Role::Regulator => regulator_home(&app, &session).await?,
        Role::Provider => provider_home(&app, &session).await?,
        Role::Admin => admin_home(&app, &session).await?,
    };
    Ok(session.page(title, body))
}

async fn reviewer_home(app: &App, session: &Session) -> Result<Markup, ConsoleError> {
    let caller = &session.caller;
    let mut applications = Vec::new();
    for state in ["submitted", "bureau_approved"] {
        let query = ApplicationListQuery { state: Some(state.into()), limit: Some(100), ..Default::default() };
        applications.extend(app.list_applications(caller, query).await.or_page(session)?.applications);
    }
    let models_query = ModelListQuery { state: Some("submitted".into()), limit: Some(100), ..Default::default() };
    let models = app.list_models(caller, models_query).await.or_page(session)?.models;
    let runs_query = RunListQuery { state: Some("held".into()), limit: Some(100), ..Default::default() };
    let held = app.list_runs(caller, runs_query).await.or_page(session)?.runs;
    Ok(html! {
        section #applications-awaiting {
            h2 { (session.t(Msg::ApplicationsAwaiting)) }
            @if applications.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
                table {
                    tr { th { (session.t(Msg::Id)) } th { (session.t(Msg::Dataset)) } th { (session.t(Msg::Purpose)) }
                         th { (session.t(Msg::State)) } th { (session.t(Msg::EpsilonRequested)) } th {} }
                    @for application in &applications {
                        tr {
                            td { (application.id) }
                            td { (application.dataset_id) @for joined in &application.joined_dataset_ids { " ⋈ " (joined) } }
                            td { (application.purpose) }
                            td { (application.state) } td { (number(application.epsilon_requested)) }
                            td { a href={ "/console/applications/" (application.id) } { (session.t(Msg::Open)) } }
                        }
                    }
                }
            }
        }
        section #models-awaiting {
            h2 { (session.t(Msg::ModelsAwaiting)) }
            @if models.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
                table {
                    tr { th { (session.t(Msg::Id)) } th { (session.t(Msg::Name)) } th { (session.t(Msg::Authorisation)) }
                         th { (session.t(Msg::Digest)) } th {} }
                    @for model in &models {
                        tr {
                            td { (model.id) } td { (model.name) } td { (model.authorisation_id) }
                            td { code { (short(&model.digest)) } }
                            td { a.open-model href={ "/console/models/" (model.id) } { (session.t(Msg::Open)) } }
                        }
                    }
                }
            }
        }
        section #held-results {
            h2 { (session.t(Msg::HeldResults)) }
            @if held.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
                table {
                    tr { th { (session.t(Msg::Run)) } th { (session.t(Msg::Model)) } th { (session.t(Msg::Authorisation)) } th {} }
                    @for run in &held {
                        tr {
                            td { (run.run_id) } td { (run.model_id) } td { (run.authorisation_id) }
                            td { a href={ "/console/runs/" (run.run_id) } { (session.t(Msg::Open)) } }
                        }
                    }
                }
            }
        }
    })
}

fn short(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

async fn operator_home(app: &App, session: &Session) -> Result<Markup, ConsoleError> {
    let caller = &session.caller;
    let applications = app
        .list_applications(caller, ApplicationListQuery { limit: Some(100), ..Default::default() })
        .await
        .or_page(session)?
        .applications;
    let models = app
        .list_models(caller, ModelListQuery { limit: Some(100), ..Default::default() })
        .await
        .or_page(session)?
        .models;
    let runs =
        app.list_runs(caller, RunListQuery { limit: Some(100), ..Default::default() }).await.or_page(session)?.runs;
    let mut authorisations: Vec<AuthorisationId> = models.iter().map(|model| model.authorisation_id).collect();
    authorisations.sort();
    authorisations.dedup();
    let mut budgets = Vec::new();
    for id in authorisations {
        budgets.push(app.budget(caller, id).await.or_page(session)?);
    }
    let usage = app.usage(caller, UsageQuery::default()).await.or_page(session)?;
    let series: Vec<BudgetSeries> = budgets
        .iter()
        .map(|budget| BudgetSeries {
            label: format!("#{}", budget.authorisation_id),
            total: budget.epsilon_total,
            spent: monthly_spent(
                usage.rows.iter().filter(|row| row.authorisation_id == budget.authorisation_id && !row.joined_side),
            ),
        })
        .collect();
    Ok(html! {
        section #budgets {
            h2 { (session.t(Msg::Budget)) }
            @if budgets.is_empty() { p.empty { (session.t(Msg::Nothing)) } }
            @for budget in &budgets {
                p { (session.t(Msg::Authorisation)) " " (budget.authorisation_id) ": "
                    (budget_bar(session, budget.epsilon_spent, budget.epsilon_total)) }
            }
            @if !usage.rows.is_empty() {
                h3 { (session.t(Msg::BudgetOverTime)) }
                (budget_chart(session, "scenario-budgets", session.t(Msg::PerScenario), &series))
            }
        }
        section #applications {
            h2 { (session.t(Msg::Applications)) }
            @if applications.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
                table {
                    tr { th { (session.t(Msg::Id)) } th { (session.t(Msg::Dataset)) } th { (session.t(Msg::Purpose)) }
                         th { (session.t(Msg::State)) } th { (session.t(Msg::Window)) } th {} }
                    @for application in &applications {
                        tr {
                            td { (application.id) }
                            td { (application.dataset_id) @for joined in &application.joined_dataset_ids { " ⋈ " (joined) } }
                            td { (application.purpose) }
                            td { (application.state) }
                            td { (application.valid_from) " – " (application.valid_until) }
                            td { a href={ "/console/applications/" (application.id) } { (session.t(Msg::Open)) } }
                        }
                    }
                }
            }
        }
        section #models {
            h2 { (session.t(Msg::Models)) }
            @if models.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
                p.help { (session.t(Msg::RunHelp)) }
                table {
                    tr { th { (session.t(Msg::Id)) } th { (session.t(Msg::Name)) } th { (session.t(Msg::Authorisation)) }
                         th { (session.t(Msg::State)) } th {} th {} }
                    @for model in &models {
                        tr {
                            td { (model.id) } td { (model.name) } td { (model.authorisation_id) } td { (model.state) }
                            td { a href={ "/console/models/" (model.id) } { (session.t(Msg::Open)) } }
                            td {
                                @if model.state == "approved" {
                                    form.inline method="post" action="/console/runs" {
                                        (session.csrf_field())
                                        input type="hidden" name="authorisation_id" value=(model.authorisation_id);
                                        input type="hidden" name="model_id" value=(model.id);
                                        button.run type="submit" data-model=(model.id) { (session.t(Msg::RunIt)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #runs {
            h2 { (session.t(Msg::Runs)) }
            (runs_table(session, &runs))
        }
        (usage_section(session, &usage))
    })
}

fn runs_table(session: &Session, runs: &[crate::service::RunSummary]) -> Markup {
    html! {
        @if runs.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
            table {
                tr { th { (session.t(Msg::Run)) } th { (session.t(Msg::Model)) } th { (session.t(Msg::Dataset)) }
                     th { (session.t(Msg::State)) } th { (session.t(Msg::EpsilonCharged)) } th {} }
                @for run in runs.iter().rev() {
                    tr {
                        td { (run.run_id) } td { (run.model_id) } td { (run.dataset_id) " v" (run.dataset_version) }
                        td { (run.state) } td { (number(run.epsilon_charged)) }
                        td { a href={ "/console/runs/" (run.run_id) } { (session.t(Msg::Open)) } }
                    }
                }
            }
        }
    }
}

async fn regulator_home(app: &App, session: &Session) -> Result<Markup, ConsoleError> {
    let catalogue = app.catalogue(&session.caller).await.or_page(session)?;
    let denials = AuditQuery { outcome: Some("denied".into()), limit: Some(100_000), ..Default::default() };
    let denied = app.search_audit(&session.caller, denials).await.or_page(session)?;
    let alerts = app.alerts(&session.caller).await.or_page(session)?;
    let usage = app.usage(&session.caller, UsageQuery::default()).await.or_page(session)?;
    Ok(html! {
        (alerts_section(session, &alerts))
        p { a href="/console/audit" { (session.t(Msg::AuditTrail)) } " · "
            a href="/console/audit/export" download { (session.t(Msg::Export)) } }
        section #dataset-budgets {
            h2 { (session.t(Msg::DatasetBudget)) }
            table {
                tr { th { (session.t(Msg::Dataset)) } th { (session.t(Msg::Budget)) } th { (session.t(Msg::AuthorisedOperators)) } }
                @for dataset in &catalogue {
                    tr {
                        td { (dataset.id) " " (dataset.name) }
                        td { (budget_bar(session, dataset.epsilon_spent, dataset.epsilon_total)) }
                        td { (dataset.authorisations.len()) }
                    }
                }
            }
        }
        (budget_over_time_section(session, &catalogue, &usage))
        (usage_section(session, &usage))
        section #denials {
            h2 { (session.t(Msg::Denials)) }
            (entries_table(session, denied.iter().rev().take(50)))
        }
    })
}

fn alerts_section(session: &Session, alerts: &[AlertView]) -> Markup {
    html! {
        section #alerts {
            h2 { (session.t(Msg::Alerts)) " (" (alerts.len()) ")" }
            p.help { (session.t(Msg::AlertsHelp)) " " a href="/console/alerts.csv" download { (session.t(Msg::DownloadCsv)) } }
            @if alerts.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
                table {
                    tr { th { "#" } th { (session.t(Msg::Time)) } th { (session.t(Msg::Kind)) } th { (session.t(Msg::Subject)) }
                         th { (session.t(Msg::Count)) } th { (session.t(Msg::Entries2)) } }
                    @for alert in alerts.iter().take(100) {
                        tr.alert {
                            td { a href={ "/console/audit/entries/" (alert.seq) } { (alert.seq) } }
                            td { (alert.time) } td.kind { (alert.kind) } td { (alert.subject) } td { (alert.count) }
                            td { a href={ "/console/audit/entries/" (alert.from_seq) } { (alert.from_seq) } " – "
                                 a href={ "/console/audit/entries/" (alert.to_seq) } { (alert.to_seq) } }
                        }
                    }
                }
            }
        }
    }
}

/// Usage per scenario and month, with ε per month as bars and the CSV to download.
fn usage_section(session: &Session, usage: &UsageReport) -> Markup {
    let mut per_month: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    // Each scenario's ε once a month: a joined scenario's second row repeats its first's.
    for row in usage.rows.iter().filter(|row| !row.joined_side) {
        *per_month.entry(row.month.as_str()).or_default() += row.epsilon_spent;
    }
    let largest = per_month.values().copied().fold(0.0, f64::max);
    let height = 120.0;
    html! {
        section #usage {
            h2 { (session.t(Msg::Usage)) }
            p.help { (session.t(Msg::UsageHelp)) " " a href="/console/usage.csv" download { (session.t(Msg::DownloadCsv)) } }
            @if usage.rows.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
                figure {
                    figcaption { (session.t(Msg::EpsilonByMonth)) }
                    svg.chart width=(per_month.len() * 70 + 10) height=(height + 50.0) role="img" aria-label=(session.t(Msg::EpsilonByMonth)) {
                        @for (index, (month, epsilon)) in per_month.iter().enumerate() {
                            @let bar = if largest > 0.0 { (epsilon / largest * height).max(1.0) } else { 1.0 };
                            rect.bar-spent x=(index * 70 + 10) y=(height - bar + 20.0) width="50" height=(bar) {}
                            text x=(index * 70 + 10) y=(height - bar + 15.0) { (number(*epsilon)) }
                            text x=(index * 70 + 10) y=(height + 40.0) { (month) }
                        }
                    }
                }
                table {
                    tr { th { (session.t(Msg::Month)) } th { (session.t(Msg::Scenario)) } th { (session.t(Msg::Operator)) }
                         th { (session.t(Msg::Dataset)) } th { (session.t(Msg::Runs)) } th { (session.t(Msg::RowsProcessed)) }
                         th { (session.t(Msg::Epsilon)) } th { (session.t(Msg::ModelsReviewed)) } th { (session.t(Msg::Turnaround)) } }
                    @for row in &usage.rows {
                        tr {
                            td { (row.month) } td { (row.authorisation_id) " · " (row.purpose) } td { (row.operator_organisation) }
                            td { (row.dataset) " (" (row.provider_organisation) ")"
                                 @for other in &row.other_dataset_ids { " ⋈ #" (other) } }
                            td { (row.runs) " (" (row.runs_released) " " (session.t(Msg::Released)) ")" }
                            td { (row.rows_processed) } td { (number(row.epsilon_spent)) }
                            td { (row.models_reviewed) "/" (row.models_submitted) }
                            td { (optional(row.review_turnaround_hours_mean)) " / " (optional(row.review_turnaround_hours_max)) }
                        }
                    }
                }
            }
        }
    }
}

/// One budget's line on the chart: its label, its total and ε spent per month.
struct BudgetSeries {
    label: String,
    total: f64,
    spent: std::collections::BTreeMap<String, f64>,
}

/// ε spent per month over some of a usage report's rows.
fn monthly_spent<'a>(rows: impl Iterator<Item = &'a UsageRow>) -> std::collections::BTreeMap<String, f64> {
    let mut spent = std::collections::BTreeMap::new();
    for row in rows {
        *spent.entry(row.month.clone()).or_insert(0.0) += row.epsilon_spent;
    }
    spent
}

/// The scenarios' budgets (when `per_scenario`) or the datasets' lifetime budgets, each as
/// ε spent per month from the usage report.
fn budget_series(catalogue: &[CatalogueEntry], usage: &UsageReport, per_scenario: bool) -> Vec<BudgetSeries> {
    let mut series = Vec::new();
    // A scenario over two departments' data is listed under both datasets: one line for it.
    let mut drawn = std::collections::HashSet::new();
    for dataset in catalogue {
        if per_scenario {
            for grant in dataset.authorisations.iter().filter(|grant| drawn.insert(grant.authorisation_id)) {
                let spent = monthly_spent(
                    usage.rows.iter().filter(|row| row.authorisation_id == grant.authorisation_id && !row.joined_side),
                );
                let label = format!("#{} {} · {}", grant.authorisation_id, grant.operator_organisation, grant.purpose);
                series.push(BudgetSeries { label, total: grant.epsilon_total, spent });
            }
        } else {
            let spent = monthly_spent(usage.rows.iter().filter(|row| row.dataset_id == dataset.id));
            series.push(BudgetSeries {
                label: format!("#{} {}", dataset.id, dataset.name),
                total: dataset.epsilon_total,
                spent,
            });
        }
    }
    series
}

/// Budgets over time: per scenario and per dataset, the share spent by the end of each
/// month, one line each, drawn as SVG (no script).
fn budget_over_time_section(session: &Session, catalogue: &[CatalogueEntry], usage: &UsageReport) -> Markup {
    let scenarios = budget_series(catalogue, usage, true);
    let datasets = budget_series(catalogue, usage, false);
    html! {
        section #budget-over-time {
            h2 { (session.t(Msg::BudgetOverTime)) }
            p.help { (session.t(Msg::BudgetOverTimeHelp)) }
            @if usage.rows.is_empty() { p.empty { (session.t(Msg::Nothing)) } } @else {
                (budget_chart(session, "scenario-budgets", session.t(Msg::PerScenario), &scenarios))
                (budget_chart(session, "dataset-budgets-chart", session.t(Msg::PerDataset), &datasets))
            }
        }
    }
}

/// One chart: months along, share of budget spent (0–100%) up, a line per budget.
fn budget_chart(session: &Session, id: &str, caption: &str, series: &[BudgetSeries]) -> Markup {
    let mut months: Vec<&str> = series.iter().flat_map(|one| one.spent.keys().map(String::as_str)).collect();
    months.sort_unstable();
    months.dedup();
    let (left, top, height, step) = (50.0, 10.0, 150.0, 80.0);
    let y = |share: f64| top + (1.0 - share.clamp(0.0, 1.0)) * height;
    let width = left + step * months.len().max(1) as f64 + 20.0;
    html! {
        figure.budget-chart id=(id) {
            figcaption { (caption) }
            svg.chart width=(width) height=(top + height + 30.0) role="img" aria-label=(caption) {
                @for share in [0.0, 0.5, 1.0] {
                    line.grid x1=(left) x2=(width - 10.0) y1=(y(share)) y2=(y(share)) {}
                    text x="4" y=(y(share) + 4.0) { (format!("{:.0}%", share * 100.0)) }
                }
                @for (index, month) in months.iter().enumerate() {
                    text x=(left + step * index as f64 + 20.0) y=(top + height + 20.0) { (month) }
                }
                @for (index, one) in series.iter().enumerate() {
                    @let points = cumulative_shares(one, &months);
                    @let class = format!("series series-{}", index % 8);
                    // From nothing spent at the left edge, to each month's end.
                    polyline class=(class) data-label=(one.label) points=(std::iter::once(format!("{left:.1},{:.1}", y(0.0)))
                        .chain(points.iter().enumerate()
                            .map(|(index, share)| format!("{:.1},{:.1}", left + step * index as f64 + 40.0, y(*share))))
                        .collect::<Vec<_>>().join(" ")) {}
                    @for (index, share) in points.iter().enumerate() {
                        circle class=(class) cx=(left + step * index as f64 + 40.0) cy=(y(*share)) r="3" {
                            title { (one.label) " " (months[index]) ": " (format!("{:.1}%", share * 100.0)) }
                        }
                    }
                }
            }
            ul.legend {
                @for (index, one) in series.iter().enumerate() {
                    li { span class={ "swatch series-" (index % 8) } {} (one.label) " — "
                         (number(one.spent.values().sum::<f64>())) " / " (number(one.total)) " ε" }
                }
            }
            @if series.is_empty() { p.empty { (session.t(Msg::Nothing)) } }
        }
    }
}

/// The share of a budget spent by the end of each of `months`.
fn cumulative_shares(series: &BudgetSeries, months: &[&str]) -> Vec<f64> {
    let mut spent = 0.0;
    months
        .iter()
        .map(|month| {
            spent += series.spent.get(*month).copied().unwrap_or(0.0);
            if series.total > 0.0 { spent / series.total } else { 0.0 }
        })
        .collect()
}

/// Usage as CSV, for the signed-in user.
pub(super) async fn usage_csv(State(app): State<Arc<App>>, session: Session) -> PageResult {
    let report = app.usage(&session.caller, UsageQuery::default()).await.or_page(&session)?;
    Ok(crate::api::csv_download("sluice-usage.csv", report.to_csv()))
}

/// Alerts as CSV, for regulators.
pub(super) async fn alerts_csv(State(app): State<Arc<App>>, session: Session) -> PageResult {
    let alerts = app.alerts(&session.caller).await.or_page(&session)?;
    Ok(crate::api::csv_download("sluice-alerts.csv", crate::service::alerts_csv(&alerts)))
}

async fn provider_home(app: &App, session: &Session) -> Result<Markup, ConsoleError> {
    let own = session.caller.principal.organisation;
    let catalogue: Vec<CatalogueEntry> = app
        .catalogue(&session.caller)
        .await
        .or_page(session)?
        .into_iter()
        .filter(|entry| entry.provider_organisation_id == own)
        .collect();
    let usage = app.usage(&session.caller, UsageQuery::default()).await.or_page(session)?;
    Ok(html! {
        @if catalogue.is_empty() { p.empty { (session.t(Msg::Nothing)) } }
        @for dataset in &catalogue { (dataset_section(session, dataset)) }
        form.card #new-dataset method="post" action="/console/datasets" {
            h3 { (session.t(Msg::NewDataset)) }
            (session.csrf_field())
            label { (session.t(Msg::SchemaToml)) textarea name="schema" rows="12" required {} }
            label { (session.t(Msg::EpsilonTotal)) input type="text" name="epsilon_total" value="10" required; }
            label { (session.t(Msg::MinGroupSize)) input type="text" name="min_group_size" value="10" required; }
            button type="submit" { (session.t(Msg::Create)) }
        }
        (budget_over_time_section(session, &catalogue, &usage))
        (usage_section(session, &usage))
    })
}

fn dataset_section(session: &Session, dataset: &CatalogueEntry) -> Markup {
    html! {
        section.dataset id={ "dataset-" (dataset.id) } {
            h2 { (dataset.name) " (" (session.t(Msg::Id)) " " (dataset.id) ")"
                 @if dataset.destroyed { " · " (session.t(Msg::Destroyed)) } }
            p { (dataset.description) }
            p { (session.t(Msg::Budget)) ": " (budget_bar(session, dataset.epsilon_spent, dataset.epsilon_total))
                " · " (session.t(Msg::MinGroupSize)) ": " (dataset.min_group_size) }
            h3 { (session.t(Msg::Columns)) }
            table {
                tr { th { (session.t(Msg::Column)) } th { (session.t(Msg::Type)) } th { (session.t(Msg::Classification)) } th { (session.t(Msg::Details)) } }
                @for column in &dataset.columns {
                    tr {
                        td { (column.name) }
                        td { (column.column_type)
                             @if let Some(format) = column.pseudonym_of { " (" (session.t(Msg::PseudonymOf)) " " (format) ")" } }
                        td { span class={ "level level-" (column.classification) } { "L" (column.classification) } }
                        td { (column.description) }
                    }
                }
            }
            h3 { (session.t(Msg::Versions)) }
            table {
                tr { th { (session.t(Msg::Version)) } th { (session.t(Msg::Rows)) } th { (session.t(Msg::Created)) } }
                @for version in &dataset.versions { tr { td { (version.version) } td { (version.rows) } td { (version.created_at) } } }
            }
            h3 { (session.t(Msg::AuthorisedOperators)) }
            table {
                tr { th { (session.t(Msg::Authorisation)) } th { (session.t(Msg::Operator)) } th { (session.t(Msg::Purpose)) } th { (session.t(Msg::Window)) } }
                @for grant in &dataset.authorisations {
                    tr {
                        td { (grant.authorisation_id) } td { (grant.operator_organisation) } td { (grant.purpose) }
                        td { (grant.valid_until) @if grant.revoked { " · " (session.t(Msg::Revoked)) } }
                    }
                }
            }
            @if session.role() == Role::Provider && !dataset.destroyed {
                // The anti-forgery value comes before the file, so it is checked before a
                // byte of the file is read.
                form.card.upload method="post" enctype="multipart/form-data" action={ "/console/datasets/" (dataset.id) "/data" } {
                    (session.csrf_field())
                    label.check { input type="checkbox" name="skip_invalid" value="true"; " " (session.t(Msg::SkipInvalid)) }
                    label { (session.t(Msg::UploadVersion)) input type="file" name="csv" accept=".csv,text/csv" required; }
                    button type="submit" { (session.t(Msg::Upload)) }
                }
                form.danger method="post" action={ "/console/datasets/" (dataset.id) "/destroy" } {
                    (session.csrf_field())
                    label { (session.t(Msg::ConfirmName)) " " input type="text" name="confirm" autocomplete="off"; }
                    button type="submit" { (session.t(Msg::Destroy)) }
                }
            }
        }
    }
}

async fn admin_home(app: &App, session: &Session) -> Result<Markup, ConsoleError> {
    let organisations = app.organisations(&session.caller).await.or_page(session)?;
    let principals = app
        .list_principals(&session.caller, PrincipalListQuery { limit: Some(100), ..Default::default() })
        .await
        .or_page(session)?
        .principals;
    Ok(html! {
        section #organisations {
            h2 { (session.t(Msg::Organisations)) }
            table {
                tr { th { (session.t(Msg::Id)) } th { (session.t(Msg::Name)) } th { (session.t(Msg::Created)) } }
                @for organisation in &organisations { tr { td { (organisation.id.0) } td { (organisation.name) } td { (organisation.created_at) } } }
            }
        }
        form.card #new-organisation method="post" action="/console/organisations" {
            h3 { (session.t(Msg::NewOrganisation)) }
            (session.csrf_field())
            label { (session.t(Msg::Name)) input type="text" name="name" required; }
            button type="submit" { (session.t(Msg::Create)) }
        }
        section #principals {
            h2 { (session.t(Msg::Principals)) }
            table {
                tr { th { (session.t(Msg::Id)) } th { (session.t(Msg::Name)) } th { (session.t(Msg::Role)) }
                     th { (session.t(Msg::Organisation)) } th { (session.t(Msg::Licence)) } th { (session.t(Msg::State)) } th {} }
                @for principal in &principals {
                    tr {
                        td { (principal.id) } td { (principal.name) }
                        td { (principal.role) @if let Some(kind) = &principal.reviewer_kind { " (" (kind) ")" } }
                        td { (principal.organisation_id.0) }
                        td { @if let Some(number) = &principal.licence_number { (number) }
                             @if let Some(until) = &principal.licence_valid_until { " → " (until) } }
                        td {
                            @if principal.disabled { (session.t(Msg::Disabled)) }
                            @else if principal.pending_approval { (session.t(Msg::PendingApproval)) }
                            @else { (session.t(Msg::Active)) }
                        }
                        td {
                            @if principal.pending_approval && !principal.disabled {
                                form.inline method="post" action={ "/console/principals/" (principal.id) "/approve" } {
                                    (session.csrf_field())
                                    button type="submit" { (session.t(Msg::Approve)) }
                                }
                            } @else if !principal.disabled && principal.id.0 != session.caller.principal.id {
                                form.inline method="post" action={ "/console/principals/" (principal.id) "/token" } {
                                    (session.csrf_field())
                                    button.issue-token type="submit" data-principal=(principal.id) { (session.t(Msg::IssueToken)) }
                                }
                                " "
                                form.inline method="post" action={ "/console/principals/" (principal.id) "/disable" } {
                                    (session.csrf_field())
                                    input type="text" name="reason" placeholder=(session.t(Msg::DisableReason)) required;
                                    button.reject type="submit" { (session.t(Msg::DisableAccount)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        form.card #new-principal method="post" action="/console/principals" {
            h3 { (session.t(Msg::NewPrincipal)) }
            (session.csrf_field())
            label { (session.t(Msg::Name)) input type="text" name="name" required; }
            label { (session.t(Msg::Role))
                select name="role" {
                    @for role in [Role::Operator, Role::Reviewer, Role::Provider, Role::Regulator, Role::Admin] {
                        option value=(role.as_str()) { (role_name(role, session.lang)) }
                    }
                }
            }
            label { (session.t(Msg::Organisation))
                select name="organisation_id" {
                    @for organisation in &organisations { option value=(organisation.id.0) { (organisation.name) } }
                }
            }
            label { (session.t(Msg::ReviewerKindLabel))
                select name="reviewer_kind" {
                    option value="" { "—" }
                    @for kind in [ReviewerKind::DataBureau, ReviewerKind::ProvidingDepartment] {
                        option value=(kind.as_str()) { (kind.as_str()) }
                    }
                }
            }
            label { (session.t(Msg::LicenceNumber)) input type="text" name="licence_number"; }
            label { (session.t(Msg::LicenceFrom)) input type="text" name="licence_valid_from" placeholder="2026-01-01T00:00:00Z"; }
            label { (session.t(Msg::LicenceUntil)) input type="text" name="licence_valid_until" placeholder="2027-01-01T00:00:00Z"; }
            button type="submit" { (session.t(Msg::Create)) }
        }
    })
}

/// An application, for its applicant and its reviewers, with the review form when the
/// caller is a reviewer and it awaits a decision.
pub(super) async fn application(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<ApplicationId>,
) -> PageResult {
    let view = app.application(&session.caller, id).await.or_page(&session)?;
    let awaiting = matches!(view.state, "submitted" | "bureau_approved");
    // 一需求一审核, in order: the bureau decides a submitted application, then the department.
    let other_stage = match (session.caller.principal.reviewer_kind, view.state) {
        (Some(ReviewerKind::ProvidingDepartment), "submitted") => Some(Msg::WhyStageBureau),
        (Some(ReviewerKind::DataBureau), "bureau_approved") => Some(Msg::WhyStageDepartment),
        _ => None,
    };
    let body = html! {
        dl {
            dt { (session.t(Msg::State)) } dd #state { (view.state) }
            dt { (session.t(Msg::Dataset)) } dd { (view.dataset_id) }
            dt { (session.t(Msg::Purpose)) } dd { (view.purpose) }
            dt { (session.t(Msg::UseScope)) } dd { (view.use_scope) }
            dt { (session.t(Msg::SecurityMeasures)) } dd { (view.security_measures) }
            dt { (session.t(Msg::Columns)) } dd { (view.columns.join(", ")) }
            @for join in &view.joins {
                dt { (session.t(Msg::JoinedDataset)) }
                dd.joined { (join.dataset_id) ": " (join.columns.join(", ")) }
            }
            dt { (session.t(Msg::Window)) } dd { (view.valid_from) " – " (view.valid_until) }
            dt { (session.t(Msg::EpsilonRequested)) } dd { (number(view.epsilon_requested)) }
            @if let Some(authorisation) = view.authorisation_id { dt { (session.t(Msg::Authorisation)) } dd { (authorisation) } }
        }
        @if session.role() != Role::Reviewer {
            p.why { (session.t(Msg::WhyNoReviewRole)) }
        } @else if !awaiting {
            p.why { (session.t(Msg::WhyNoReviewState)) }
        } @else if let Some(why) = other_stage {
            p.why { (session.t(why)) }
        } @else {
            form.review method="post" action={ "/console/applications/" (view.id) "/review" } {
                (session.csrf_field())
                label { (session.t(Msg::Comment)) textarea name="comment" rows="3" {} }
                label.check { input type="checkbox" name="hold_outputs"; " " (session.t(Msg::HoldOutputs)) }
                button.approve type="submit" name="decision" value="approve" { (session.t(Msg::Approve)) }
                button.reject type="submit" name="decision" value="reject" { (session.t(Msg::Reject)) }
            }
        }
    };
    let title = format!("{} {}", session.t(Msg::Application), view.id);
    Ok(session.page(&title, body))
}

#[derive(Deserialize)]
pub(super) struct ReviewForm {
    csrf: String,
    decision: String,
    #[serde(default)]
    comment: String,
    hold_outputs: Option<String>,
    usability: Option<String>,
    consistency: Option<String>,
    compliance: Option<String>,
    security: Option<String>,
}

impl ReviewForm {
    fn approve(&self, session: &Session) -> Result<bool, ConsoleError> {
        match self.decision.as_str() {
            "approve" | "release" => Ok(true),
            "reject" | "withhold" => Ok(false),
            _ => Err(session.error(ServiceError::invalid("the decision is approve or reject"))),
        }
    }

    fn checklist(&self) -> ReviewChecklist {
        ReviewChecklist {
            usability: self.usability.is_some(),
            consistency: self.consistency.is_some(),
            compliance: self.compliance.is_some(),
            security: self.security.is_some(),
        }
    }
}

pub(super) async fn review_application(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<ApplicationId>,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    let approve = form.approve(&session)?;
    app.review_application(&session.caller, id, approve, &form.comment, form.hold_outputs.is_some())
        .await
        .or_page(&session)?;
    Ok(see_other(&format!("/console/applications/{id}")))
}

/// A model as its reviewers judge it: the manifest, the columns it reads with their
/// classification, the automated review with its dummy run, the checklist and the form.
pub(super) async fn model(State(app): State<Arc<App>>, session: Session, Path(id): Path<ModelId>) -> PageResult {
    let view = app.model_view(&session.caller, id).await.or_page(&session)?;
    // The columns' classification, from the catalogue entry that lists its authorisation.
    let catalogue = app.catalogue(&session.caller).await.or_page(&session)?;
    let dataset = catalogue
        .iter()
        .find(|entry| entry.authorisations.iter().any(|grant| grant.authorisation_id == view.authorisation_id));
    let body = model_body(&session, &view, dataset);
    let title = format!("{} {} · {}", session.t(Msg::Model), view.id, view.name);
    Ok(session.page(&title, body))
}

fn model_body(session: &Session, view: &ModelView, dataset: Option<&CatalogueEntry>) -> Markup {
    let classification = |name: &str| {
        dataset
            .and_then(|dataset| dataset.columns.iter().find(|column| column.name == name))
            .map(|column| column.classification)
    };
    let automated = view.automated_results.as_ref();
    let dummy = automated.map(|results| &results["dummy_run"]);
    html! {
        dl {
            dt { (session.t(Msg::State)) } dd #state { (view.state) }
            dt { (session.t(Msg::Authorisation)) } dd { (view.authorisation_id) }
            dt { (session.t(Msg::Digest)) } dd { code { (view.digest) } }
            dt { (session.t(Msg::EpsilonPerRun)) } dd { (number(view.epsilon_per_run)) }
            @if let Some(group) = &view.manifest.group_by { dt { (session.t(Msg::GroupBy)) } dd { (group) } }
            @if let Some(fuel) = view.manifest.fuel_per_row { dt { (session.t(Msg::FuelPerRow)) } dd { (fuel) } }
        }
        h2 { (session.t(Msg::Inputs)) }
        table #inputs {
            tr { th { (session.t(Msg::Column)) } th { (session.t(Msg::Type)) } th { (session.t(Msg::Classification)) } }
            @for input in &view.manifest.inputs {
                tr {
                    td { (input.name) } td { (wire_name(&input.column_type)) }
                    td { @if let Some(level) = classification(&input.name) { span class={ "level level-" (level) } { "L" (level) } } @else { "—" } }
                }
            }
        }
        h2 { (session.t(Msg::Outputs)) }
        table #outputs {
            tr { th { (session.t(Msg::Name)) } th { (session.t(Msg::Kind)) } th { (session.t(Msg::Bounds)) } th { (session.t(Msg::Epsilon)) } }
            @for output in &view.manifest.outputs {
                tr {
                    td { (output.name) } td { (wire_name(&output.kind)) }
                    td { (optional(output.lower)) " … " (optional(output.upper))
                         @if !output.bins.is_empty() { " [" (output.bins.join(", ")) "]" } }
                    td { (number(output.epsilon)) }
                }
            }
        }
        h2 { (session.t(Msg::AutomatedReview)) }
        @if let Some(results) = automated {
            p { (session.t(Msg::StaticReview)) ": " strong { (results["static_review"].as_str().unwrap_or("?")) } }
            @if let Some(dummy) = dummy {
                p #dummy-run { (session.t(Msg::DummyRun)) " (" (dummy["rows"]) " " (session.t(Msg::DummyRows)) "): "
                    strong { @if dummy["outcome"] == "passed" { (session.t(Msg::Passed)) } @else {
                        (session.t(Msg::Failed)) " · " (dummy["code"].as_str().unwrap_or("")) } } }
                @if let Some(compared) = dummy["compared"].as_array() {
                    table #dummy-comparison {
                        tr { th { (session.t(Msg::Name)) } th { (session.t(Msg::Exact)) } th { (session.t(Msg::Noisy)) } th { (session.t(Msg::Interval)) } }
                        @for output in compared {
                            tr {
                                td { (output["name"].as_str().unwrap_or("")) }
                                td { (optional(output["exact"].as_f64())) }
                                td { (optional(output["noisy"].as_f64())) }
                                td { "± " (optional(output["ci95_half_width"].as_f64())) }
                            }
                        }
                    }
                }
            }
        } @else { p.empty { (session.t(Msg::Nothing)) } }
        details { summary { (session.t(Msg::ManifestText)) } pre { (view.manifest.toml) } }
        h2 { (session.t(Msg::Checklist)) }
        @if session.role() != Role::Reviewer {
            p.why { (session.t(Msg::WhyNoReviewRole)) }
        } @else if view.state != "submitted" {
            p.why { (session.t(Msg::WhyNoReviewState)) }
        } @else {
            form.review #model-review method="post" action={ "/console/models/" (view.id) "/review" } {
                (session.csrf_field())
                @for (name, label) in [("usability", Msg::CheckUsability), ("consistency", Msg::CheckConsistency),
                                       ("compliance", Msg::CheckCompliance), ("security", Msg::CheckSecurity)] {
                    label.check { input type="checkbox" name=(name) id={ "check-" (name) }; " " (session.t(label)) }
                }
                label { (session.t(Msg::Comment)) textarea name="comment" rows="3" {} }
                button.approve #approve type="submit" name="decision" value="approve" { (session.t(Msg::Approve)) }
                button.reject #reject type="submit" name="decision" value="reject" { (session.t(Msg::Reject)) }
            }
        }
    }
}

pub(super) async fn review_model(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<ModelId>,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    let approve = form.approve(&session)?;
    let checklist = approve.then(|| form.checklist());
    app.review_model(&session.caller, id, approve, &form.comment, checklist).await.or_page(&session)?;
    Ok(see_other(&format!("/console/models/{id}")))
}

guarded!(ReviewForm, RunForm, DestroyForm, DisableForm);

#[derive(Deserialize)]
pub(super) struct RunForm {
    csrf: String,
    authorisation_id: AuthorisationId,
    model_id: ModelId,
}

/// Runs an approved model; the answer comes once the result is visible.
pub(super) async fn start_run(
    State(app): State<Arc<App>>,
    session: Session,
    form: Result<Form<RunForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    let view = app.run(&session.caller, form.authorisation_id, form.model_id).await.or_page(&session)?;
    Ok(see_other(&format!("/console/runs/{}", view.run_id)))
}

/// A run's result: each output with its 95% interval, the budget, and the receipt.
pub(super) async fn run(State(app): State<Arc<App>>, session: Session, Path(id): Path<RunId>) -> PageResult {
    let view = match app.run_result(&session.caller, id).await {
        Ok(view) => view,
        // Not visible yet: say when, without a number of the release.
        Err(ServiceError::Conflict(message)) => {
            let body = html! { p #pending { (session.t(Msg::Pending)) " " (message) } };
            let title = format!("{} {}", session.t(Msg::Run), id);
            return Ok(session.page(&title, body));
        }
        Err(error) => return Err(session.error(error)),
    };
    let title = format!("{} {}", session.t(Msg::Run), id);
    Ok(session.page(&title, run_body(&session, &view)))
}

fn run_body(session: &Session, view: &RunView) -> Markup {
    let receipt = view.receipt.as_ref().and_then(|receipt| serde_json::to_string_pretty(receipt).ok());
    html! {
        dl {
            dt { (session.t(Msg::State)) } dd #state { (wire_name(&view.state)) }
            dt { (session.t(Msg::Version)) } dd { (view.dataset_version) }
            dt { (session.t(Msg::Rows)) } dd { (view.rows) }
            dt { (session.t(Msg::EpsilonCharged)) } dd { (number(view.epsilon_charged)) }
            dt { (session.t(Msg::Budget)) } dd { (number(view.authorisation_epsilon_remaining)) " " (session.t(Msg::Left)) }
        }
        @if !view.outputs.is_empty() {
            table #results {
                tr { th { (session.t(Msg::Name)) } th { (session.t(Msg::Kind)) } th { (session.t(Msg::Value)) } th { (session.t(Msg::Interval)) } th { (session.t(Msg::Epsilon)) } }
                @for output in &view.outputs { (output_rows(session, output)) }
            }
        }
        @if session.role() == Role::Reviewer && wire_name(&view.state) == "held" {
            form.review method="post" action={ "/console/runs/" (view.run_id) "/review" } {
                (session.csrf_field())
                label { (session.t(Msg::Comment)) textarea name="comment" rows="3" {} }
                button.approve type="submit" name="decision" value="release" { (session.t(Msg::Release)) }
                button.reject type="submit" name="decision" value="withhold" { (session.t(Msg::Withhold)) }
            }
        }
        @if let Some(receipt) = receipt {
            details #receipt { summary { (session.t(Msg::Receipt)) } p.help { (session.t(Msg::ReceiptHelp)) } pre { (receipt) } }
        }
    }
}

fn output_rows(session: &Session, output: &ReleasedOutput) -> Markup {
    html! {
        tr.output {
            td { (output.name) } td { (output.kind) " · " (output.mechanism) }
            td.value { (optional(output.value)) } td { "± " (number(output.ci95_half_width)) } td { (number(output.epsilon)) }
        }
        @for bin in output.bins.iter().flatten() {
            tr.part { td { "  " (bin.label) } td {} td { @if bin.suppressed { (session.t(Msg::Suppressed)) } @else { (optional(bin.count)) } } td {} td {} }
        }
        @for group in output.groups.iter().flatten() {
            tr.part {
                td { "  " (group.label) } td {}
                td { @if group.suppressed { (session.t(Msg::Suppressed)) } @else { (optional(group.value)) } }
                td { @if let Some(width) = group.ci95_half_width { "± " (number(width)) } } td {}
            }
        }
    }
}

pub(super) async fn review_result(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<RunId>,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    let approve = form.approve(&session)?;
    app.review_result(&session.caller, id, approve, &form.comment).await.or_page(&session)?;
    Ok(see_other(&format!("/console/runs/{id}")))
}

/// The audit trail's filters, as the search API takes them (empty fields are no filter).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditFilter {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor_id: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

impl AuditFilter {
    fn query(&self, session: &Session) -> Result<AuditQuery, ConsoleError> {
        let text = |value: &str| Some(value.trim().to_owned()).filter(|value| !value.is_empty());
        let actor_id = match text(&self.actor_id) {
            Some(id) => Some(
                id.parse().map_err(|_| session.error(ServiceError::invalid(format!("`{id}` is not an actor id"))))?,
            ),
            None => None,
        };
        Ok(AuditQuery {
            actor_id,
            action: text(&self.action),
            object: text(&self.object),
            outcome: text(&self.outcome),
            since: text(&self.since),
            until: text(&self.until),
            limit: Some(100_000),
            ..Default::default()
        })
    }
}

fn entries_table<'a>(session: &Session, entries: impl Iterator<Item = &'a sluice_audit::AuditEntry>) -> Markup {
    html! {
        table.entries {
            tr { th { "#" } th { (session.t(Msg::Time)) } th { (session.t(Msg::Actor)) } th { (session.t(Msg::Action)) }
                 th { (session.t(Msg::Object)) } th { (session.t(Msg::Outcome)) } th { (session.t(Msg::Reason)) } }
            @for entry in entries {
                tr class={ "entry outcome-" (wire_name(&entry.outcome)) } {
                    td { a href={ "/console/audit/entries/" (entry.seq) } { (entry.seq) } }
                    td { (entry.time) }
                    td { @if let Some(actor) = entry.actor_id { (actor) " " } (entry.role) }
                    td.action { (entry.action) } td { (entry.object) } td { (wire_name(&entry.outcome)) } td { (entry.reason) }
                }
            }
        }
    }
}

/// The regulator's audit trail, filtered, newest first.
pub(super) async fn audit(
    State(app): State<Arc<App>>,
    session: Session,
    filter: Result<Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Query(filter) = filter
        .map_err(|rejection| session.error(ServiceError::invalid(format!("the filters: {}", rejection.body_text()))))?;
    let entries = app.search_audit(&session.caller, filter.query(&session)?).await.or_page(&session)?;
    let checkpoint = app.checkpoint(&session.caller, false).await.or_page(&session)?;
    let witnesses = app.witness_status(&session.caller).await.or_page(&session)?;
    let body = html! {
        form.filters method="get" action="/console/audit" {
            fieldset {
                legend { (session.t(Msg::Filters)) }
                label { (session.t(Msg::Action)) input type="text" name="action" value=(filter.action) placeholder="run.release"; }
                label { (session.t(Msg::Actor)) input type="text" name="actor_id" value=(filter.actor_id); }
                label { (session.t(Msg::Object)) input type="text" name="object" value=(filter.object) placeholder="model:"; }
                label { (session.t(Msg::Outcome))
                    select name="outcome" {
                        @for outcome in ["", "ok", "denied", "failed"] {
                            option value=(outcome) selected[filter.outcome == outcome] { (outcome) }
                        }
                    }
                }
                label { (session.t(Msg::Since)) input type="text" name="since" value=(filter.since); }
                label { (session.t(Msg::Until)) input type="text" name="until" value=(filter.until); }
                button #search type="submit" { (session.t(Msg::Search)) }
            }
        }
        p { a href="/console/audit/export" download { (session.t(Msg::Export)) } }
        section #checkpoint {
            h2 { (session.t(Msg::Checkpoint)) }
            pre { (checkpoint.checkpoint) }
        }
        (witnesses_section(&session, &witnesses))
        section {
            h2 { (session.t(Msg::Entries)) " (" (entries.len()) ")" }
            p.help { (session.t(Msg::ShowingLatest)) }
            (entries_table(&session, entries.iter().rev().take(AUDIT_SHOWN)))
        }
    };
    Ok(session.page(session.t(Msg::AuditTrail), body))
}

/// Which witness cosigned how far, against the latest checkpoint.
fn witnesses_section(session: &Session, report: &WitnessReport) -> Markup {
    html! {
        section #witnesses {
            h2 { (session.t(Msg::Witnesses)) }
            p.help { (session.t(Msg::WitnessesHelp)) }
            @if report.witnesses.is_empty() { p.empty { (session.t(Msg::NoWitnesses)) } } @else {
                table {
                    tr { th { (session.t(Msg::Witness)) } th { (session.t(Msg::Accepted)) } th { (session.t(Msg::Cosignatures)) }
                         th { (session.t(Msg::LatestCosigned)) } th { (session.t(Msg::State)) } }
                    @for witness in &report.witnesses {
                        tr.witness data-witness=(witness.name) {
                            td { (witness.name) }
                            td { (session.t(if witness.accepted { Msg::Yes } else { Msg::No })) }
                            td { (witness.cosignatures) }
                            td { @if let (Some(size), Some(at)) = (witness.latest_size, &witness.latest_at) { (size) ", " (at) } @else { "—" } }
                            td {
                                @if witness.entries_behind == 0 { span.ok { (session.t(Msg::UpToDate)) } }
                                @else { span.behind { (witness.entries_behind) " " (session.t(Msg::EntriesBehind)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One entry with its inclusion proof against the latest checkpoint.
pub(super) async fn audit_entry(State(app): State<Arc<App>>, session: Session, Path(seq): Path<u64>) -> PageResult {
    let query = AuditQuery { limit: Some(100_000), ..Default::default() };
    let entries = app.search_audit(&session.caller, query).await.or_page(&session)?;
    let Some(entry) = entries.into_iter().find(|entry| entry.seq == seq) else {
        return Err(session.error(ServiceError::NotFound { what: "audit entry", id: i64::try_from(seq).unwrap_or(-1) }));
    };
    let checkpoint = app.checkpoint(&session.caller, false).await.or_page(&session)?;
    let proof = if seq >= 1 && seq <= checkpoint.size {
        Some(app.inclusion(&session.caller, seq, checkpoint.size).await.or_page(&session)?)
    } else {
        None
    };
    let entry_json = serde_json::to_string_pretty(&entry).unwrap_or_default();
    let body = html! {
        pre #entry { (entry_json) }
        h2 { (session.t(Msg::InclusionProof)) }
        @if let Some(proof) = proof {
            p { (session.t(Msg::Checkpoint)) ": " (checkpoint.size) }
            ol.proof { @for hash in &proof.proof { li { code { (hash) } } } }
            p.help { (session.t(Msg::VerifyOffline)) }
        } @else {
            p { (session.t(Msg::NotCovered)) }
        }
    };
    let title = format!("{} {}", session.t(Msg::Entry), seq);
    Ok(session.page(&title, body))
}

/// The whole log as the API exports it, as a download.
pub(super) async fn audit_export(State(app): State<Arc<App>>, session: Session) -> PageResult {
    let text = app.export_audit(&session.caller).await.or_page(&session)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"sluice-audit.ndjson\""),
        ],
        text,
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct DestroyForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// Destroys a dataset once its provider has typed its name.
pub(super) async fn destroy_dataset(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<DatasetId>,
    form: Result<Form<DestroyForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    let dataset = app.catalogue_entry(&session.caller, id).await.or_page(&session)?;
    if dataset.name != form.confirm.trim() {
        return Err(session.error(ServiceError::invalid(session.t(Msg::ConfirmMismatch))));
    }
    app.destroy_dataset(&session.caller, id).await.or_page(&session)?;
    Ok(see_other("/console"))
}

/// A new token for an account (the old one is revoked at once), shown once on this page.
pub(super) async fn issue_token(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<PrincipalId>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> PageResult {
    accepted(&session, form)?;
    let created = app.issue_token(&session.caller, id).await.or_page(&session)?;
    Ok(token_shown_once(&session, &created.token))
}

#[derive(Deserialize)]
pub(super) struct DisableForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// Disables an account for good, with its reason.
pub(super) async fn disable_principal(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<PrincipalId>,
    form: Result<Form<DisableForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    app.disable_principal(&session.caller, id, form.reason.trim()).await.or_page(&session)?;
    Ok(see_other("/console"))
}

#[derive(Deserialize)]
pub(super) struct DatasetForm {
    csrf: String,
    #[serde(default)]
    schema: String,
    epsilon_total: f64,
    min_group_size: u32,
}

guarded!(DatasetForm);

/// A provider registers a dataset from its schema (TOML).
pub(super) async fn register_dataset(
    State(app): State<Arc<App>>,
    session: Session,
    form: Result<Form<DatasetForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    let request =
        NewDataset { schema: form.schema, epsilon_total: form.epsilon_total, min_group_size: form.min_group_size };
    let id = app.register_dataset(&session.caller, request).await.or_page(&session)?;
    Ok(see_other(&format!("/console#dataset-{id}")))
}

/// A field of the upload form that is not the file: small, read whole.
const UPLOAD_FIELD_BYTES: u64 = 1024;

/// A provider uploads a new version of a dataset as CSV from a multipart form. The
/// anti-forgery value must come first; the file is then streamed into the same ingest as
/// `PUT /v1/datasets/{id}/data` (bounded in size and idle time, encrypted as it arrives).
pub(super) async fn upload_version(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<DatasetId>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> PageResult {
    let invalid = |what: String| session.error(ServiceError::invalid(what));
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| multer::parse_boundary(value).ok())
        .ok_or_else(|| invalid("the upload is not a multipart form (multipart/form-data)".into()))?;
    let limits =
        multer::SizeLimit::new().for_field("csrf", UPLOAD_FIELD_BYTES).for_field("skip_invalid", UPLOAD_FIELD_BYTES);
    let constraints = multer::Constraints::new().allowed_fields(vec!["csrf", "skip_invalid", "csv"]).size_limit(limits);
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut csrf: Option<String> = None;
    let mut skip_invalid = false;
    loop {
        let field = form.next_field().await.map_err(|error| invalid(format!("the upload form: {error}")))?;
        let Some(field) = field else {
            return Err(invalid("the upload form has no CSV file (field `csv`)".into()));
        };
        match field.name() {
            Some("csrf") => {
                csrf = Some(field.text().await.map_err(|error| invalid(format!("the upload form: {error}")))?)
            }
            Some("skip_invalid") => skip_invalid = true,
            _ => {
                // The file: nothing of it is read unless this session sent the form.
                session.check_csrf(csrf.as_deref().unwrap_or_default())?;
                let reader = crate::api::BodyReader::spawn(axum::body::Body::from_stream(field));
                let summary = app.ingest(&session.caller, id, reader, skip_invalid, |_| {}).await.or_page(&session)?;
                let body = html! {
                    dl #ingested {
                        dt { (session.t(Msg::Dataset)) } dd { (summary.dataset_id) }
                        dt { (session.t(Msg::Version)) } dd { (summary.version) }
                        dt { (session.t(Msg::Rows)) } dd { (summary.rows) }
                        dt { (session.t(Msg::SkipInvalid)) } dd { (summary.skipped) }
                    }
                    @if !summary.skipped_examples.is_empty() {
                        ul { @for example in &summary.skipped_examples { li { (example) } } }
                    }
                    p { a href={ "/console#dataset-" (id) } { (session.t(Msg::Back)) } }
                };
                return Ok(session.page(session.t(Msg::Ingested), body));
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct OrganisationForm {
    csrf: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
pub(super) struct PrincipalForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    organisation_id: i64,
    #[serde(default)]
    reviewer_kind: String,
    #[serde(default)]
    licence_number: String,
    #[serde(default)]
    licence_valid_from: String,
    #[serde(default)]
    licence_valid_until: String,
}

guarded!(OrganisationForm, PrincipalForm);

/// An administrator creates an organisation.
pub(super) async fn create_organisation(
    State(app): State<Arc<App>>,
    session: Session,
    form: Result<Form<OrganisationForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    app.create_organisation(&session.caller, &form.name).await.or_page(&session)?;
    Ok(see_other("/console#organisations"))
}

/// An administrator creates an account: its token is shown once, or it waits for a
/// second administrator (the two-person rule) who is shown it on approval.
pub(super) async fn create_principal(
    State(app): State<Arc<App>>,
    session: Session,
    form: Result<Form<PrincipalForm>, FormRejection>,
) -> PageResult {
    let form = accepted(&session, form)?;
    let present = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
    let licence =
        match (present(&form.licence_number), present(&form.licence_valid_from), present(&form.licence_valid_until)) {
            (None, None, None) => None,
            (Some(number), Some(valid_from), Some(valid_until)) => {
                Some(LicenceRequest { number, valid_from, valid_until })
            }
            _ => {
                return Err(session.error(ServiceError::invalid(
                    "a licence needs its number, valid from and valid until, or none of them",
                )));
            }
        };
    let request = NewPrincipalRequest {
        name: form.name.trim().to_owned(),
        role: form.role,
        organisation_id: OrganisationId(form.organisation_id),
        reviewer_kind: present(&form.reviewer_kind),
        licence,
    };
    match app.create_principal(&session.caller, request).await.or_page(&session)? {
        PrincipalCreation::Active(created) => Ok(token_shown_once(&session, &created.token)),
        PrincipalCreation::Pending { .. } => {
            let body = html! {
                p #pending-created { (session.t(Msg::PendingCreated)) }
                p { a href="/console#principals" { (session.t(Msg::Back)) } }
            };
            Ok(session.page(session.t(Msg::Done), body))
        }
    }
}

/// A page with a new token on it, once; never cached.
fn token_shown_once(session: &Session, token: &str) -> axum::response::Response {
    let body = html! {
        p { (session.t(Msg::TokenShownOnce)) }
        pre #new-token { (token) }
        p { a href="/console" { (session.t(Msg::Back)) } }
    };
    let mut response = session.page(session.t(Msg::Done), body);
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// A second administrator approves an account; its token is shown once, on this page.
pub(super) async fn approve_principal(
    State(app): State<Arc<App>>,
    session: Session,
    Path(id): Path<PrincipalId>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> PageResult {
    accepted(&session, form)?;
    let created = app.approve_principal(&session.caller, id).await.or_page(&session)?;
    Ok(token_shown_once(&session, &created.token))
}

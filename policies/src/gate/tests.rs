//! The one decision point as a table: role × action × object state × relation to the
//! caller, every cell written out so a change of policy is a visible diff; then a looser
//! and a stricter administrator policy, each of which must change exactly the cells
//! expected and nothing else.

use std::collections::BTreeMap;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::procedure::Licence;
use crate::roles::ReviewerKind;

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

const PLATFORM_ORG: OrganisationId = OrganisationId(10);
const TRAFFIC_POLICE: OrganisationId = OrganisationId(20);
const TAX: OrganisationId = OrganisationId(21);
const QIANBEI: OrganisationId = OrganisationId(30);
const OTHER_OPERATOR: OrganisationId = OrganisationId(31);
const BIG_DATA_BUREAU: OrganisationId = OrganisationId(40);
const CYBERSPACE: OrganisationId = OrganisationId(50);

const ADMIN: i64 = 1;
const PROVIDER: i64 = 2;
const OPERATOR: i64 = 4;
const BUREAU: i64 = 7;

fn principal(id: i64, role: Role, organisation: OrganisationId, kind: Option<ReviewerKind>) -> Principal {
    Principal { id, role, organisation, reviewer_kind: kind, licence: None }
}

fn licensed(mut operator: Principal, valid: bool) -> Principal {
    let valid_until = if valid { NOW + Duration::days(300) } else { NOW - Duration::days(1) };
    operator.licence =
        Some(Licence { number: "ZY-2026-001".into(), valid_from: NOW - Duration::days(30), valid_until });
    operator
}

/// The columns of the table: who asks.
fn callers() -> Vec<(&'static str, Principal)> {
    use ReviewerKind::*;
    vec![
        ("admin", principal(ADMIN, Role::Admin, PLATFORM_ORG, None)),
        ("provider (owner)", principal(PROVIDER, Role::Provider, TRAFFIC_POLICE, None)),
        ("another provider", principal(3, Role::Provider, TAX, None)),
        ("operator (owner)", licensed(principal(OPERATOR, Role::Operator, QIANBEI, None), true)),
        ("another operator", licensed(principal(5, Role::Operator, OTHER_OPERATOR, None), true)),
        ("owner, licence expired", licensed(principal(OPERATOR, Role::Operator, QIANBEI, None), false)),
        ("bureau reviewer", principal(BUREAU, Role::Reviewer, BIG_DATA_BUREAU, Some(DataBureau))),
        ("providing dept reviewer", principal(8, Role::Reviewer, TRAFFIC_POLICE, Some(ProvidingDepartment))),
        ("other dept reviewer", principal(9, Role::Reviewer, TAX, Some(ProvidingDepartment))),
        ("reviewer of operator's org", principal(10, Role::Reviewer, QIANBEI, Some(DataBureau))),
        ("regulator", principal(11, Role::Regulator, CYBERSPACE, None)),
    ]
}

fn application(state: ApplicationState, bureau_reviewer: Option<i64>) -> Resource {
    Resource::Application {
        id: 1,
        owner: OPERATOR,
        organisation: QIANBEI,
        provider_organisations: vec![TRAFFIC_POLICE],
        pending_providers: vec![TRAFFIC_POLICE],
        state,
        bureau_reviewer,
    }
}

fn run(outputs_held: bool) -> Resource {
    Resource::Run {
        id: 1,
        owner: OPERATOR,
        organisation: QIANBEI,
        provider_organisations: vec![TRAFFIC_POLICE],
        outputs_held,
        state: if outputs_held { "held" } else { "released" }.into(),
    }
}

/// The rows: an action on an object in a state. A principal acted on is the operator,
/// created by `created_by`; `None` for the target means the caller itself.
fn rows() -> Vec<(String, Action, Option<Resource>)> {
    use Action::*;
    let account = |created_by: i64| Resource::Principal {
        principal: licensed(principal(OPERATOR, Role::Operator, QIANBEI, None), true),
        created_by: Some(created_by),
    };
    let dataset = Resource::Dataset { id: 1, owner: PROVIDER, organisation: TRAFFIC_POLICE, destroyed: false };
    let model = Resource::Model { id: 1, owner: OPERATOR, organisation: QIANBEI, state: ModelState::Submitted };
    let authorisation = Resource::Authorisation {
        id: 1,
        owner: OPERATOR,
        organisation: QIANBEI,
        providers: vec![PROVIDER],
        provider_organisations: vec![TRAFFIC_POLICE],
        revoked: false,
    };
    let mut rows = Vec::new();
    let mut row = |label: &str, action: Action, resource: Option<Resource>| {
        rows.push((format!("{} on {label}", action.as_str()), action, resource));
    };
    for action in [
        CreatePrincipal,
        RotateKeys,
        CreateOrganisation,
        ReadOrganisations,
        ReadCatalogue,
        RegisterDataset,
        ExportAudit,
        RotateOwnToken,
    ] {
        row("platform", action, Some(Resource::Platform));
    }
    for action in [IssueToken, RevokeToken, DisablePrincipal, ApprovePrincipal, ReadPrincipal] {
        row("an account the admin created", action, Some(account(ADMIN)));
    }
    row("an account another admin created", ApprovePrincipal, Some(account(12)));
    row("the caller itself", DisablePrincipal, None);
    row("the caller itself", ReadPrincipal, None);
    row("an organisation", RenameOrganisation, Some(Resource::Organisation(QIANBEI)));
    for action in [IngestDataset, DestroyDataset, SubmitApplication] {
        row("a dataset", action, Some(dataset.clone()));
    }
    for action in [ReviewApplication, ReadApplication, WithdrawApplication, SubmitApplication] {
        row("a submitted application", action, Some(application(ApplicationState::Submitted, None)));
    }
    row(
        "a bureau-approved application",
        ReviewApplication,
        Some(application(ApplicationState::BureauApproved, Some(BUREAU))),
    );
    row("a draft application", ReviewApplication, Some(application(ApplicationState::Draft, None)));
    for action in [ReviewModel, RevokeModel, ReadModel] {
        row("a submitted model", action, Some(model.clone()));
    }
    for action in [SubmitModel, RunModel, ReadBudget, RevokeAuthorisation] {
        row("an authorisation", action, Some(authorisation.clone()));
    }
    for action in [ReadResult, ReviewResult] {
        row("a held run", action, Some(run(true)));
    }
    for action in [ReadResult, ReviewResult] {
        row("a released run", action, Some(run(false)));
    }
    rows
}

/// One letter per outcome: `.` allowed, else the denial's code.
fn letter(outcome: &Result<(), Denial>) -> char {
    match outcome {
        Ok(()) => '.',
        Err(denial) => match denial.reason {
            DenialReason::WrongRole => 'r',
            DenialReason::LicenceExpired => 'l',
            DenialReason::SelfReview => 's',
            DenialReason::WrongReviewer => 'w',
            DenialReason::AuthorisationNotYours => 'n',
            DenialReason::TwoPersonRule => 't',
            DenialReason::Forbidden => 'f',
            other => panic!("unexpected reason {other:?}"),
        },
    }
}

fn matrix(gate: &PolicyGate) -> BTreeMap<String, String> {
    let callers = callers();
    rows()
        .into_iter()
        .map(|(label, action, resource)| {
            let cells = callers
                .iter()
                .map(|(_, caller)| {
                    let resource = resource
                        .clone()
                        .unwrap_or_else(|| Resource::Principal { principal: caller.clone(), created_by: None });
                    letter(&gate.decide(caller, NOW, action, &resource))
                })
                .collect();
            (label, cells)
        })
        .collect()
}

/// The default policies, cell by cell. Columns, in order: admin, provider (owner), another
/// provider, operator (owner), another operator, owner with an expired licence, bureau
/// reviewer, providing department's reviewer, another department's reviewer, a reviewer
/// of the operator's own organisation, regulator.
const DEFAULT: &[(&str, &str)] = &[
    ("principal.create on platform", ".rrrrrrrrrr"),
    ("keys.rotate on platform", ".rrrrrrrrrr"),
    ("organisation.create on platform", ".rrrrrrrrrr"),
    ("organisation.read on platform", "..........."),
    ("catalogue.read on platform", "..........."),
    ("dataset.register on platform", "r..rrrrrrrr"),
    ("audit.export on platform", "rrrrrrrrrr."),
    ("token.rotate on platform", "..........."),
    ("principal.token.issue on an account the admin created", ".rrrrrrrrrr"),
    ("principal.token.revoke on an account the admin created", ".rrrrrrrrrr"),
    ("principal.disable on an account the admin created", ".rrrrrrrrrr"),
    ("principal.approve on an account the admin created", "trrrrrrrrrr"),
    ("principal.approve on an account another admin created", ".rrrrrrrrrr"),
    ("principal.disable on the caller itself", "rrrrrrrrrrr"),
    ("principal.read on an account the admin created", ".rr.r.rrrrr"),
    ("principal.read on the caller itself", "..........."),
    ("organisation.rename on an organisation", ".rrrrrrrrrr"),
    ("dataset.ingest on a dataset", "r.rrrrrrrrr"),
    ("dataset.destroy on a dataset", "r.rrrrrrrrr"),
    ("application.submit on a dataset", "rrr..lrrrrr"),
    ("application.review on a submitted application", "rrrrrr.wwsr"),
    ("application.read on a submitted application", "rrr.rl...sr"),
    ("application.withdraw on a submitted application", "rrr.rlrrrrr"),
    ("application.submit on a submitted application", "rrr.rlrrrrr"),
    ("application.review on a bureau-approved application", "rrrrrrw.wsr"),
    ("application.review on a draft application", "rrrrrr...sr"),
    ("model.review on a submitted model", "rrrrrr...sr"),
    ("model.revoke on a submitted model", "rrrrrr...sr"),
    ("model.read on a submitted model", "rrr.rl...sr"),
    ("model.submit on an authorisation", "rrr.nlrrrrr"),
    ("run.start on an authorisation", "rrr.nlrrrrr"),
    ("budget.read on an authorisation", "r.n.nlrrrr."),
    ("authorisation.revoke on an authorisation", "r.rrrr..r.r"),
    ("result.read on a held run", "rrr.nlw.wsr"),
    ("result.review on a held run", "rrrrrrw.wsr"),
    ("result.read on a released run", "rrr.nlwwwsr"),
    ("result.review on a released run", "rrrrrrw.wsr"),
];

fn expected_default() -> BTreeMap<String, String> {
    DEFAULT.iter().map(|(label, cells)| (label.to_string(), cells.to_string())).collect()
}

/// The cells where two tables differ: (row, caller, before, after).
fn differences(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<(String, &'static str, char, char)> {
    let callers = callers();
    let mut changed = Vec::new();
    for (label, cells) in before {
        for ((old, new), (caller, _)) in cells.chars().zip(after[label].chars()).zip(&callers) {
            if old != new {
                changed.push((label.clone(), *caller, old, new));
            }
        }
    }
    changed
}

#[test]
fn every_cell_of_the_default_policies() {
    let gate = PolicyGate::default_policies().expect("the default policies validate");
    let actual = matrix(&gate);
    let expected = expected_default();
    assert!(
        differences(&expected, &actual).is_empty(),
        "cells that differ from the table: {:#?}",
        differences(&expected, &actual)
    );
    // Every action appears in the table.
    for action in Action::ALL {
        assert!(DEFAULT.iter().any(|(label, _)| label.starts_with(&format!("{} on", action.as_str()))), "{action:?}");
    }
}

#[test]
fn a_looser_policy_changes_exactly_its_cells() {
    // The administrator lets regulators read results directly, and lets the data bureau
    // (from outside the operator's organisation) release held results too.
    let held_rule = "principal.role == \"reviewer\" &&\n  (principal.reviewer_kind != \"providing_department\" \
                     || !resource.provider_organisations.contains(principal.organisation))";
    assert_eq!(DEFAULT_POLICIES.matches(held_rule).count(), 1);
    let looser = DEFAULT_POLICIES
        .replace(held_rule, &format!("{held_rule} && principal.reviewer_kind != \"data_bureau\""))
        + r#"
permit (principal, action == Sluice::Action::"result.read", resource) when { principal.role == "regulator" };
"#;
    let gate = PolicyGate::new(&looser).expect("the looser set validates");
    let changed = differences(&expected_default(), &matrix(&gate));
    let expected = vec![
        ("result.read on a held run".to_string(), "bureau reviewer", 'w', '.'),
        ("result.read on a held run".to_string(), "regulator", 'r', '.'),
        ("result.read on a released run".to_string(), "regulator", 'r', '.'),
        ("result.review on a held run".to_string(), "bureau reviewer", 'w', '.'),
        ("result.review on a released run".to_string(), "bureau reviewer", 'w', '.'),
    ];
    assert_eq!(changed, expected);
}

#[test]
fn a_stricter_policy_changes_exactly_its_cells() {
    // The administrator has models reviewed by the data bureau only, and shuts operators
    // whose licence lapsed out of the catalogue too (a forbid without a reason of its own).
    let stricter = format!(
        "{DEFAULT_POLICIES}{}",
        r#"
@reason("wrong_reviewer")
@message("only the data bureau reviews models")
forbid (principal, action in [Sluice::Action::"model.review", Sluice::Action::"model.revoke"], resource)
when { principal.role == "reviewer" && principal.reviewer_kind != "data_bureau" };

forbid (principal, action == Sluice::Action::"catalogue.read", resource)
when { principal.role == "operator" && !principal.licensed };
"#
    );
    let gate = PolicyGate::new(&stricter).expect("the stricter set validates");
    let changed = differences(&expected_default(), &matrix(&gate));
    let expected = vec![
        ("catalogue.read on platform".to_string(), "owner, licence expired", '.', 'f'),
        ("model.review on a submitted model".to_string(), "providing dept reviewer", '.', 'w'),
        ("model.review on a submitted model".to_string(), "other dept reviewer", '.', 'w'),
        ("model.revoke on a submitted model".to_string(), "providing dept reviewer", '.', 'w'),
        ("model.revoke on a submitted model".to_string(), "other dept reviewer", '.', 'w'),
    ];
    assert_eq!(changed, expected);
    // The forbid without a reason names itself.
    let lapsed = &callers()[5].1;
    let denial = gate.decide(lapsed, NOW, Action::ReadCatalogue, &Resource::Platform).expect_err("forbidden");
    assert!(denial.message.contains("forbids catalogue.read"), "{denial}");
}

#[test]
fn denials_carry_the_policy_message_and_the_licence_names_itself() {
    let gate = PolicyGate::default_policies().expect("valid");
    let callers = callers();
    let denial = gate
        .decide(&callers[9].1, NOW, Action::ReviewModel, &rows()[26].2.clone().expect("a model"))
        .expect_err("own organisation");
    assert_eq!(
        denial.to_string(),
        "self_review: nobody reviews or reads for review what their own organisation submitted"
    );
    let lapsed = &callers[5].1;
    let denial = gate.decide(lapsed, NOW, Action::RunModel, &rows()[30].2.clone().expect("an authorisation"));
    assert_eq!(
        denial.expect_err("lapsed").to_string(),
        "licence_expired: licence ZY-2026-001 is not valid at this time"
    );
    let regulator = &callers[10].1;
    let denial = gate.decide(regulator, NOW, Action::RunModel, &rows()[30].2.clone().expect("an authorisation"));
    assert_eq!(
        denial.expect_err("role").to_string(),
        "wrong_role: the regulator role may not perform run.start on this object"
    );
}

#[test]
fn the_wrong_kind_of_object_is_denied() {
    // A handler that passed the platform for an action on a dataset would be refused: the
    // request does not validate against the schema.
    let gate = PolicyGate::default_policies().expect("valid");
    let provider = &callers()[1].1;
    assert!(gate.decide(provider, NOW, Action::IngestDataset, &Resource::Platform).is_err());
    assert!(gate.decide(provider, NOW, Action::RegisterDataset, &run(true)).is_err());
}

#[test]
fn broken_or_invalid_policy_sets_are_refused() {
    assert!(matches!(PolicyGate::new("permit (principal, action, resource"), Err(PolicyError::Parse(_))));
    let unknown_action = r#"permit (principal, action == Sluice::Action::"data.steal", resource);"#;
    assert!(matches!(PolicyGate::new(unknown_action), Err(PolicyError::Invalid(_))));
    let unknown_attribute =
        r#"permit (principal, action == Sluice::Action::"run.start", resource) when { principal.clearance == 4 };"#;
    assert!(matches!(PolicyGate::new(unknown_attribute), Err(PolicyError::Invalid(_))));
    // An attribute the object does not have: the catalogue is read on the platform.
    let wrong_object = r#"permit (principal, action == Sluice::Action::"catalogue.read", resource) when { resource.owner == principal };"#;
    assert!(matches!(PolicyGate::new(wrong_object), Err(PolicyError::Invalid(_))));
    let unknown_reason = r#"@reason("because") forbid (principal, action, resource);"#;
    let error = PolicyGate::new(unknown_reason).expect_err("refused");
    assert!(error.to_string().contains("is not a denial code"), "{error}");
    // An empty set validates and denies everything: default deny.
    let nothing = PolicyGate::new("").expect("an empty set is valid");
    let admin = &callers()[0].1;
    assert!(Action::ALL.iter().all(|action| nothing.decide(admin, NOW, *action, &Resource::Platform).is_err()));
}

#[test]
fn a_scenario_over_two_departments_data_is_reviewed_by_each_and_revoked_by_either() {
    use ReviewerKind::{DataBureau, ProvidingDepartment};
    let gate = PolicyGate::default_policies().expect("valid");
    let police = principal(8, Role::Reviewer, TRAFFIC_POLICE, Some(ProvidingDepartment));
    let tax = principal(9, Role::Reviewer, TAX, Some(ProvidingDepartment));
    let bureau = principal(BUREAU, Role::Reviewer, BIG_DATA_BUREAU, Some(DataBureau));
    let outsider = principal(12, Role::Reviewer, CYBERSPACE, Some(ProvidingDepartment));
    let application = |pending: Vec<OrganisationId>| Resource::Application {
        id: 2,
        owner: OPERATOR,
        organisation: QIANBEI,
        provider_organisations: vec![TRAFFIC_POLICE, TAX],
        pending_providers: pending,
        state: ApplicationState::BureauApproved,
        bureau_reviewer: Some(BUREAU),
    };
    let review = |who: &Principal, resource: &Resource| gate.decide(who, NOW, Action::ReviewApplication, resource);
    // After the bureau, each department whose data is used may review, in either order.
    let both = application(vec![TRAFFIC_POLICE, TAX]);
    assert!(review(&police, &both).is_ok());
    assert!(review(&tax, &both).is_ok());
    // The bureau's reviewer does not review twice, and a department providing nothing
    // to this scenario does not review it at all.
    assert_eq!(review(&bureau, &both).expect_err("bureau").reason, DenialReason::WrongReviewer);
    assert_eq!(review(&outsider, &both).expect_err("outsider").reason, DenialReason::WrongReviewer);
    // Once the traffic police approved, only the tax bureau's review is pending.
    let tax_pending = application(vec![TAX]);
    let again = review(&police, &tax_pending).expect_err("reviewed already");
    assert_eq!(again.reason, DenialReason::WrongReviewer);
    assert!(again.message.contains("has not yet approved"), "{again}");
    assert!(review(&tax, &tax_pending).is_ok());

    let authorisation = Resource::Authorisation {
        id: 2,
        owner: OPERATOR,
        organisation: QIANBEI,
        providers: vec![PROVIDER, 3],
        provider_organisations: vec![TRAFFIC_POLICE, TAX],
        revoked: false,
    };
    let revoke = |who: &Principal| gate.decide(who, NOW, Action::RevokeAuthorisation, &authorisation);
    assert!(revoke(&police).is_ok());
    assert!(revoke(&tax).is_ok());
    assert!(revoke(&bureau).is_ok());
    assert_eq!(revoke(&outsider).expect_err("not a provider").reason, DenialReason::WrongRole);
    // Both departments' providers read the scenario's budget; another provider does not.
    let budget = |who: &Principal| gate.decide(who, NOW, Action::ReadBudget, &authorisation);
    assert!(budget(&principal(3, Role::Provider, TAX, None)).is_ok());
    assert!(budget(&principal(PROVIDER, Role::Provider, TRAFFIC_POLICE, None)).is_ok());
    assert!(budget(&principal(13, Role::Provider, CYBERSPACE, None)).is_err());
    // Held results of a joined run are reviewed by either providing department.
    let held = Resource::Run {
        id: 2,
        owner: OPERATOR,
        organisation: QIANBEI,
        provider_organisations: vec![TRAFFIC_POLICE, TAX],
        outputs_held: true,
        state: "held".into(),
    };
    assert!(gate.decide(&tax, NOW, Action::ReviewResult, &held).is_ok());
    assert!(gate.decide(&outsider, NOW, Action::ReviewResult, &held).is_err());
}

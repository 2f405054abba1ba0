//! Table-driven tests of the procedure: each case changes one fact of a valid baseline
//! and names the reason it must be denied with.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;

const QIANBEI: OrganisationId = OrganisationId(1);
const BIG_DATA: OrganisationId = OrganisationId(2);
const TRAFFIC_POLICE: OrganisationId = OrganisationId(3);

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fn operator() -> Principal {
    Principal {
        id: 1,
        role: Role::Operator,
        organisation: QIANBEI,
        reviewer_kind: None,
        licence: Some(Licence {
            number: "ZY-2026-001".into(),
            valid_from: NOW - Duration::days(30),
            valid_until: NOW + Duration::days(300),
        }),
    }
}

fn reviewer(id: i64, kind: ReviewerKind, organisation: OrganisationId) -> Principal {
    Principal { id, role: Role::Reviewer, organisation, reviewer_kind: Some(kind), licence: None }
}

fn budget(total: f64, spent: f64) -> PrivacyBudget {
    let spent = if spent == 0.0 { Epsilon::ZERO } else { Epsilon::from_f64(spent).expect("valid") };
    PrivacyBudget::new(Epsilon::from_f64(total).expect("valid"), spent).expect("valid")
}

struct Case {
    operator: Principal,
    authorisation: Option<AuthorisationFacts>,
    model: ModelFacts,
    digest: String,
    columns: Vec<String>,
    epsilon: f64,
    dataset_budget: PrivacyBudget,
    joined_dataset_budgets: Vec<PrivacyBudget>,
}

fn baseline() -> Case {
    Case {
        operator: operator(),
        authorisation: Some(AuthorisationFacts {
            id: 7,
            columns: vec!["vehicle_age_years".into(), "accidents_5y".into()],
            valid_from: NOW - Duration::days(1),
            valid_until: NOW + Duration::days(90),
            revoked: false,
            budget: budget(1.0, 0.0),
        }),
        model: ModelFacts { state: ModelState::Approved, authorisation_id: 7, approved_digest: "ab".repeat(32) },
        digest: "ab".repeat(32),
        columns: vec!["accidents_5y".into()],
        epsilon: 0.5,
        dataset_budget: budget(10.0, 0.0),
        joined_dataset_budgets: Vec::new(),
    }
}

fn decide(case: &Case) -> Result<RunPermit, Denial> {
    let facts = RunFacts {
        operator: &case.operator,
        authorisation: case.authorisation.as_ref(),
        model: &case.model,
        digest_to_run: &case.digest,
        columns_read: &case.columns,
        epsilon: Epsilon::from_f64(case.epsilon).expect("valid"),
        min_epsilon: DEFAULT_MIN_EPSILON_PER_RUN,
        dataset_id: 3,
        dataset_budget: case.dataset_budget,
        joined_dataset_budgets: &case.joined_dataset_budgets,
    };
    authorise_run(&facts, NOW)
}

fn check(change: impl FnOnce(&mut Case), expected: Option<DenialReason>) {
    let mut case = baseline();
    change(&mut case);
    match (decide(&case), expected) {
        (Ok(_), None) => {}
        (Err(denial), Some(reason)) => assert_eq!(denial.reason, reason, "{denial}"),
        (outcome, expected) => panic!("expected {expected:?}, got {outcome:?}"),
    }
}

fn authorisation(case: &mut Case) -> &mut AuthorisationFacts {
    case.authorisation.as_mut().expect("baseline has one")
}

#[test]
fn run_decisions() {
    use DenialReason::*;
    check(|_| {}, None);
    check(|case| case.operator.licence = None, Some(LicenceMissing));
    check(
        |case| case.operator.licence.as_mut().expect("set").valid_until = NOW - Duration::seconds(1),
        Some(LicenceExpired),
    );
    check(
        |case| case.operator.licence.as_mut().expect("set").valid_from = NOW + Duration::days(1),
        Some(LicenceExpired),
    );
    check(|case| case.authorisation = None, Some(AuthorisationMissing));
    check(|case| authorisation(case).revoked = true, Some(AuthorisationRevoked));
    check(|case| authorisation(case).valid_until = NOW, Some(AuthorisationOutsideWindow));
    check(|case| authorisation(case).valid_from = NOW + Duration::hours(1), Some(AuthorisationOutsideWindow));
    check(|case| case.model.state = ModelState::Submitted, Some(ModelNotApproved));
    check(|case| case.model.state = ModelState::Rejected, Some(ModelNotApproved));
    check(|case| case.model.authorisation_id = 8, Some(ModelNotForAuthorisation));
    check(|case| case.digest = "ac".repeat(32), Some(ModelDigestMismatch));
    check(|case| case.columns.push("insured_value_cny".into()), Some(ColumnNotAuthorised));
    check(|case| authorisation(case).budget = budget(1.0, 0.6), Some(BudgetExhausted));
    check(|case| authorisation(case).budget = budget(1.0, 0.5), None);
    check(|case| case.dataset_budget = budget(10.0, 9.9), Some(DatasetBudgetExhausted));
    // A joined dataset's lifetime budget refuses the run as its own does.
    check(|case| case.joined_dataset_budgets = vec![budget(10.0, 9.9)], Some(DatasetBudgetExhausted));
    check(|case| case.joined_dataset_budgets = vec![budget(10.0, 9.0)], None);
    // Three departments' data: any one joined dataset's spent budget refuses the run.
    check(|case| case.joined_dataset_budgets = vec![budget(10.0, 9.0), budget(2.0, 1.0)], None);
    check(|case| case.joined_dataset_budgets = vec![budget(10.0, 9.0), budget(2.0, 1.6)], Some(DatasetBudgetExhausted));
}

#[test]
fn permit_carries_the_budgets_after_the_charge() {
    let case = baseline();
    let permit = decide(&case).expect("allowed");
    let facts = ChargeFacts {
        revoked: false,
        authorisation_budget: case.authorisation.as_ref().expect("baseline has one").budget,
        dataset_budget: case.dataset_budget,
        joined_dataset_budgets: Vec::new(),
        runs_in_last_hour: 0,
        max_runs_per_hour: 60,
    };
    let charged = permit.charge(&facts).expect("fits");
    assert_eq!(charged.authorisation_budget_after.remaining(), Epsilon::from_f64(0.5).expect("valid"));
    assert_eq!(charged.dataset_budget_after.spent(), Epsilon::from_f64(0.5).expect("valid"));
}

#[test]
fn application_reviews_follow_the_two_stage_procedure() {
    use ApplicationState::*;
    // Who reviews at which stage is the policy set's (gate tests); the states are here.
    assert_eq!(review_application(Submitted, true, 0), Ok(BureauApproved));
    assert_eq!(review_application(Submitted, false, 0), Ok(Rejected));
    assert_eq!(review_application(BureauApproved, true, 0), Ok(Approved));
    assert_eq!(review_application(BureauApproved, false, 0), Ok(Rejected));
    // Two departments provide the data: the first approval waits for the second, and
    // either one's rejection ends it.
    assert_eq!(review_application(BureauApproved, true, 1), Ok(BureauApproved));
    assert_eq!(review_application(BureauApproved, false, 1), Ok(Rejected));
    for settled in [Draft, Approved, Rejected, Withdrawn] {
        assert_eq!(review_application(settled, true, 0).expect_err("settled").reason, DenialReason::NotPending);
    }
}

#[test]
fn only_pending_models_are_reviewed() {
    assert_eq!(review_model(ModelState::Submitted), Ok(()));
    for settled in [ModelState::Approved, ModelState::Rejected, ModelState::Revoked] {
        assert_eq!(review_model(settled).expect_err("settled").reason, DenialReason::NotPending);
    }
}

#[test]
fn withdrawal_and_revocation_follow_their_states() {
    use ApplicationState::*;
    assert_eq!(withdraw_application(Submitted), Ok(Withdrawn));
    assert_eq!(withdraw_application(BureauApproved), Ok(Withdrawn));
    assert_eq!(withdraw_application(Draft), Ok(Withdrawn));
    assert_eq!(withdraw_application(Approved).expect_err("decided").reason, DenialReason::NotPending);
    assert_eq!(revoke_authorisation(false), Ok(()));
    assert_eq!(revoke_authorisation(true).expect_err("twice").reason, DenialReason::NotPending);
    assert_eq!(revoke_model(ModelState::Approved), Ok(()));
    assert_eq!(revoke_model(ModelState::Submitted), Ok(()));
    assert_eq!(revoke_model(ModelState::Revoked).expect_err("twice").reason, DenialReason::NotPending);
    let mut case = baseline();
    case.model.state = ModelState::Revoked;
    assert_eq!(decide(&case).expect_err("revoked model").reason, DenialReason::ModelNotApproved);
}

#[test]
fn run_rate_is_bounded() {
    assert_eq!(check_run_rate(59, 60), Ok(()));
    let denial = check_run_rate(60, 60).expect_err("limited");
    assert_eq!(denial.reason, DenialReason::RateLimited);
    assert!(denial.message.contains("60 runs an hour"));
}

#[test]
fn only_held_results_are_reviewed() {
    assert_eq!(review_result(true), Ok(()));
    assert_eq!(review_result(false).expect_err("not held").reason, DenialReason::NotPending);
}

#[test]
fn a_quorum_of_two_needs_independent_approvals() {
    let bureau = reviewer(10, ReviewerKind::DataBureau, BIG_DATA);
    let department = reviewer(11, ReviewerKind::ProvidingDepartment, TRAFFIC_POLICE);
    let bureau_colleague = reviewer(12, ReviewerKind::DataBureau, BIG_DATA);
    assert_eq!(model_review_outcome(&[], &bureau, true, 1), Ok(ModelState::Approved));
    assert_eq!(model_review_outcome(&[], &bureau, true, 2), Ok(ModelState::Submitted));
    let first = [(10, BIG_DATA)];
    assert_eq!(model_review_outcome(&first, &department, true, 2), Ok(ModelState::Approved));
    assert_eq!(model_review_outcome(&first, &bureau, true, 2).expect_err("same").reason, DenialReason::WrongReviewer);
    assert_eq!(
        model_review_outcome(&first, &bureau_colleague, true, 2).expect_err("same org").reason,
        DenialReason::WrongReviewer
    );
    assert_eq!(model_review_outcome(&first, &department, false, 2), Ok(ModelState::Rejected));
}

#[test]
fn drafts_are_submitted_once() {
    use ApplicationState::*;
    assert_eq!(submit_draft(Draft), Ok(Submitted));
    assert_eq!(submit_draft(Submitted).expect_err("twice").reason, DenialReason::NotPending);
}

#[test]
fn epsilon_per_run_has_a_floor_and_must_fit_the_budget() {
    let units = Epsilon::from_units;
    let check = |epsilon: u64, minimum: u64, remaining: u64| {
        check_epsilon_per_run(units(epsilon), units(minimum), units(remaining)).map_err(|denial| denial.reason)
    };
    assert_eq!(check(50_000, 50_000, 1_000_000), Ok(()));
    // The attack of a tiny ε per run: 1e-9 rounds up to one millionth, far under the floor.
    assert_eq!(check(1, 50_000, 1_000_000), Err(DenialReason::EpsilonBelowMinimum));
    assert_eq!(check(49_999, 50_000, 1_000_000), Err(DenialReason::EpsilonBelowMinimum));
    assert_eq!(check(1_000_001, 50_000, 1_000_000), Err(DenialReason::EpsilonAboveBudget));
    assert_eq!(check(1_000_000, 50_000, 1_000_000), Ok(()));
    assert_eq!(DEFAULT_MIN_EPSILON_PER_RUN.as_f64(), 0.05);
}

#[test]
fn a_permit_carries_the_decision_and_charges_only_what_still_fits() {
    let permit = decide(&baseline()).expect("the baseline may run");
    assert_eq!((permit.authorisation_id, permit.dataset_id), (7, 3));
    assert_eq!(permit.epsilon, Epsilon::from_f64(0.5).expect("valid"));
    let facts = ChargeFacts {
        revoked: false,
        authorisation_budget: budget(1.0, 0.25),
        dataset_budget: budget(10.0, 9.0),
        joined_dataset_budgets: vec![budget(5.0, 1.0), budget(2.0, 0.0)],
        runs_in_last_hour: 0,
        max_runs_per_hour: 60,
    };
    let charged = permit.charge(&facts).expect("fits");
    assert_eq!(charged.authorisation_budget_after.spent(), Epsilon::from_f64(0.75).expect("valid"));
    assert_eq!(charged.dataset_budget_after.spent(), Epsilon::from_f64(9.5).expect("valid"));
    // Each joined dataset's lifetime budget is charged the same ε.
    assert_eq!(
        charged.joined_dataset_budgets_after.iter().map(|budget| budget.spent()).collect::<Vec<_>>(),
        [Epsilon::from_f64(1.5).expect("valid"), Epsilon::from_f64(0.5).expect("valid")]
    );
    // What changed since the decision decides the refusal, each with its own reason.
    let refused = |facts: ChargeFacts| permit.charge(&facts).expect_err("refused").reason;
    assert_eq!(refused(ChargeFacts { revoked: true, ..facts.clone() }), DenialReason::AuthorisationRevoked);
    assert_eq!(refused(ChargeFacts { runs_in_last_hour: 60, ..facts.clone() }), DenialReason::RateLimited);
    assert_eq!(
        refused(ChargeFacts { authorisation_budget: budget(1.0, 0.75), ..facts.clone() }),
        DenialReason::BudgetExhausted
    );
    assert_eq!(
        refused(ChargeFacts { dataset_budget: budget(10.0, 9.75), ..facts.clone() }),
        DenialReason::DatasetBudgetExhausted
    );
    assert_eq!(
        refused(ChargeFacts { joined_dataset_budgets: vec![budget(5.0, 4.75), budget(2.0, 0.0)], ..facts.clone() }),
        DenialReason::DatasetBudgetExhausted
    );
    assert_eq!(
        refused(ChargeFacts { joined_dataset_budgets: vec![budget(5.0, 1.0), budget(2.0, 1.75)], ..facts.clone() }),
        DenialReason::DatasetBudgetExhausted
    );
}

#[test]
fn the_run_decision_includes_the_minimum_epsilon() {
    let mut case = baseline();
    case.epsilon = 0.01;
    assert_eq!(decide(&case).expect_err("below the minimum").reason, DenialReason::EpsilonBelowMinimum);
}

/// A stored state reads back as itself, and a name that is no state is an error naming it
/// (a row altered in the database does not pass as some default state).
#[test]
fn stored_states_read_back_and_unknown_names_are_refused() {
    use ApplicationState as A;
    for state in [A::Draft, A::Submitted, A::BureauApproved, A::Approved, A::Rejected, A::Withdrawn] {
        assert_eq!(ApplicationState::try_from(state.as_str().to_owned()), Ok(state));
    }
    for state in [ModelState::Submitted, ModelState::Approved, ModelState::Rejected, ModelState::Revoked] {
        assert_eq!(ModelState::try_from(state.as_str().to_owned()), Ok(state));
    }
    let refused = ModelState::try_from("approved ".to_owned()).expect_err("not a state");
    assert!(refused.contains("`approved ` is not a model state"), "{refused}");
    assert!(ApplicationState::try_from("APPROVED".to_owned()).is_err());
}

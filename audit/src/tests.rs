//! Verifier tests on synthetic logs signed with a throwaway key: content rules, and a
//! random single mutation anywhere in a 1,000-entry export is always detected and located.

use super::*;
use crate::keys::SigningKey;
use crate::{Act, Detail};

fn signing_key() -> SigningKey {
    SigningKey::generate().expect("key")
}

/// An export of `events`, chained and checkpointed as the gateway would write it.
fn export(events: Vec<AuditEvent>, key: &SigningKey) -> String {
    let mut log = LogWriter::default();
    for event in events {
        log.append(event, "2026-06-01T00:00:00Z");
    }
    log.export(key)
}

fn event(action: &str, object: &str) -> AuditEvent {
    AuditEvent::new(Act::parse(action).expect("an action of the vocabulary"), object, AuditOutcome::Ok)
}

/// `event` done by principal `actor` in `role`.
fn by(actor: i64, role: &str, action: &str, object: &str) -> AuditEvent {
    let mut event = event(action, object);
    event.actor_id = Some(actor);
    event.role = role.into();
    event
}

const ADMIN: i64 = 1;
const PROVIDER: i64 = 2;
const OPERATOR: i64 = 3;
const BUREAU: i64 = 4;
const DEPARTMENT: i64 = 5;
const OTHER_OPERATOR: i64 = 6;
const SECOND_ADMIN: i64 = 7;

/// Organisation ids (1 is the platform's).
const TRAFFIC_POLICE: i64 = 2;
const QIANBEI: i64 = 3;
const BIG_DATA: i64 = 4;
const OTHER_DATA: i64 = 5;

fn digest() -> String {
    "ab".repeat(32)
}

fn run(id: u32, epsilon: &str) -> AuditEvent {
    by(OPERATOR, "operator", "run.start", &format!("run:{id}"))
        .detail(Detail::Authorisation, 1)
        .detail(Detail::Dataset, 1)
        .detail(Detail::Digest, digest())
        .detail(Detail::EpsilonCharged, epsilon)
}

/// The lawful life of one scenario, as the gateway logs it: two administrators at the
/// host, four organisations, the principals (the reviewers and operators approved by the
/// second administrator), a dataset, an application reviewed twice, its authorisation, a
/// model submitted and approved, two runs and their releases. Indices: 0–14 organisations
/// and principals, 15 dataset, 16 application, 17–18 reviews, 19 authorisation, 20 model
/// submit, 21 model review, 22 run 1, 23 release 1, 24 run 2.
fn lawful_history() -> Vec<AuditEvent> {
    let mut history = vec![
        by(ADMIN, "admin", "principal.bootstrap", "principal:1")
            .detail(Detail::Role, "admin")
            .detail(Detail::Organisation, 1)
            .detail(Detail::OrganisationName, "platform"),
        by(SECOND_ADMIN, "admin", "principal.bootstrap", "principal:7")
            .detail(Detail::Role, "admin")
            .detail(Detail::Organisation, 1),
    ];
    for organisation in [TRAFFIC_POLICE, QIANBEI, BIG_DATA, OTHER_DATA] {
        history.push(by(ADMIN, "admin", "organisation.create", &format!("organisation:{organisation}")));
    }
    let licence = |event: AuditEvent| {
        event
            .detail(Detail::Licence, "ZY-1")
            .detail(Detail::LicenceValidFrom, "2026-01-01T00:00:00Z")
            .detail(Detail::LicenceValidUntil, "2027-01-01T00:00:00Z")
    };
    let create = |id: i64, role: &str, organisation: i64, approval: &str| {
        by(ADMIN, "admin", "principal.create", &format!("principal:{id}"))
            .detail(Detail::Role, role)
            .detail(Detail::Organisation, organisation)
            .detail(Detail::Approval, approval)
    };
    history.extend([
        create(PROVIDER, "provider", TRAFFIC_POLICE, "not_required"),
        licence(create(OPERATOR, "operator", QIANBEI, "pending")),
        create(BUREAU, "reviewer", BIG_DATA, "pending").detail(Detail::ReviewerKind, "data_bureau"),
        create(DEPARTMENT, "reviewer", TRAFFIC_POLICE, "pending").detail(Detail::ReviewerKind, "providing_department"),
        licence(create(OTHER_OPERATOR, "operator", OTHER_DATA, "pending")),
    ]);
    for id in [OPERATOR, BUREAU, DEPARTMENT, OTHER_OPERATOR] {
        history.push(
            by(SECOND_ADMIN, "admin", "principal.approve", &format!("principal:{id}")).detail(Detail::CreatedBy, ADMIN),
        );
    }
    history.extend([
        by(PROVIDER, "provider", "dataset.register", "dataset:1").detail(Detail::EpsilonTotal, "2"),
        by(OPERATOR, "operator", "application.submit", "application:1")
            .detail(Detail::Dataset, 1)
            .detail(Detail::Epsilon, "1"),
        by(BUREAU, "reviewer", "application.review", "application:1").detail(Detail::State, "bureau_approved"),
        by(DEPARTMENT, "reviewer", "application.review", "application:1").detail(Detail::State, "approved"),
        by(DEPARTMENT, "reviewer", "authorisation.create", "authorisation:1")
            .detail(Detail::Application, 1)
            .detail(Detail::Operator, OPERATOR)
            .detail(Detail::Dataset, 1)
            .detail(Detail::EpsilonTotal, "1")
            .detail(Detail::ValidUntil, "2026-12-01T00:00:00Z"),
        by(OPERATOR, "operator", "model.submit", "model:1")
            .detail(Detail::Authorisation, 1)
            .detail(Detail::Digest, digest()),
        by(BUREAU, "reviewer", "model.review", "model:1")
            .detail(Detail::Decision, "approve")
            .detail(Detail::Digest, digest())
            .detail(Detail::State, "approved"),
        run(1, "0.5"),
        by(OPERATOR, "operator", "run.release", "run:1").detail(Detail::Authorisation, 1),
        run(2, "0.5"),
    ]);
    history
}

fn refused(history: Vec<AuditEvent>) -> VerifyError {
    let key = signing_key();
    verify_export(&export(history, &key), KeyTrust::Pinned(&key.public_key()), None).expect_err("refused")
}

/// Each dishonest log here is genuinely signed; the verifier names the entry (export
/// line = index + 2) and the rule.
#[test]
fn content_rules_name_the_first_unlawful_entry() {
    let key = signing_key();
    verify_export(&export(lawful_history(), &key), KeyTrust::Pinned(&key.public_key()), None).expect("lawful");

    let check = |history: Vec<AuditEvent>, line: usize, words: &str| {
        let error = refused(history);
        assert!(error.problem.contains(words), "expected `{words}`: {error}");
        assert_eq!(error.line, line, "{error}");
    };
    let lawful = lawful_history;

    let mut overspent = lawful();
    overspent.push(run(3, "0.5"));
    check(overspent, 27, "more than its budget");

    let mut unapproved = lawful();
    unapproved[24] = unapproved[24].clone().detail(Detail::Digest, "cd".repeat(32));
    check(unapproved, 26, "no review approved");

    let mut unauthorised = lawful();
    unauthorised.remove(19);
    check(unauthorised, 23, "never created"); // the model submission parses; its run does not

    // A second authorisation.create for the same id would reset its budget.
    let mut reset = lawful();
    reset.insert(24, reset[19].clone());
    check(reset, 26, "created twice");

    // A charged run written as failed still spends.
    let mut hidden = lawful();
    let mut failed = run(3, "0.5");
    failed.outcome = AuditOutcome::Failed;
    hidden.push(failed);
    check(hidden, 27, "more than its budget");

    // ε must be exact millionths.
    for sloppy in ["1e-7", "+0.5", ".5", "0.50000049", "0.50", "0x1", " 0.5", "0.5 "] {
        let mut history = lawful();
        history[24] = run(2, sloppy);
        check(history, 26, "exact millionths");
    }
    let mut budget = lawful();
    budget[19] = budget[19].clone().detail(Detail::EpsilonTotal, "0.9999995");
    check(budget, 21, "exact millionths");

    // A revocation must say which bytes; revoked bytes are not approved again.
    let mut vague = lawful();
    vague.insert(22, by(BUREAU, "reviewer", "model.revoke", "model:1"));
    check(vague, 24, "without its digest");
    let mut again = lawful();
    again.insert(22, by(BUREAU, "reviewer", "model.revoke", "model:1").detail(Detail::Digest, digest()));
    again.insert(
        23,
        by(OPERATOR, "operator", "model.submit", "model:2")
            .detail(Detail::Authorisation, 1)
            .detail(Detail::Digest, digest()),
    );
    again.insert(
        24,
        by(DEPARTMENT, "reviewer", "model.review", "model:2")
            .detail(Detail::Digest, digest())
            .detail(Detail::State, "approved"),
    );
    check(again, 26, "approved again after it was revoked");

    // Approval is per authorisation: bytes approved under 1 do not run under 2.
    let mut elsewhere = lawful();
    elsewhere.insert(
        22,
        by(DEPARTMENT, "reviewer", "authorisation.create", "authorisation:2")
            .detail(Detail::Application, 1)
            .detail(Detail::Operator, OPERATOR)
            .detail(Detail::Dataset, 1)
            .detail(Detail::EpsilonTotal, "1"),
    );
    let mut stray = run(3, "0.1");
    stray.details.insert("authorisation".into(), "2".into());
    elsewhere.push(stray);
    check(elsewhere, 28, "no review approved for authorisation 2");

    // A quorum shows as the resulting state: an approve that left the model pending is no approval.
    let mut pending = lawful();
    pending[21] = pending[21].clone().detail(Detail::State, "submitted");
    check(pending, 24, "no review approved");

    // A run after the window, or by someone other than the authorisation's operator.
    let mut late = lawful();
    late[19] = late[19].clone().detail(Detail::ValidUntil, "2026-05-31T00:00:00Z");
    check(late, 24, "window closed");
    let mut stranger = lawful();
    stranger[24].actor_id = Some(OTHER_OPERATOR);
    check(stranger, 26, "other than its operator");

    // An authorisation with no approved application.
    let mut unreviewed = lawful();
    unreviewed.remove(18);
    check(unreviewed, 20, "which no review approved");

    // A release with no matching start, or twice.
    let mut orphan = lawful();
    orphan.push(by(OPERATOR, "operator", "run.release", "run:9"));
    check(orphan, 27, "never started");
    let mut twice = lawful();
    twice.push(twice[23].clone());
    check(twice, 27, "released twice");

    // Self-review of an application and of a model.
    let mut own_application = lawful();
    own_application[17].actor_id = Some(OPERATOR);
    check(own_application, 19, "acts as reviewer but was created as operator");
    let mut own_model = lawful();
    own_model[20] = by(BUREAU, "reviewer", "model.submit", "model:1")
        .detail(Detail::Authorisation, 1)
        .detail(Detail::Digest, digest());
    check(own_model, 22, "model.submit done as reviewer");
    let mut self_review = lawful();
    self_review[21].actor_id = Some(OPERATOR);
    self_review[21].role = "operator".into();
    check(self_review, 23, "model.review done as operator");

    // An actor the log never created, and a role the actor was not created with.
    let mut ghost = lawful();
    ghost[21].actor_id = Some(42);
    check(ghost, 23, "never created");

    // The dataset's lifetime budget holds across authorisations.
    let mut dataset = lawful();
    dataset[15] = dataset[15].clone().detail(Detail::EpsilonTotal, "0.75");
    check(dataset, 26, "lifetime budget");
}

const TAX_BUREAU: i64 = 6;
const TAX_PROVIDER: i64 = 8;
const TAX_REVIEWER: i64 = 9;

/// A department joining the platform: its organisation, a provider, a providing-department
/// reviewer (approved by the second administrator) and the provider's dataset (ε 1).
fn department(organisation: i64, provider: i64, reviewer: i64, dataset: i64) -> Vec<AuditEvent> {
    vec![
        by(ADMIN, "admin", "organisation.create", &format!("organisation:{organisation}")),
        by(ADMIN, "admin", "principal.create", &format!("principal:{provider}"))
            .detail(Detail::Role, "provider")
            .detail(Detail::Organisation, organisation)
            .detail(Detail::Approval, "not_required"),
        by(ADMIN, "admin", "principal.create", &format!("principal:{reviewer}"))
            .detail(Detail::Role, "reviewer")
            .detail(Detail::Organisation, organisation)
            .detail(Detail::Approval, "pending")
            .detail(Detail::ReviewerKind, "providing_department"),
        by(SECOND_ADMIN, "admin", "principal.approve", &format!("principal:{reviewer}"))
            .detail(Detail::CreatedBy, ADMIN),
        by(provider, "provider", "dataset.register", &format!("dataset:{dataset}")).detail(Detail::EpsilonTotal, "1"),
    ]
}

/// The lawful scenario joining a second department's dataset (dataset 2, the tax bureau's)
/// to the first: the bureau, then each department reviews once; the authorisation and
/// every run name the joined dataset. Indices: 0–14 as in [`lawful_history`], 15–18 the
/// tax bureau, its provider and reviewer, 19 dataset 2, 20 dataset 1, 21 application,
/// 22–24 reviews, 25 authorisation, 26 model submit, 27 model review, 28 run 1, 29 release
/// 1, 30 run 2.
fn joined_history() -> Vec<AuditEvent> {
    let mut history = lawful_history();
    let tail = history.split_off(15);
    history.extend(department(TAX_BUREAU, TAX_PROVIDER, TAX_REVIEWER, 2));
    for event in tail {
        let joined = |event: AuditEvent| event.detail(Detail::JoinedDataset, 2);
        match event.action.as_str() {
            "application.submit" | "authorisation.create" | "run.start" => history.push(joined(event)),
            "application.review" if event.actor_id == Some(DEPARTMENT) => {
                history.push(event.detail(Detail::State, "bureau_approved"));
                history.push(
                    by(TAX_REVIEWER, "reviewer", "application.review", "application:1")
                        .detail(Detail::State, "approved"),
                );
            }
            _ => history.push(event),
        }
    }
    history
}

/// A scenario over two departments' data: lawful as the gateway writes it; refused if it
/// was approved before each department had, if one department reviewed twice, if a third
/// department reviewed it, if its authorisation or a run joins another dataset than the
/// application asked for, or if the joined dataset's budget is overspent.
#[test]
fn a_joined_scenario_needs_every_department_and_charges_both_datasets() {
    let key = signing_key();
    verify_export(&export(joined_history(), &key), KeyTrust::Pinned(&key.public_key()), None).expect("lawful");
    let check = |history: Vec<AuditEvent>, line: usize, words: &str| {
        let error = refused(history);
        assert!(error.problem.contains(words), "expected `{words}`: {error}");
        assert_eq!(error.line, line, "{error}");
    };
    // The department of the first dataset alone approves it.
    let mut one = joined_history();
    one.remove(24);
    one[23] = one[23].clone().detail(Detail::State, "approved");
    check(one, 25, "before every department providing its data");
    // The tax bureau reviews twice in place of the other department.
    let mut twice = joined_history();
    twice[23] =
        by(TAX_REVIEWER, "reviewer", "application.review", "application:1").detail(Detail::State, "bureau_approved");
    check(twice, 26, "reviewed twice by one providing department");
    // The departments review in either order.
    let mut reordered = joined_history();
    reordered.remove(24);
    reordered[23] =
        by(TAX_REVIEWER, "reviewer", "application.review", "application:1").detail(Detail::State, "bureau_approved");
    reordered.insert(
        24,
        by(DEPARTMENT, "reviewer", "application.review", "application:1").detail(Detail::State, "approved"),
    );
    verify_export(&export(reordered.clone(), &key), KeyTrust::Pinned(&key.public_key()), None).expect("either order");
    // A department providing nothing to the scenario: the tax bureau, had the application
    // not joined its dataset.
    let mut unasked = reordered;
    unasked[21].details.remove("joined_dataset");
    check(unasked, 25, "second review was not by the department providing the data");
    // The authorisation, or a run, joining another dataset than the application asked for.
    let mut other = joined_history();
    other[25].details.remove("joined_dataset");
    check(other, 27, "joins another dataset than application");
    let mut run_other = joined_history();
    run_other[30].details.insert("joined_dataset".into(), "1".into());
    check(run_other, 32, "joined another dataset than it grants");
    // The joined dataset's lifetime budget holds.
    let mut overspent = joined_history();
    overspent[19] = overspent[19].clone().detail(Detail::EpsilonTotal, "0.75");
    check(overspent, 32, "dataset 2 spent more than its lifetime budget");
}

const MARKET_BUREAU: i64 = 7;
const MARKET_PROVIDER: i64 = 10;
const MARKET_REVIEWER: i64 = 11;

/// [`joined_history`] with a third department (the market regulation bureau, dataset 3)
/// joined too: it registers its dataset, the scenario joins `2,3`, and its reviewer
/// approves last.
fn three_department_history() -> Vec<AuditEvent> {
    let mut history = Vec::new();
    for event in joined_history() {
        let (action, object, actor) = (event.action.clone(), event.object.clone(), event.actor_id);
        let state = event.details.get("state").cloned();
        let mut event = event;
        if event.details.get("joined_dataset").map(String::as_str) == Some("2") {
            event.details.insert("joined_dataset".into(), "2,3".into());
        }
        if action == "application.review" && actor == Some(TAX_REVIEWER) && state.as_deref() == Some("approved") {
            history.push(event.detail(Detail::State, "bureau_approved"));
            history.push(
                by(MARKET_REVIEWER, "reviewer", "application.review", "application:1")
                    .detail(Detail::State, "approved"),
            );
            continue;
        }
        history.push(event);
        if action == "dataset.register" && object == "dataset:2" {
            history.extend(department(MARKET_BUREAU, MARKET_PROVIDER, MARKET_REVIEWER, 3));
        }
    }
    history
}

/// A scenario over three departments' data (seed 002 item 16): lawful as the gateway writes
/// it; refused if approved before the third department had, if a run leaves the third
/// dataset out or names one twice, or if the third dataset's budget is overspent.
#[test]
fn a_scenario_over_three_departments_needs_each_and_charges_every_dataset() {
    let key = signing_key();
    let lawful = three_department_history();
    verify_export(&export(lawful.clone(), &key), KeyTrust::Pinned(&key.public_key()), None).expect("lawful");
    let position = |history: &[AuditEvent], action: &str, actor: Option<i64>| {
        history
            .iter()
            .position(|event| event.action == action && (actor.is_none() || event.actor_id == actor))
            .expect("in the history")
    };
    let check = |history: Vec<AuditEvent>, words: &str| {
        let error = refused(history);
        assert!(error.problem.contains(words), "expected `{words}`: {error}");
    };
    // Approved by the tax bureau before the market regulation bureau reviewed.
    let mut early = lawful.clone();
    let market = position(&early, "application.review", Some(MARKET_REVIEWER));
    early.remove(market);
    early[market - 1] = early[market - 1].clone().detail(Detail::State, "approved");
    check(early, "before every department providing its data");
    // A run that reads the first two datasets only.
    let mut fewer = lawful.clone();
    let run = position(&fewer, "run.start", None);
    fewer[run].details.insert("joined_dataset".into(), "2".into());
    check(fewer, "joined another dataset than it grants");
    // The third dataset's lifetime budget holds.
    let mut overspent = lawful.clone();
    let register = overspent
        .iter()
        .position(|event| event.action == "dataset.register" && event.object == "dataset:3")
        .expect("registered");
    overspent[register] = overspent[register].clone().detail(Detail::EpsilonTotal, "0.75");
    check(overspent, "dataset 3 spent more than its lifetime budget");
    // A scenario naming one dataset twice would charge it once per run yet read it twice.
    let twice: Vec<AuditEvent> = lawful
        .into_iter()
        .map(|mut event| {
            if event.details.get("joined_dataset").map(String::as_str) == Some("2,3") {
                event.details.insert("joined_dataset".into(), "2,2".into());
            }
            event
        })
        .filter(|event| event.actor_id != Some(MARKET_REVIEWER) || event.action != "application.review")
        .map(|event| {
            if event.action == "application.review" && event.actor_id == Some(TAX_REVIEWER) {
                event.detail(Detail::State, "approved")
            } else {
                event
            }
        })
        .collect();
    check(twice, "names one dataset twice");
}

/// The insider's forgeries the organisation and principal rules catch, each on a genuinely
/// signed log: separation of duties by organisation id, licence windows, the two-person rule.
#[test]
fn insiders_are_caught_by_organisation_licence_and_second_admin() {
    let caught = |history: Vec<AuditEvent>, words: &str| {
        let error = refused(history);
        assert!(error.problem.contains(words), "expected `{words}`: {error}");
    };
    let create = |id: i64, role: &str, organisation: i64| {
        by(ADMIN, "admin", "principal.create", &format!("principal:{id}"))
            .detail(Detail::Role, role)
            .detail(Detail::Organisation, organisation)
            .detail(Detail::Approval, "pending")
    };
    let approve = |id: i64| by(SECOND_ADMIN, "admin", "principal.approve", &format!("principal:{id}"));
    // A data bureau reviewer employed by the operator's organisation (by id, whatever its
    // name) approves the first stage.
    let mut colleague = lawful_history();
    colleague.insert(15, create(8, "reviewer", QIANBEI).detail(Detail::ReviewerKind, "data_bureau"));
    colleague.insert(16, approve(8));
    colleague[19].actor_id = Some(8);
    caught(colleague, "reviewed from its applicant's own organisation");
    // The first review by a department reviewer; the second by another department's.
    let mut wrong_stage = lawful_history();
    wrong_stage[17].actor_id = Some(DEPARTMENT);
    caught(wrong_stage, "first review was not the data bureau's");
    let mut other_department = lawful_history();
    other_department.insert(15, create(8, "reviewer", BIG_DATA).detail(Detail::ReviewerKind, "providing_department"));
    other_department.insert(16, approve(8));
    other_department[20].actor_id = Some(8);
    caught(other_department, "not by the department providing the data");
    // A model approved by a reviewer of the submitter's organisation.
    let mut model = lawful_history();
    model.insert(15, create(8, "reviewer", QIANBEI).detail(Detail::ReviewerKind, "data_bureau"));
    model.insert(16, approve(8));
    model[23].actor_id = Some(8);
    caught(model, "reviewed from its submitter's own organisation");
    // A held result released by someone other than the providing department.
    let mut result = lawful_history();
    result.push(by(BUREAU, "reviewer", "result.review", "run:2").detail(Detail::Decision, "release"));
    caught(result, "another than the department providing the data");
    let mut result = lawful_history();
    result.push(by(DEPARTMENT, "reviewer", "result.review", "run:2").detail(Detail::Decision, "release"));
    let key = signing_key();
    verify_export(&export(result, &key), KeyTrust::Pinned(&key.public_key()), None).expect("the department's own");

    // An operator acting after its licence ended.
    let mut expired = lawful_history();
    expired[7] = expired[7].clone().detail(Detail::LicenceValidUntil, "2026-05-01T00:00:00Z");
    caught(expired, "outside its licence's window");

    // The two-person rule: a reviewer created without approval, one approved by its own
    // creator, and one acting before any approval.
    let mut alone = lawful_history();
    alone[9] = alone[9].clone().detail(Detail::Approval, "not_required");
    caught(alone, "created without a second administrator's approval");
    let mut own = lawful_history();
    own[12].actor_id = Some(ADMIN);
    caught(own, "approved by the administrator who created it");
    let mut early = lawful_history();
    early.remove(12);
    caught(early, "acted before a second administrator approved it");

    // A principal in an organisation nobody created, and an organisation created twice.
    let mut unknown = lawful_history();
    unknown[6] = unknown[6].clone().detail(Detail::Organisation, 99);
    caught(unknown, "which the log never created");
    let mut twice = lawful_history();
    twice.insert(3, twice[2].clone());
    caught(twice, "created twice");
}

/// The writer can only write the vocabulary; a forger can write anything, and the
/// verifier refuses an action outside it.
#[test]
fn an_action_outside_the_vocabulary_is_refused() {
    let mut history = lawful_history();
    let mut stray = history[15].clone();
    stray.action = "data.steal".into();
    history.insert(16, stray);
    let error = refused(history);
    assert!(error.problem.contains("`data.steal` is not an action of the audit vocabulary"), "{error}");
}

#[test]
fn self_review_by_id_is_caught_even_in_the_right_role() {
    // A reviewer who submitted an application (a log the server would never write, but a
    // forger might): the same principal on both sides is named.
    let mut history = lawful_history();
    history[16] = by(BUREAU, "reviewer", "application.submit", "application:1");
    let error = refused(history);
    assert!(error.problem.contains("application.submit done as reviewer"), "{error}");
    let mut history = lawful_history();
    history.insert(17, by(OPERATOR, "operator", "application.submit", "application:2"));
    history.insert(18, {
        let mut review =
            by(OPERATOR, "operator", "application.review", "application:2").detail(Detail::State, "approved");
        review.role = "reviewer".into();
        review
    });
    let error = refused(history);
    assert!(error.problem.contains("acts as reviewer but was created as operator"), "{error}");
}

#[test]
fn unusual_text_never_panics_the_rules() {
    let mut history = lawful_history();
    history[24] = run(2, "0.5").detail(Detail::Digest, "é".repeat(40));
    let error = refused(history);
    assert!(error.problem.contains("éééé"), "{error}");
    let mut history = lawful_history();
    history[19] = history[19].clone().detail(Detail::ValidUntil, "2026-13-01T00:00:00+08:00");
    let error = refused(history);
    assert!(error.problem.contains("cannot read"), "{error}");
}

#[test]
fn a_trusted_checkpoint_catches_rollback_and_rewrite() {
    let key = signing_key();
    let public = key.public_key();
    let history: Vec<AuditEvent> =
        (0..20).map(|index| event("catalogue.read", &format!("catalogue:{index}"))).collect();
    let full = export(history.clone(), &key);
    let kept = export(history[..12].to_vec(), &key);
    let kept_note: ExportCheckpoint =
        serde_json::from_str(kept.lines().last().expect("checkpoint line")).expect("checkpoint json");
    let summary = verify_export(&full, KeyTrust::Pinned(&public), Some(&kept_note.checkpoint)).expect("extends");
    assert_eq!(summary.trusted_size, Some(12));

    let rolled_back = export(history[..8].to_vec(), &key);
    let error =
        verify_export(&rolled_back, KeyTrust::Pinned(&public), Some(&kept_note.checkpoint)).expect_err("rolled back");
    assert!(error.problem.contains("rolled back"), "{error}");

    let mut rewritten = history.clone();
    rewritten[5] = event("catalogue.read", "catalogue:rewritten");
    let error = verify_export(&export(rewritten, &key), KeyTrust::Pinned(&public), Some(&kept_note.checkpoint))
        .expect_err("rewritten");
    assert!(error.problem.contains("rewritten"), "{error}");
    assert_eq!(error.line, 13, "named at the trusted size");
}

/// A random single-bit flip, deletion, reorder or insertion anywhere in a 1,000-entry
/// export is always detected, and located at the entry it touched (or the one before, when
/// only the chain link of the next entry can show it).
#[test]
fn any_single_mutation_of_a_large_export_is_detected_and_located() {
    let key = signing_key();
    let public = key.public_key();
    let history: Vec<AuditEvent> = (0..1_000)
        .map(|index| event(["catalogue.read", "result.read", "budget.read"][index % 3], &format!("run:{index}")))
        .collect();
    let original: Vec<String> = export(history, &key).lines().map(str::to_owned).collect();
    let entries = 1..original.len() - 1;
    let mut state = 0xDEAD_BEEF_u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    for attempt in 0..600 {
        let mut lines = original.clone();
        let target = entries.start + next(entries.len());
        let expected = match attempt % 4 {
            0 => {
                let mut bytes = lines[target].clone().into_bytes();
                let position = next(bytes.len());
                bytes[position] ^= 1 << next(7);
                lines[target] = String::from_utf8_lossy(&bytes).into_owned();
                target + 1
            }
            1 => {
                lines.remove(target);
                target + 1
            }
            2 if target + 1 < entries.end => {
                lines.swap(target, target + 1);
                target + 1
            }
            _ => {
                let copy = lines[entries.start + next(entries.len())].clone();
                lines.insert(target, copy);
                target + 1
            }
        };
        let text = lines.join("\n") + "\n";
        if text == original.join("\n") + "\n" {
            continue; // a swap of two identical lines or a flip undone by lossy decoding
        }
        let error = verify_export(&text, KeyTrust::Pinned(&public), None).expect_err("mutation detected");
        let last = lines.len();
        assert!(
            error.line == expected || error.line + 1 == expected || (error.line == last && expected >= last - 1),
            "attempt {attempt}: mutation at line {expected} reported at {}: {}",
            error.line,
            error.problem
        );
    }
}

/// 10,000 genuinely signed but randomly edited logs (fields of the lawful history replaced
/// by odd text: non-ASCII, signs, exponents, huge numbers, empty strings): the content
/// rules answer each with a verdict, and never panic.
#[test]
fn randomly_edited_signed_logs_never_panic_the_verifier() {
    let key = signing_key();
    let public = key.public_key();
    let odd = [
        "",
        "é",
        "ééééééééééééééééééé",
        "-1",
        "+0.5",
        "1e300",
        "18446744073709551616",
        "0.0000001",
        "NaN",
        "run:",
        "run:1",
        "model:1",
        "authorisation:1",
        "principal:x",
        "application:1",
        "dataset:1",
        "approved",
        "reviewer",
        "operator",
        "admin",
        "2026-02-30T25:61:61Z",
        "9999-12-31T23:59:59.999999999Z",
        "\u{0}",
        "\"",
        "\\",
        "ab",
        "1",
        "2",
    ];
    let keys = [
        "authorisation",
        "digest",
        "epsilon_charged",
        "epsilon_total",
        "state",
        "role",
        "application",
        "operator",
        "dataset",
        "valid_until",
    ];
    let mut state = 0x5EED_u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..10_000 {
        let mut history = lawful_history();
        for _ in 0..1 + next(3) {
            let target = next(history.len());
            let text = odd[next(odd.len())].to_owned();
            let event = &mut history[target];
            match next(5) {
                0 => event.object = text,
                1 => event.role = text,
                2 => event.actor_id = text.parse().ok().or(Some(next(8) as i64)),
                3 => {
                    event.action = ["run.start", "model.review", "authorisation.create", "run.release", "model.revoke"]
                        [next(5)]
                    .into()
                }
                _ => {
                    event.details.insert(keys[next(keys.len())].into(), text);
                }
            }
        }
        match verify_export(&export(history, &key), KeyTrust::Pinned(&public), None) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 5_000, "most random edits break a rule ({accepted} accepted, {refused} refused)");
}

/// Checkpoints carry their time, and the verifier holds the log to it: a checkpoint is
/// signed after every entry it covers, and checkpoint times never go backwards.
#[test]
fn a_checkpoint_dated_before_its_entries_or_its_predecessor_is_refused() {
    let key = signing_key();
    let public = key.public_key();
    let lawful = export(lawful_history(), &key);
    let mut lines: Vec<String> = lawful.lines().map(str::to_owned).collect();
    let last: ExportCheckpoint = serde_json::from_str(lines.last().expect("line")).expect("checkpoint");
    let signed = Checkpoint::verify(&last.checkpoint, &public).expect("verifies");
    assert_eq!(signed.time.as_deref(), Some("2026-06-01T00:00:00Z"), "the checkpoint carries its time");
    let backdated = Checkpoint { time: Some("2026-05-31T23:59:59Z".into()), ..signed.clone() }.sign(&key);
    *lines.last_mut().expect("line") =
        serde_json::to_string(&ExportCheckpoint { checkpoint: backdated }).expect("json");
    let error = verify_export(&(lines.join("\n") + "\n"), KeyTrust::Pinned(&public), None).expect_err("backdated");
    assert!(error.problem.contains("dated before an entry it covers"), "{error}");

    // Two checkpoints whose times go backwards.
    let mut writer = LogWriter::default();
    let mut notes = Vec::new();
    for (index, time) in ["2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z"].into_iter().enumerate() {
        writer.append(event("catalogue.read", &format!("catalogue:{index}")), time);
        notes.push(writer.checkpoint(&key));
    }
    let first = Checkpoint::verify(&notes[0], &public).expect("first");
    let late_first = Checkpoint { time: Some("2026-06-03T00:00:00Z".into()), ..first }.sign(&key);
    let text = writer.export(&key);
    let entries: Vec<&str> = text.lines().skip(1).take(2).collect();
    let broken = export_text(&public, entries, [late_first.as_str(), notes[1].as_str()]);
    let error = verify_export(&broken, KeyTrust::Pinned(&public), None).expect_err("backwards");
    assert!(error.problem.contains("went backwards"), "{error}");
}

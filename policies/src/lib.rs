//! The Sluice policy gate: pure decisions about who may do what, and the DP release.
//!
//! Every function here takes the facts and the current time as arguments and returns a
//! decision with a reason; nothing here reads a clock, a file, a database or a global.
//! The gateway gathers the facts, calls the gate, and records the decision in the audit
//! log. Default deny: every check names the fact that allows the action, and anything
//! else is a [`Denial`]. The one effect is randomness: [`release`] draws its noise from
//! opendp, which takes it from the operating system through OpenSSL.
//!
//! ```
//! use sluice_policies::{Action, PolicyGate, Role};
//! let gate = PolicyGate::default_policies().expect("the shipped policies validate");
//! assert!(gate.decide(Role::Operator, true, Action::RunModel).is_ok());
//! assert!(gate.decide(Role::Regulator, true, Action::RunModel).is_err());
//! ```

mod access;
mod budget;
mod decision;
mod gate;
mod organisation;
mod procedure;
mod release;
mod roles;

pub use access::{
    check_authorisation_holder, check_budget_reader, check_column_grantable, check_column_granted,
    check_dataset_provider, check_dummy_run, check_fresh_checkpoint, check_not_destroyed, check_run_reader,
};
pub use budget::{Epsilon, PrivacyBudget};
pub use decision::{Denial, DenialReason};
pub use gate::{CEDAR_SCHEMA, DEFAULT_POLICIES, PolicyError, PolicyGate};
pub use organisation::{MAX_ORGANISATION_NAME, OrganisationId, check_second_admin, normalise_organisation_name};
pub use procedure::{
    ApplicationFacts, ApplicationState, AuthorisationFacts, ChargeFacts, Charged, DEFAULT_MIN_EPSILON_PER_RUN, Licence,
    ModelFacts, ModelState, Principal, ResultParties, RunFacts, RunPermit, authorise_run, check_epsilon_per_run,
    check_licence, check_not_revoked, check_run_rate, model_review_outcome, reads_submission, review_application,
    review_model, review_result, reviewer_reads_result, revoke_authorisation, revoke_model, submit_draft,
    withdraw_application,
};
pub use release::spec::{
    Noise, ReleaseContext, ReleaseSpec, ReleasedBinView, ReleasedGroupView, ReleasedOutput, release_outputs,
};
pub use release::{
    AggregateKind, GAUSSIAN_DELTA, HistogramRule, OutputRule, QuantileRule, ReleaseError, ReleasedBin, ReleasedGroup,
    ReleasedGroups, ReleasedHistogram, ReleasedQuantile, ReleasedValue, release, release_gaussian, release_grouped,
    release_histogram, release_quantile, zcdp_epsilon,
};
pub use roles::{Action, ReviewerKind, Role};

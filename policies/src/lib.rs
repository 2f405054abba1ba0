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
//! use sluice_policies::{Action, OrganisationId, PolicyGate, Principal, Resource, Role};
//! let gate = PolicyGate::default_policies().expect("the shipped policies validate");
//! let now = time::OffsetDateTime::now_utc();
//! let regulator =
//!     Principal { id: 7, role: Role::Regulator, organisation: OrganisationId(3), reviewer_kind: None, licence: None };
//! assert!(gate.decide(&regulator, now, Action::ExportAudit, &Resource::Platform).is_ok());
//! assert!(gate.decide(&regulator, now, Action::RegisterDataset, &Resource::Platform).is_err());
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
    check_column_grantable, check_column_granted, check_dummy_run, check_fresh_checkpoint, check_not_destroyed,
    check_principal_rate,
};
pub use budget::{Epsilon, PrivacyBudget};
pub use decision::{Denial, DenialReason};
pub use gate::{CEDAR_SCHEMA, DEFAULT_POLICIES, PolicyError, PolicyGate, Resource};
pub use organisation::{MAX_ORGANISATION_NAME, OrganisationId, normalise_organisation_name};
pub use procedure::{
    ApplicationState, AuthorisationFacts, ChargeFacts, Charged, DEFAULT_MIN_EPSILON_PER_RUN, Licence, ModelFacts,
    ModelState, Principal, RunFacts, RunPermit, authorise_run, check_epsilon_per_run, check_licence, check_not_revoked,
    check_run_rate, model_review_outcome, review_application, review_model, review_result, revoke_authorisation,
    revoke_model, submit_draft, withdraw_application,
};
pub use release::spec::{
    Noise, ReleaseContext, ReleaseSpec, ReleasedBinView, ReleasedGroupView, ReleasedOutput, StreamingRelease,
    release_outputs,
};
pub use release::{
    AggregateKind, GAUSSIAN_DELTA, HistogramRule, OutputRule, QuantileRule, ReleaseError, ReleasedBin, ReleasedGroup,
    ReleasedGroups, ReleasedHistogram, ReleasedQuantile, ReleasedValue, release, release_gaussian, release_grouped,
    release_histogram, release_quantile, zcdp_epsilon,
};
pub use roles::{Action, ReviewerKind, Role};

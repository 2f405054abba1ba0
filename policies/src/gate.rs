//! The one decision point for who may do what to which object: Cedar policies over real
//! entities. The default set ships in `policies/cedar/`, validated against the Cedar schema
//! beside it; an administrator may supply another set, which must validate too or the
//! gateway does not start.
//!
//! It owns loading and validating the policy set, turning a caller and a [`Resource`] into
//! Cedar entities, and turning Cedar's answer into a [`Denial`] that names its rule (a
//! forbid policy's `@reason` and `@message`). It is pure: the caller, the object's facts and
//! the time are passed in. Default deny: a request no policy permits is denied, and so is
//! one that does not validate or where any policy fails to evaluate. The procedure's state
//! machine (which state follows which, quorums, budgets, windows) is `procedure`'s.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet,
    Request, RestrictedExpression, Schema, ValidationMode, Validator,
};

use time::OffsetDateTime;

use crate::decision::{Denial, DenialReason};
use crate::organisation::OrganisationId;
use crate::procedure::{ApplicationState, ModelState, Principal, check_licence};
use crate::roles::{Action, Role};

/// The Cedar schema every policy set is validated against.
pub const CEDAR_SCHEMA: &str = include_str!("../cedar/sluice.cedarschema");
/// Sluice's default policy set.
pub const DEFAULT_POLICIES: &str = include_str!("../cedar/default.cedar");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the Cedar schema does not parse: {0}")]
    Schema(String),
    #[error("the policy set does not parse: {0}")]
    Parse(String),
    #[error("the policy set does not validate against the schema: {0}")]
    Invalid(String),
}

/// The object a request acts on, with the facts the policies may look at. Actions on no
/// particular object (creating one, the catalogue, the audit log) act on the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Platform,
    /// An account an administrator acts on; `created_by` is the administrator who created
    /// it through the API.
    Principal {
        principal: Principal,
        created_by: Option<i64>,
    },
    Organisation(OrganisationId),
    /// `owner` is the provider that registered it.
    Dataset {
        id: i64,
        owner: i64,
        organisation: OrganisationId,
        destroyed: bool,
    },
    /// `owner` is the applicant; `provider_organisations` provide the data applied for (one
    /// department per dataset), and `pending_providers` are those of them that have not yet
    /// approved it (all of them until the data bureau has).
    Application {
        id: i64,
        owner: i64,
        organisation: OrganisationId,
        provider_organisations: Vec<OrganisationId>,
        pending_providers: Vec<OrganisationId>,
        state: ApplicationState,
        bureau_reviewer: Option<i64>,
    },
    /// `owner` is the submitter.
    Model {
        id: i64,
        owner: i64,
        organisation: OrganisationId,
        state: ModelState,
    },
    /// `owner` is the operator it was granted to; `providers` registered its datasets, and
    /// `provider_organisations` are their departments.
    Authorisation {
        id: i64,
        owner: i64,
        organisation: OrganisationId,
        providers: Vec<i64>,
        provider_organisations: Vec<OrganisationId>,
        revoked: bool,
    },
    /// `owner` is the operator who ran it; `outputs_held` whether its authorisation holds
    /// outputs for data product review.
    Run {
        id: i64,
        owner: i64,
        organisation: OrganisationId,
        provider_organisations: Vec<OrganisationId>,
        outputs_held: bool,
        state: String,
    },
}

/// A forbid policy's reason, read from its annotations at load.
#[derive(Debug, Clone)]
struct ForbidReason {
    /// Position in the policy file: the first applicable forbid names the reason.
    position: usize,
    reason: DenialReason,
    message: Option<String>,
}

/// A validated policy set and its schema.
#[derive(Debug, Clone)]
pub struct PolicyGate {
    policies: PolicySet,
    /// The permits alone: whether the caller's role may attempt the action at all, before
    /// any forbid names a relation or a state.
    permits: PolicySet,
    schema: Schema,
    forbids: HashMap<PolicyId, ForbidReason>,
}

/// One question to the policy set: may `caller` (with a licence valid now, or not)
/// perform `action` on `resource` at `now`?
#[derive(Debug, Clone, Copy)]
struct Question<'a> {
    caller: &'a Principal,
    licensed: bool,
    now: OffsetDateTime,
    action: Action,
    resource: &'a Resource,
}

/// What Cedar said, before the licence is considered.
enum Verdict {
    Allow,
    /// No permit applied.
    NotPermitted,
    /// A forbid applied; the first one's reason.
    Forbidden(Denial),
}

impl PolicyGate {
    /// Parses `policies`, validates it strictly against [`CEDAR_SCHEMA`], and reads each
    /// forbid's `@reason` (which must be a known code) and `@message`.
    pub fn new(policies: &str) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(CEDAR_SCHEMA).map_err(|error| PolicyError::Schema(error.to_string()))?;
        let policies: PolicySet =
            policies.parse().map_err(|error: cedar_policy::ParseErrors| PolicyError::Parse(error.to_string()))?;
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation.validation_errors().map(|error| error.to_string()).collect();
            return Err(PolicyError::Invalid(errors.join("; ")));
        }
        let permits =
            PolicySet::from_policies(policies.policies().filter(|policy| policy.effect() == Effect::Permit).cloned())
                .map_err(|error| PolicyError::Invalid(error.to_string()))?;
        let mut forbids = HashMap::new();
        for policy in policies.policies().filter(|policy| policy.effect() == Effect::Forbid) {
            let reason = match policy.annotation("reason") {
                None => DenialReason::Forbidden,
                Some(code) => DenialReason::parse(code).ok_or_else(|| {
                    PolicyError::Invalid(format!("policy {}: @reason(\"{code}\") is not a denial code", policy.id()))
                })?,
            };
            // Parsed policies are named policy0, policy1, ... in the order of the file.
            let position = policy.id().to_string().strip_prefix("policy").and_then(|n| n.parse().ok());
            let message = policy.annotation("message").map(str::to_owned);
            forbids.insert(
                policy.id().clone(),
                ForbidReason { position: position.unwrap_or(usize::MAX), reason, message },
            );
        }
        Ok(Self { policies, permits, schema, forbids })
    }

    /// The shipped default policy set.
    pub fn default_policies() -> Result<Self, PolicyError> {
        Self::new(DEFAULT_POLICIES)
    }

    /// May `caller` perform `action` on `resource` at `now`? Cedar decides on the caller's
    /// role, organisation, reviewer kind and licence and on the object's owner,
    /// organisations and state. When only an operator's licence stands in the way, the
    /// denial is the licence's own, which says what is wrong with it.
    pub fn decide(
        &self,
        caller: &Principal,
        now: OffsetDateTime,
        action: Action,
        resource: &Resource,
    ) -> Result<(), Denial> {
        let licence = check_licence(caller, now);
        let licensed = caller.role == Role::Operator && licence.is_ok();
        let question = Question { caller, licensed, now, action, resource };
        match self.evaluate(question) {
            Verdict::Allow => Ok(()),
            Verdict::Forbidden(denial) => Err(denial),
            Verdict::NotPermitted => {
                if caller.role == Role::Operator
                    && !licensed
                    && matches!(self.evaluate(Question { licensed: true, ..question }), Verdict::Allow)
                    && let Err(licence) = licence
                {
                    return Err(licence);
                }
                Err(Denial::new(
                    DenialReason::WrongRole,
                    format!("the {} role may not perform {} on this object", caller.role.as_str(), action.as_str()),
                ))
            }
        }
    }

    fn evaluate(&self, question: Question<'_>) -> Verdict {
        let action = question.action;
        let Some((request, entities)) = self.request(question) else {
            // A request that cannot be formed (the wrong kind of object for the action) is
            // denied, like one no policy permits.
            return Verdict::NotPermitted;
        };
        let response = Authorizer::new().is_authorized(&request, &self.policies, &entities);
        if response.diagnostics().errors().next().is_some() {
            return Verdict::NotPermitted;
        }
        if response.decision() == Decision::Allow {
            return Verdict::Allow;
        }
        // Denied. The role first: a caller no permit lets attempt the action is told so,
        // whatever relation a forbid would also name (asked only on a denial, so an allowed
        // request is evaluated once).
        let permitted = Authorizer::new().is_authorized(&request, &self.permits, &entities);
        if permitted.decision() != Decision::Allow || permitted.diagnostics().errors().next().is_some() {
            return Verdict::NotPermitted;
        }
        let first = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.forbids.get(id).map(|forbid| (id, forbid)))
            .min_by_key(|(_, forbid)| forbid.position);
        match first {
            None => Verdict::NotPermitted,
            Some((id, forbid)) => Verdict::Forbidden(Denial::new(
                forbid.reason,
                forbid
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("the platform's policy ({id}) forbids {} here", action.as_str())),
            )),
        }
    }

    fn request(&self, question: Question<'_>) -> Option<(Request, Entities)> {
        let Question { caller, licensed, now, action, resource } = question;
        let caller_uid = uid("Principal", caller.id)?;
        let mut caller_attributes = principal_attributes(caller, licensed)?;
        let (resource_uid, resource_entity) = match resource {
            Resource::Platform => (uid_named("Platform", "sluice")?, None),
            Resource::Principal { principal, created_by } => {
                let created_by = match created_by {
                    Some(id) => Some(entity_value("Principal", *id)?),
                    None => None,
                };
                if principal.id == caller.id {
                    // One entity per principal: the caller acting on itself.
                    if let Some(created_by) = created_by {
                        caller_attributes.insert("created_by".into(), created_by);
                    }
                    (caller_uid.clone(), None)
                } else {
                    let target_licensed = principal.role == Role::Operator && check_licence(principal, now).is_ok();
                    let mut attributes = principal_attributes(principal, target_licensed)?;
                    if let Some(created_by) = created_by {
                        attributes.insert("created_by".into(), created_by);
                    }
                    let target = uid("Principal", principal.id)?;
                    (target.clone(), Some(Entity::new(target, attributes, HashSet::new()).ok()?))
                }
            }
            Resource::Organisation(id) => (uid("Organisation", id.0)?, None),
            other => {
                let (kind, id, attributes) = object_attributes(other)?;
                let target = uid(kind, id)?;
                (target.clone(), Some(Entity::new(target, attributes, HashSet::new()).ok()?))
            }
        };
        let caller_entity = Entity::new(caller_uid.clone(), caller_attributes, HashSet::new()).ok()?;
        let entities =
            Entities::from_entities([Some(caller_entity), resource_entity].into_iter().flatten(), Some(&self.schema))
                .ok()?;
        let action = EntityUid::from_str(&format!(r#"Sluice::Action::"{}""#, action.as_str())).ok()?;
        let request = Request::new(caller_uid, action, resource_uid, Context::empty(), Some(&self.schema)).ok()?;
        Some((request, entities))
    }
}

fn uid_named(kind: &str, id: &str) -> Option<EntityUid> {
    let kind = EntityTypeName::from_str(&format!("Sluice::{kind}")).ok()?;
    Some(EntityUid::from_type_name_and_id(kind, EntityId::new(id)))
}

fn uid(kind: &str, id: i64) -> Option<EntityUid> {
    uid_named(kind, &id.to_string())
}

fn entity_value(kind: &str, id: i64) -> Option<RestrictedExpression> {
    Some(RestrictedExpression::new_entity_uid(uid(kind, id)?))
}

/// A set of entities of one type, as a Cedar set attribute.
fn entity_set(kind: &str, ids: impl IntoIterator<Item = i64>) -> Option<RestrictedExpression> {
    Some(RestrictedExpression::new_set(ids.into_iter().map(|id| entity_value(kind, id)).collect::<Option<Vec<_>>>()?))
}

fn organisations(ids: &[OrganisationId]) -> Option<RestrictedExpression> {
    entity_set("Organisation", ids.iter().map(|id| id.0))
}

fn string(text: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(text.to_owned())
}

fn principal_attributes(principal: &Principal, licensed: bool) -> Option<HashMap<String, RestrictedExpression>> {
    Some(HashMap::from([
        ("role".to_owned(), string(principal.role.as_str())),
        ("organisation".to_owned(), entity_value("Organisation", principal.organisation.0)?),
        ("reviewer_kind".to_owned(), string(principal.reviewer_kind.map_or("", |kind| kind.as_str()))),
        ("licensed".to_owned(), RestrictedExpression::new_bool(licensed)),
    ]))
}

/// The entity type, id and attributes of an owned object.
fn object_attributes(resource: &Resource) -> Option<(&'static str, i64, HashMap<String, RestrictedExpression>)> {
    let owned = |owner: i64, organisation: OrganisationId| -> Option<HashMap<String, RestrictedExpression>> {
        Some(HashMap::from([
            ("owner".to_owned(), entity_value("Principal", owner)?),
            ("organisation".to_owned(), entity_value("Organisation", organisation.0)?),
        ]))
    };
    Some(match resource {
        Resource::Dataset { id, owner, organisation, destroyed } => {
            let mut attributes = owned(*owner, *organisation)?;
            attributes.insert("destroyed".into(), RestrictedExpression::new_bool(*destroyed));
            ("Dataset", *id, attributes)
        }
        Resource::Application {
            id,
            owner,
            organisation,
            provider_organisations,
            pending_providers,
            state,
            bureau_reviewer,
        } => {
            let mut attributes = owned(*owner, *organisation)?;
            attributes.insert("provider_organisations".into(), organisations(provider_organisations)?);
            attributes.insert("pending_providers".into(), organisations(pending_providers)?);
            attributes.insert("state".into(), string(state.as_str()));
            if let Some(reviewer) = bureau_reviewer {
                attributes.insert("bureau_reviewer".into(), entity_value("Principal", *reviewer)?);
            }
            ("Application", *id, attributes)
        }
        Resource::Model { id, owner, organisation, state } => {
            let mut attributes = owned(*owner, *organisation)?;
            attributes.insert("state".into(), string(state.as_str()));
            ("Model", *id, attributes)
        }
        Resource::Authorisation { id, owner, organisation, providers, provider_organisations, revoked } => {
            let mut attributes = owned(*owner, *organisation)?;
            attributes.insert("providers".into(), entity_set("Principal", providers.iter().copied())?);
            attributes.insert("provider_organisations".into(), organisations(provider_organisations)?);
            attributes.insert("revoked".into(), RestrictedExpression::new_bool(*revoked));
            ("Authorisation", *id, attributes)
        }
        Resource::Run { id, owner, organisation, provider_organisations, outputs_held, state } => {
            let mut attributes = owned(*owner, *organisation)?;
            attributes.insert("provider_organisations".into(), organisations(provider_organisations)?);
            attributes.insert("outputs_held".into(), RestrictedExpression::new_bool(*outputs_held));
            attributes.insert("state".into(), string(state));
            ("Run", *id, attributes)
        }
        Resource::Platform | Resource::Principal { .. } | Resource::Organisation(_) => return None,
    })
}

#[cfg(test)]
mod tests;

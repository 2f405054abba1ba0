//! Ids of the gateway's entities, each a type of its own: a run id cannot be passed where a
//! model id is meant, nor a dataset's id where its provider's is.
//!
//! It owns the types only: how an id is shown (the bare number) and sent (a JSON number);
//! how it is stored (a 64-bit integer column on either back end) is the store's.
//! It must not look anything up or decide anything; the store assigns ids, the policies
//! compare them. Organisations' ids are [`sluice_policies::OrganisationId`], because the
//! separation-of-duties rules compare them.

/// Declares an entity id: a transparent `i64`, sent by serde and shown by `Display` as the
/// number.
macro_rules! entity_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

entity_id!(
    /// A principal (an administrator, provider, operator, reviewer or regulator).
    PrincipalId
);
entity_id!(
    /// A registered dataset (all its versions).
    DatasetId
);
entity_id!(
    /// An application for a scenario.
    ApplicationId
);
entity_id!(
    /// An authorisation, the approved form of an application.
    AuthorisationId
);
entity_id!(
    /// One submitted model version.
    ModelId
);
entity_id!(
    /// One run of a model.
    RunId
);
entity_id!(
    /// A gateway process holding a lease on the store ([`crate::store::Store::node`]).
    NodeId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_sent_and_shown_as_its_bare_number() {
        assert_eq!(serde_json::to_string(&RunId(42)).expect("serialises"), "42");
        assert_eq!(serde_json::from_str::<ModelId>("7").expect("parses"), ModelId(7));
        assert_eq!(DatasetId(3).to_string(), "3");
        assert!(serde_json::from_str::<RunId>("\"7\"").is_err(), "a string is not an id");
    }
}

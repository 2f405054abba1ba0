//! The audit vocabulary: every action an entry can record and every detail key, as typed
//! names shared by the writer (the gateway builds events only from these) and the verifier
//! (which refuses an entry whose action is not here, and reads details by these keys).
//!
//! It owns the names and the role each successful action belongs to. It must not hold a
//! rule about what the entries mean beyond that (the content rules are `verify`'s).

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$doc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$doc])* $variant,)*
        }

        impl $name {
            /// Every name, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name as the log writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The name as the log wrote it, if it is in the vocabulary.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// What an entry records.
    Act {
        /// An administrator made at the host (`sluice init`, `sluice admin add`).
        PrincipalBootstrap = "principal.bootstrap",
        PrincipalCreate = "principal.create",
        /// A second administrator approves a principal (the two-person rule).
        PrincipalApprove = "principal.approve",
        PrincipalTokenIssue = "principal.token.issue",
        PrincipalTokenRevoke = "principal.token.revoke",
        PrincipalDisable = "principal.disable",
        /// One account read, in a page of `GET /v1/principals` (recorded as `principal.list`).
        PrincipalRead = "principal.read",
        /// A page of the accounts the caller may read (`GET /v1/principals`).
        PrincipalList = "principal.list",
        TokenRotate = "token.rotate",
        OrganisationCreate = "organisation.create",
        OrganisationRename = "organisation.rename",
        OrganisationRead = "organisation.read",
        /// A request refused before it had a caller (missing, unknown, expired token…).
        Authenticate = "authenticate",
        /// A request refused as invalid (malformed, unknown route, too large…).
        RequestInvalid = "request.invalid",
        KeysRotate = "keys.rotate",
        DatasetRegister = "dataset.register",
        DatasetIngest = "dataset.ingest",
        DatasetDestroy = "dataset.destroy",
        DatasetDummy = "dataset.dummy",
        CatalogueRead = "catalogue.read",
        ApplicationSubmit = "application.submit",
        ApplicationReview = "application.review",
        ApplicationWithdraw = "application.withdraw",
        ApplicationRead = "application.read",
        /// A page of the applications the caller may read (`GET /v1/applications`).
        ApplicationList = "application.list",
        AuthorisationCreate = "authorisation.create",
        AuthorisationRevoke = "authorisation.revoke",
        ModelSubmit = "model.submit",
        ModelReview = "model.review",
        ModelRevoke = "model.revoke",
        ModelRead = "model.read",
        /// A page of the models the caller may read (`GET /v1/models`).
        ModelList = "model.list",
        RunStart = "run.start",
        RunRelease = "run.release",
        /// How many rows fell back to their declared defaults (regulators only).
        RunFallbacks = "run.fallbacks",
        ResultRead = "result.read",
        /// A page of the runs the caller may read (`GET /v1/runs`).
        RunList = "run.list",
        ResultReview = "result.review",
        BudgetRead = "budget.read",
        AuditExport = "audit.export",
        AuditSearch = "audit.search",
        AuditCheckpoint = "audit.checkpoint",
        AuditProof = "audit.proof",
        AuditWitness = "audit.witness",
        /// An alert the gateway computed from the log (`alerts::detect`), recorded in it.
        AlertRaise = "alert.raise",
        /// Usage figures read (`GET /v1/usage`).
        UsageRead = "usage.read",
        AuditCosign = "audit.cosign",
        /// Which witnesses cosigned which checkpoint (`GET /v1/audit/witnesses`).
        AuditWitnesses = "audit.witnesses",
    }
}

vocabulary! {
    /// A key of an entry's `details`.
    Detail {
        Application = "application",
        Approval = "approval",
        Authorisation = "authorisation",
        Checklist = "checklist",
        Chunks = "chunks",
        Columns = "columns",
        Count = "count",
        CreatedBy = "created_by",
        DataKeysDeleted = "data_keys_deleted",
        DataKeysRewrapped = "data_keys_rewrapped",
        Dataset = "dataset",
        DatasetVersion = "dataset_version",
        Datasets = "datasets",
        Decision = "decision",
        Digest = "digest",
        Epsilon = "epsilon",
        EpsilonCharged = "epsilon_charged",
        EpsilonTotal = "epsilon_total",
        ExpiresAt = "expires_at",
        FallbackRows = "fallback_rows",
        From = "from",
        Fuel = "fuel",
        Held = "held",
        Kind = "kind",
        HoldOutputs = "hold_outputs",
        /// The dataset a scenario joins to its first one on their ids (issue 16).
        JoinedColumns = "joined_columns",
        JoinedDataset = "joined_dataset",
        JoinedDatasetVersion = "joined_dataset_version",
        Licence = "licence",
        LicenceValidFrom = "licence_valid_from",
        LicenceValidUntil = "licence_valid_until",
        Method = "method",
        Model = "model",
        Name = "name",
        NewFingerprint = "new_fingerprint",
        NonFinite = "non_finite",
        Note = "note",
        OldFingerprint = "old_fingerprint",
        Operator = "operator",
        Organisation = "organisation",
        OrganisationName = "organisation_name",
        Outputs = "outputs",
        /// The blake3 of `values` (see `release`).
        Release = "release",
        Results = "results",
        /// How many items a list answered with.
        Returned = "returned",
        ReviewerKind = "reviewer_kind",
        Role = "role",
        Rows = "rows",
        RowsSkipped = "rows_skipped",
        Salt = "salt",
        SchemaHash = "schema_hash",
        Seed = "seed",
        Size = "size",
        Stack = "stack",
        Stage = "stage",
        State = "state",
        Subject = "subject",
        To = "to",
        Trap = "trap",
        ValidUntil = "valid_until",
        /// The released values in canonical JSON (see `release`).
        Values = "values",
        Version = "version",
        VisibleAt = "visible_at",
        Witness = "witness",
    }
}

impl Act {
    /// The role a successful entry of this action must have been done in, where the log
    /// can tell.
    pub fn required_role(self) -> Option<&'static str> {
        use Act::*;
        Some(match self {
            PrincipalCreate | PrincipalApprove | PrincipalTokenIssue | PrincipalTokenRevoke | PrincipalDisable
            | KeysRotate | OrganisationCreate | OrganisationRename => "admin",
            DatasetRegister | DatasetIngest | DatasetDestroy => "provider",
            ApplicationSubmit | ApplicationWithdraw | ModelSubmit | RunStart => "operator",
            ApplicationReview | AuthorisationCreate | ModelReview | ModelRevoke | ResultReview => "reviewer",
            AuditExport | AuditSearch => "regulator",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for act in Act::ALL {
            assert!(seen.insert(act.as_str()), "{act} twice");
            assert_eq!(Act::parse(act.as_str()), Some(*act));
        }
        let mut seen = std::collections::HashSet::new();
        for detail in Detail::ALL {
            assert!(seen.insert(detail.as_str()), "{detail} twice");
            assert_eq!(Detail::parse(detail.as_str()), Some(*detail));
        }
        assert_eq!(Act::parse("data.steal"), None);
    }
}

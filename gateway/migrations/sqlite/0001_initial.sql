-- Sluice schema, SQLite. Times are RFC 3339 UTC text; ε is integer millionths.

CREATE TABLE principals (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    organisation TEXT NOT NULL,
    reviewer_kind TEXT,
    licence_number TEXT,
    licence_valid_from TEXT,
    licence_valid_until TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    provider_id INTEGER NOT NULL REFERENCES principals(id),
    description TEXT NOT NULL,
    schema_toml TEXT NOT NULL,
    schema_hash TEXT NOT NULL,
    epsilon_total INTEGER NOT NULL CHECK (epsilon_total > 0),
    epsilon_spent INTEGER NOT NULL DEFAULT 0 CHECK (epsilon_spent >= 0 AND epsilon_spent <= epsilon_total),
    created_at TEXT NOT NULL
);

CREATE TABLE dataset_versions (
    dataset_id INTEGER NOT NULL REFERENCES datasets(id),
    version INTEGER NOT NULL,
    row_count INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version)
);

CREATE TABLE applications (
    id INTEGER PRIMARY KEY,
    operator_id INTEGER NOT NULL REFERENCES principals(id),
    dataset_id INTEGER NOT NULL REFERENCES datasets(id),
    purpose TEXT NOT NULL,
    use_scope TEXT NOT NULL,
    security_measures TEXT NOT NULL,
    columns_json TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    epsilon_requested INTEGER NOT NULL CHECK (epsilon_requested > 0),
    state TEXT NOT NULL,
    bureau_reviewer_id INTEGER REFERENCES principals(id),
    created_at TEXT NOT NULL
);

CREATE TABLE application_reviews (
    id INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL REFERENCES applications(id),
    reviewer_id INTEGER NOT NULL REFERENCES principals(id),
    stage TEXT NOT NULL,
    approved INTEGER NOT NULL,
    comment TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE authorisations (
    id INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL UNIQUE REFERENCES applications(id),
    operator_id INTEGER NOT NULL REFERENCES principals(id),
    dataset_id INTEGER NOT NULL REFERENCES datasets(id),
    purpose TEXT NOT NULL,
    columns_json TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    epsilon_total INTEGER NOT NULL CHECK (epsilon_total > 0),
    epsilon_spent INTEGER NOT NULL DEFAULT 0 CHECK (epsilon_spent >= 0 AND epsilon_spent <= epsilon_total),
    revoked_at TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    authorisation_id INTEGER NOT NULL REFERENCES authorisations(id),
    submitter_id INTEGER NOT NULL REFERENCES principals(id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    module BLOB NOT NULL,
    manifest_toml TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE model_reviews (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models(id),
    reviewer_id INTEGER NOT NULL REFERENCES principals(id),
    approved INTEGER NOT NULL,
    comment TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    authorisation_id INTEGER NOT NULL REFERENCES authorisations(id),
    model_id INTEGER NOT NULL REFERENCES models(id),
    operator_id INTEGER NOT NULL REFERENCES principals(id),
    dataset_id INTEGER NOT NULL REFERENCES datasets(id),
    dataset_version INTEGER NOT NULL,
    epsilon INTEGER NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    result_json TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    entry TEXT NOT NULL,
    leaf_hash BLOB NOT NULL
);

-- The audit log is append-only: the database itself refuses edits and deletions.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

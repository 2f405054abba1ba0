-- Organisations are entities with ids; separation of duties compares ids, never names.
-- `name_key` is the normal form a name is unique by (NFKC, whitespace runs made one
-- space, lower case: sluice_policies::normalise_organisation_name). Rows from before this
-- migration are keyed by SQLite's trim and lower, the nearest SQL has.
CREATE TABLE organisations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    created_by INTEGER REFERENCES principals(id),
    created_at TEXT NOT NULL
);

INSERT INTO organisations (name, name_key, created_at)
SELECT trim(MIN(organisation)), lower(trim(organisation)), MIN(created_at)
FROM principals GROUP BY lower(trim(organisation));

ALTER TABLE principals ADD COLUMN organisation_id INTEGER REFERENCES organisations(id);
UPDATE principals SET organisation_id =
    (SELECT id FROM organisations WHERE name_key = lower(trim(principals.organisation)));

-- The two-person rule: who created a principal, and whether it still waits for a second
-- administrator's approval (it holds no usable token until then).
ALTER TABLE principals ADD COLUMN created_by INTEGER REFERENCES principals(id);
ALTER TABLE principals ADD COLUMN pending_approval INTEGER NOT NULL DEFAULT 0;

-- Crypto-shredding marks a dataset destroyed (its data keys are deleted); key rotation
-- records which master key wraps the data keys, by fingerprint only.

ALTER TABLE datasets ADD COLUMN destroyed_at TEXT;

CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

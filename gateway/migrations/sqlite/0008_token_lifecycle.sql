-- Principals' tokens expire, rotate and can be revoked; a principal can be disabled.
-- A NULL expiry (rows from before this migration) is given created_at + 90 days.
ALTER TABLE principals ADD COLUMN token_expires_at TEXT;
ALTER TABLE principals ADD COLUMN disabled_at TEXT;
UPDATE principals SET token_expires_at = strftime('%Y-%m-%dT%H:%M:%SZ', created_at, '+90 days');

-- Hashes of tokens that were rotated away or revoked, so a caller presenting one is told
-- so (401 token_revoked) rather than that the token is unknown.
CREATE TABLE revoked_tokens (
    token_hash TEXT PRIMARY KEY,
    principal_id INTEGER NOT NULL REFERENCES principals(id),
    reason TEXT NOT NULL,
    revoked_at TEXT NOT NULL
);

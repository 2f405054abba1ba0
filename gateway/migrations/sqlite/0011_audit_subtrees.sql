-- The Merkle tree's perfect subtrees above the leaves: `hash` is MTH of the leaves
-- [idx * 2^level, (idx + 1) * 2^level), written when its last leaf is appended, so a
-- checkpoint's root and an inclusion or consistency proof read O(log n) rows instead of
-- every leaf. Derived from the log (a wrong row gives a proof that does not verify, never
-- a changed entry); the gateway fills it for a log written before it existed. Append-only.
CREATE TABLE audit_subtrees (
    level INTEGER NOT NULL CHECK (level >= 1),
    idx INTEGER NOT NULL CHECK (idx >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

CREATE TRIGGER audit_subtrees_no_update BEFORE UPDATE ON audit_subtrees
BEGIN
    SELECT RAISE(ABORT, 'audit_subtrees is append-only');
END;

CREATE TRIGGER audit_subtrees_no_delete BEFORE DELETE ON audit_subtrees
BEGIN
    SELECT RAISE(ABORT, 'audit_subtrees is append-only');
END;

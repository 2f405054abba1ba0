-- Witnesses' cosignatures (C2SP tlog-cosignature lines) on the log's checkpoints, one per
-- witness and size, served appended to the checkpoint's note. Append-only, like the log.
CREATE TABLE audit_cosignatures (
    size INTEGER NOT NULL REFERENCES audit_checkpoints(size),
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);

CREATE TRIGGER audit_cosignatures_no_update BEFORE UPDATE ON audit_cosignatures
BEGIN
    SELECT RAISE(ABORT, 'audit_cosignatures is append-only');
END;

CREATE TRIGGER audit_cosignatures_no_delete BEFORE DELETE ON audit_cosignatures
BEGIN
    SELECT RAISE(ABORT, 'audit_cosignatures is append-only');
END;

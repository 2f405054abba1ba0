-- A run records the node that runs it (SQLite migration 0013): a node settles as
-- interrupted only the runs of nodes that are dead, never one under way on another node.
ALTER TABLE runs ADD COLUMN node BIGINT;

-- An ingest reserves its version number before it writes a chunk (SQLite migration 0013).
CREATE TABLE ingest_reservations (
    dataset_id BIGINT NOT NULL REFERENCES datasets(id),
    version BIGINT NOT NULL,
    node BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version)
);

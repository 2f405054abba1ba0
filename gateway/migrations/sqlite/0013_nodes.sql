-- Several gateway processes may share one database (PostgreSQL nodes; on SQLite, the CLI
-- beside `sluice serve`). A run records the node that runs it, so a node that starts or
-- sweeps settles only the runs of nodes that are dead, never one still under way elsewhere.
ALTER TABLE runs ADD COLUMN node INTEGER;

-- An ingest reserves its version number before it writes a chunk, in the database every
-- node shares: two nodes never seal the same version, and a node sweeping what crashed
-- ingests left removes only what no live node is still writing.
CREATE TABLE ingest_reservations (
    dataset_id INTEGER NOT NULL REFERENCES datasets(id),
    version INTEGER NOT NULL,
    node INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version)
);

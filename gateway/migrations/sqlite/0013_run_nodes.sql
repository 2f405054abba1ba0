-- Several gateway processes may share one database (PostgreSQL nodes; on SQLite, the CLI
-- beside `sluice serve`). A run records the node that runs it, so a node that starts or
-- sweeps settles only the runs of nodes that are dead, never one still under way elsewhere.
ALTER TABLE runs ADD COLUMN node INTEGER;

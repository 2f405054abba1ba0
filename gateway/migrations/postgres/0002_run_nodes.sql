-- A run records the node that runs it (SQLite migration 0013): a node settles as
-- interrupted only the runs of nodes that are dead, never one under way on another node.
ALTER TABLE runs ADD COLUMN node BIGINT;

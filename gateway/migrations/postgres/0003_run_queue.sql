-- Runs are a queue (SQLite migration 0014): charged runs wait as `queued` until a node with
-- a free sandbox slot claims the oldest (`FOR UPDATE SKIP LOCKED`); the index keeps that
-- lookup and the sweep of `running` runs from scanning every run ever made.
CREATE INDEX runs_open ON runs (state, id) WHERE state IN ('queued', 'running');

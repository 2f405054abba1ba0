-- Runs are a queue: charged runs wait as `queued` until a node with a free sandbox slot
-- claims the oldest; the index keeps that lookup (and the sweep of `running` runs) from
-- scanning every run ever made.
CREATE INDEX runs_open ON runs (state, id) WHERE state IN ('queued', 'running');

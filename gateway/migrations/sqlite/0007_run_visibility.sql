-- ABI 2: a run's result becomes visible to its operator at a time fixed before any data is
-- read (so the time a model takes on the data is not a channel). Runs from before this
-- migration were visible as soon as they finished.
ALTER TABLE runs ADD COLUMN visible_at TEXT;

-- The disclosure rule: a histogram bin whose noisy count is under the dataset's minimum
-- group size is suppressed. The provider sets it at registration; 10 by default.

ALTER TABLE datasets ADD COLUMN min_group_size INTEGER NOT NULL DEFAULT 10;

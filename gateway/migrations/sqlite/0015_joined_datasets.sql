-- One scenario over two departments' data (issue 16): an application, its authorisation
-- and each run may name a second dataset, joined to the first on their level-4 ids inside
-- the host. Its columns are granted beside the first dataset's; a run records the version
-- of it that it read (and charged).
ALTER TABLE applications ADD COLUMN joined_dataset_id INTEGER REFERENCES datasets(id);
ALTER TABLE applications ADD COLUMN joined_columns_json TEXT;
ALTER TABLE authorisations ADD COLUMN joined_dataset_id INTEGER REFERENCES datasets(id);
ALTER TABLE authorisations ADD COLUMN joined_columns_json TEXT;
ALTER TABLE runs ADD COLUMN joined_dataset_version INTEGER;
CREATE INDEX authorisations_by_joined_dataset ON authorisations (joined_dataset_id);

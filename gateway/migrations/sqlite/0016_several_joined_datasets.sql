-- One scenario over several departments' data (issue 16; seed 002 item 16 names three):
-- an application and its authorisation join a list of datasets to the first, in order,
-- each with its columns (`joins_json`: [{"dataset_id": 2, "columns": ["a"]}, ...]); a run
-- records the version of each that it read and charged (`joined_versions_json`: [5, 1],
-- in the same order). The single-dataset columns of 0015 are carried over and dropped.
ALTER TABLE applications ADD COLUMN joins_json TEXT;
UPDATE applications
SET joins_json = json_array(json_object('dataset_id', joined_dataset_id, 'columns', json(joined_columns_json)))
WHERE joined_dataset_id IS NOT NULL;
ALTER TABLE authorisations ADD COLUMN joins_json TEXT;
UPDATE authorisations
SET joins_json = json_array(json_object('dataset_id', joined_dataset_id, 'columns', json(joined_columns_json)))
WHERE joined_dataset_id IS NOT NULL;
ALTER TABLE runs ADD COLUMN joined_versions_json TEXT;
UPDATE runs SET joined_versions_json = json_array(joined_dataset_version) WHERE joined_dataset_version IS NOT NULL;
DROP INDEX authorisations_by_joined_dataset;
ALTER TABLE applications DROP COLUMN joined_dataset_id;
ALTER TABLE applications DROP COLUMN joined_columns_json;
ALTER TABLE authorisations DROP COLUMN joined_dataset_id;
ALTER TABLE authorisations DROP COLUMN joined_columns_json;
ALTER TABLE runs DROP COLUMN joined_dataset_version;

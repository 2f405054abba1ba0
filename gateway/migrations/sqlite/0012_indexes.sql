-- Indexes for the lookups that grow with the tables: without them the run-rate check of
-- every charge counted every run ever made (a scan that grew a run's fixed cost with the
-- number of runs), and reviews, models and authorisations were found by scanning.
CREATE INDEX runs_by_authorisation ON runs (authorisation_id, created_at);
CREATE INDEX runs_by_state ON runs (state);
CREATE INDEX models_by_authorisation ON models (authorisation_id);
CREATE INDEX model_reviews_by_model ON model_reviews (model_id);
CREATE INDEX application_reviews_by_application ON application_reviews (application_id);
CREATE INDEX authorisations_by_dataset ON authorisations (dataset_id);

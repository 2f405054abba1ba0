-- One model, one review (seed 002 §23): the automated results shown to reviewers, and the
-- checklist each review records (usability, consistency, compliance, security).

ALTER TABLE models ADD COLUMN automated_results TEXT;
ALTER TABLE model_reviews ADD COLUMN checklist TEXT;

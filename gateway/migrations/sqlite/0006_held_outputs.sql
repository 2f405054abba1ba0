-- Data product review (数据产品审查): an authorisation may hold every release until a
-- reviewer releases or withholds it.

ALTER TABLE authorisations ADD COLUMN hold_outputs INTEGER NOT NULL DEFAULT 0;

-- Following long provider jobs, and answers that could not be read.

-- How many 2xx answers of this run could not be read: the first is retried,
-- the second is final.
ALTER TABLE runs ADD COLUMN malformed_answers integer NOT NULL DEFAULT 0;

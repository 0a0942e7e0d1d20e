-- A repeated request with an Idempotency-Key is answered from the run the key
-- started (its price and acceptance time are the run's own), so the answer
-- itself is no longer kept beside the key.
ALTER TABLE idempotency_keys ALTER COLUMN response DROP NOT NULL;

-- What the sweeper needs: when a run's message was last published, and how many
-- times a worker died holding it.

ALTER TABLE runs ADD COLUMN last_published_at timestamptz;
ALTER TABLE runs ADD COLUMN lost_count integer NOT NULL DEFAULT 0;
-- Leases to look at, for finding workers that died.
CREATE INDEX runs_leased ON runs (lease_expires_at) WHERE lease_token IS NOT NULL;

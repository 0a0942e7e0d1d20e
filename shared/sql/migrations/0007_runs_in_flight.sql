-- A caller's runs that have not ended, for the cap on runs in flight.
CREATE INDEX runs_caller_open ON runs (caller) WHERE completed_at IS NULL;

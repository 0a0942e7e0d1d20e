-- Stopping runs, waiting for them to end, and idempotent starts.

ALTER TABLE runs ADD COLUMN stop_requested_at timestamptz;

-- Tell listeners (web processes holding GET ?wait=N requests) that a run ended.
-- Notifications are delivered when the ending transaction commits.
CREATE FUNCTION monid_notify_run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monid_run_ended', NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_notify_ended
    AFTER UPDATE OF completed_at ON runs
    FOR EACH ROW
    WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL)
    EXECUTE FUNCTION monid_notify_run_ended();

-- An Idempotency-Key of a caller, the body it came with, and the answer it got.
CREATE TABLE idempotency_keys (
    caller        text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    run_id        text        COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    response      json        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Webhooks, the outbox: the event of a run's end is written in the same transaction
-- as the end itself, so it is never lost (a crash before the commit loses both, one
-- after keeps both) and never made for an end that did not happen. Deliveries are
-- made from these rows afterwards.
--
-- The events are written by triggers, so the statements that end runs (end_run, the
-- sweeper's, a stop's) are left as they are: a run that asked for no webhook costs
-- them only the triggers' WHEN check.

-- What a run asked to be told of its end: {"url", "events": ["run.completed", ...]}
-- (no "events": every end). Null: nothing.
ALTER TABLE runs ADD COLUMN webhook jsonb;

-- A ULID made in PostgreSQL (48 bits of milliseconds, 80 random bits, Crockford's
-- base 32), like the IDs shared/ids.py makes.
CREATE FUNCTION monid_ulid() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
    -- 80 random bits: bytes of a version 4 UUID other than those holding its version
    -- (6) and variant (8), 40 in each half.
    bytes bytea := uuid_send(gen_random_uuid());
    high bigint := 0;
    low bigint := 0;
    made text := '';
BEGIN
    FOR i IN 0..4 LOOP
        high := (high << 8) | get_byte(bytes, i);
    END LOOP;
    low := get_byte(bytes, 5);
    low := (low << 8) | get_byte(bytes, 7);
    FOR i IN 9..11 LOOP
        low := (low << 8) | get_byte(bytes, i);
    END LOOP;
    FOR i IN REVERSE 9..0 LOOP
        made := made || substr(alphabet, ((ms >> (5 * i)) & 31)::int + 1, 1);
    END LOOP;
    FOR i IN REVERSE 7..0 LOOP
        made := made || substr(alphabet, ((high >> (5 * i)) & 31)::int + 1, 1);
    END LOOP;
    FOR i IN REVERSE 7..0 LOOP
        made := made || substr(alphabet, ((low >> (5 * i)) & 31)::int + 1, 1);
    END LOOP;
    RETURN made;
END $$;

-- One event of a run's end: its type and a small summary of the run (IDs, status,
-- cost, resultCount, itemsUrl; never its input or output), the body's `data`.
CREATE TABLE webhook_events (
    id          text        COLLATE "C" PRIMARY KEY DEFAULT monid_ulid()
                CHECK (id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'),
    run_id      text        COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    caller      text        NOT NULL,
    type        text        NOT NULL CHECK (type IN ('run.completed', 'run.failed',
                                                     'run.stopped', 'run.timed_out',
                                                     'run.blocked')),
    payload     jsonb       NOT NULL CHECK (octet_length(payload::text) <= 16384),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_run ON webhook_events (run_id);

-- The event of the run's end, if its webhook asked for this type. Every text taken
-- from the run is cut short, so the summary always fits the table's bound (a failing
-- check here would undo the run's end).
CREATE FUNCTION monid_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event_type text := CASE NEW.status
        WHEN 'COMPLETED' THEN 'run.completed'
        WHEN 'FAILED' THEN 'run.failed'
        WHEN 'STOPPED' THEN 'run.stopped'
        WHEN 'TIMED_OUT' THEN 'run.timed_out'
        WHEN 'BLOCKED' THEN 'run.blocked'
    END;
    wanted jsonb := NEW.webhook -> 'events';
BEGIN
    IF event_type IS NULL
       OR (jsonb_typeof(wanted) = 'array' AND NOT wanted ? event_type) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (run_id, caller, type, payload)
    VALUES (NEW.id, NEW.caller, event_type, jsonb_build_object(
        'runId', NEW.id,
        'status', NEW.status,
        'provider', left(NEW.provider, 200),
        'endpoint', left(NEW.endpoint, 1000),
        'cost', CASE WHEN NEW.cost_micros IS NOT NULL THEN jsonb_build_object(
                    'value', trim_scale(NEW.cost_micros::numeric / 1000000),
                    'currency', 'USD') END,
        'resultCount', NEW.result_count,
        'error', CASE WHEN NEW.error IS NOT NULL THEN jsonb_build_object(
                     'source', left(NEW.error ->> 'source', 100),
                     'code', left(NEW.error ->> 'code', 100)) END,
        'createdAt', to_char(NEW.created_at AT TIME ZONE 'UTC',
                             'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'completedAt', to_char(NEW.completed_at AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'itemsUrl', '/v1/runs/' || NEW.id || '/items'));
    RETURN NULL;
END $$;

-- A run ends by an update that sets completed_at (runs_check ties it to the status)...
CREATE TRIGGER runs_webhook_event_on_end
    AFTER UPDATE OF completed_at ON runs
    FOR EACH ROW
    WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL
          AND NEW.webhook IS NOT NULL)
    EXECUTE FUNCTION monid_webhook_event();
-- ...or is accepted already ended (BLOCKED by a control).
CREATE TRIGGER runs_webhook_event_on_insert
    AFTER INSERT ON runs
    FOR EACH ROW
    WHEN (NEW.completed_at IS NOT NULL AND NEW.webhook IS NOT NULL)
    EXECUTE FUNCTION monid_webhook_event();

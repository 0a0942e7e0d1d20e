-- Webhooks, the deliveries: standing webhooks of a workspace, the secrets that sign,
-- and one delivery per (event, destination) with a log of every try.
--
-- A run's end writes, in its own transaction (the trigger of 0018, widened here), one
-- event and one PENDING delivery for the run's own webhook and for each enabled
-- standing webhook of its caller that wants the event's type; then it notifies
-- `monid_webhook_deliveries` so a worker sends them at once. Nothing is sent from
-- inside a transaction: workers take due deliveries from this table, so a lost
-- message, a killed worker or a restarted database loses no delivery.

-- A workspace's standing webhooks (keyed by the caller, like runs and controls).
CREATE TABLE webhook_endpoints (
    id               text        COLLATE "C" PRIMARY KEY DEFAULT monid_ulid()
                     CHECK (id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'),
    caller           text        NOT NULL,
    url              text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- The event types it wants; null: every run event.
    events           text[]      CHECK (events <@ ARRAY['run.completed', 'run.failed',
                                                      'run.stopped', 'run.timed_out',
                                                      'run.blocked']::text[]),
    description      text        CHECK (length(description) <= 500),
    enabled          boolean     NOT NULL DEFAULT true,
    -- Why it was switched off (e.g. the receiver answered 410 Gone); null while on.
    disabled_reason  text        CHECK (length(disabled_reason) <= 500),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_caller ON webhook_endpoints (caller, id);

-- Signing secrets (`whsec_...`): a standing webhook's own (endpoint_id set) or the
-- workspace's default, which signs runs' own webhooks (endpoint_id null). A rotated
-- secret keeps signing beside the new one until `expires_at` (the grace period).
CREATE TABLE webhook_secrets (
    id           bigserial   PRIMARY KEY,
    caller       text        NOT NULL,
    endpoint_id  text        COLLATE "C" REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    secret       text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz
);
-- One current secret per workspace default and per standing webhook.
CREATE UNIQUE INDEX webhook_secrets_current_default ON webhook_secrets (caller)
    WHERE endpoint_id IS NULL AND expires_at IS NULL;
CREATE UNIQUE INDEX webhook_secrets_current_endpoint ON webhook_secrets (endpoint_id)
    WHERE endpoint_id IS NOT NULL AND expires_at IS NULL;
CREATE INDEX webhook_secrets_caller ON webhook_secrets (caller, endpoint_id);

-- A test event (POST /v1/webhooks/:id/test) belongs to no run.
ALTER TABLE webhook_events ALTER COLUMN run_id DROP NOT NULL;
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_type_check;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_type_check
    CHECK (type IN ('run.completed', 'run.failed', 'run.stopped', 'run.timed_out',
                    'run.blocked', 'webhook.test'));

-- One event to one destination. PENDING until a try is answered 2xx (DELIVERED) or
-- the retry schedule runs out or the destination is gone (FAILED); redelivering
-- makes it PENDING again. A worker sending it holds it until `lease_until`; one whose
-- worker died is taken again when that passes.
CREATE TABLE webhook_deliveries (
    id               text        COLLATE "C" PRIMARY KEY DEFAULT monid_ulid()
                     CHECK (id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'),
    event_id         text        COLLATE "C" NOT NULL
                     REFERENCES webhook_events (id) ON DELETE CASCADE,
    -- The standing webhook it goes to; null: the run's own webhook.
    endpoint_id      text        COLLATE "C"
                     REFERENCES webhook_endpoints (id) ON DELETE SET NULL,
    caller           text        NOT NULL,
    url              text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    status           text        NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempt_count    integer     NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    -- When the next try is due (PENDING only).
    next_attempt_at  timestamptz DEFAULT now(),
    lease_until      timestamptz,
    last_status_code integer,
    last_error       text        CHECK (length(last_error) <= 1000),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'PENDING') = (next_attempt_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id)
    WHERE endpoint_id IS NOT NULL;

-- Every try of a delivery: when, how it was answered, how long it took, the first
-- bytes of the answer, and when the next try is due (null: none).
CREATE TABLE webhook_delivery_attempts (
    id             bigserial   PRIMARY KEY,
    delivery_id    text        COLLATE "C" NOT NULL
                   REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at   timestamptz NOT NULL DEFAULT now(),
    status_code    integer,
    duration_ms    integer     NOT NULL CHECK (duration_ms >= 0),
    response_head  text        CHECK (length(response_head) <= 1024),
    error          text        CHECK (length(error) <= 1000),
    next_retry_at  timestamptz
);
CREATE INDEX webhook_delivery_attempts_delivery ON webhook_delivery_attempts (delivery_id, id);

-- The event of a run's end and its deliveries: to the run's own webhook if it asked
-- for this type, and to each enabled standing webhook of its caller that wants it.
-- No destination, no event. Every text taken from the run is cut short, so the
-- summary always fits the table's bound (a failing check here would undo the end).
CREATE OR REPLACE FUNCTION monid_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event_type text := CASE NEW.status
        WHEN 'COMPLETED' THEN 'run.completed'
        WHEN 'FAILED' THEN 'run.failed'
        WHEN 'STOPPED' THEN 'run.stopped'
        WHEN 'TIMED_OUT' THEN 'run.timed_out'
        WHEN 'BLOCKED' THEN 'run.blocked'
    END;
    wanted jsonb := NEW.webhook -> 'events';
    own boolean;
    event_id text;
BEGIN
    IF event_type IS NULL THEN
        RETURN NULL;
    END IF;
    own := NEW.webhook IS NOT NULL AND NEW.webhook ->> 'url' IS NOT NULL
           AND (jsonb_typeof(wanted) IS DISTINCT FROM 'array' OR wanted ? event_type);
    IF NOT own AND NOT EXISTS (
            SELECT 1 FROM webhook_endpoints e
            WHERE e.caller = NEW.caller AND e.enabled
              AND (e.events IS NULL OR event_type = ANY (e.events))) THEN
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
        'itemsUrl', '/v1/runs/' || NEW.id || '/items'))
    RETURNING id INTO event_id;
    IF own THEN
        INSERT INTO webhook_deliveries (event_id, endpoint_id, caller, url)
        VALUES (event_id, NULL, NEW.caller, left(NEW.webhook ->> 'url', 2048));
    END IF;
    INSERT INTO webhook_deliveries (event_id, endpoint_id, caller, url)
    SELECT event_id, e.id, NEW.caller, e.url
    FROM webhook_endpoints e
    WHERE e.caller = NEW.caller AND e.enabled
      AND (e.events IS NULL OR event_type = ANY (e.events))
    ORDER BY e.id;
    PERFORM pg_notify('monid_webhook_deliveries', event_id);
    RETURN NULL;
END $$;

-- Every end may have a standing webhook to tell now, not only runs that asked.
DROP TRIGGER runs_webhook_event_on_end ON runs;
CREATE TRIGGER runs_webhook_event_on_end
    AFTER UPDATE OF completed_at ON runs
    FOR EACH ROW
    WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL)
    EXECUTE FUNCTION monid_webhook_event();
DROP TRIGGER runs_webhook_event_on_insert ON runs;
CREATE TRIGGER runs_webhook_event_on_insert
    AFTER INSERT ON runs
    FOR EACH ROW
    WHEN (NEW.completed_at IS NOT NULL)
    EXECUTE FUNCTION monid_webhook_event();

-- The whole schema the migrations make, as pg_dump writes it (normalised), with
-- PostgreSQL 15. Made by `python -m shared.schema`; never applied: the
-- migrations are. tests/integration/test_schema.py checks the two agree.

CREATE FUNCTION public.catalog_words(words text[]) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT array_to_string(words, ' ') $$;

CREATE FUNCTION public.monid_asked_runs(asked json) RETURNS TABLE(run_id text, lease_token uuid)
    LANGUAGE plpgsql STABLE ROWS 1
    AS $$
BEGIN
    RETURN QUERY SELECT a ->> 0, (a ->> 1)::uuid FROM json_array_elements(asked) a;
END $$;

CREATE FUNCTION public.monid_check_controls(p_caller text, p_api_key_id bigint, p_hold_micros bigint, OUT blocked boolean, OUT controls jsonb) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
    cap record;
    budget record;
    v_window timestamptz;
    v_spent bigint;
    v_refused boolean;
BEGIN
    blocked := false;
    controls := '[]'::jsonb;
    IF p_hold_micros <= 0 THEN
        RETURN;  -- a run that holds nothing spends nothing: no control judges it
    END IF;
    FOR cap IN SELECT id, limit_micros FROM run_cap_controls
               WHERE caller = p_caller AND status = 'ACTIVE' ORDER BY id LOOP
        v_refused := p_hold_micros > cap.limit_micros;
        blocked := blocked OR v_refused;
        controls := controls || jsonb_build_object(
            'controlId', cap.id, 'controlType', 'WORKSPACE_RUN_CAP',
            'status', CASE WHEN v_refused THEN 'BLOCKED' ELSE 'PASSED' END,
            'snapshot', jsonb_build_object('limitMicros', cap.limit_micros));
    END LOOP;
    FOR budget IN SELECT id, api_key_id, period, limit_micros, spent_micros, held_micros,
                         window_start
                  FROM budget_controls
                  WHERE caller = p_caller AND status = 'ACTIVE'
                    AND (api_key_id IS NULL OR api_key_id = p_api_key_id)
                  ORDER BY id
                  FOR UPDATE LOOP
        v_window := monid_window_start(budget.period, now());
        v_spent := CASE WHEN budget.window_start = v_window THEN budget.spent_micros ELSE 0 END;
        v_refused := p_hold_micros > budget.limit_micros - v_spent - budget.held_micros;
        blocked := blocked OR v_refused;
        controls := controls || jsonb_build_object(
            'controlId', budget.id,
            'controlType', CASE WHEN budget.api_key_id IS NULL THEN 'WORKSPACE_BUDGET'
                                ELSE 'KEY_BUDGET' END,
            'status', CASE WHEN v_refused THEN 'BLOCKED' ELSE 'HELD' END,
            'windowStart', v_window,
            'snapshot', jsonb_build_object(
                'period', budget.period, 'limitMicros', budget.limit_micros,
                'spentMicros', v_spent, 'heldMicros', budget.held_micros,
                'windowStart', to_char(v_window AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')));
    END LOOP;
END
$$;

CREATE FUNCTION public.monid_claim(p_run_id text, p_lease_token uuid, p_worker text, p_lease_seconds integer, p_full_callers text[], p_limits jsonb) RETURNS TABLE(waiting_for text, id text, caller text, status text, provider text, endpoint text, adapter text, input json, provider_state json, attempt_count integer, max_attempts integer, deadline_at timestamp with time zone, price_type text, price_micros bigint, flat_fee_micros bigint, malformed_answers integer, hold_micros bigint, max_results integer, new_attempt boolean)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    r runs%ROWTYPE;
    full_slot text;
    slot_limit integer;
BEGIN
    SELECT * INTO r FROM runs WHERE runs.id = p_run_id;
    IF NOT FOUND OR r.lease_token IS NOT NULL OR r.completed_at IS NOT NULL THEN
        RETURN;
    END IF;
    IF r.status = 'RUNNING' AND r.provider_state IS NULL THEN
        IF r.attempt_count >= r.max_attempts
           OR (r.next_attempt_at IS NOT NULL AND r.next_attempt_at > now())
           OR (r.started_at IS NULL AND r.deadline_at <= now()) THEN
            RETURN;  -- not due, out of attempts, or out of queue time: nothing to take
        END IF;
        IF r.caller = ANY(p_full_callers) THEN
            full_slot := 'caller';
        END IF;
        slot_limit := (p_limits ->> r.provider)::integer;
        IF full_slot IS NULL AND slot_limit IS NOT NULL THEN
            PERFORM monid_lock_slot('provider:' || r.provider);
            IF monid_slot_busy(r.provider, NULL) >= slot_limit THEN
                full_slot := 'provider:' || r.provider;
            END IF;
        END IF;
        slot_limit := (p_limits ->> (r.provider || r.endpoint))::integer;
        IF full_slot IS NULL AND slot_limit IS NOT NULL THEN
            PERFORM monid_lock_slot('endpoint:' || r.provider || r.endpoint);
            IF monid_slot_busy(r.provider, r.endpoint) >= slot_limit THEN
                full_slot := 'endpoint:' || r.provider || r.endpoint;
            END IF;
        END IF;
        IF full_slot IS NOT NULL THEN
            RETURN QUERY
            UPDATE runs
            SET waiting_for = full_slot, next_attempt_at = NULL, last_published_at = NULL,
                updated_at = now()
            WHERE runs.id = p_run_id AND lease_token IS NULL AND completed_at IS NULL
              AND status = 'RUNNING'
            RETURNING full_slot, runs.id, runs.caller, runs.status, runs.provider,
                      runs.endpoint, runs.adapter, runs.input, runs.provider_state,
                      runs.attempt_count, runs.max_attempts, runs.deadline_at,
                      runs.price_type, runs.price_micros, runs.flat_fee_micros,
                      runs.malformed_answers, runs.hold_micros, runs.max_results, false;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    WITH claimed AS (
        UPDATE runs
        SET attempt_count = attempt_count + (provider_state IS NULL AND status = 'RUNNING')::int,
            lease_token = p_lease_token,
            lease_owner = p_worker,
            lease_expires_at = now() + make_interval(secs => p_lease_seconds),
            next_attempt_at = NULL,
            waiting_for = NULL,
            -- The endpoint's deadline starts with the run's first start.
            deadline_at = CASE WHEN started_at IS NULL AND deadline_seconds IS NOT NULL
                               THEN now() + make_interval(secs => deadline_seconds)
                               ELSE deadline_at END,
            started_at = coalesce(started_at, now()),
            updated_at = now()
        WHERE runs.id = p_run_id
          AND lease_token IS NULL
          AND ((status = 'RUNNING'
                AND (provider_state IS NOT NULL OR attempt_count < max_attempts)
                AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                AND (started_at IS NOT NULL OR deadline_at > now()))
               -- A stop was asked: take it at once, to carry the stop out.
               OR status = 'STOPPING')
        RETURNING runs.id, runs.caller, runs.status, runs.provider, runs.endpoint, runs.adapter,
                  runs.input, runs.provider_state, runs.attempt_count, runs.max_attempts,
                  runs.deadline_at, runs.price_type, runs.price_micros, runs.flat_fee_micros,
                  runs.malformed_answers, runs.hold_micros, runs.max_results,
                  (runs.provider_state IS NULL AND runs.status = 'RUNNING') AS new_attempt
    ), attempt AS (
        INSERT INTO attempts (run_id, number, lease_token, worker)
        SELECT claimed.id, claimed.attempt_count, p_lease_token, p_worker
        FROM claimed WHERE claimed.new_attempt
    )
    SELECT NULL::text, claimed.* FROM claimed;
    -- A new attempt took a provider's or endpoint's slot: that was its caller's turn.
    IF FOUND AND r.status = 'RUNNING' AND r.provider_state IS NULL THEN
        IF (p_limits ->> r.provider) IS NOT NULL THEN
            INSERT INTO slot_turns (slot, caller) VALUES ('provider:' || r.provider, r.caller)
            ON CONFLICT (slot, caller) DO UPDATE SET served_at = clock_timestamp();
        END IF;
        IF (p_limits ->> (r.provider || r.endpoint)) IS NOT NULL THEN
            INSERT INTO slot_turns (slot, caller)
            VALUES ('endpoint:' || r.provider || r.endpoint, r.caller)
            ON CONFLICT (slot, caller) DO UPDATE SET served_at = clock_timestamp();
        END IF;
    END IF;
END
$$;

CREATE FUNCTION public.monid_csv_cell(item jsonb, path text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT coalesce('"' || replace(CASE WHEN jsonb_typeof(item) = 'object' THEN item #>> path
                                        WHEN path = ARRAY['value']
                                        THEN item #>> ARRAY[]::text[] END,
                                   '"', '""') || '"', '')
$$;

CREATE FUNCTION public.monid_delivery_tries(p_delivery_id text, p_limit integer) RETURNS json
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (SELECT coalesce(json_agg(a ORDER BY a.id), '[]'::json)
            FROM (SELECT t.id,
                         to_char(t.attempted_at AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "attemptedAt",
                         t.status_code AS "statusCode", t.duration_ms AS "durationMs",
                         t.response_head AS "responseHead", t.error,
                         to_char(t.next_retry_at AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "nextRetryAt"
                  FROM webhook_delivery_attempts t
                  WHERE t.delivery_id = p_delivery_id
                  ORDER BY t.id DESC
                  LIMIT p_limit) a);
END $$;

CREATE FUNCTION public.monid_given_deliveries(deliveries json) RETURNS TABLE(run_id text, lease_token uuid, number integer, http_status integer, output text, output_truncated boolean, item_count integer, item_fields text, items text, first_seq integer, provider_response text, cost_micros bigint, wake boolean, caller_freed boolean, provider_limit integer, endpoint_limit integer)
    LANGUAGE plpgsql STABLE ROWS 1
    AS $$
BEGIN
    RETURN QUERY
    SELECT * FROM json_to_recordset(deliveries)
        AS g(run_id text, lease_token uuid, number int, http_status int, output text,
             output_truncated bool, item_count int, item_fields text, items text,
             first_seq int, provider_response text, cost_micros bigint, wake bool,
             caller_freed bool, provider_limit int, endpoint_limit int);
END $$;

CREATE FUNCTION public.monid_hold_controls(p_run_id text, p_blocked boolean, p_controls jsonb, p_hold_micros bigint) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_written integer;
BEGIN
    IF jsonb_array_length(p_controls) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO run_control_records (run_id, control_id, control_type, hold_micros, status,
                                     window_start, snapshot)
    SELECT p_run_id, c->>'controlId', c->>'controlType', p_hold_micros, c->>'status',
           (c->>'windowStart')::timestamptz, c->'snapshot'
    FROM jsonb_array_elements(p_controls) c
    WHERE CASE WHEN p_blocked THEN c->>'status' = 'BLOCKED'
               ELSE c->>'status' = 'PASSED' OR p_hold_micros > 0 END;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF NOT p_blocked AND p_hold_micros > 0 THEN
        UPDATE budget_controls b
        SET held_micros = b.held_micros + p_hold_micros,
            spent_micros = CASE WHEN b.window_start = (c->>'windowStart')::timestamptz
                                THEN b.spent_micros ELSE 0 END,
            window_start = (c->>'windowStart')::timestamptz
        FROM jsonb_array_elements(p_controls) c
        WHERE c->>'status' = 'HELD' AND b.id = c->>'controlId';
    END IF;
    RETURN v_written;
END
$$;

CREATE FUNCTION public.monid_item_json(item json) RETURNS json
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN strpos(item::text, '\u0000') = 0 THEN item
                ELSE regexp_replace(item::text, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd',
                                    'g')::json END
$$;

CREATE FUNCTION public.monid_keep_api_keys() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'API key % cannot be deleted: keys are revoked, never deleted', OLD.id
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE FUNCTION public.monid_lock_slot(p_slot text) RETURNS void
    LANGUAGE sql
    AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('monid:slot:' || p_slot, 0));
$$;

CREATE FUNCTION public.monid_notify_run_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('monid_run_changed', NEW.id);
    RETURN NULL;
END $$;

CREATE FUNCTION public.monid_notify_run_ended() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('monid_run_ended', NEW.id);
    RETURN NULL;
END $$;

CREATE FUNCTION public.monid_run_attempts(p_run_id text) RETURNS json
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (SELECT coalesce(json_agg(json_build_object(
                'number', a.number,
                'startedAt', to_char(a.started_at AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'endedAt', to_char(a.ended_at AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'outcome', a.outcome,
                'httpStatus', a.http_status,
                'message', a.message,
                'nextAttemptAt', to_char(a.next_attempt_at AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
            ) ORDER BY a.number), '[]'::json)
            FROM attempts a WHERE a.run_id = p_run_id);
END $$;

CREATE FUNCTION public.monid_settle(p_caller text, p_run_id text, p_cost_micros bigint, p_hold_micros bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF coalesce(p_cost_micros, 0) = 0 AND coalesce(p_hold_micros, 0) = 0 THEN
        RETURN;
    END IF;
    IF p_hold_micros > 0 THEN
        PERFORM 1 FROM budget_controls
        WHERE id IN (SELECT control_id FROM run_control_records
                     WHERE run_id = p_run_id AND status = 'HELD')
        ORDER BY id
        FOR UPDATE;
        IF FOUND THEN
            WITH settled AS (
                UPDATE run_control_records
                SET status = CASE WHEN coalesce(p_cost_micros, 0) > 0 THEN 'SETTLED'
                                  ELSE 'RELEASED' END,
                    settled_micros = coalesce(p_cost_micros, 0),
                    settled_at = now()
                WHERE run_id = p_run_id AND status = 'HELD'
                RETURNING control_id, hold_micros, settled_micros, window_start
            )
            UPDATE budget_controls b
            SET held_micros = b.held_micros - s.hold_micros,
                spent_micros = b.spent_micros + CASE WHEN b.window_start = s.window_start
                                                     THEN s.settled_micros ELSE 0 END
            FROM settled s
            WHERE b.id = s.control_id;
        END IF;
    END IF;
    INSERT INTO ledger_entries (caller, run_id, kind, amount_micros)
    VALUES (p_caller, p_run_id, 'CHARGE', coalesce(p_cost_micros, 0));
    IF p_hold_micros > 0 THEN
        INSERT INTO ledger_entries (caller, run_id, kind, amount_micros)
        VALUES (p_caller, p_run_id, 'RELEASE', p_hold_micros);
    END IF;
    UPDATE wallets
    SET balance_micros = balance_micros - coalesce(p_cost_micros, 0),
        held_micros = held_micros - greatest(p_hold_micros, 0),
        updated_at = now()
    WHERE caller = p_caller;
END
$$;

CREATE FUNCTION public.monid_slot_busy(p_provider text, p_endpoint text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    busy integer;
BEGIN
    SELECT count(*) INTO busy FROM runs
    WHERE provider = p_provider AND (p_endpoint IS NULL OR endpoint = p_endpoint)
      AND completed_at IS NULL
      AND (lease_token IS NOT NULL OR provider_state IS NOT NULL);
    RETURN busy;
END
$$;

CREATE FUNCTION public.monid_ulid() RETURNS text
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.monid_wake(p_slot text, p_caller text, p_provider text, p_endpoint text, p_limit integer, p_wanted integer) RETURNS TABLE(id text, caller text, open_runs integer, provider text, endpoint text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    room integer;
    chosen text;
    candidate text;
    fewest integer;
    held integer;
    turn timestamptz;
    oldest_turn timestamptz;
    woken jsonb := '{}';
    run_id text;
    woken_provider text;
    woken_endpoint text;
BEGIN
    -- Mostly nobody waits: then that is all there is to do.
    IF NOT EXISTS (SELECT 1 FROM runs WHERE waiting_for = p_slot
                   AND (p_slot <> 'caller' OR runs.caller = p_caller)) THEN
        RETURN;
    END IF;
    room := p_wanted;
    IF p_slot <> 'caller' THEN
        PERFORM monid_lock_slot(p_slot);  -- as the claims of the slot do
        IF p_limit > 0 THEN
            room := least(room, p_limit - monid_slot_busy(p_provider, p_endpoint));
        END IF;
    END IF;
    WHILE room > 0 LOOP
        IF p_slot = 'caller' THEN
            chosen := p_caller;
        ELSE
            -- Every waiting caller, in one index probe each (a loose index scan).
            chosen := NULL;
            candidate := '';
            LOOP
                SELECT runs.caller INTO candidate FROM runs
                WHERE waiting_for = p_slot AND runs.caller > candidate
                ORDER BY runs.caller LIMIT 1;
                EXIT WHEN NOT FOUND;
                held := coalesce((woken ->> candidate)::integer, 0) + (
                    SELECT count(*) FROM runs
                    WHERE provider = p_provider AND (p_endpoint IS NULL OR endpoint = p_endpoint)
                      AND runs.caller = candidate AND completed_at IS NULL
                      AND (lease_token IS NOT NULL OR provider_state IS NOT NULL))::integer;
                turn := coalesce((SELECT served_at FROM slot_turns
                                  WHERE slot = p_slot AND slot_turns.caller = candidate),
                                 '-infinity');
                IF chosen IS NULL OR held < fewest OR (held = fewest AND turn < oldest_turn) THEN
                    chosen := candidate;
                    fewest := held;
                    oldest_turn := turn;
                END IF;
            END LOOP;
            EXIT WHEN chosen IS NULL;
        END IF;
        UPDATE runs
        SET waiting_for = NULL, last_published_at = now(), updated_at = now()
        WHERE runs.id = (SELECT w.id FROM runs w
                         WHERE w.waiting_for = p_slot AND w.caller = chosen
                         ORDER BY w.id LIMIT 1 FOR UPDATE SKIP LOCKED)
          AND waiting_for = p_slot AND completed_at IS NULL
        RETURNING runs.id, runs.provider, runs.endpoint
        INTO run_id, woken_provider, woken_endpoint;
        EXIT WHEN run_id IS NULL;
        woken := jsonb_set(woken, ARRAY[chosen],
                           to_jsonb(coalesce((woken ->> chosen)::integer, 0) + 1));
        IF p_slot <> 'caller' THEN
            INSERT INTO slot_turns (slot, caller) VALUES (p_slot, chosen)
            ON CONFLICT (slot, caller) DO UPDATE SET served_at = clock_timestamp();
        END IF;
        RETURN QUERY SELECT run_id, chosen,
                            (SELECT count(*) FROM (SELECT 1 FROM runs o
                                                   WHERE o.caller = chosen
                                                     AND o.status IN ('RUNNING', 'STOPPING')
                                                   LIMIT 101) open)::integer,
                            woken_provider, woken_endpoint;
        run_id := NULL;
        room := room - 1;
    END LOOP;
END
$$;

CREATE FUNCTION public.monid_wake_freed(p_caller text, p_provider text, p_endpoint text, p_caller_freed boolean, p_provider_limit integer, p_endpoint_limit integer, p_provider_freed boolean) RETURNS TABLE(id text, caller text, open_runs integer, provider text, endpoint text)
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF p_caller_freed THEN
        RETURN QUERY SELECT * FROM monid_wake('caller', p_caller, NULL, NULL, 0, 1);
    END IF;
    IF p_provider_freed AND p_provider_limit > 0 THEN
        RETURN QUERY SELECT * FROM monid_wake('provider:' || p_provider, NULL, p_provider, NULL,
                                              p_provider_limit, 1);
    END IF;
    IF p_provider_freed AND p_endpoint_limit > 0 THEN
        RETURN QUERY SELECT * FROM monid_wake('endpoint:' || p_provider || p_endpoint, NULL,
                                              p_provider, p_endpoint, p_endpoint_limit, 1);
    END IF;
END
$$;

CREATE FUNCTION public.monid_webhook_event() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION public.monid_window_start(p_period text, p_at timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT date_trunc(CASE p_period WHEN 'HOUR' THEN 'hour' WHEN 'DAY' THEN 'day'
                                    WHEN 'WEEK' THEN 'week' ELSE 'month' END,
                      p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

CREATE TABLE public.api_keys (
    id bigint NOT NULL,
    user_id text NOT NULL,
    label text NOT NULL,
    mode text NOT NULL,
    key_prefix text NOT NULL,
    key_hash bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone,
    last_used_at timestamp with time zone,
    CONSTRAINT api_keys_label_check CHECK (((length(label) >= 1) AND (length(label) <= 200))),
    CONSTRAINT api_keys_mode_check CHECK ((mode = ANY (ARRAY['live'::text, 'test'::text]))),
    CONSTRAINT api_keys_user_id_check CHECK ((user_id ~ '^[A-Za-z0-9_.:@-]{1,128}$'::text))
);

CREATE SEQUENCE public.api_keys_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.api_keys_id_seq OWNED BY public.api_keys.id;

CREATE TABLE public.attempts (
    run_id text NOT NULL COLLATE pg_catalog."C",
    number integer NOT NULL,
    lease_token uuid NOT NULL,
    worker text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    ended_at timestamp with time zone,
    outcome text,
    http_status integer,
    message text,
    next_attempt_at timestamp with time zone,
    CONSTRAINT attempts_number_check CHECK ((number >= 1)),
    CONSTRAINT attempts_outcome_check CHECK ((outcome = ANY (ARRAY['OK'::text, 'TRANSIENT_ERROR'::text, 'PERMANENT_ERROR'::text, 'TIMEOUT'::text, 'LOST'::text, 'STOPPED'::text])))
)
WITH (fillfactor='70');

CREATE TABLE public.budget_controls (
    id text NOT NULL COLLATE pg_catalog."C",
    caller text NOT NULL,
    api_key_id bigint,
    period text NOT NULL,
    limit_micros bigint NOT NULL,
    status text DEFAULT 'ACTIVE'::text NOT NULL,
    window_start timestamp with time zone NOT NULL,
    spent_micros bigint DEFAULT 0 NOT NULL,
    held_micros bigint DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT budget_controls_held_micros_check CHECK ((held_micros >= 0)),
    CONSTRAINT budget_controls_id_check CHECK ((id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'::text)),
    CONSTRAINT budget_controls_limit_micros_check CHECK ((limit_micros >= 0)),
    CONSTRAINT budget_controls_period_check CHECK ((period = ANY (ARRAY['HOUR'::text, 'DAY'::text, 'WEEK'::text, 'MONTH'::text]))),
    CONSTRAINT budget_controls_spent_micros_check CHECK ((spent_micros >= 0)),
    CONSTRAINT budget_controls_status_check CHECK ((status = ANY (ARRAY['ACTIVE'::text, 'PAUSED'::text])))
);

CREATE TABLE public.catalog_endpoints (
    provider text NOT NULL COLLATE pg_catalog."C",
    provider_name text NOT NULL,
    path text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL,
    description text NOT NULL,
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    input_schema jsonb NOT NULL,
    query_params_schema jsonb,
    path_params_schema jsonb,
    price_type text NOT NULL,
    price_micros bigint NOT NULL,
    flat_fee_micros bigint,
    max_results integer,
    deadline_seconds integer NOT NULL,
    max_attempts integer NOT NULL,
    adapter text NOT NULL,
    example_input jsonb,
    search tsvector GENERATED ALWAYS AS (((setweight(to_tsvector('english'::regconfig, ((((((name || ' '::text) || provider) || ' '::text) || provider_name) || ' '::text) || COALESCE(public.catalog_words(tags), ''::text))), 'A'::"char") || setweight(to_tsvector('english'::regconfig, description), 'B'::"char")) || setweight(to_tsvector('english'::regconfig, translate(path, '/-_.~'::text, '     '::text)), 'C'::"char"))) STORED,
    synced_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT catalog_endpoints_deadline_seconds_check CHECK ((deadline_seconds >= 1)),
    CONSTRAINT catalog_endpoints_flat_fee_micros_check CHECK ((flat_fee_micros >= 0)),
    CONSTRAINT catalog_endpoints_max_attempts_check CHECK ((max_attempts >= 1)),
    CONSTRAINT catalog_endpoints_max_results_check CHECK ((max_results >= 1)),
    CONSTRAINT catalog_endpoints_price_micros_check CHECK ((price_micros >= 0)),
    CONSTRAINT catalog_endpoints_price_type_check CHECK ((price_type = ANY (ARRAY['PER_CALL'::text, 'PER_RESULT'::text])))
);

CREATE TABLE public.endpoint_health (
    provider text NOT NULL,
    endpoint text NOT NULL,
    health text NOT NULL,
    p50_seconds double precision,
    p90_seconds double precision,
    success_rate double precision,
    judged_runs integer NOT NULL,
    window_hours integer NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT endpoint_health_health_check CHECK ((health = ANY (ARRAY['healthy'::text, 'stable'::text, 'degraded'::text, 'outage'::text, 'unknown'::text]))),
    CONSTRAINT endpoint_health_judged_runs_check CHECK ((judged_runs >= 0)),
    CONSTRAINT endpoint_health_p50_seconds_check CHECK ((p50_seconds >= (0)::double precision)),
    CONSTRAINT endpoint_health_p90_seconds_check CHECK ((p90_seconds >= (0)::double precision)),
    CONSTRAINT endpoint_health_success_rate_check CHECK (((success_rate >= (0)::double precision) AND (success_rate <= (1)::double precision))),
    CONSTRAINT endpoint_health_window_hours_check CHECK ((window_hours > 0))
);

CREATE TABLE public.idempotency_keys (
    caller text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    run_id text NOT NULL COLLATE pg_catalog."C",
    response json,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.ledger_entries (
    id bigint NOT NULL,
    caller text NOT NULL,
    run_id text COLLATE pg_catalog."C",
    kind text NOT NULL,
    amount_micros bigint NOT NULL,
    note text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ledger_entries_amount_micros_check CHECK ((amount_micros >= 0)),
    CONSTRAINT ledger_entries_check CHECK (((kind = 'CREDIT'::text) = (run_id IS NULL))),
    CONSTRAINT ledger_entries_kind_check CHECK ((kind = ANY (ARRAY['CREDIT'::text, 'HOLD'::text, 'RELEASE'::text, 'CHARGE'::text])))
);

CREATE SEQUENCE public.ledger_entries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.ledger_entries_id_seq OWNED BY public.ledger_entries.id;

CREATE TABLE public.run_cap_controls (
    id text NOT NULL COLLATE pg_catalog."C",
    caller text NOT NULL,
    limit_micros bigint NOT NULL,
    status text DEFAULT 'ACTIVE'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT run_cap_controls_id_check CHECK ((id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'::text)),
    CONSTRAINT run_cap_controls_limit_micros_check CHECK ((limit_micros >= 0)),
    CONSTRAINT run_cap_controls_status_check CHECK ((status = ANY (ARRAY['ACTIVE'::text, 'PAUSED'::text])))
);

CREATE TABLE public.run_control_records (
    run_id text NOT NULL COLLATE pg_catalog."C",
    control_id text NOT NULL COLLATE pg_catalog."C",
    control_type text NOT NULL,
    hold_micros bigint NOT NULL,
    settled_micros bigint,
    status text NOT NULL,
    window_start timestamp with time zone,
    snapshot jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    settled_at timestamp with time zone,
    CONSTRAINT run_control_records_control_type_check CHECK ((control_type = ANY (ARRAY['WORKSPACE_BUDGET'::text, 'KEY_BUDGET'::text, 'WORKSPACE_RUN_CAP'::text]))),
    CONSTRAINT run_control_records_hold_micros_check CHECK ((hold_micros >= 0)),
    CONSTRAINT run_control_records_settled_micros_check CHECK ((settled_micros >= 0)),
    CONSTRAINT run_control_records_status_check CHECK ((status = ANY (ARRAY['HELD'::text, 'SETTLED'::text, 'RELEASED'::text, 'BLOCKED'::text, 'PASSED'::text])))
);

CREATE TABLE public.run_items (
    run_id text NOT NULL COLLATE pg_catalog."C",
    seq integer NOT NULL,
    item json NOT NULL,
    CONSTRAINT run_items_seq_check CHECK ((seq >= 0))
);

CREATE TABLE public.runs (
    id text NOT NULL COLLATE pg_catalog."C",
    caller text NOT NULL,
    api_key_id bigint,
    provider text NOT NULL,
    provider_name text NOT NULL,
    endpoint text NOT NULL,
    adapter text NOT NULL,
    input json NOT NULL,
    status text DEFAULT 'RUNNING'::text NOT NULL,
    output json,
    result_count integer,
    provider_response json,
    error json,
    provider_state json,
    price_type text NOT NULL,
    price_micros bigint NOT NULL,
    flat_fee_micros bigint,
    cost_micros bigint,
    attempt_count integer DEFAULT 0 NOT NULL,
    max_attempts integer NOT NULL,
    lease_token uuid,
    lease_owner text,
    lease_expires_at timestamp with time zone,
    next_attempt_at timestamp with time zone,
    deadline_at timestamp with time zone NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    malformed_answers integer DEFAULT 0 NOT NULL,
    last_published_at timestamp with time zone,
    lost_count integer DEFAULT 0 NOT NULL,
    hold_micros bigint DEFAULT 0 NOT NULL,
    max_results integer,
    stop_requested_at timestamp with time zone,
    deadline_seconds integer,
    waiting_for text,
    inflight_slot integer,
    output_truncated boolean DEFAULT false NOT NULL,
    item_count integer,
    item_fields json,
    webhook jsonb,
    watched boolean DEFAULT false NOT NULL,
    CONSTRAINT runs_check CHECK (((status = ANY (ARRAY['RUNNING'::text, 'STOPPING'::text])) = (completed_at IS NULL))),
    CONSTRAINT runs_cost_micros_check CHECK ((cost_micros >= 0)),
    CONSTRAINT runs_deadline_seconds_check CHECK ((deadline_seconds >= 1)),
    CONSTRAINT runs_flat_fee_micros_check CHECK ((flat_fee_micros >= 0)),
    CONSTRAINT runs_hold_micros_check CHECK ((hold_micros >= 0)),
    CONSTRAINT runs_id_check CHECK ((id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'::text)),
    CONSTRAINT runs_inflight_slot_check CHECK ((inflight_slot >= 0)),
    CONSTRAINT runs_item_count_check CHECK ((item_count >= 0)),
    CONSTRAINT runs_max_attempts_check CHECK ((max_attempts >= 1)),
    CONSTRAINT runs_price_micros_check CHECK ((price_micros >= 0)),
    CONSTRAINT runs_price_type_check CHECK ((price_type = ANY (ARRAY['PER_CALL'::text, 'PER_RESULT'::text]))),
    CONSTRAINT runs_status_check CHECK ((status = ANY (ARRAY['RUNNING'::text, 'STOPPING'::text, 'COMPLETED'::text, 'FAILED'::text, 'STOPPED'::text, 'TIMED_OUT'::text, 'BLOCKED'::text]))),
    CONSTRAINT runs_waiting_for_check CHECK ((waiting_for ~ '^(caller|provider:.+|endpoint:.+)$'::text))
)
WITH (fillfactor='85');

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.slot_turns (
    slot text NOT NULL,
    caller text NOT NULL,
    served_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);

CREATE TABLE public.users (
    user_id text NOT NULL,
    username text NOT NULL,
    email text,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT users_email_check CHECK (((length(email) >= 3) AND (length(email) <= 254))),
    CONSTRAINT users_metadata_check CHECK ((jsonb_typeof(metadata) = 'object'::text)),
    CONSTRAINT users_user_id_check CHECK ((user_id ~ '^[A-Za-z0-9_.:@-]{1,128}$'::text)),
    CONSTRAINT users_username_check CHECK (((length(username) >= 1) AND (length(username) <= 128)))
);

CREATE TABLE public.wallets (
    caller text NOT NULL,
    balance_micros bigint DEFAULT 0 NOT NULL,
    held_micros bigint DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT wallet_covers_holds CHECK ((balance_micros >= held_micros)),
    CONSTRAINT wallets_held_micros_check CHECK ((held_micros >= 0))
);

CREATE TABLE public.webhook_deliveries (
    id text DEFAULT public.monid_ulid() NOT NULL COLLATE pg_catalog."C",
    event_id text NOT NULL COLLATE pg_catalog."C",
    endpoint_id text COLLATE pg_catalog."C",
    caller text NOT NULL,
    url text NOT NULL,
    status text DEFAULT 'PENDING'::text NOT NULL,
    attempt_count integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now(),
    lease_until timestamp with time zone,
    last_status_code integer,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    lease_token text,
    CONSTRAINT webhook_deliveries_attempt_count_check CHECK ((attempt_count >= 0)),
    CONSTRAINT webhook_deliveries_check CHECK (((status = 'PENDING'::text) = (next_attempt_at IS NOT NULL))),
    CONSTRAINT webhook_deliveries_id_check CHECK ((id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'::text)),
    CONSTRAINT webhook_deliveries_last_error_check CHECK ((length(last_error) <= 1000)),
    CONSTRAINT webhook_deliveries_status_check CHECK ((status = ANY (ARRAY['PENDING'::text, 'DELIVERED'::text, 'FAILED'::text]))),
    CONSTRAINT webhook_deliveries_url_check CHECK (((length(url) >= 1) AND (length(url) <= 2048)))
);

CREATE TABLE public.webhook_delivery_attempts (
    id bigint NOT NULL,
    delivery_id text NOT NULL COLLATE pg_catalog."C",
    attempted_at timestamp with time zone DEFAULT now() NOT NULL,
    status_code integer,
    duration_ms integer NOT NULL,
    response_head text,
    error text,
    next_retry_at timestamp with time zone,
    CONSTRAINT webhook_delivery_attempts_duration_ms_check CHECK ((duration_ms >= 0)),
    CONSTRAINT webhook_delivery_attempts_error_check CHECK ((length(error) <= 1000)),
    CONSTRAINT webhook_delivery_attempts_response_head_check CHECK ((length(response_head) <= 1024))
);

CREATE SEQUENCE public.webhook_delivery_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.webhook_delivery_attempts_id_seq OWNED BY public.webhook_delivery_attempts.id;

CREATE TABLE public.webhook_endpoints (
    id text DEFAULT public.monid_ulid() NOT NULL COLLATE pg_catalog."C",
    caller text NOT NULL,
    url text NOT NULL,
    events text[],
    description text,
    enabled boolean DEFAULT true NOT NULL,
    disabled_reason text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhook_endpoints_description_check CHECK ((length(description) <= 500)),
    CONSTRAINT webhook_endpoints_disabled_reason_check CHECK ((length(disabled_reason) <= 500)),
    CONSTRAINT webhook_endpoints_events_check CHECK ((events <@ ARRAY['run.completed'::text, 'run.failed'::text, 'run.stopped'::text, 'run.timed_out'::text, 'run.blocked'::text])),
    CONSTRAINT webhook_endpoints_id_check CHECK ((id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'::text)),
    CONSTRAINT webhook_endpoints_url_check CHECK (((length(url) >= 1) AND (length(url) <= 2048)))
);

CREATE TABLE public.webhook_events (
    id text DEFAULT public.monid_ulid() NOT NULL COLLATE pg_catalog."C",
    run_id text COLLATE pg_catalog."C",
    caller text NOT NULL,
    type text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhook_events_id_check CHECK ((id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'::text)),
    CONSTRAINT webhook_events_payload_check CHECK ((octet_length((payload)::text) <= 16384)),
    CONSTRAINT webhook_events_type_check CHECK ((type = ANY (ARRAY['run.completed'::text, 'run.failed'::text, 'run.stopped'::text, 'run.timed_out'::text, 'run.blocked'::text, 'webhook.test'::text])))
);

CREATE TABLE public.webhook_secrets (
    id bigint NOT NULL,
    caller text NOT NULL,
    endpoint_id text COLLATE pg_catalog."C",
    secret text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone,
    CONSTRAINT webhook_secrets_secret_check CHECK ((secret ~~ 'whsec\_%'::text))
);

CREATE SEQUENCE public.webhook_secrets_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.webhook_secrets_id_seq OWNED BY public.webhook_secrets.id;

CREATE TABLE public.workspaces (
    workspace_id text NOT NULL,
    owner_user_id text NOT NULL,
    name text NOT NULL,
    slug text NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT workspaces_metadata_check CHECK ((jsonb_typeof(metadata) = 'object'::text)),
    CONSTRAINT workspaces_name_check CHECK (((length(name) >= 1) AND (length(name) <= 128))),
    CONSTRAINT workspaces_slug_check CHECK ((slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'::text))
);

ALTER TABLE ONLY public.api_keys ALTER COLUMN id SET DEFAULT nextval('public.api_keys_id_seq'::regclass);

ALTER TABLE ONLY public.ledger_entries ALTER COLUMN id SET DEFAULT nextval('public.ledger_entries_id_seq'::regclass);

ALTER TABLE ONLY public.webhook_delivery_attempts ALTER COLUMN id SET DEFAULT nextval('public.webhook_delivery_attempts_id_seq'::regclass);

ALTER TABLE ONLY public.webhook_secrets ALTER COLUMN id SET DEFAULT nextval('public.webhook_secrets_id_seq'::regclass);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.attempts
    ADD CONSTRAINT attempts_pkey PRIMARY KEY (run_id, number);

ALTER TABLE ONLY public.budget_controls
    ADD CONSTRAINT budget_controls_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.catalog_endpoints
    ADD CONSTRAINT catalog_endpoints_pkey PRIMARY KEY (provider, path);

ALTER TABLE ONLY public.endpoint_health
    ADD CONSTRAINT endpoint_health_pkey PRIMARY KEY (provider, endpoint);

ALTER TABLE ONLY public.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (caller, key);

ALTER TABLE ONLY public.ledger_entries
    ADD CONSTRAINT ledger_entries_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.run_cap_controls
    ADD CONSTRAINT run_cap_controls_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.run_control_records
    ADD CONSTRAINT run_control_records_pkey PRIMARY KEY (run_id, control_id);

ALTER TABLE ONLY public.run_items
    ADD CONSTRAINT run_items_pkey PRIMARY KEY (run_id, seq);

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.slot_turns
    ADD CONSTRAINT slot_turns_pkey PRIMARY KEY (slot, caller);

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (user_id);

ALTER TABLE ONLY public.wallets
    ADD CONSTRAINT wallets_pkey PRIMARY KEY (caller);

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_delivery_attempts
    ADD CONSTRAINT webhook_delivery_attempts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_endpoints
    ADD CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.webhook_secrets
    ADD CONSTRAINT webhook_secrets_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.workspaces
    ADD CONSTRAINT workspaces_owner_user_id_key UNIQUE (owner_user_id);

ALTER TABLE ONLY public.workspaces
    ADD CONSTRAINT workspaces_pkey PRIMARY KEY (workspace_id);

ALTER TABLE ONLY public.workspaces
    ADD CONSTRAINT workspaces_slug_key UNIQUE (slug);

CREATE UNIQUE INDEX api_keys_live_label ON public.api_keys USING btree (user_id, label) WHERE (revoked_at IS NULL);

CREATE INDEX api_keys_user ON public.api_keys USING btree (user_id, id);

CREATE INDEX budget_controls_active ON public.budget_controls USING btree (caller) WHERE (status = 'ACTIVE'::text);

CREATE INDEX budget_controls_caller ON public.budget_controls USING btree (caller, id DESC);

CREATE INDEX catalog_endpoints_search ON public.catalog_endpoints USING gin (search);

CREATE INDEX idempotency_keys_created ON public.idempotency_keys USING btree (created_at);

CREATE INDEX ledger_entries_caller ON public.ledger_entries USING btree (caller, id DESC);

CREATE UNIQUE INDEX ledger_one_charge_per_run ON public.ledger_entries USING btree (run_id) WHERE (kind = 'CHARGE'::text);

CREATE UNIQUE INDEX ledger_one_hold_per_run ON public.ledger_entries USING btree (run_id) WHERE (kind = 'HOLD'::text);

CREATE UNIQUE INDEX ledger_one_release_per_run ON public.ledger_entries USING btree (run_id) WHERE (kind = 'RELEASE'::text);

CREATE INDEX run_cap_controls_active ON public.run_cap_controls USING btree (caller) WHERE (status = 'ACTIVE'::text);

CREATE INDEX run_cap_controls_caller ON public.run_cap_controls USING btree (caller, id DESC);

CREATE INDEX run_control_records_control ON public.run_control_records USING btree (control_id, run_id DESC);

CREATE INDEX runs_busy ON public.runs USING btree (provider, endpoint) WHERE ((completed_at IS NULL) AND ((lease_token IS NOT NULL) OR (provider_state IS NOT NULL)));

CREATE INDEX runs_caller_id ON public.runs USING btree (caller, id DESC);

CREATE INDEX runs_caller_status_id ON public.runs USING btree (caller, status, id DESC);

CREATE UNIQUE INDEX runs_inflight_slot ON public.runs USING btree (caller, inflight_slot) WHERE ((completed_at IS NULL) AND (inflight_slot IS NOT NULL));

CREATE INDEX runs_leased ON public.runs USING btree (lease_owner) WHERE (lease_token IS NOT NULL);

CREATE INDEX runs_open ON public.runs USING btree (next_attempt_at) WHERE (completed_at IS NULL);

CREATE INDEX runs_waiting ON public.runs USING btree (waiting_for, caller, id) WHERE (waiting_for IS NOT NULL);

CREATE INDEX webhook_deliveries_due_by_caller ON public.webhook_deliveries USING btree (caller, next_attempt_at) WHERE (status = 'PENDING'::text);

CREATE INDEX webhook_deliveries_endpoint ON public.webhook_deliveries USING btree (endpoint_id, id) WHERE (endpoint_id IS NOT NULL);

CREATE INDEX webhook_deliveries_event ON public.webhook_deliveries USING btree (event_id);

CREATE INDEX webhook_delivery_attempts_delivery ON public.webhook_delivery_attempts USING btree (delivery_id, id);

CREATE INDEX webhook_endpoints_caller ON public.webhook_endpoints USING btree (caller, id);

CREATE INDEX webhook_events_run ON public.webhook_events USING btree (run_id);

CREATE INDEX webhook_secrets_caller ON public.webhook_secrets USING btree (caller, endpoint_id);

CREATE UNIQUE INDEX webhook_secrets_current_default ON public.webhook_secrets USING btree (caller) WHERE ((endpoint_id IS NULL) AND (expires_at IS NULL));

CREATE UNIQUE INDEX webhook_secrets_current_endpoint ON public.webhook_secrets USING btree (endpoint_id) WHERE ((endpoint_id IS NOT NULL) AND (expires_at IS NULL));

CREATE TRIGGER api_keys_never_deleted BEFORE DELETE ON public.api_keys FOR EACH ROW EXECUTE FUNCTION public.monid_keep_api_keys();

CREATE TRIGGER runs_notify_changed AFTER UPDATE ON public.runs FOR EACH ROW WHEN ((new.watched AND (new.completed_at IS NULL) AND ((old.status IS DISTINCT FROM new.status) OR (old.attempt_count IS DISTINCT FROM new.attempt_count) OR (old.next_attempt_at IS DISTINCT FROM new.next_attempt_at)))) EXECUTE FUNCTION public.monid_notify_run_changed();

CREATE TRIGGER runs_notify_ended AFTER UPDATE OF completed_at ON public.runs FOR EACH ROW WHEN (((old.completed_at IS NULL) AND (new.completed_at IS NOT NULL))) EXECUTE FUNCTION public.monid_notify_run_ended();

CREATE TRIGGER runs_webhook_event_on_end AFTER UPDATE OF completed_at ON public.runs FOR EACH ROW WHEN (((old.completed_at IS NULL) AND (new.completed_at IS NOT NULL))) EXECUTE FUNCTION public.monid_webhook_event();

CREATE TRIGGER runs_webhook_event_on_insert AFTER INSERT ON public.runs FOR EACH ROW WHEN ((new.completed_at IS NOT NULL)) EXECUTE FUNCTION public.monid_webhook_event();

ALTER TABLE ONLY public.attempts
    ADD CONSTRAINT attempts_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.budget_controls
    ADD CONSTRAINT budget_controls_api_key_id_fkey FOREIGN KEY (api_key_id) REFERENCES public.api_keys(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.idempotency_keys
    ADD CONSTRAINT idempotency_keys_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.ledger_entries
    ADD CONSTRAINT ledger_entries_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id);

ALTER TABLE ONLY public.run_control_records
    ADD CONSTRAINT run_control_records_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.run_items
    ADD CONSTRAINT run_items_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.webhook_endpoints(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_event_id_fkey FOREIGN KEY (event_id) REFERENCES public.webhook_events(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_delivery_attempts
    ADD CONSTRAINT webhook_delivery_attempts_delivery_id_fkey FOREIGN KEY (delivery_id) REFERENCES public.webhook_deliveries(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_secrets
    ADD CONSTRAINT webhook_secrets_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.webhook_endpoints(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.workspaces
    ADD CONSTRAINT workspaces_owner_user_id_fkey FOREIGN KEY (owner_user_id) REFERENCES public.users(user_id);

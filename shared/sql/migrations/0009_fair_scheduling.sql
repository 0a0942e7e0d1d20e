-- Fair scheduling: deadlines that start with the run, a limit on waiting to start,
-- an exact count of each caller's open runs, and concurrency slots (a caller's,
-- a provider's, an endpoint's) that a run waits for in PostgreSQL.

-- A run's `deadline_at` is the end of the phase it is in: before its first start,
-- its queue limit (created_at + QUEUE_TIMEOUT_SECONDS); from its first start, its
-- endpoint's deadline (started_at + deadline_seconds).
ALTER TABLE runs ADD COLUMN deadline_seconds integer CHECK (deadline_seconds >= 1);
UPDATE runs
SET deadline_seconds = greatest(1, ceil(extract(epoch FROM deadline_at - created_at)))::integer
WHERE completed_at IS NULL;

-- The concurrency slot a run waits for, parked in PostgreSQL until one is free:
-- 'caller' (a worker process had no thread left for its caller), 'provider:<slug>'
-- or 'endpoint:<slug><path>' (the provider's concurrency limit). NULL: not waiting.
ALTER TABLE runs ADD COLUMN waiting_for text
    CHECK (waiting_for ~ '^(caller|provider:.+|endpoint:.+)$');
CREATE INDEX runs_waiting ON runs (waiting_for, caller, id) WHERE waiting_for IS NOT NULL;
-- Runs that hold a provider's slot: a worker calls the provider for them, or the
-- provider runs a job of theirs (followed between checks).
CREATE INDEX runs_busy ON runs (provider, endpoint)
    WHERE completed_at IS NULL AND (lease_token IS NOT NULL OR provider_state IS NOT NULL);

-- The cap on a caller's runs in flight, exact without making its accepts take
-- turns: a run accepted under a cap of N takes a number 0..N-1 that no other open
-- run of its caller holds, and this unique index refuses a second holder. Ending
-- the run (completed_at set) frees its number. Concurrent accepts pick numbers at
-- random, so they seldom meet; one that does is refused by the index and tries
-- another number.
ALTER TABLE runs ADD COLUMN inflight_slot integer CHECK (inflight_slot >= 0);
CREATE UNIQUE INDEX runs_inflight_slot ON runs (caller, inflight_slot)
    WHERE completed_at IS NULL AND inflight_slot IS NOT NULL;

-- When each caller last got a provider's or endpoint's slot handed back: callers
-- waiting for a slot take turns, the one served longest ago first.
CREATE TABLE slot_turns (
    slot       text        NOT NULL,
    caller     text        NOT NULL,
    served_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (slot, caller)
);

-- The advisory lock of a provider's or endpoint's slot: whoever counts the slot's
-- holders to take it, and whoever hands waiting runs back when it frees, hold
-- it to their commit, so that the limit is never passed and no run parks just as
-- the slot frees (to wait with the slot idle).
CREATE FUNCTION monid_lock_slot(p_slot text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('monid:slot:' || p_slot, 0));
$$;

-- How many runs hold a provider's slot now (an endpoint's, given one): a worker
-- calls the provider for them, or their provider job runs. (PL/pgSQL: its plans
-- are kept for the session.)
CREATE FUNCTION monid_slot_busy(p_provider text, p_endpoint text) RETURNS integer
LANGUAGE plpgsql AS $$
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

-- Claim a run for a worker, when it may need to wait for a slot: the guarded
-- UPDATE that takes a lease and counts the attempt (as claim_run does), so that a
-- second delivery finds nothing to claim. A new attempt (it will call the
-- provider) needs a thread of its caller in this worker process (p_full_callers:
-- the callers that have none left there) and a free slot of each provider limit it
-- is under, checked under the slot's lock in the order provider, endpoint (always
-- that order: no deadlock). When one is full the run is parked, waiting for that
-- slot (not an attempt, and not started), and `waiting_for` names it in the
-- answer. A check of a followed provider job, or a stop to carry out, needs no slot.
--
-- p_limits: {"<provider>": N, "<provider><path>": N} for providers and endpoints
-- with a concurrency limit.
CREATE FUNCTION monid_claim(p_run_id text, p_lease_token uuid, p_worker text,
                            p_lease_seconds integer, p_full_callers text[], p_limits jsonb)
RETURNS TABLE (waiting_for text, id text, caller text, status text, provider text,
               endpoint text, adapter text, input json, provider_state json,
               attempt_count integer, max_attempts integer, deadline_at timestamptz,
               price_type text, price_micros bigint, flat_fee_micros bigint,
               malformed_answers integer, hold_micros bigint, max_results integer,
               new_attempt boolean)
LANGUAGE plpgsql AS $$
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

-- Hand runs waiting for a slot back to the queue: as many as `p_wanted`, and for a
-- provider's or endpoint's slot no more than its free room under `p_limit` (0: the
-- limit is gone, any number), under the slot's lock. A caller's own runs go oldest
-- first (a worker process that frees a thread of the caller's asks for one; the
-- next worker to take it checks its own threads); a provider's or endpoint's slot
-- goes to the waiting caller that holds the fewest of its slots, and among those to
-- the one whose turn came longest ago (round robin), its oldest run first. Answers
-- the runs handed back, with their caller's open runs (counted up to 101: enough for
-- the message's priority) and what they run (their task's name).
CREATE FUNCTION monid_wake(p_slot text, p_caller text, p_provider text, p_endpoint text,
                           p_limit integer, p_wanted integer)
RETURNS TABLE (id text, caller text, open_runs integer, provider text,
               endpoint text)
LANGUAGE plpgsql AS $$
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
                         ORDER BY w.id LIMIT 1)
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

-- After a run let go of its slots (it ended, waits to retry, or waits on its
-- provider's job): hand back one waiting run per slot it freed: its caller's
-- (p_caller_freed: the worker process had no thread left for the caller until now)
-- and, unless its provider job goes on (p_provider_freed false), its provider's and
-- endpoint's where they have a limit.
CREATE FUNCTION monid_wake_freed(p_caller text, p_provider text, p_endpoint text,
                                 p_caller_freed boolean, p_provider_limit integer,
                                 p_endpoint_limit integer, p_provider_freed boolean)
RETURNS TABLE (id text, caller text, open_runs integer, provider text, endpoint text)
LANGUAGE plpgsql AS $$
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

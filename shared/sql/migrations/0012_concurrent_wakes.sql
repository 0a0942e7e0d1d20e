-- Two runs of one caller ending at once must hand back two of its waiting runs.
-- Both wakes used to pick the same oldest waiting run; the second then waited for
-- the first's row lock, found the run no longer waiting and handed back nothing,
-- leaving a run parked until the sweeper's grace ran out. The wake now takes the
-- oldest waiting run nobody else is handing back (FOR UPDATE SKIP LOCKED), so
-- concurrent wakes take different runs, and none waits for another.
CREATE OR REPLACE FUNCTION monid_wake(p_slot text, p_caller text, p_provider text, p_endpoint text,
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

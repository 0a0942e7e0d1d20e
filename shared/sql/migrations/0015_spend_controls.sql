-- Spend controls: budgets (a workspace's, or one API key's) and run caps, checked at
-- accept in the same statement as the wallet hold; a run a control refuses is kept
-- as a terminal BLOCKED run that held nothing and cost nothing.
--
-- A workspace is a caller (`USER#<userId>`). Money is integer micro-dollars.

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (
    status IN ('RUNNING', 'STOPPING', 'COMPLETED', 'FAILED', 'STOPPED', 'TIMED_OUT', 'BLOCKED'));

-- A budget counts, for its current calendar window (UTC), what the runs accepted in
-- that window were charged (spent_micros), and what the runs not yet ended hold
-- (held_micros, whatever window they were accepted in). The window moves on at the
-- first accept after it ended (spent starts again from 0); until then, readers
-- treat a budget whose window has passed as having spent nothing.
CREATE TABLE budget_controls (
    id            text        COLLATE "C" PRIMARY KEY CHECK (id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'),
    caller        text        NOT NULL,
    -- Set: the budget of this key alone (KEY_BUDGET); null: the workspace's.
    api_key_id    bigint      REFERENCES api_keys (id) ON DELETE CASCADE,
    period        text        NOT NULL CHECK (period IN ('HOUR', 'DAY', 'WEEK', 'MONTH')),
    limit_micros  bigint      NOT NULL CHECK (limit_micros >= 0),
    status        text        NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'PAUSED')),
    window_start  timestamptz NOT NULL,
    spent_micros  bigint      NOT NULL DEFAULT 0 CHECK (spent_micros >= 0),
    held_micros   bigint      NOT NULL DEFAULT 0 CHECK (held_micros >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX budget_controls_caller ON budget_controls (caller, id DESC);
CREATE INDEX budget_controls_active ON budget_controls (caller) WHERE status = 'ACTIVE';

CREATE TABLE run_cap_controls (
    id            text        COLLATE "C" PRIMARY KEY CHECK (id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'),
    caller        text        NOT NULL,
    limit_micros  bigint      NOT NULL CHECK (limit_micros >= 0),
    status        text        NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'PAUSED')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_cap_controls_caller ON run_cap_controls (caller, id DESC);
CREATE INDEX run_cap_controls_active ON run_cap_controls (caller) WHERE status = 'ACTIVE';

-- What each control said of a run: a budget's HELD (then SETTLED or RELEASED) or
-- BLOCKED, a cap's PASSED or BLOCKED, with the control as it was then (snapshot,
-- in micro-dollars). A budget's held_micros is the sum of its HELD records' holds;
-- its spent_micros the sum of the settled amounts of its SETTLED records of its
-- window.
CREATE TABLE run_control_records (
    run_id          text        COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    control_id      text        COLLATE "C" NOT NULL,
    control_type    text        NOT NULL CHECK (
        control_type IN ('WORKSPACE_BUDGET', 'KEY_BUDGET', 'WORKSPACE_RUN_CAP')),
    hold_micros     bigint      NOT NULL CHECK (hold_micros >= 0),
    settled_micros  bigint      CHECK (settled_micros >= 0),
    status          text        NOT NULL CHECK (
        status IN ('HELD', 'SETTLED', 'RELEASED', 'BLOCKED', 'PASSED')),
    window_start    timestamptz,
    snapshot        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz,
    PRIMARY KEY (run_id, control_id)
);
CREATE INDEX run_control_records_control ON run_control_records (control_id, run_id DESC);

-- The start of the calendar window (UTC) that `at` falls in; weeks start on Monday.
CREATE FUNCTION monid_window_start(p_period text, p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT date_trunc(CASE p_period WHEN 'HOUR' THEN 'hour' WHEN 'DAY' THEN 'day'
                                    WHEN 'WEEK' THEN 'week' ELSE 'month' END,
                      p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

-- Accept, first step: what the caller's active controls say of a run that holds
-- p_hold_micros, writing nothing. Each budget that counts (the workspace's, and the
-- key's own) is locked FOR UPDATE, in ID order (so that accepts and settlements,
-- which lock in the same order, never deadlock), until the accept's transaction
-- ends: concurrent accepts against one budget take their turns, and each sees what
-- the one before it held. A budget refuses a run whose hold is over what it has
-- available (limit - spent in the window - held); a cap, one whose hold is over it.
-- A run that holds nothing is judged by none, and locks nothing.
CREATE FUNCTION monid_check_controls(p_caller text, p_api_key_id bigint, p_hold_micros bigint,
                                     OUT blocked boolean, OUT controls jsonb)
LANGUAGE plpgsql AS $$
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

-- Accept, second step, once the run is stored: its records, and (a run accepted) its
-- hold added to each budget that counts (moving a budget whose window has ended on
-- to the current one). A blocked run keeps the records of the controls that refused
-- it, and holds nothing. A budget keeps no record of a run that holds nothing.
CREATE FUNCTION monid_hold_controls(p_run_id text, p_blocked boolean, p_controls jsonb,
                                    p_hold_micros bigint) RETURNS integer
LANGUAGE plpgsql AS $$
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

-- Settlement, as in 0011, and first each budget the run held on: its hold leaves
-- held, and its cost counts as spent in the window it was accepted in (when that is
-- still the budget's window). Budgets are locked in ID order, before the wallet, as
-- at accept. Once only, like the ledger's rows: only HELD records move.
CREATE OR REPLACE FUNCTION monid_settle(p_caller text, p_run_id text, p_cost_micros bigint,
                                        p_hold_micros bigint) RETURNS void
LANGUAGE plpgsql AS $$
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

-- Spend controls: budgets, run caps and what they said of each run (migration 0015).
-- A budget is read as it is in its current window: one whose window has passed has
-- spent nothing in this one.

-- name: insert_budget_control
INSERT INTO budget_controls (id, caller, api_key_id, period, limit_micros, window_start)
VALUES (%(id)s, %(caller)s, %(api_key_id)s, %(period)s, %(limit_micros)s,
        monid_window_start(%(period)s, now()))
RETURNING id;

-- name: get_budget_control
SELECT id, caller, api_key_id, period, limit_micros, status,
       monid_window_start(period, now()) AS window_start,
       CASE WHEN window_start = monid_window_start(period, now()) THEN spent_micros ELSE 0 END
           AS spent_micros,
       held_micros, created_at, updated_at
FROM budget_controls
WHERE id = %(id)s AND caller = %(caller)s;

-- name: list_budget_controls
-- A page of the workspace's own budgets (not its keys'), newest first.
SELECT id, caller, api_key_id, period, limit_micros, status,
       monid_window_start(period, now()) AS window_start,
       CASE WHEN window_start = monid_window_start(period, now()) THEN spent_micros ELSE 0 END
           AS spent_micros,
       held_micros, created_at, updated_at
FROM budget_controls
WHERE caller = %(caller)s AND api_key_id IS NULL AND id < %(before)s
ORDER BY id DESC
LIMIT %(limit)s;

-- name: update_budget_control
-- A change counts from the next accept on; runs already accepted keep their holds.
UPDATE budget_controls
SET limit_micros = coalesce(%(limit_micros)s, limit_micros),
    status = coalesce(%(status)s, status),
    updated_at = now()
WHERE id = %(id)s AND caller = %(caller)s
RETURNING id;

-- name: insert_run_cap_control
INSERT INTO run_cap_controls (id, caller, limit_micros)
VALUES (%(id)s, %(caller)s, %(limit_micros)s)
RETURNING id, caller, limit_micros, status, created_at, updated_at;

-- name: get_run_cap_control
SELECT id, caller, limit_micros, status, created_at, updated_at
FROM run_cap_controls
WHERE id = %(id)s AND caller = %(caller)s;

-- name: list_run_cap_controls
SELECT id, caller, limit_micros, status, created_at, updated_at
FROM run_cap_controls
WHERE caller = %(caller)s AND id < %(before)s
ORDER BY id DESC
LIMIT %(limit)s;

-- name: update_run_cap_control
UPDATE run_cap_controls
SET limit_micros = coalesce(%(limit_micros)s, limit_micros),
    status = coalesce(%(status)s, status),
    updated_at = now()
WHERE id = %(id)s AND caller = %(caller)s
RETURNING id, caller, limit_micros, status, created_at, updated_at;

-- name: list_control_records
-- A page of what one control said of runs, newest run first.
SELECT run_id, control_id, control_type, hold_micros, settled_micros, status, snapshot,
       created_at, settled_at
FROM run_control_records
WHERE control_id = %(control_id)s AND run_id < %(before)s
ORDER BY run_id DESC
LIMIT %(limit)s;

-- name: list_run_control_records
-- A page of what the controls said of one of the caller's runs.
SELECT c.run_id, c.control_id, c.control_type, c.hold_micros, c.settled_micros, c.status,
       c.snapshot, c.created_at, c.settled_at
FROM run_control_records c
JOIN runs r ON r.id = c.run_id
WHERE c.run_id = %(run_id)s AND r.caller = %(caller)s AND c.control_id < %(before)s
ORDER BY c.control_id DESC
LIMIT %(limit)s;

-- name: find_control_owner
-- Whose control this is (for the operator, who names a control by its ID alone).
SELECT caller FROM budget_controls WHERE id = %(id)s
UNION ALL
SELECT caller FROM run_cap_controls WHERE id = %(id)s;

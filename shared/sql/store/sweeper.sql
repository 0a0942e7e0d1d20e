-- Named queries of the sweeper: one at a time, it hands back expired leases, ends
-- the runs that must end, publishes the runs that are due, and wakes runs waiting
-- for a slot.


-- name: try_sweeper_lock
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: release_sweeper_lock
SELECT pg_advisory_unlock(%(key)s);

-- name: release_expired_leases
-- Runs whose worker stopped renewing its lease: that worker died. The run is
-- handed back and the loss counted; a new attempt that was in progress ends
-- LOST (a followed provider job goes on: its attempt stays open).
WITH expired AS (
    SELECT id
    FROM runs
    WHERE lease_token IS NOT NULL AND lease_expires_at < now() AND completed_at IS NULL
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), released AS (
    UPDATE runs r
    SET lease_token = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        lost_count = r.lost_count + 1,
        next_attempt_at = now(),
        last_published_at = NULL,
        updated_at = now()
    FROM expired e
    WHERE r.id = e.id
    RETURNING r.id, r.attempt_count, r.lost_count, r.provider_state
), lost AS (
    UPDATE attempts a
    SET ended_at = now(), outcome = 'LOST', message = 'the worker stopped renewing its lease'
    FROM released r
    WHERE a.run_id = r.id AND a.number = r.attempt_count AND a.ended_at IS NULL
      AND r.provider_state IS NULL
)
SELECT id, lost_count FROM released;

-- name: find_runs_to_end
-- Open runs nobody holds that must end now: past their deadline, lost by their
-- workers too often, or out of attempts.
SELECT id, provider, endpoint, adapter, input, provider_state, attempt_count, deadline_at,
       CASE WHEN status = 'STOPPING' THEN 'STOPPED'
            WHEN deadline_at <= now() AND started_at IS NULL THEN 'QUEUE_TIMEOUT'
            WHEN deadline_at <= now() THEN 'TIMED_OUT'
            WHEN lost_count >= %(max_lost)s THEN 'WORKER_LOST'
            ELSE 'RETRIES_EXHAUSTED' END AS reason
FROM runs
WHERE completed_at IS NULL
  AND (lease_token IS NULL OR lease_expires_at < now())
  AND (status = 'STOPPING'
       OR deadline_at <= now()
       OR lost_count >= %(max_lost)s
       OR (provider_state IS NULL AND attempt_count >= max_attempts))
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: end_unheld_run
-- The sweeper ends a run that no worker holds, and settles it (the guard keeps a
-- worker that took it meanwhile, or ended it, from being overwritten). A run
-- waiting for a slot stops waiting.
WITH ended AS (
    UPDATE runs
    SET status = %(status)s,
        waiting_for = NULL,
        error = %(error)s,
        cost_micros = 0,
        completed_at = now(),
        updated_at = now(),
        lease_token = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        next_attempt_at = NULL
    WHERE id = %(run_id)s
      AND completed_at IS NULL
      AND (lease_token IS NULL OR lease_expires_at < now())
    RETURNING id, attempt_count, caller, cost_micros, hold_micros
), attempt AS (
    UPDATE attempts a
    SET ended_at = now(), outcome = %(outcome)s, message = %(message)s
    FROM ended e
    WHERE a.run_id = e.id AND a.ended_at IS NULL
)
SELECT id, monid_settle(caller, id, cost_micros, hold_micros) FROM ended;

-- name: take_runs_to_publish
-- Runs nobody holds whose next step is due and whose message is not already on
-- its way: never published, published longer ago than the grace (the broker
-- lost it), or waiting in PostgreSQL for a long retry. Not the runs waiting for
-- a slot: they are handed back when one frees (find_waiting_slots). With each,
-- its caller's open runs, for the message's priority.
WITH due AS (
    SELECT id
    FROM runs
    WHERE completed_at IS NULL
      AND status = 'RUNNING'
      AND lease_token IS NULL
      AND waiting_for IS NULL
      AND coalesce(next_attempt_at, created_at) <= now()
      AND (last_published_at IS NULL
           OR last_published_at <= now() - make_interval(secs => %(grace_seconds)s))
    ORDER BY coalesce(next_attempt_at, created_at)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r
SET last_published_at = now()
FROM due
WHERE r.id = due.id
RETURNING r.id, r.caller, r.provider, r.endpoint;

-- name: count_open_runs
-- Each caller's runs not yet ended, counted up to 101 (enough for a priority).
SELECT c.caller, (SELECT count(*) FROM (SELECT 1 FROM runs
                                        WHERE caller = c.caller
                                          AND status IN ('RUNNING', 'STOPPING')
                                        LIMIT 101) open)::integer AS open_runs
FROM unnest(%(callers)s::text[]) AS c(caller);

-- name: find_waiting_slots
-- The slots runs are waiting for, with how many wait: a caller's own slot (one
-- row per caller), a provider's or an endpoint's (one row each); and how long ago
-- the last of them began to wait.
SELECT waiting_for AS slot,
       CASE WHEN waiting_for = 'caller' THEN caller END AS caller,
       min(provider) AS provider, min(endpoint) AS endpoint, count(*)::integer AS waiting,
       extract(epoch FROM now() - max(updated_at))::float8 AS quiet_seconds
FROM runs
WHERE waiting_for IS NOT NULL
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: wake_waiting_runs
-- Hand runs waiting for a slot back to the queue, as many as it has room for.
SELECT id, caller, open_runs, provider, endpoint
FROM monid_wake(%(slot)s, %(caller)s, %(provider)s, %(endpoint)s, %(limit)s, %(wanted)s);

-- Named queries of claims and leases: a worker takes a run, ends it, hands it back
-- for a retry or until its provider job's next check, keeps its leases, or gives
-- everything back on its way out.


-- name: claim_runs
-- Take runs, one with each lease token given, with one guarded UPDATE, so a second
-- delivery finds nothing. A run with no provider job yet starts a new attempt; a run
-- following one (its provider_state is set) is taken for one more check within the
-- same attempt. The endpoint's deadline starts with the run's first start; a run still
-- waiting to start past its queue limit is not taken (the sweeper ends it). A worker
-- process's threads claim together (shared/grouping.py): one statement and one commit
-- for all of them, the runs locked in the order given. Where a run may have to wait
-- for a slot, claim_run_or_wait does this instead.
WITH asked AS (
    -- One JSON array (as deliver_runs takes its runs): [[run ID, lease token], ...].
    SELECT * FROM monid_asked_runs(%(asked)s::json)
), claimed AS (
    UPDATE runs
    SET attempt_count = attempt_count + (provider_state IS NULL AND status = 'RUNNING')::int,
        lease_token = asked.lease_token,
        lease_owner = %(worker)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        next_attempt_at = NULL,
        waiting_for = NULL,
        deadline_at = CASE WHEN started_at IS NULL AND deadline_seconds IS NOT NULL
                           THEN now() + make_interval(secs => deadline_seconds)
                           ELSE deadline_at END,
        started_at = coalesce(started_at, now()),
        updated_at = now()
    FROM asked
    WHERE runs.id = asked.run_id
      AND runs.lease_token IS NULL
      AND ((status = 'RUNNING'
            AND (provider_state IS NOT NULL OR attempt_count < max_attempts)
            AND (next_attempt_at IS NULL OR next_attempt_at <= now())
            AND (started_at IS NOT NULL OR deadline_at > now()))
           -- A stop was asked: take it at once, to carry the stop out.
           OR status = 'STOPPING')
    RETURNING id, caller, status, provider, endpoint, adapter, input, provider_state, attempt_count,
              max_attempts, deadline_at, price_type, price_micros, flat_fee_micros,
              malformed_answers, hold_micros, max_results, runs.lease_token,
              (provider_state IS NULL AND status = 'RUNNING') AS new_attempt
), attempt AS (
    INSERT INTO attempts (run_id, number, lease_token, worker)
    SELECT id, attempt_count, lease_token, %(worker)s FROM claimed WHERE new_attempt
)
SELECT NULL::text AS waiting_for, * FROM claimed;

-- name: claim_run_or_wait
-- Take a run, or park it until a slot it needs is free (`waiting_for` set): see
-- monid_claim in migration 0009.
SELECT * FROM monid_claim(%(run_id)s, %(lease_token)s, %(worker)s, %(lease_seconds)s,
                          %(full_callers)s, %(limits)s);

-- name: get_run_caller
SELECT caller FROM runs WHERE id = %(run_id)s;

-- name: get_claim_state
SELECT status, lease_token, attempt_count, max_attempts, next_attempt_at,
       greatest(extract(epoch FROM next_attempt_at - now()), 0)::float8 AS wait_seconds
FROM runs
WHERE id = %(run_id)s;

-- name: end_run
-- Write a run's end state and settle it: only the holder of the current attempt's
-- lease may. A stop asked meanwhile wins: the answer is discarded and the run is
-- STOPPED, at no cost.
WITH ended AS (
    UPDATE runs
    SET status = CASE WHEN status = 'STOPPING' THEN 'STOPPED' ELSE %(status)s END,
        output = CASE WHEN status = 'STOPPING' THEN NULL ELSE %(output)s::json END,
        result_count = CASE WHEN status = 'STOPPING' THEN NULL ELSE %(result_count)s::int END,
        provider_response = CASE WHEN status = 'STOPPING' THEN NULL
                                 ELSE %(provider_response)s::json END,
        error = CASE WHEN status = 'STOPPING' THEN NULL ELSE %(error)s::json END,
        cost_micros = CASE WHEN status = 'STOPPING' THEN 0 ELSE %(cost_micros)s::bigint END,
        completed_at = now(),
        updated_at = now(),
        lease_token = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        next_attempt_at = NULL
    WHERE id = %(run_id)s
      AND lease_token = %(lease_token)s
      AND status IN ('RUNNING', 'STOPPING')
    RETURNING id, status, caller, provider, endpoint, cost_micros, hold_micros
), attempt AS (
    -- The attempt of a run stopped meanwhile ended STOPPED, whatever it brought back.
    UPDATE attempts
    SET ended_at = now(),
        outcome = CASE WHEN (SELECT status FROM ended) = 'STOPPED' THEN 'STOPPED'
                       ELSE %(outcome)s END,
        http_status = %(http_status)s,
        message = CASE WHEN (SELECT status FROM ended) = 'STOPPED' AND %(outcome)s <> 'STOPPED'
                       THEN 'stopped on request; the answer was discarded' ELSE %(message)s END
    WHERE run_id = %(run_id)s AND number = %(number)s AND ended_at IS NULL
      AND EXISTS (SELECT 1 FROM ended)
)
SELECT id, status, monid_settle(caller, id, cost_micros, hold_micros),
       CASE WHEN %(wake)s THEN
           (SELECT json_agg(w) FROM monid_wake_freed(caller, provider, endpoint,
                                                     %(caller_freed)s, %(provider_limit)s,
                                                     %(endpoint_limit)s, true) w) END AS woken
FROM ended;

-- name: schedule_retry
-- Hand the run back after a transient failure, to be tried again after a delay.
WITH retried AS (
    UPDATE runs
    SET lease_token = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        provider_state = NULL,
        malformed_answers = malformed_answers + %(malformed)s,
        next_attempt_at = now() + make_interval(secs => %(delay_seconds)s),
        last_published_at = CASE WHEN %(published)s
                                 THEN now() + make_interval(secs => %(delay_seconds)s) END,
        updated_at = now()
    WHERE id = %(run_id)s
      AND lease_token = %(lease_token)s
      AND status IN ('RUNNING', 'STOPPING')
    RETURNING id, next_attempt_at, status, caller, provider, endpoint
), attempt AS (
    UPDATE attempts
    SET ended_at = now(), outcome = %(outcome)s, http_status = %(http_status)s,
        message = %(message)s, next_attempt_at = (SELECT next_attempt_at FROM retried)
    WHERE run_id = %(run_id)s AND number = %(number)s AND ended_at IS NULL
      AND EXISTS (SELECT 1 FROM retried)
)
SELECT id, next_attempt_at, status,
       CASE WHEN %(wake)s THEN
           (SELECT json_agg(w) FROM monid_wake_freed(caller, provider, endpoint,
                                                     %(caller_freed)s, %(provider_limit)s,
                                                     %(endpoint_limit)s, true) w) END AS woken
FROM retried;

-- name: follow_run
-- The provider took the job: keep its state with the run and hand the run back
-- until the next check is due. The attempt stays open, and the run keeps its
-- provider's slot while the job runs; the caller's slot is free.
WITH followed AS (
    UPDATE runs
    SET provider_state = %(provider_state)s,
        lease_token = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        next_attempt_at = now() + make_interval(secs => %(delay_seconds)s),
        last_published_at = CASE WHEN %(published)s
                                 THEN now() + make_interval(secs => %(delay_seconds)s) END,
        updated_at = now()
    WHERE id = %(run_id)s
      AND lease_token = %(lease_token)s
      AND status IN ('RUNNING', 'STOPPING')
    RETURNING id, next_attempt_at, status, caller, provider, endpoint
)
SELECT id, next_attempt_at, status,
       CASE WHEN %(caller_freed)s THEN
           (SELECT json_agg(w) FROM monid_wake_freed(caller, provider, endpoint, true, 0, 0,
                                                     false) w) END AS woken
FROM followed;

-- name: renew_leases
-- The heartbeat: a live worker keeps the leases of the runs it is working on. A run
-- locked at this moment (being ended, or stopped) is skipped, not waited for: the
-- heartbeat never waits for, nor deadlocks with, a statement that ends several runs
-- at once (they lock their runs in another order); the next beat renews a run still
-- held.
UPDATE runs
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE id IN (SELECT id FROM runs
             WHERE lease_token = ANY(%(tokens)s) AND completed_at IS NULL
             FOR UPDATE SKIP LOCKED);

-- name: hand_back_runs
-- A worker that is shutting down hands back the runs it still holds: they are
-- due at once, and the attempt in progress ends LOST (a followed provider job
-- goes on: its attempt stays open). Not counted as a lost worker. The runs are
-- locked in the order a statement that ends several runs locks them (by caller, then
-- run), so the two never deadlock: the hand-back waits for such an end, then leaves
-- out the runs it ended.
WITH held AS (
    SELECT id FROM runs
    WHERE lease_owner LIKE %(owner_prefix)s
      AND lease_token IS NOT NULL
      AND completed_at IS NULL
    ORDER BY caller, id
    FOR UPDATE
), released AS (
    UPDATE runs
    SET lease_token = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        next_attempt_at = now(),
        last_published_at = now(),
        updated_at = now()
    FROM held
    WHERE runs.id = held.id
      AND runs.lease_token IS NOT NULL
      AND runs.completed_at IS NULL
    RETURNING runs.id, runs.attempt_count, runs.provider_state
), lost AS (
    UPDATE attempts a
    SET ended_at = now(), outcome = 'LOST',
        message = 'the worker shut down before the attempt ended'
    FROM released r
    WHERE a.run_id = r.id AND a.number = r.attempt_count AND a.ended_at IS NULL
      AND r.provider_state IS NULL
)
SELECT id FROM released;

-- Named queries: each block starts with "-- name: <name>" and runs to the next.

-- name: insert_api_key
INSERT INTO api_keys (user_id, label, mode, key_prefix, key_hash)
VALUES (%(user_id)s, %(label)s, %(mode)s, %(key_prefix)s, %(key_hash)s)
RETURNING id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at;

-- name: find_api_key_by_hash
SELECT id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at
FROM api_keys
WHERE key_hash = %(key_hash)s;

-- name: list_api_keys
SELECT id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at
FROM api_keys
WHERE user_id = %(user_id)s
ORDER BY id;

-- name: revoke_api_key
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND user_id = coalesce(%(user_id)s, user_id)
RETURNING id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at;

-- name: insert_run
-- Accept a run in one statement, so one round trip and atomic without a
-- transaction: under a cap on the caller's runs in flight (cap 0: none), take a
-- number 0..cap-1 that none of its open runs holds (found by trying a few at random,
-- each one probe of the unique index runs_inflight_slot; when those are all taken,
-- by reading every number the caller's open runs hold), so that concurrent accepts
-- seldom pick the same one, and the index refuses the second of two that do (the
-- caller tries again); hold the run's price on the wallet (only if its available
-- balance covers it; the wallet's row lock makes concurrent holds wait for each
-- other); insert the run and the ledger's HOLD entry. Nothing is written when no
-- number is free or the wallet falls short; the two flags say which. The caller's
-- spend controls are checked first (monid_check_controls, migration 0015): a run
-- one refuses is stored BLOCKED, ended, holding nothing, with the controls' records.
WITH checked AS (
    SELECT * FROM monid_check_controls(%(caller)s, %(api_key_id)s, %(hold_micros)s)
), tried AS (
    SELECT probe.n AS slot
    FROM (SELECT floor(random() * %(cap)s)::int AS n FROM generate_series(1, 4)) probe
    WHERE %(cap)s > 0
      AND NOT EXISTS (SELECT 1 FROM runs
                      WHERE caller = %(caller)s AND inflight_slot = probe.n
                        AND completed_at IS NULL)
    LIMIT 1
), searched AS (
    SELECT n AS slot
    FROM generate_series(0, %(cap)s - 1) n
    WHERE NOT EXISTS (SELECT 1 FROM tried)
      AND n NOT IN (SELECT inflight_slot FROM runs
                    WHERE caller = %(caller)s AND completed_at IS NULL
                      AND inflight_slot IS NOT NULL)
    ORDER BY random()
    LIMIT 1
), slot AS (
    SELECT slot FROM tried UNION ALL SELECT slot FROM searched LIMIT 1
), under_cap AS (
    SELECT %(cap)s = 0 OR EXISTS (SELECT 1 FROM slot) AS ok
), held AS (
    UPDATE wallets
    SET held_micros = held_micros + %(hold_micros)s, updated_at = now()
    WHERE caller = %(caller)s AND %(hold_micros)s > 0
      AND balance_micros - held_micros >= %(hold_micros)s
      AND (SELECT ok FROM under_cap) AND NOT (SELECT blocked FROM checked)
    RETURNING caller
), funded AS (
    SELECT %(hold_micros)s = 0 OR (SELECT blocked FROM checked) OR EXISTS (SELECT 1 FROM held)
           AS ok
), run AS (
    INSERT INTO runs (
        id, caller, api_key_id, provider, provider_name, endpoint, adapter, input,
        price_type, price_micros, flat_fee_micros, max_attempts, deadline_seconds, deadline_at,
        last_published_at, hold_micros, max_results, inflight_slot,
        status, cost_micros, completed_at
    )
    SELECT %(id)s, %(caller)s, %(api_key_id)s, %(provider)s, %(provider_name)s, %(endpoint)s,
           %(adapter)s, %(input)s, %(price_type)s, %(price_micros)s, %(flat_fee_micros)s,
           %(max_attempts)s, %(deadline_seconds)s,
           -- Until its first start, a run's deadline is its queue limit.
           now() + make_interval(secs => %(queue_timeout_seconds)s), now(),
           CASE WHEN blocked THEN 0 ELSE %(hold_micros)s END, %(max_results)s,
           CASE WHEN NOT blocked THEN (SELECT slot FROM slot) END,
           CASE WHEN blocked THEN 'BLOCKED' ELSE 'RUNNING' END,
           CASE WHEN blocked THEN 0 END, CASE WHEN blocked THEN now() END
    FROM checked
    WHERE (SELECT ok FROM under_cap) AND (SELECT ok FROM funded)
    RETURNING id, created_at
), hold_entry AS (
    INSERT INTO ledger_entries (caller, run_id, kind, amount_micros)
    SELECT held.caller, run.id, 'HOLD', %(hold_micros)s FROM held, run
), recorded AS (
    SELECT monid_hold_controls(run.id, checked.blocked, checked.controls, %(hold_micros)s) AS n
    FROM run, checked
)
SELECT (SELECT ok FROM under_cap) AS under_cap, (SELECT ok FROM funded) AS funded,
       (SELECT created_at FROM run) AS created_at, checked.blocked,
       CASE WHEN (SELECT n FROM recorded) IS NOT NULL THEN checked.controls END AS controls
FROM checked;

-- name: get_run
SELECT r.id, r.caller, r.provider, r.provider_name, r.endpoint, r.status, r.input, r.output,
       r.result_count, r.provider_response, r.error, r.price_type, r.price_micros,
       r.flat_fee_micros, r.cost_micros, r.attempt_count, r.max_attempts, r.next_attempt_at,
       r.deadline_at, r.created_at, r.started_at, r.completed_at, r.output_truncated,
       (SELECT coalesce(json_agg(json_build_object(
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
        FROM attempts a WHERE a.run_id = r.id) AS attempts
FROM runs r
WHERE r.id = %(id)s AND r.caller = %(caller)s;

-- name: list_runs
SELECT id, caller, provider, provider_name, endpoint, status, result_count, provider_response,
       error, price_type, price_micros, flat_fee_micros, cost_micros, attempt_count,
       max_attempts, next_attempt_at, deadline_at, created_at, started_at, completed_at
FROM runs
WHERE caller = %(caller)s AND id < %(before)s
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_runs_by_status
SELECT id, caller, provider, provider_name, endpoint, status, result_count, provider_response,
       error, price_type, price_micros, flat_fee_micros, cost_micros, attempt_count,
       max_attempts, next_attempt_at, deadline_at, created_at, started_at, completed_at
FROM runs
WHERE caller = %(caller)s AND status = %(status)s AND id < %(before)s
ORDER BY id DESC
LIMIT %(limit)s;

-- name: claim_run
-- Take a run with one guarded UPDATE, so a second delivery finds nothing. A run
-- with no provider job yet starts a new attempt; a run following one (its
-- provider_state is set) is taken for one more check within the same attempt. The
-- endpoint's deadline starts with the run's first start; a run still waiting to
-- start past its queue limit is not taken (the sweeper ends it). Where a run may
-- have to wait for a slot, claim_run_or_wait does this instead.
WITH claimed AS (
    UPDATE runs
    SET attempt_count = attempt_count + (provider_state IS NULL AND status = 'RUNNING')::int,
        lease_token = %(lease_token)s,
        lease_owner = %(worker)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        next_attempt_at = NULL,
        waiting_for = NULL,
        deadline_at = CASE WHEN started_at IS NULL AND deadline_seconds IS NOT NULL
                           THEN now() + make_interval(secs => deadline_seconds)
                           ELSE deadline_at END,
        started_at = coalesce(started_at, now()),
        updated_at = now()
    WHERE id = %(run_id)s
      AND lease_token IS NULL
      AND ((status = 'RUNNING'
            AND (provider_state IS NOT NULL OR attempt_count < max_attempts)
            AND (next_attempt_at IS NULL OR next_attempt_at <= now())
            AND (started_at IS NOT NULL OR deadline_at > now()))
           -- A stop was asked: take it at once, to carry the stop out.
           OR status = 'STOPPING')
    RETURNING id, caller, status, provider, endpoint, adapter, input, provider_state, attempt_count,
              max_attempts, deadline_at, price_type, price_micros, flat_fee_micros,
              malformed_answers, hold_micros, max_results,
              (provider_state IS NULL AND status = 'RUNNING') AS new_attempt
), attempt AS (
    INSERT INTO attempts (run_id, number, lease_token, worker)
    SELECT id, attempt_count, %(lease_token)s, %(worker)s FROM claimed WHERE new_attempt
)
SELECT NULL::text AS waiting_for, * FROM claimed;

-- name: claim_run_or_wait
-- Take a run, or park it until a slot it needs is free (`waiting_for` set): see
-- monid_claim in migration 0009.
SELECT * FROM monid_claim(%(run_id)s, %(lease_token)s, %(worker)s, %(lease_seconds)s,
                          %(full_callers)s, %(limits)s);

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
-- The heartbeat: a live worker keeps the leases of the runs it is working on.
UPDATE runs
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE lease_token = ANY(%(tokens)s) AND completed_at IS NULL;

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

-- name: hand_back_runs
-- A worker that is shutting down hands back the runs it still holds: they are
-- due at once, and the attempt in progress ends LOST (a followed provider job
-- goes on: its attempt stays open). Not counted as a lost worker.
WITH released AS (
    UPDATE runs
    SET lease_token = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        next_attempt_at = now(),
        last_published_at = now(),
        updated_at = now()
    WHERE lease_owner LIKE %(owner_prefix)s
      AND lease_token IS NOT NULL
      AND completed_at IS NULL
    RETURNING id, attempt_count, provider_state
), lost AS (
    UPDATE attempts a
    SET ended_at = now(), outcome = 'LOST',
        message = 'the worker shut down before the attempt ended'
    FROM released r
    WHERE a.run_id = r.id AND a.number = r.attempt_count AND a.ended_at IS NULL
      AND r.provider_state IS NULL
)
SELECT id FROM released;

-- name: ensure_wallet
INSERT INTO wallets (caller) VALUES (%(caller)s) ON CONFLICT (caller) DO NOTHING;

-- name: hold_funds
-- Hold a new run's price, only if the wallet's available balance covers it.
-- The row lock on the wallet makes concurrent holds wait for each other, and
-- each sees what the one before it held.
WITH held AS (
    UPDATE wallets
    SET held_micros = held_micros + %(amount)s, updated_at = now()
    WHERE caller = %(caller)s AND balance_micros - held_micros >= %(amount)s
    RETURNING caller
)
INSERT INTO ledger_entries (caller, run_id, kind, amount_micros)
SELECT caller, %(run_id)s, 'HOLD', %(amount)s FROM held
RETURNING id;

-- name: credit_wallet
WITH wallet AS (
    INSERT INTO wallets (caller, balance_micros)
    VALUES (%(caller)s, %(amount)s)
    ON CONFLICT (caller) DO UPDATE
    SET balance_micros = wallets.balance_micros + EXCLUDED.balance_micros, updated_at = now()
    RETURNING caller, balance_micros, held_micros
), entry AS (
    INSERT INTO ledger_entries (caller, kind, amount_micros, note)
    VALUES (%(caller)s, 'CREDIT', %(amount)s, %(note)s)
)
SELECT caller, balance_micros, held_micros FROM wallet;

-- name: get_wallet
SELECT caller, balance_micros, held_micros FROM wallets WHERE caller = %(caller)s;

-- name: list_ledger_entries
SELECT id, caller, run_id, kind, amount_micros, note, created_at
FROM ledger_entries
WHERE caller = %(caller)s
ORDER BY id DESC
LIMIT %(limit)s;

-- name: request_stop
-- Ask an open run to stop. Says whether a worker holds it or follows a
-- provider job for it (then a worker carries the stop out).
UPDATE runs
SET status = 'STOPPING',
    stop_requested_at = coalesce(stop_requested_at, now()),
    updated_at = now()
WHERE id = %(run_id)s AND caller = %(caller)s AND completed_at IS NULL
RETURNING id, (lease_token IS NOT NULL AND lease_expires_at >= now()) AS held,
          (provider_state IS NOT NULL) AS following;

-- name: run_status
SELECT status, completed_at FROM runs WHERE id = %(run_id)s AND caller = %(caller)s;

-- name: claim_idempotency_key
-- Record an Idempotency-Key with its run, unless the caller used it in the
-- last 24 hours (an older one is replaced). Waits for a concurrent request
-- with the same key to finish.
INSERT INTO idempotency_keys (caller, key, request_hash, run_id)
VALUES (%(caller)s, %(key)s, %(request_hash)s, %(run_id)s)
ON CONFLICT (caller, key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, run_id = EXCLUDED.run_id,
    response = NULL, created_at = now()
WHERE idempotency_keys.created_at < now() - interval '24 hours'
RETURNING key;

-- name: find_idempotency_key
-- The key, if the caller used it in the last 24 hours, and what its run was when
-- it was accepted: the answer a repeated request gets.
SELECT k.request_hash, r.id AS run_id, r.caller, r.provider, r.provider_name, r.endpoint,
       r.price_type, r.price_micros, r.flat_fee_micros, r.created_at
FROM idempotency_keys k
JOIN runs r ON r.id = k.run_id
WHERE k.caller = %(caller)s AND k.key = %(key)s
  AND k.created_at >= now() - interval '24 hours';

-- name: delete_expired_idempotency_keys
DELETE FROM idempotency_keys
WHERE ctid IN (SELECT ctid FROM idempotency_keys
               WHERE created_at < now() - interval '24 hours' LIMIT %(limit)s);

-- Named queries of runs: accepted, read, listed, asked to stop.

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
-- `webhook`: what the run asked to be told of its end (null: nothing); a BLOCKED run's
-- event is written by the insert's trigger (migration 0019). Each probe is a lookup of
-- its own (LATERAL ... LIMIT 1): as an anti join, the planner answered the four at once
-- by reading every open run whenever the statistics said there were none.
WITH checked AS (
    SELECT * FROM monid_check_controls(%(caller)s, %(api_key_id)s, %(hold_micros)s)
), tried AS (
    SELECT probe.n AS slot
    FROM (SELECT floor(random() * %(cap)s)::int AS n FROM generate_series(1, 4)) probe
    LEFT JOIN LATERAL (SELECT 1 AS held FROM runs
                       WHERE caller = %(caller)s AND inflight_slot = probe.n
                         AND completed_at IS NULL
                       LIMIT 1) holder ON true
    WHERE %(cap)s > 0 AND holder.held IS NULL
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
        status, cost_micros, completed_at, webhook
    )
    SELECT %(id)s, %(caller)s, %(api_key_id)s, %(provider)s, %(provider_name)s, %(endpoint)s,
           %(adapter)s, %(input)s, %(price_type)s, %(price_micros)s, %(flat_fee_micros)s,
           %(max_attempts)s, %(deadline_seconds)s,
           -- Until its first start, a run's deadline is its queue limit.
           now() + make_interval(secs => %(queue_timeout_seconds)s), now(),
           CASE WHEN blocked THEN 0 ELSE %(hold_micros)s END, %(max_results)s,
           CASE WHEN NOT blocked THEN (SELECT slot FROM slot) END,
           CASE WHEN blocked THEN 'BLOCKED' ELSE 'RUNNING' END,
           CASE WHEN blocked THEN 0 END, CASE WHEN blocked THEN now() END, %(webhook)s::jsonb
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

-- name: prepare_insert_run
-- Accepts written together (insert_runs): insert_run prepared in SQL, once a
-- connection, with its parameters' types in the order execute_insert_run gives them.
PREPARE monid_insert_run (text, text, bigint, text, text, text, text, json, text, bigint,
                          bigint, integer, integer, bigint, integer, integer, integer, jsonb)
AS

-- name: execute_insert_run
-- One run of a group of accepts, its values written in as literals (insert_runs).
EXECUTE monid_insert_run (%(id)s, %(caller)s, %(api_key_id)s, %(provider)s,
    %(provider_name)s, %(endpoint)s, %(adapter)s, %(input)s, %(price_type)s,
    %(price_micros)s, %(flat_fee_micros)s, %(max_attempts)s, %(deadline_seconds)s,
    %(hold_micros)s, %(max_results)s, %(cap)s, %(queue_timeout_seconds)s, %(webhook)s);

-- name: lock_accepting_callers
-- Accepts written together (insert_runs): each capped caller's advisory lock, in the
-- order given, until the transaction ends.
SELECT count(pg_advisory_xact_lock(hashtextextended('monid:accept:' || c, 0)))
FROM unnest(%(callers)s::text[]) c;

-- name: get_run
SELECT r.id, r.caller, r.provider, r.provider_name, r.endpoint, r.status, r.input, r.output,
       r.result_count, r.provider_response, r.error, r.price_type, r.price_micros,
       r.flat_fee_micros, r.cost_micros, r.attempt_count, r.max_attempts, r.next_attempt_at,
       r.deadline_at, r.created_at, r.started_at, r.completed_at, r.output_truncated,
       monid_run_attempts(r.id) AS attempts
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

-- name: get_run_end
SELECT status, error FROM runs WHERE id = %(run_id)s;

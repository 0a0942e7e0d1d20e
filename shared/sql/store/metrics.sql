-- Named queries of /metrics: what every worker did, read from the source of truth.
-- Each is read at most once every few seconds per web process.

-- name: limit_metrics_statement_time
-- A scrape must not queue up behind a slow database: give up and answer without.
SELECT set_config('statement_timeout', '2000', true);

-- name: count_runs_by_status
SELECT status, count(*) AS runs
FROM runs
GROUP BY status;

-- name: count_attempts_by_outcome
-- An attempt without an end yet has no outcome: it is counted as NULL here.
SELECT outcome, count(*) AS attempts
FROM attempts
GROUP BY outcome;

-- name: summarize_run_durations
-- Cumulative buckets of completed_at - created_at over ended runs. Each column
-- is named by its upper bound in seconds; the code reads the bounds from the names.
SELECT count(*) FILTER (WHERE seconds <= 0.1)  AS "0.1",
       count(*) FILTER (WHERE seconds <= 0.25) AS "0.25",
       count(*) FILTER (WHERE seconds <= 0.5)  AS "0.5",
       count(*) FILTER (WHERE seconds <= 1)    AS "1",
       count(*) FILTER (WHERE seconds <= 2.5)  AS "2.5",
       count(*) FILTER (WHERE seconds <= 5)    AS "5",
       count(*) FILTER (WHERE seconds <= 10)   AS "10",
       count(*) FILTER (WHERE seconds <= 30)   AS "30",
       count(*) FILTER (WHERE seconds <= 60)   AS "60",
       count(*) FILTER (WHERE seconds <= 120)  AS "120",
       count(*) FILTER (WHERE seconds <= 300)  AS "300",
       count(*) FILTER (WHERE seconds <= 600)  AS "600",
       count(*) FILTER (WHERE seconds <= 1800) AS "1800",
       count(*) FILTER (WHERE seconds <= 3600) AS "3600",
       count(*) AS count,
       coalesce(sum(seconds), 0)::float8 AS sum
FROM (
    SELECT extract(epoch FROM completed_at - created_at)::float8 AS seconds
    FROM runs
    WHERE completed_at IS NOT NULL
) ended;

-- name: find_oldest_unclaimed_run_age
-- Runs no worker has started yet. `completed_at IS NULL` (implied by the status)
-- lets the planner use the runs_open partial index.
SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age_seconds
FROM runs
WHERE completed_at IS NULL AND status = 'RUNNING' AND started_at IS NULL;

-- name: count_runs_waiting_to_start
-- Runs accepted and not yet started by a worker: all of them, and the callers with
-- the most (a few only: one label per caller would grow without bound).
SELECT caller, count(*) AS runs, sum(count(*)) OVER () AS total
FROM runs
WHERE completed_at IS NULL AND status = 'RUNNING' AND started_at IS NULL
GROUP BY caller
ORDER BY runs DESC, caller
LIMIT %(top)s;

-- name: count_runs_waiting_for_slots
-- Runs parked until a concurrency slot frees: a caller's ('caller'), a provider's
-- ('provider:<slug>') or an endpoint's ('endpoint:<slug><path>'), which the
-- catalog bounds.
SELECT waiting_for AS slot, count(*) AS runs
FROM runs
WHERE waiting_for IS NOT NULL
GROUP BY waiting_for;

-- name: summarize_start_delays
-- Cumulative buckets of started_at - created_at (the wait from accept to first
-- start) over started runs; named by upper bound in seconds, as above.
SELECT count(*) FILTER (WHERE seconds <= 0.01) AS "0.01",
       count(*) FILTER (WHERE seconds <= 0.05) AS "0.05",
       count(*) FILTER (WHERE seconds <= 0.1)  AS "0.1",
       count(*) FILTER (WHERE seconds <= 0.5)  AS "0.5",
       count(*) FILTER (WHERE seconds <= 1)    AS "1",
       count(*) FILTER (WHERE seconds <= 5)    AS "5",
       count(*) FILTER (WHERE seconds <= 15)   AS "15",
       count(*) FILTER (WHERE seconds <= 60)   AS "60",
       count(*) FILTER (WHERE seconds <= 300)  AS "300",
       count(*) FILTER (WHERE seconds <= 900)  AS "900",
       count(*) FILTER (WHERE seconds <= 3600) AS "3600",
       count(*) AS count,
       coalesce(sum(seconds), 0)::float8 AS sum
FROM (
    SELECT extract(epoch FROM started_at - created_at)::float8 AS seconds
    FROM runs
    WHERE started_at IS NOT NULL
) started;

-- name: count_webhook_deliveries_by_status
SELECT status, count(*) AS deliveries
FROM webhook_deliveries
GROUP BY status;

-- name: find_pending_webhook_deliveries
-- The PENDING deliveries (the partial index holds only them): how many are due now,
-- and how old the oldest is.
SELECT count(*) FILTER (WHERE next_attempt_at <= now()) AS due,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age_seconds
FROM webhook_deliveries
WHERE status = 'PENDING';

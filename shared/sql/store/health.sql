-- Named queries of endpoint health: the sweeper's rollup of recent runs, and its reads.

-- name: endpoint_health_rollup_due
-- True when no rollup was written in the last `every_seconds` (or none ever was).
SELECT coalesce(max(computed_at) < now() - make_interval(secs => %(every_seconds)s), true)
       AS due
FROM endpoint_health;

-- name: summarize_recent_endpoint_runs
-- Each endpoint's ended runs accepted since `since_id` (the ULID of the window's
-- start: the primary key bounds the scan, no other index is needed). Runs a caller
-- stopped, a control blocked, or that never got to start (QUEUE_TIMEOUT) say nothing
-- of the endpoint and are not judged. `recent_failures` counts failures among the
-- last `recent` judged runs (to see an endpoint that just broke).
WITH judged AS (
    SELECT provider, endpoint, status, completed_at,
           extract(epoch FROM completed_at - coalesce(started_at, created_at))::float8
               AS seconds,
           row_number() OVER (PARTITION BY provider, endpoint ORDER BY completed_at DESC)
               AS recency
    FROM runs
    WHERE id >= %(since_id)s
      AND completed_at IS NOT NULL
      AND status IN ('COMPLETED', 'FAILED', 'TIMED_OUT')
      AND (status <> 'TIMED_OUT' OR (error ->> 'code') IS DISTINCT FROM 'QUEUE_TIMEOUT')
)
SELECT provider, endpoint,
       count(*) AS judged_runs,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed_runs,
       count(*) FILTER (WHERE status <> 'COMPLETED' AND recency <= %(recent)s)
           AS recent_failures,
       count(*) FILTER (WHERE recency <= %(recent)s) AS recent_runs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)
           FILTER (WHERE status = 'COMPLETED') AS p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds)
           FILTER (WHERE status = 'COMPLETED') AS p90_seconds
FROM judged
GROUP BY provider, endpoint;

-- name: upsert_endpoint_health
INSERT INTO endpoint_health (provider, endpoint, health, p50_seconds, p90_seconds,
                             success_rate, judged_runs, window_hours, computed_at)
VALUES (%(provider)s, %(endpoint)s, %(health)s, %(p50_seconds)s, %(p90_seconds)s,
        %(success_rate)s, %(judged_runs)s, %(window_hours)s, now())
ON CONFLICT (provider, endpoint) DO UPDATE
SET health = excluded.health,
    p50_seconds = excluded.p50_seconds,
    p90_seconds = excluded.p90_seconds,
    success_rate = excluded.success_rate,
    judged_runs = excluded.judged_runs,
    window_hours = excluded.window_hours,
    computed_at = excluded.computed_at;

-- name: delete_stale_endpoint_health
-- Endpoints that had no judged run in this rollup's window (its transaction's now()).
DELETE FROM endpoint_health
WHERE computed_at < now();

-- name: get_endpoint_health
-- The rows of the given (provider, endpoint) pairs that have one.
SELECT h.provider, h.endpoint, h.health, h.p50_seconds, h.p90_seconds, h.success_rate,
       h.judged_runs, h.window_hours
FROM endpoint_health AS h
JOIN unnest(%(providers)s::text[], %(endpoints)s::text[]) AS wanted (provider, endpoint)
  ON h.provider = wanted.provider AND h.endpoint = wanted.endpoint;

-- Named queries of runs' live events (GET /v1/runs/:runId/events, migration 0021).

-- name: get_run_for_events
-- The run as its events show it: everything GET /v1/runs/:runId answers but its
-- output, which no event carries, and the progress its provider's job reported
-- (kept with the provider state, shared/progress.py).
SELECT r.id, r.caller, r.provider, r.provider_name, r.endpoint, r.status, r.input,
       r.result_count, r.provider_response, r.error, r.price_type, r.price_micros,
       r.flat_fee_micros, r.cost_micros, r.attempt_count, r.max_attempts, r.next_attempt_at,
       r.deadline_at, r.created_at, r.started_at, r.completed_at, r.output_truncated,
       monid_run_attempts(r.id) AS attempts, r.provider_state -> 'progress' AS progress
FROM runs r
WHERE r.id = %(id)s AND r.caller = %(caller)s;

-- name: watch_run
-- Have the run's changes notified on `monid_run_changed` until it ends; a run
-- watched already, or ended, is left as it is (no write).
UPDATE runs SET watched = true
WHERE id = %(id)s AND caller = %(caller)s AND completed_at IS NULL AND NOT watched;

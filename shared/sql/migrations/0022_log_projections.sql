-- What several reads show the same way, said once: a run's attempts (GET /v1/runs/:runId
-- and the run's live events) and a webhook delivery's tries (the delivery log, by run,
-- by webhook, and one delivery). PL/pgSQL, so each session plans their query once.

-- A run's attempts as its answers show them, oldest first.
CREATE FUNCTION monid_run_attempts(p_run_id text) RETURNS json
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(json_agg(json_build_object(
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
            FROM attempts a WHERE a.run_id = p_run_id);
END $$;

-- A delivery's tries as the delivery log shows them: the last `p_limit`, oldest first.
CREATE FUNCTION monid_delivery_tries(p_delivery_id text, p_limit integer) RETURNS json
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(json_agg(a ORDER BY a.id), '[]'::json)
            FROM (SELECT t.id,
                         to_char(t.attempted_at AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "attemptedAt",
                         t.status_code AS "statusCode", t.duration_ms AS "durationMs",
                         t.response_head AS "responseHead", t.error,
                         to_char(t.next_retry_at AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "nextRetryAt"
                  FROM webhook_delivery_attempts t
                  WHERE t.delivery_id = p_delivery_id
                  ORDER BY t.id DESC
                  LIMIT p_limit) a);
END $$;

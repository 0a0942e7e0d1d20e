-- Named queries of webhooks: the outbox of events that runs' ends wrote (migration
-- 0018, by trigger), read to deliver them.

-- name: list_run_webhook_events
-- A run's events, oldest first.
SELECT id, run_id, caller, type, payload, created_at
FROM webhook_events
WHERE run_id = %(run_id)s
ORDER BY id;

-- name: list_webhook_events_after
-- Events after `after_id` (a ULID; '' for the first), oldest first, at most `limit`.
SELECT id, run_id, caller, type, payload, created_at
FROM webhook_events
WHERE id > %(after_id)s
ORDER BY id
LIMIT %(limit)s;

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

-- name: signing_secrets
-- The secrets that sign a delivery now: the current one and those rotated out whose
-- grace has not run out, newest first. `endpoint_id` null: the workspace's default.
SELECT secret
FROM webhook_secrets
WHERE caller = %(caller)s
  AND endpoint_id IS NOT DISTINCT FROM %(endpoint_id)s
  AND (expires_at IS NULL OR expires_at > now())
ORDER BY id DESC;

-- name: ensure_default_secret
-- The workspace's default secret, made from `secret` if it has none yet (two callers
-- at once: one wins, both read the winner's).
WITH made AS (
    INSERT INTO webhook_secrets (caller, endpoint_id, secret)
    VALUES (%(caller)s, NULL, %(secret)s)
    ON CONFLICT (caller) WHERE endpoint_id IS NULL AND expires_at IS NULL DO NOTHING
    RETURNING secret
)
SELECT secret FROM made
UNION ALL
SELECT secret FROM webhook_secrets
WHERE caller = %(caller)s AND endpoint_id IS NULL AND expires_at IS NULL
LIMIT 1;

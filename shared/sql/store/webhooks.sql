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

-- name: lock_webhooks_of_caller
-- Serialises the changes to a workspace's webhooks that count them or rotate their
-- secrets (for the transaction): two at once take turns.
SELECT pg_advisory_xact_lock(hashtextextended('monid_webhooks:' || %(caller)s, 0));

-- name: count_webhook_endpoints
SELECT count(*) AS n FROM webhook_endpoints WHERE caller = %(caller)s;

-- name: insert_webhook_endpoint
INSERT INTO webhook_endpoints (caller, url, events, description, enabled)
VALUES (%(caller)s, %(url)s, %(events)s, %(description)s, %(enabled)s)
RETURNING id, caller, url, events, description, enabled, disabled_reason, created_at,
          updated_at;

-- name: insert_webhook_secret
-- A new current secret: a standing webhook's own (`endpoint_id`) or the workspace's
-- default (null).
INSERT INTO webhook_secrets (caller, endpoint_id, secret)
VALUES (%(caller)s, %(endpoint_id)s, %(secret)s);

-- name: expire_current_webhook_secret
-- A rotation's first step: the current secret keeps signing until the grace runs out.
-- Of those already in their grace, only the newest `keep` go on signing (a rotation in
-- a loop must not make a delivery carry a signature per rotation).
WITH current AS (
    UPDATE webhook_secrets
    SET expires_at = now() + make_interval(secs => %(grace_seconds)s)
    WHERE caller = %(caller)s AND endpoint_id IS NOT DISTINCT FROM %(endpoint_id)s
      AND expires_at IS NULL
    RETURNING id
)
UPDATE webhook_secrets
SET expires_at = now()
WHERE caller = %(caller)s AND endpoint_id IS NOT DISTINCT FROM %(endpoint_id)s
  AND expires_at > now()
  AND id NOT IN (SELECT id FROM current)
  AND id NOT IN (SELECT id FROM webhook_secrets
                 WHERE caller = %(caller)s
                   AND endpoint_id IS NOT DISTINCT FROM %(endpoint_id)s
                   AND expires_at > now()
                 ORDER BY id DESC
                 LIMIT %(keep)s);

-- name: delete_expired_webhook_secrets
DELETE FROM webhook_secrets
WHERE caller = %(caller)s AND endpoint_id IS NOT DISTINCT FROM %(endpoint_id)s
  AND expires_at <= now();

-- name: get_webhook_endpoint
SELECT id, caller, url, events, description, enabled, disabled_reason, created_at,
       updated_at
FROM webhook_endpoints
WHERE id = %(id)s AND caller = %(caller)s;

-- name: lock_webhook_endpoint
SELECT id FROM webhook_endpoints WHERE id = %(id)s AND caller = %(caller)s FOR UPDATE;

-- name: list_webhook_endpoints
-- A page of the workspace's webhooks, newest first.
SELECT id, caller, url, events, description, enabled, disabled_reason, created_at,
       updated_at
FROM webhook_endpoints
WHERE caller = %(caller)s AND id < %(before)s
ORDER BY id DESC
LIMIT %(limit)s;

-- name: update_webhook_endpoint
-- Only the fields flagged `set_...` change; switching a webhook on forgets why it was
-- switched off.
UPDATE webhook_endpoints
SET url = CASE WHEN %(set_url)s THEN %(url)s ELSE url END,
    events = CASE WHEN %(set_events)s THEN %(events)s ELSE events END,
    description = CASE WHEN %(set_description)s THEN %(description)s ELSE description END,
    enabled = CASE WHEN %(set_enabled)s THEN %(enabled)s ELSE enabled END,
    disabled_reason = CASE WHEN %(set_enabled)s THEN NULL ELSE disabled_reason END,
    updated_at = now()
WHERE id = %(id)s AND caller = %(caller)s
RETURNING id, caller, url, events, description, enabled, disabled_reason, created_at,
          updated_at;

-- name: delete_deliveries_of_webhook
-- A deleted webhook's deliveries go with it (none is sent to it afterwards, and none
-- is left looking like a run's own).
DELETE FROM webhook_deliveries
WHERE endpoint_id = %(id)s AND caller = %(caller)s;

-- name: delete_webhook_endpoint
-- Its secrets go with it (ON DELETE CASCADE).
DELETE FROM webhook_endpoints
WHERE id = %(id)s AND caller = %(caller)s
RETURNING id, caller, url, events, description, enabled, disabled_reason, created_at,
          updated_at;

-- name: insert_webhook_test_event
-- A `webhook.test` event (of no run) and one PENDING delivery of it to the webhook,
-- and a word to the senders.
WITH event AS (
    INSERT INTO webhook_events (run_id, caller, type, payload)
    VALUES (NULL, %(caller)s, 'webhook.test', %(payload)s)
    RETURNING id
), delivery AS (
    INSERT INTO webhook_deliveries (event_id, endpoint_id, caller, url)
    SELECT event.id, e.id, e.caller, e.url
    FROM event, webhook_endpoints e
    WHERE e.id = %(endpoint_id)s AND e.caller = %(caller)s
    RETURNING id
)
SELECT delivery.id, pg_notify('monid_webhook_deliveries', event.id) AS notified
FROM delivery, event;

-- name: get_webhook_delivery
-- A delivery of the caller's, with its event and its tries (oldest first, the last
-- `attempt_limit`).
SELECT d.id, d.event_id, ev.type AS event_type, ev.run_id, d.endpoint_id, d.url, d.status,
       d.attempt_count, d.next_attempt_at, d.last_status_code, d.last_error, d.created_at,
       d.updated_at,
       monid_delivery_tries(d.id, %(attempt_limit)s) AS attempts
FROM webhook_deliveries d
JOIN webhook_events ev ON ev.id = d.event_id
WHERE d.id = %(id)s AND d.caller = %(caller)s;

-- name: list_deliveries_of_run
-- A page of the deliveries of the caller's run's events, newest first, each with its
-- tries (oldest first, the last `attempt_limit`).
SELECT d.id, d.event_id, ev.type AS event_type, ev.run_id, d.endpoint_id, d.url, d.status,
       d.attempt_count, d.next_attempt_at, d.last_status_code, d.last_error, d.created_at,
       d.updated_at,
       monid_delivery_tries(d.id, %(attempt_limit)s) AS attempts
FROM webhook_events ev
JOIN webhook_deliveries d ON d.event_id = ev.id
WHERE ev.run_id = %(run_id)s AND ev.caller = %(caller)s AND d.id < %(before)s
ORDER BY d.id DESC
LIMIT %(limit)s;

-- name: list_deliveries_of_webhook
-- A page of the deliveries to one of the caller's webhooks, newest first, each with its
-- tries (oldest first, the last `attempt_limit`).
SELECT d.id, d.event_id, ev.type AS event_type, ev.run_id, d.endpoint_id, d.url, d.status,
       d.attempt_count, d.next_attempt_at, d.last_status_code, d.last_error, d.created_at,
       d.updated_at,
       monid_delivery_tries(d.id, %(attempt_limit)s) AS attempts
FROM webhook_deliveries d
JOIN webhook_events ev ON ev.id = d.event_id
WHERE d.endpoint_id = %(endpoint_id)s AND d.caller = %(caller)s AND d.id < %(before)s
ORDER BY d.id DESC
LIMIT %(limit)s;

-- name: redeliver_webhook_delivery
-- A delivery that has ended (DELIVERED or FAILED) becomes PENDING again, due now and
-- held by nobody, and the senders are told; one still PENDING is left as it is (no row).
WITH redelivered AS (
    UPDATE webhook_deliveries
    SET status = 'PENDING', next_attempt_at = now(), lease_until = NULL, updated_at = now()
    WHERE id = %(id)s AND caller = %(caller)s AND status <> 'PENDING'
    RETURNING id, event_id
)
SELECT id, pg_notify('monid_webhook_deliveries', event_id) AS notified FROM redelivered;

-- Named queries of webhook deliveries as the workers send them: publishing due ones,
-- taking one with a lease, recording a try (migrations 0019 and 0020).

-- name: publish_due_deliveries
-- Due deliveries that nobody holds and whose message is not on its way (or was lost):
-- marked as published for `hold_seconds`, at most `limit`, in turns among the callers
-- who have any: each one's oldest due first, then each one's second, and so on (a
-- caller's share of the batch is `limit` over the number of callers with deliveries
-- due), so that no caller's backlog holds back another's retries. Answered in that
-- order, which is the order they are to be published in. The callers with deliveries
-- pending are found by skipping through the index of them by caller.
WITH RECURSIVE callers AS (
    (SELECT caller FROM webhook_deliveries WHERE status = 'PENDING'
     ORDER BY caller LIMIT 1)
    UNION ALL
    SELECT (SELECT d.caller FROM webhook_deliveries d
            WHERE d.status = 'PENDING' AND d.caller > c.caller
            ORDER BY d.caller LIMIT 1)
    FROM callers c
    WHERE c.caller IS NOT NULL
), due_callers AS MATERIALIZED (
    SELECT c.caller FROM callers c
    WHERE c.caller IS NOT NULL AND EXISTS (
        SELECT 1 FROM webhook_deliveries d
        WHERE d.caller = c.caller AND d.status = 'PENDING' AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until < now()))
), share AS (
    SELECT ceil(%(limit)s::numeric / greatest(count(*), 1))::int AS n FROM due_callers
), picked AS MATERIALIZED (
    SELECT p.id, p.next_attempt_at,
           row_number() OVER (PARTITION BY c.caller ORDER BY p.next_attempt_at, p.id) AS turn
    FROM due_callers c CROSS JOIN share
    CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
        WHERE d.caller = c.caller AND d.status = 'PENDING' AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until < now())
        ORDER BY d.next_attempt_at, d.id
        LIMIT share.n) p
    ORDER BY turn, p.next_attempt_at, p.id
    LIMIT %(limit)s
), locked AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.id IN (SELECT id FROM picked)
      AND d.status = 'PENDING' AND d.next_attempt_at <= now()
      AND (d.lease_until IS NULL OR d.lease_until < now())
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE webhook_deliveries d
    SET lease_until = now() + make_interval(secs => %(hold_seconds)s), lease_token = NULL
    FROM locked
    WHERE d.id = locked.id
    RETURNING d.id
)
SELECT m.id FROM marked m JOIN picked p ON p.id = m.id
ORDER BY p.turn, p.next_attempt_at, p.id;

-- name: publish_deliveries_of
-- As publish_due_deliveries, among the deliveries of the events `keys` names, or the
-- deliveries it names (a notification carries either).
UPDATE webhook_deliveries d
SET lease_until = now() + make_interval(secs => %(hold_seconds)s), lease_token = NULL
WHERE d.id IN (
    SELECT id FROM webhook_deliveries
    WHERE (event_id = ANY (%(keys)s::text[]) OR id = ANY (%(keys)s::text[]))
      AND status = 'PENDING' AND next_attempt_at <= now()
      AND (lease_until IS NULL OR lease_until < now())
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING d.id;

-- name: take_delivery
-- The delivery, for the sender with `token` for `lease_seconds`, if it is due and no
-- other sender holds it (a mark of publication is no hold); with its event and whether
-- its standing webhook is still on.
UPDATE webhook_deliveries d
SET lease_token = %(token)s, lease_until = now() + make_interval(secs => %(lease_seconds)s)
FROM webhook_events e
WHERE d.id = %(id)s AND e.id = d.event_id
  AND d.status = 'PENDING' AND d.next_attempt_at <= now()
  AND (d.lease_token IS NULL OR d.lease_until IS NULL OR d.lease_until < now())
RETURNING d.id, d.event_id, d.endpoint_id, d.caller, d.url, d.attempt_count,
          e.type AS event_type, e.payload, e.created_at AS event_created_at,
          (SELECT w.enabled FROM webhook_endpoints w WHERE w.id = d.endpoint_id)
              AS endpoint_enabled;

-- name: record_delivery_try
-- A try, recorded by the sender that holds the delivery (`token`) and only by it: the
-- delivery moves to `status` (PENDING: due again in `retry_in` seconds), and the try
-- goes in the log with when the next one is due.
WITH moved AS (
    UPDATE webhook_deliveries
    SET status = %(status)s, attempt_count = attempt_count + 1,
        next_attempt_at = CASE WHEN %(status)s = 'PENDING'
                               THEN now() + make_interval(secs => %(retry_in)s) END,
        lease_until = NULL, lease_token = NULL,
        last_status_code = %(status_code)s, last_error = %(error)s, updated_at = now()
    WHERE id = %(id)s AND lease_token = %(token)s AND status = 'PENDING'
    RETURNING id, next_attempt_at
)
INSERT INTO webhook_delivery_attempts (delivery_id, attempted_at, status_code, duration_ms,
                                       response_head, error, next_retry_at)
SELECT id, %(attempted_at)s, %(status_code)s, %(duration_ms)s, %(head)s, %(error)s,
       next_attempt_at
FROM moved
RETURNING delivery_id, next_retry_at;

-- name: disable_webhook_endpoint
-- A standing webhook switched off (its receiver answered 410 Gone).
UPDATE webhook_endpoints
SET enabled = false, disabled_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s AND enabled
RETURNING id;

-- name: hand_back_delivery
-- A published delivery that its sender had no room for: its mark cleared, so that the
-- next sweep publishes it again.
UPDATE webhook_deliveries
SET lease_until = NULL
WHERE id = %(id)s AND status = 'PENDING' AND lease_token IS NULL;

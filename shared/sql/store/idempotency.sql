-- Named queries of idempotency keys: a key, the run it started, for 24 hours.

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

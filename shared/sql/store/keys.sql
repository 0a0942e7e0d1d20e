-- Named queries of API keys: made, found by their hash, listed, revoked; and
-- whether a user is known.

-- name: insert_api_key
INSERT INTO api_keys (user_id, label, mode, key_prefix, key_hash)
VALUES (%(user_id)s, %(label)s, %(mode)s, %(key_prefix)s, %(key_hash)s)
RETURNING id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at;

-- name: find_api_key_by_hash
SELECT id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at
FROM api_keys
WHERE key_hash = %(key_hash)s;

-- name: list_api_keys
SELECT id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at
FROM api_keys
WHERE user_id = %(user_id)s
ORDER BY id;

-- name: revoke_api_key
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND user_id = coalesce(%(user_id)s, user_id)
RETURNING id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at;

-- name: user_known
-- A user is known once it has a key or a wallet.
SELECT EXISTS (SELECT 1 FROM api_keys WHERE user_id = %(user_id)s)
    OR EXISTS (SELECT 1 FROM wallets WHERE caller = %(caller)s) AS known;

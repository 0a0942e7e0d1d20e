-- Named queries of API keys: made, found by their hash, listed, renamed, revoked,
-- their last use recorded; and whether a user is known.

-- name: insert_api_key
-- No row when the user has a live key with this label. A key without a label is
-- called `key-<id>`.
WITH new AS (SELECT nextval('api_keys_id_seq') AS id)
INSERT INTO api_keys (id, user_id, label, mode, key_prefix, key_hash)
SELECT new.id, %(user_id)s, coalesce(%(label)s, 'key-' || new.id), %(mode)s, %(key_prefix)s,
       %(key_hash)s
FROM new
ON CONFLICT (user_id, label) WHERE revoked_at IS NULL DO NOTHING
RETURNING id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at, last_used_at;

-- name: find_api_key_by_hash
SELECT id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at, last_used_at
FROM api_keys
WHERE key_hash = %(key_hash)s;

-- name: list_api_keys
SELECT id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at, last_used_at
FROM api_keys
WHERE user_id = %(user_id)s
ORDER BY id;

-- name: revoke_api_key
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND user_id = coalesce(%(user_id)s, user_id)
RETURNING id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at, last_used_at;

-- name: user_known
-- A user is known once it has a key or a wallet.
SELECT EXISTS (SELECT 1 FROM api_keys WHERE user_id = %(user_id)s)
    OR EXISTS (SELECT 1 FROM wallets WHERE caller = %(caller)s) AS known;

-- name: list_live_api_keys_page
-- A page of a user's live keys, oldest first, after the key `after` (0: from the start).
SELECT id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at, last_used_at
FROM api_keys
WHERE user_id = %(user_id)s AND revoked_at IS NULL AND id > %(after)s
ORDER BY id
LIMIT %(limit)s;

-- name: find_live_api_key_by_label
SELECT id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at, last_used_at
FROM api_keys
WHERE user_id = %(user_id)s AND label = %(label)s AND revoked_at IS NULL;

-- name: rename_api_key
-- No row when the key is not found, or another live key of the user has the new label.
UPDATE api_keys AS k
SET label = %(new_label)s
WHERE k.user_id = %(user_id)s AND k.label = %(label)s AND k.revoked_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM api_keys AS o
                  WHERE o.user_id = %(user_id)s AND o.label = %(new_label)s
                    AND o.revoked_at IS NULL AND o.id <> k.id)
RETURNING k.id, k.user_id, k.label, k.mode, k.key_prefix, k.key_hash, k.created_at,
          k.revoked_at, k.last_used_at;

-- name: revoke_api_key_by_label
UPDATE api_keys
SET revoked_at = now()
WHERE user_id = %(user_id)s AND label = %(label)s AND revoked_at IS NULL
RETURNING id, user_id, label, mode, key_prefix, key_hash, created_at, revoked_at, last_used_at;

-- name: record_api_keys_used
-- When each key was last used, as a web process saw it (in key order, so that two
-- processes writing at once take the rows' locks in the same order); never backwards.
UPDATE api_keys AS k
SET last_used_at = u.used_at
FROM (SELECT * FROM unnest(%(ids)s::bigint[], %(used_at)s::timestamptz[]) AS u (id, used_at)
      ORDER BY id) AS u
WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at);

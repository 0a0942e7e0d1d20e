-- Keys over the API (`GET /v1/api-keys`, `PATCH|DELETE /v1/api-keys/:label`): a key
-- is named by its label, unique among its user's (its workspace's) live keys, so a
-- revoked key's label can be used again. A key made without a label is called
-- `key-<id>`; keys from before this migration get that too, and a label two live
-- keys of a user shared stays with the older one while the newer gets `-<id>` added.
-- `last_used_at` is written by web processes in batches (see `shared.keyuse`), never
-- once a request.
UPDATE api_keys SET label = 'key-' || id WHERE label IS NULL OR label = '';

UPDATE api_keys AS k SET label = left(k.label, 50) || '-' || k.id
FROM api_keys AS older
WHERE older.user_id = k.user_id AND older.label = k.label AND older.id < k.id
  AND older.revoked_at IS NULL AND k.revoked_at IS NULL;

ALTER TABLE api_keys
    ALTER COLUMN label SET NOT NULL,
    ADD CONSTRAINT api_keys_label_check CHECK (length(label) BETWEEN 1 AND 200),
    ADD COLUMN last_used_at timestamptz;

CREATE UNIQUE INDEX api_keys_live_label ON api_keys (user_id, label) WHERE revoked_at IS NULL;

-- Users and workspaces (shared/store/accounts.py).

-- name: ensure_user
-- The user's row, made with its ID as its name when it has none yet.
WITH made AS (
    INSERT INTO users (user_id, username) VALUES (%(user_id)s, %(user_id)s)
    ON CONFLICT (user_id) DO NOTHING
    RETURNING user_id, username, email, metadata, created_at, updated_at
)
SELECT * FROM made
UNION ALL
SELECT user_id, username, email, metadata, created_at, updated_at
FROM users WHERE user_id = %(user_id)s
LIMIT 1;

-- name: ensure_workspace
-- The user's workspace, made (named after the user) when it has none yet. A slug
-- another workspace holds gets the workspace's ID appended.
WITH made AS (
    INSERT INTO workspaces (workspace_id, owner_user_id, name, slug)
    SELECT %(workspace_id)s, %(user_id)s, %(name)s,
           CASE WHEN EXISTS (SELECT 1 FROM workspaces WHERE slug = %(slug)s)
                THEN left(%(slug)s, 36) || '-' || lower(right(%(workspace_id)s, 26))
                ELSE %(slug)s END
    ON CONFLICT DO NOTHING
    RETURNING workspace_id, owner_user_id, name, slug, metadata, created_at, updated_at
)
SELECT * FROM made
UNION ALL
SELECT workspace_id, owner_user_id, name, slug, metadata, created_at, updated_at
FROM workspaces WHERE owner_user_id = %(user_id)s
LIMIT 1;

-- name: update_user
UPDATE users
SET username = coalesce(%(username)s, username),
    email = CASE WHEN %(clear_email)s THEN NULL ELSE coalesce(%(email)s, email) END,
    metadata = coalesce(%(metadata)s, metadata),
    updated_at = now()
WHERE user_id = %(user_id)s
RETURNING user_id, username, email, metadata, created_at, updated_at;

-- name: update_workspace
UPDATE workspaces
SET name = coalesce(%(name)s, name),
    slug = coalesce(%(slug)s, slug),
    metadata = coalesce(%(metadata)s, metadata),
    updated_at = now()
WHERE owner_user_id = %(user_id)s
RETURNING workspace_id, owner_user_id, name, slug, metadata, created_at, updated_at;

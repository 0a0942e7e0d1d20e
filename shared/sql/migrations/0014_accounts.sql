-- Users and their workspaces, as `GET /v1/auth/whoami` and `/v1/auth/workspaces`
-- show them. A workspace is its owner's account: one per user, holding the user's
-- keys, runs and wallet (all still keyed by the caller, USER#<userId>). A user with
-- keys from before this migration gets its rows here; a user first seen later gets
-- them on its first key, or on its first whoami.
CREATE TABLE users (
    user_id     text        PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9_.:@-]{1,128}$'),
    username    text        NOT NULL CHECK (length(username) BETWEEN 1 AND 128),
    email       text        CHECK (length(email) BETWEEN 3 AND 254),
    metadata    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspaces (
    workspace_id   text        PRIMARY KEY,
    owner_user_id  text        NOT NULL UNIQUE REFERENCES users (user_id),
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    slug           text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    metadata       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

INSERT INTO users (user_id, username, created_at, updated_at)
SELECT user_id, user_id, min(created_at), min(created_at) FROM api_keys GROUP BY user_id
ON CONFLICT DO NOTHING;

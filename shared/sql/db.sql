-- Named queries of the database seam itself (shared/db.py): migrations, the
-- readiness check, listening for notifications, databases made and dropped.
-- `{channel}` and `{name}` are identifiers, filled in with psycopg.sql.Identifier.

-- name: lock_migrations
SELECT pg_advisory_xact_lock(%(key)s);

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: list_applied_migrations
SELECT version FROM schema_migrations;

-- name: note_applied_migration
INSERT INTO schema_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: ping
SELECT 1;

-- name: listen
LISTEN {channel};

-- name: notify
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s;

-- name: create_database
CREATE DATABASE {name};

-- name: drop_database
DROP DATABASE IF EXISTS {name} WITH (FORCE);

-- name: server_version_num
SELECT current_setting('server_version_num') AS server_version_num;

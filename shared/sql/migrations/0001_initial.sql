-- API keys, runs and their attempts.

CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    user_id     text        NOT NULL CHECK (user_id ~ '^[A-Za-z0-9_.:@-]{1,128}$'),
    label       text,
    mode        text        NOT NULL CHECK (mode IN ('live', 'test')),
    key_prefix  text        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);

CREATE TABLE runs (
    id                 text        COLLATE "C" PRIMARY KEY CHECK (id ~ '^[0-9A-HJKMNP-TV-Z]{26}$'),
    caller             text        NOT NULL,
    api_key_id         bigint      REFERENCES api_keys (id),
    provider           text        NOT NULL,
    provider_name      text        NOT NULL,
    endpoint           text        NOT NULL,
    adapter            text        NOT NULL,
    input              json        NOT NULL,
    status             text        NOT NULL DEFAULT 'RUNNING' CHECK (
        status IN ('RUNNING', 'STOPPING', 'COMPLETED', 'FAILED', 'STOPPED', 'TIMED_OUT')
    ),
    output             json,
    result_count       integer,
    provider_response  json,
    error              json,
    provider_state     json,
    price_type         text        NOT NULL CHECK (price_type IN ('PER_CALL', 'PER_RESULT')),
    price_micros       bigint      NOT NULL CHECK (price_micros >= 0),
    flat_fee_micros    bigint      CHECK (flat_fee_micros >= 0),
    cost_micros        bigint      CHECK (cost_micros >= 0),
    attempt_count      integer     NOT NULL DEFAULT 0,
    max_attempts       integer     NOT NULL CHECK (max_attempts >= 1),
    lease_token        uuid,
    lease_owner        text,
    lease_expires_at   timestamptz,
    next_attempt_at    timestamptz,
    deadline_at        timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((status IN ('RUNNING', 'STOPPING')) = (completed_at IS NULL))
);
-- Listing a caller's runs newest first, with or without a status filter.
CREATE INDEX runs_caller_id ON runs (caller, id DESC);
CREATE INDEX runs_caller_status_id ON runs (caller, status, id DESC);
-- Runs not yet ended, for the sweeper.
CREATE INDEX runs_open ON runs (next_attempt_at) WHERE completed_at IS NULL;

CREATE TABLE attempts (
    run_id           text        COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number           integer     NOT NULL CHECK (number >= 1),
    lease_token      uuid        NOT NULL,
    worker           text        NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz,
    outcome          text        CHECK (
        outcome IN ('OK', 'TRANSIENT_ERROR', 'PERMANENT_ERROR', 'TIMEOUT', 'LOST', 'STOPPED')
    ),
    http_status      integer,
    message          text,
    next_attempt_at  timestamptz,
    PRIMARY KEY (run_id, number)
);

-- Prepaid wallets and their ledger. Money is integer micro-dollars.
--
-- Every credit, hold, release and charge is a ledger row; a wallet keeps its
-- balance (credits - charges) and held amount (holds - releases) beside them,
-- changed in the same transaction as the rows.

CREATE TABLE wallets (
    caller          text        PRIMARY KEY,
    balance_micros  bigint      NOT NULL DEFAULT 0,
    held_micros     bigint      NOT NULL DEFAULT 0 CHECK (held_micros >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Never overdrawn: what is held is always covered.
    CONSTRAINT wallet_covers_holds CHECK (balance_micros >= held_micros)
);

CREATE TABLE ledger_entries (
    id              bigserial   PRIMARY KEY,
    caller          text        NOT NULL,
    run_id          text        COLLATE "C" REFERENCES runs (id),
    kind            text        NOT NULL CHECK (kind IN ('CREDIT', 'HOLD', 'RELEASE', 'CHARGE')),
    amount_micros   bigint      NOT NULL CHECK (amount_micros >= 0),
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'CREDIT') = (run_id IS NULL))
);
CREATE INDEX ledger_entries_caller ON ledger_entries (caller, id DESC);
-- A run holds once and is settled once: a second settlement cannot be written.
CREATE UNIQUE INDEX ledger_one_hold_per_run ON ledger_entries (run_id) WHERE kind = 'HOLD';
CREATE UNIQUE INDEX ledger_one_release_per_run ON ledger_entries (run_id) WHERE kind = 'RELEASE';
CREATE UNIQUE INDEX ledger_one_charge_per_run ON ledger_entries (run_id) WHERE kind = 'CHARGE';

-- What a run holds, and the most results it can be charged for.
ALTER TABLE runs ADD COLUMN hold_micros bigint NOT NULL DEFAULT 0 CHECK (hold_micros >= 0);
ALTER TABLE runs ADD COLUMN max_results integer;

-- Every caller with a key has a wallet.
INSERT INTO wallets (caller)
SELECT DISTINCT 'USER#' || user_id FROM api_keys
ON CONFLICT DO NOTHING;

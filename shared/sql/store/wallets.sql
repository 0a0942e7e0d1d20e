-- Named queries of wallets and their ledger.

-- name: ensure_wallet
INSERT INTO wallets (caller) VALUES (%(caller)s) ON CONFLICT (caller) DO NOTHING;

-- name: credit_wallet
WITH wallet AS (
    INSERT INTO wallets (caller, balance_micros)
    VALUES (%(caller)s, %(amount)s)
    ON CONFLICT (caller) DO UPDATE
    SET balance_micros = wallets.balance_micros + EXCLUDED.balance_micros, updated_at = now()
    RETURNING caller, balance_micros, held_micros
), entry AS (
    INSERT INTO ledger_entries (caller, kind, amount_micros, note)
    VALUES (%(caller)s, 'CREDIT', %(amount)s, %(note)s)
)
SELECT caller, balance_micros, held_micros FROM wallet;

-- name: get_wallet
SELECT caller, balance_micros, held_micros FROM wallets WHERE caller = %(caller)s;

-- name: list_ledger_entries
SELECT id, caller, run_id, kind, amount_micros, note, created_at
FROM ledger_entries
WHERE caller = %(caller)s
ORDER BY id DESC
LIMIT %(limit)s;

-- Queries of the operator's command line (monidctl).

-- name: user_known
-- A user is known once it has a key or a wallet.
SELECT EXISTS (SELECT 1 FROM api_keys WHERE user_id = %(user_id)s)
    OR EXISTS (SELECT 1 FROM wallets WHERE caller = %(caller)s) AS known;

-- Less written for each run, without weakening what the writes guarantee.

-- A run that held nothing and costs nothing moves no money: settling it writes no
-- ledger rows and leaves the wallet alone (the ledger stays exact: balance =
-- credits - charges, held = holds - releases). A run that held something settles
-- as before, once, by the ledger's unique indexes.
CREATE OR REPLACE FUNCTION monid_settle(p_caller text, p_run_id text, p_cost_micros bigint,
                                        p_hold_micros bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(p_cost_micros, 0) = 0 AND coalesce(p_hold_micros, 0) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO ledger_entries (caller, run_id, kind, amount_micros)
    VALUES (p_caller, p_run_id, 'CHARGE', coalesce(p_cost_micros, 0));
    IF p_hold_micros > 0 THEN
        INSERT INTO ledger_entries (caller, run_id, kind, amount_micros)
        VALUES (p_caller, p_run_id, 'RELEASE', p_hold_micros);
    END IF;
    UPDATE wallets
    SET balance_micros = balance_micros - coalesce(p_cost_micros, 0),
        held_micros = held_micros - greatest(p_hold_micros, 0),
        updated_at = now()
    WHERE caller = p_caller;
END
$$;

-- Every version of a run a worker writes goes into each index whose condition it
-- meets: fewer indexes, fewer writes. A caller's open runs are found through
-- runs_caller_status_id (caller, status), so this one goes.
DROP INDEX runs_caller_open;

-- The heartbeat moves a held run's lease_expires_at every few seconds: with the
-- column in no index, and room left on each page, PostgreSQL updates the row in
-- place (a HOT update) instead of writing every index again. The sweeper finds
-- leased runs by their owner, and reads the expiry from the rows.
DROP INDEX runs_leased;
CREATE INDEX runs_leased ON runs (lease_owner) WHERE lease_token IS NOT NULL;
ALTER TABLE runs SET (fillfactor = 85);
-- An attempt's end changes no indexed column: with room on its page, in place too.
ALTER TABLE attempts SET (fillfactor = 70);

-- Settling an ended run (charge its cost, release its hold) as a function of the
-- values the ending statement returns, so that ending and settling are one
-- statement: one round trip, atomic without a transaction. The unique indexes on
-- the ledger make a second settlement of the same run fail, and with it the
-- statement that ended the run.
CREATE FUNCTION monid_settle(p_caller text, p_run_id text, p_cost_micros bigint,
                             p_hold_micros bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
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

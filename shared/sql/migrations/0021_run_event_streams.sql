-- Live events of a run (GET /v1/runs/:runId/events): a web process is told at once
-- when a run that somebody follows changes, without a notification for every change
-- of every run.
--
-- A run's end is notified already (`monid_run_ended`, 0006). Its other changes are
-- notified on `monid_run_changed` only while the run is `watched`: an event stream
-- sets the flag when it opens on a run that has not ended (one write per run, the
-- first time), and it stays set until the run ends. A run nobody follows costs the
-- statements that change it only the trigger's WHEN check, which reads the new row's
-- flag first: no function call, no notification.
ALTER TABLE runs ADD COLUMN watched boolean NOT NULL DEFAULT false;

CREATE FUNCTION monid_notify_run_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monid_run_changed', NEW.id);
    RETURN NULL;
END $$;

-- What a stream shows: the status, an attempt that starts (the claim counts it) and
-- one that ends before the run does (a retry, a lost worker, a hand-back: each sets
-- when the next attempt is due). A lease's renewal changes none of them.
CREATE TRIGGER runs_notify_changed AFTER UPDATE ON runs FOR EACH ROW
    WHEN (NEW.watched AND NEW.completed_at IS NULL
          AND (OLD.status IS DISTINCT FROM NEW.status
               OR OLD.attempt_count IS DISTINCT FROM NEW.attempt_count
               OR OLD.next_attempt_at IS DISTINCT FROM NEW.next_attempt_at))
    EXECUTE FUNCTION monid_notify_run_changed();

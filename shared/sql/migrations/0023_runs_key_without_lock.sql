-- A run names the API key that started it (`runs.api_key_id`). Its foreign key made
-- every accepted run lock its key's row (FOR KEY SHARE): with many runs of one key
-- accepted at once, each lock joined the others' in a new multixact, about a fifth
-- of PostgreSQL's time for the accept statement under load. Keys are revoked, never
-- deleted; a trigger now refuses deleting one, which keeps every run's `api_key_id`
-- naming its key without a lock per run.
ALTER TABLE runs DROP CONSTRAINT runs_api_key_id_fkey;

CREATE FUNCTION monid_keep_api_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'API key % cannot be deleted: keys are revoked, never deleted', OLD.id
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER api_keys_never_deleted
    BEFORE DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION monid_keep_api_keys();

-- Results stored as items. A run's result is its items, one row each, written in
-- the transaction that ends the run: no half result is ever seen, and an attempt
-- tried again cannot add a second copy. `output` keeps the result inline up to a
-- size; past it, its first items, and `output_truncated` says so.

CREATE TABLE run_items (
    run_id  text    COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     integer NOT NULL CHECK (seq >= 0),
    item    json    NOT NULL,
    PRIMARY KEY (run_id, seq)
);

ALTER TABLE runs ADD COLUMN output_truncated boolean NOT NULL DEFAULT false;
ALTER TABLE runs ADD COLUMN item_count integer CHECK (item_count >= 0);
-- The fields of a run's items, nested ones by their path (a JSON array of arrays of
-- keys), in the order they first appear: the columns of its CSV. Noted as the items
-- are written; null for the runs that ended before (their columns are worked out
-- when asked for).
ALTER TABLE runs ADD COLUMN item_fields json;

-- Runs that ended before keep their output; it becomes their items too: an array's
-- elements, or the output itself.
INSERT INTO run_items (run_id, seq, item)
SELECT r.id, (e.n - 1)::int, e.value
FROM runs r
CROSS JOIN LATERAL json_array_elements(
    CASE WHEN json_typeof(r.output) = 'array' THEN r.output END) WITH ORDINALITY e(value, n)
WHERE r.status = 'COMPLETED';
INSERT INTO run_items (run_id, seq, item)
SELECT id, 0, output
FROM runs
WHERE status = 'COMPLETED' AND json_typeof(output) NOT IN ('array', 'null');
UPDATE runs r
SET item_count = (SELECT count(*) FROM run_items i WHERE i.run_id = r.id)
WHERE r.status = 'COMPLETED';

-- An item as JSON that PostgreSQL can take apart: `\u0000` is valid JSON, but no
-- text can hold it, so it is read as U+FFFD.
CREATE FUNCTION monid_item_json(item json) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(item::text, '\u0000') = 0 THEN item
                ELSE regexp_replace(item::text, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd',
                                    'g')::json END
$$;

-- A CSV cell (RFC 4180) of an item: the field at `path` (a nested one's by its
-- path; an array or object as JSON) in quotes, its quotes doubled; empty when missing
-- or null. An item that is not an object is its own `value`.
CREATE FUNCTION monid_csv_cell(item jsonb, path text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce('"' || replace(CASE WHEN jsonb_typeof(item) = 'object' THEN item #>> path
                                        WHEN path = ARRAY['value']
                                        THEN item #>> ARRAY[]::text[] END,
                                   '"', '""') || '"', '')
$$;

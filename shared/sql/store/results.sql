-- Named queries of results: a run's items, written with its end, read in pages.

-- name: copy_run_items
COPY run_items (run_id, seq, item) FROM STDIN;

-- name: get_write_state
-- Whether an attempt writing a result still holds its run, and the run's status
-- (STOPPING when a stop was asked meanwhile).
SELECT status, coalesce(lease_token = %(lease_token)s, false) AS held
FROM runs
WHERE id = %(run_id)s;

-- name: deliver_runs
-- The provider delivered: end each run COMPLETED with its inline output and settle
-- it, with the items given here (a small result; a larger one was copied into
-- run_items earlier in the same transaction). Only the holder of the current attempt's
-- lease may. A stop asked meanwhile wins: the run is STOPPED at no cost, and its
-- items, wherever they came from, go. As end_run, it hands back a run waiting for each
-- slot one freed. A worker process's threads end their runs together
-- (shared/grouping.py): one statement and one commit for all of them, the runs locked
-- and settled in the order given.
-- The runs come as one JSON array of objects (one parameter: the driver adapts a list
-- parameter element by element, which cost the worker more than the rest of the
-- statement); the JSON values among their fields come as strings of their text.
WITH given AS (
    SELECT * FROM monid_given_deliveries(%(deliveries)s::json)
), ended AS (
    UPDATE runs
    SET status = CASE WHEN status = 'STOPPING' THEN 'STOPPED' ELSE 'COMPLETED' END,
        output = CASE WHEN status = 'STOPPING' THEN NULL ELSE g.output::json END,
        output_truncated = status <> 'STOPPING' AND g.output_truncated,
        item_count = CASE WHEN status = 'STOPPING' THEN NULL ELSE g.item_count END,
        item_fields = CASE WHEN status = 'STOPPING' THEN NULL ELSE g.item_fields::json END,
        result_count = CASE WHEN status = 'STOPPING' THEN NULL ELSE g.item_count END,
        provider_response = CASE WHEN status = 'STOPPING' THEN NULL
                                 ELSE g.provider_response::json END,
        error = NULL,
        cost_micros = CASE WHEN status = 'STOPPING' THEN 0 ELSE g.cost_micros END,
        completed_at = now(),
        updated_at = now(),
        lease_token = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        next_attempt_at = NULL
    FROM given g
    WHERE runs.id = g.run_id
      AND runs.lease_token = g.lease_token
      -- Not an index condition (the runs are found by their keys alone).
      AND (status IN ('RUNNING', 'STOPPING')) IS TRUE
    RETURNING runs.id, runs.status, runs.caller, runs.provider, runs.endpoint,
              runs.cost_micros, runs.hold_micros, g.lease_token, g.number, g.http_status,
              g.items, g.first_seq, g.wake, g.caller_freed, g.provider_limit, g.endpoint_limit
), attempt AS (
    UPDATE attempts
    SET ended_at = now(),
        outcome = CASE WHEN ended.status = 'STOPPED' THEN 'STOPPED' ELSE 'OK' END,
        http_status = ended.http_status,
        message = CASE WHEN ended.status = 'STOPPED'
                       THEN 'stopped on request; the answer was discarded' END
    FROM ended
    WHERE attempts.run_id = ended.id AND attempts.number = ended.number
      AND attempts.ended_at IS NULL
), added AS (
    INSERT INTO run_items (run_id, seq, item)
    SELECT ended.id, ended.first_seq + (e.n - 1)::int, e.value
    FROM ended
    CROSS JOIN LATERAL json_array_elements(ended.items::json) WITH ORDINALITY e(value, n)
    WHERE ended.status = 'COMPLETED'
), dropped AS (
    DELETE FROM run_items
    WHERE run_id IN (SELECT id FROM ended WHERE status = 'STOPPED')
)
SELECT id, status, lease_token, monid_settle(caller, id, cost_micros, hold_micros),
       CASE WHEN wake THEN
           (SELECT json_agg(w) FROM monid_wake_freed(caller, provider, endpoint,
                                                     caller_freed, provider_limit,
                                                     endpoint_limit, true) w) END AS woken
FROM ended;

-- name: get_run_items_state
SELECT status, coalesce(item_count, 0) AS item_count, item_fields
FROM runs
WHERE id = %(run_id)s AND caller = %(caller)s;

-- name: list_run_items
-- A run's items from `from_seq` on, as their JSON text: at most `limit`, and past
-- the first, only while the ones before stay under `max_bytes`.
SELECT seq, text
FROM (
    SELECT seq, text, sum(octet_length(text)) OVER (ORDER BY seq) - octet_length(text) AS before
    FROM (SELECT seq, item::text AS text
          FROM run_items
          WHERE run_id = %(run_id)s AND seq >= %(from_seq)s
          ORDER BY seq
          LIMIT %(limit)s) taken
) sized
WHERE before < %(max_bytes)s
ORDER BY seq;

-- name: read_run_items_jsonl
-- The page list_run_items gives, as JSONL (an item a line, UTF-8) in one value, and
-- the last item in it: a batch of a download, put together by PostgreSQL.
SELECT max(seq) AS last, convert_to(string_agg(text, E'\n' ORDER BY seq) || E'\n', 'UTF8') AS data
FROM (
    SELECT seq, text, sum(octet_length(text)) OVER (ORDER BY seq) - octet_length(text) AS before
    FROM (SELECT seq, item::text AS text
          FROM run_items
          WHERE run_id = %(run_id)s AND seq >= %(from_seq)s
          ORDER BY seq
          LIMIT %(limit)s) taken
) sized
WHERE before < %(max_bytes)s;

-- name: read_run_items_csv
-- The same page as CSV rows (RFC 4180, every cell quoted but empty ones, lines ending
-- CRLF) in one value, and the last item in it. `cells` is filled in with a csv_line
-- of one csv_cell per column (the two fragments below).
SELECT max(seq) AS last, convert_to(string_agg(line, E'\r\n' ORDER BY seq) || E'\r\n', 'UTF8') AS data
FROM (
    SELECT seq, {cells} AS line
    FROM (
        SELECT seq, monid_item_json(item)::jsonb AS item
        FROM (
            SELECT seq, item,
                   sum(octet_length(item::text)) OVER (ORDER BY seq)
                       - octet_length(item::text) AS before
            FROM (SELECT seq, item
                  FROM run_items
                  WHERE run_id = %(run_id)s AND seq >= %(from_seq)s
                  ORDER BY seq
                  LIMIT %(limit)s) taken
        ) sized
        WHERE before < %(max_bytes)s
        -- Kept a subquery (not pulled up): each item is made jsonb once, and the cells'
        -- functions are inlined on it.
        OFFSET 0
    ) page
) lines;

-- name: list_run_item_columns
-- The fields of a run's items, nested ones by their path, in the order they first
-- appear: the columns of its CSV, worked out for a run that ended before they were
-- noted as its items were written.
WITH RECURSIVE walk(path, value, ord) AS (
    SELECT ARRAY[e.key], e.value, ARRAY[i.seq, e.n::int]
    FROM run_items i
    CROSS JOIN LATERAL json_each(
        CASE WHEN json_typeof(i.item) = 'object' THEN monid_item_json(i.item) END)
        WITH ORDINALITY e(key, value, n)
    WHERE i.run_id = %(run_id)s
  UNION ALL
    SELECT w.path || e.key, e.value, w.ord || e.n::int
    FROM walk w
    CROSS JOIN LATERAL json_each(CASE WHEN json_typeof(w.value) = 'object' THEN w.value END)
        WITH ORDINALITY e(key, value, n)
), leaves AS (
    SELECT path, min(ord) AS first FROM walk WHERE json_typeof(value) <> 'object' GROUP BY path
    UNION ALL
    -- Items that are not objects are their own `value`.
    SELECT ARRAY['value'], min(ARRAY[seq, 0])
    FROM run_items
    WHERE run_id = %(run_id)s AND json_typeof(item) <> 'object'
    HAVING count(*) > 0
)
SELECT path
FROM leaves
GROUP BY path
ORDER BY min(first)
LIMIT %(limit)s;

-- name: csv_cell
monid_csv_cell(item, {path}::text[])

-- name: csv_line
array_to_string(ARRAY[{cells}], ',')

-- A worker process's threads claim and end their runs together (claim_runs,
-- deliver_runs): the runs come as one JSON array and are joined to `runs` by ID, on
-- connections that plan once and only by index (make_pool's `by_keys`). PostgreSQL
-- takes any function unpacking JSON for 100 rows; planned while `runs` was empty
-- (a new deployment), the join read the whole primary key index once and compared
-- each run with every element: under a backlog of a few thousand runs, a grouped
-- claim took 100 ms. These functions unpack the same arrays and tell the planner
-- what they hold, a few rows, so that each run is looked up by its key in the plan
-- made on an empty table as on a large one. PL/pgSQL, so that the estimate is never
-- inlined away.
CREATE FUNCTION monid_asked_runs(asked json)
RETURNS TABLE (run_id text, lease_token uuid)
LANGUAGE plpgsql STABLE ROWS 1 AS $$
BEGIN
    RETURN QUERY SELECT a ->> 0, (a ->> 1)::uuid FROM json_array_elements(asked) a;
END $$;

CREATE FUNCTION monid_given_deliveries(deliveries json)
RETURNS TABLE (run_id text, lease_token uuid, number int, http_status int, output text,
               output_truncated bool, item_count int, item_fields text, items text,
               first_seq int, provider_response text, cost_micros bigint, wake bool,
               caller_freed bool, provider_limit int, endpoint_limit int)
LANGUAGE plpgsql STABLE ROWS 1 AS $$
BEGIN
    RETURN QUERY
    SELECT * FROM json_to_recordset(deliveries)
        AS g(run_id text, lease_token uuid, number int, http_status int, output text,
             output_truncated bool, item_count int, item_fields text, items text,
             first_seq int, provider_response text, cost_micros bigint, wake bool,
             caller_freed bool, provider_limit int, endpoint_limit int);
END $$;

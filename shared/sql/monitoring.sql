-- Queries that tell monitors (Flower) how a run went.

-- name: get_run_end
SELECT status, error FROM runs WHERE id = %(run_id)s;

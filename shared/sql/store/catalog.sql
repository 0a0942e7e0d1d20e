-- Named queries of the catalog table: sync, discovery, inspection, listing.

-- name: lock_catalog_sync
-- One sync at a time (the release phase and an operator may overlap).
SELECT pg_advisory_xact_lock(%(key)s);

-- name: upsert_catalog_endpoint
-- Insert or change one endpoint; an endpoint already as in the files is left
-- alone and returns no row. `inserted` tells a new endpoint from a changed one.
INSERT INTO catalog_endpoints (
    provider, provider_name, path, name, description, tags, input_schema,
    query_params_schema, path_params_schema, price_type, price_micros, flat_fee_micros,
    max_results, deadline_seconds, max_attempts, adapter, example_input
)
VALUES (
    %(provider)s, %(provider_name)s, %(path)s, %(name)s, %(description)s, %(tags)s,
    %(input_schema)s, %(query_params_schema)s, %(path_params_schema)s, %(price_type)s,
    %(price_micros)s, %(flat_fee_micros)s, %(max_results)s, %(deadline_seconds)s,
    %(max_attempts)s, %(adapter)s, %(example_input)s
)
ON CONFLICT (provider, path) DO UPDATE
SET provider_name = excluded.provider_name,
    name = excluded.name,
    description = excluded.description,
    tags = excluded.tags,
    input_schema = excluded.input_schema,
    query_params_schema = excluded.query_params_schema,
    path_params_schema = excluded.path_params_schema,
    price_type = excluded.price_type,
    price_micros = excluded.price_micros,
    flat_fee_micros = excluded.flat_fee_micros,
    max_results = excluded.max_results,
    deadline_seconds = excluded.deadline_seconds,
    max_attempts = excluded.max_attempts,
    adapter = excluded.adapter,
    example_input = excluded.example_input,
    synced_at = now()
WHERE (catalog_endpoints.provider_name, catalog_endpoints.name, catalog_endpoints.description,
       catalog_endpoints.tags, catalog_endpoints.input_schema,
       catalog_endpoints.query_params_schema, catalog_endpoints.path_params_schema,
       catalog_endpoints.price_type, catalog_endpoints.price_micros,
       catalog_endpoints.flat_fee_micros, catalog_endpoints.max_results,
       catalog_endpoints.deadline_seconds, catalog_endpoints.max_attempts,
       catalog_endpoints.adapter, catalog_endpoints.example_input)
      IS DISTINCT FROM
      (excluded.provider_name, excluded.name, excluded.description, excluded.tags,
       excluded.input_schema, excluded.query_params_schema, excluded.path_params_schema,
       excluded.price_type, excluded.price_micros, excluded.flat_fee_micros,
       excluded.max_results, excluded.deadline_seconds, excluded.max_attempts,
       excluded.adapter, excluded.example_input)
RETURNING (xmax = 0) AS inserted;

-- name: delete_catalog_endpoints_except
-- Endpoints no longer in the files. The two arrays are the kept (provider, path) pairs.
DELETE FROM catalog_endpoints
WHERE (provider, path) NOT IN (
    SELECT kept.provider, kept.path
    FROM unnest(%(providers)s::text[], %(paths)s::text[]) AS kept (provider, path)
)
RETURNING provider, path;

-- name: get_catalog_endpoint
SELECT provider, provider_name, path, name, description, tags, input_schema,
       query_params_schema, path_params_schema, price_type, price_micros, flat_fee_micros,
       max_results, deadline_seconds, max_attempts, adapter, example_input
FROM catalog_endpoints
WHERE provider = %(provider)s AND path = %(path)s;

-- name: list_catalog_endpoints
-- A page in (provider, path) order, after the given pair ('', '' for the first page).
SELECT provider, provider_name, path, name, description, tags, input_schema,
       query_params_schema, path_params_schema, price_type, price_micros, flat_fee_micros,
       max_results, deadline_seconds, max_attempts, adapter, example_input
FROM catalog_endpoints
WHERE (provider, path) > (%(provider)s, %(path)s)
ORDER BY provider, path
LIMIT %(limit)s;

-- name: count_search_terms
-- How many nodes the search query has once stop words are dropped; 0: nothing to search.
SELECT numnode(websearch_to_tsquery('english', %(terms)s)) AS nodes;

-- name: search_catalog_endpoints
-- Endpoints matching any of the words, best first. ts_rank_cd weighs where a word
-- was found (name and tags over description over path) and how close matched
-- words are; normalization 1 damps long texts, 32 maps the rank into 0..1.
WITH search_query AS (
    SELECT websearch_to_tsquery('english', %(terms)s) AS query
)
SELECT e.provider, e.provider_name, e.path, e.name, e.description, e.tags, e.input_schema,
       e.query_params_schema, e.path_params_schema, e.price_type, e.price_micros,
       e.flat_fee_micros, e.max_results, e.deadline_seconds, e.max_attempts, e.adapter,
       e.example_input,
       round(ts_rank_cd(e.search, q.query, 1 | 32)::numeric, 4) AS score
FROM catalog_endpoints AS e, search_query AS q
WHERE e.search @@ q.query
ORDER BY score DESC, e.provider, e.path
LIMIT %(limit)s;

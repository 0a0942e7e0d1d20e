-- The catalog in the database: the JSON files are the source, `monidctl catalog
-- sync` (and `monidctl migrate`) copies them here, so every process serves one
-- catalog and discovery can use PostgreSQL's full-text search.

-- array_to_string is only STABLE (an element type's output could change); for
-- text[] it is not, and a generated column needs an IMMUTABLE expression.
CREATE FUNCTION catalog_words(words text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT array_to_string(words, ' ') $$;

CREATE TABLE catalog_endpoints (
    provider             text        COLLATE "C" NOT NULL,
    provider_name        text        NOT NULL,
    path                 text        COLLATE "C" NOT NULL,
    name                 text        NOT NULL,
    description          text        NOT NULL,
    tags                 text[]      NOT NULL DEFAULT '{}',
    input_schema         jsonb       NOT NULL,
    query_params_schema  jsonb,
    path_params_schema   jsonb,
    price_type           text        NOT NULL CHECK (price_type IN ('PER_CALL', 'PER_RESULT')),
    price_micros         bigint      NOT NULL CHECK (price_micros >= 0),
    flat_fee_micros      bigint      CHECK (flat_fee_micros >= 0),
    max_results          integer     CHECK (max_results >= 1),
    deadline_seconds     integer     NOT NULL CHECK (deadline_seconds >= 1),
    max_attempts         integer     NOT NULL CHECK (max_attempts >= 1),
    adapter              text        NOT NULL,
    example_input        jsonb,
    -- What discovery matches: names and tags weigh most, then the description,
    -- then the words of the path ("/apidojo/tweet-scraper": apidojo tweet scraper).
    search               tsvector    GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name || ' ' || provider || ' ' || provider_name || ' '
                                         || coalesce(catalog_words(tags), '')), 'A')
        || setweight(to_tsvector('english', description), 'B')
        || setweight(to_tsvector('english', translate(path, '/-_.~', '     ')), 'C')
    ) STORED,
    synced_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, path)
);
CREATE INDEX catalog_endpoints_search ON catalog_endpoints USING gin (search);

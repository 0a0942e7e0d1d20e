-- Endpoint health: each endpoint's recent runs rolled up by the sweeper (about once
-- a minute) into one small row, which discover and inspect read. Neither the accept
-- nor a run's end writes here, so neither is slowed by it.
CREATE TABLE endpoint_health (
    provider      text        NOT NULL,
    endpoint      text        NOT NULL,
    health        text        NOT NULL
                  CHECK (health IN ('healthy', 'stable', 'degraded', 'outage', 'unknown')),
    -- Run time (first start to end) of the window's COMPLETED runs; null without one.
    p50_seconds   double precision CHECK (p50_seconds >= 0),
    p90_seconds   double precision CHECK (p90_seconds >= 0),
    -- COMPLETED over the runs that judge the endpoint; null without any.
    success_rate  double precision CHECK (success_rate BETWEEN 0 AND 1),
    judged_runs   integer     NOT NULL CHECK (judged_runs >= 0),
    window_hours  integer     NOT NULL CHECK (window_hours > 0),
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, endpoint)
);

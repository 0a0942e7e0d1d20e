"""Endpoint health, from the runs themselves: each endpoint's status, median and p90
run time and success rate over a recent window.

Computing it never slows the accept or a run's end: the sweeper rolls the window's
runs up into the small `endpoint_health` table about once a minute
(`rollup_endpoint_health`), and discover, inspect and the public catalog read that
table (`endpoint_metrics`). The thresholds, also in the README:

- a run *judges* its endpoint when it ended `COMPLETED`, `FAILED` or `TIMED_OUT`
  (not one a caller stopped, a control blocked, or that timed out waiting to start);
- `successRate` is COMPLETED over judged runs; `p50Seconds`/`p90Seconds` are the run
  times (first start to end) of the COMPLETED ones;
- `unknown`: fewer than MIN_JUDGED_RUNS judged runs in the window;
- `outage`: the last RECENT_RUNS judged runs all failed, or `successRate` < 0.50;
- `degraded`: `successRate` < 0.95, or at least RECENT_DEGRADED of the last
  RECENT_RUNS failed;
- `stable`: `successRate` < 0.99;
- `healthy`: otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.db import Conn, autocommit
from shared.ids import run_id_floor
from shared.services import Services
from shared.store import health as store

log = logging.getLogger("monid.health")

WINDOW_HOURS = 24
WINDOW = f"{WINDOW_HOURS}h"
ROLLUP_EVERY_SECONDS = 60.0
MIN_JUDGED_RUNS = 5
RECENT_RUNS = 5
RECENT_DEGRADED = 3
HEALTHY_RATE = 0.99
STABLE_RATE = 0.95
DEGRADED_RATE = 0.50
HEALTH_STATUSES = ("healthy", "stable", "degraded", "outage", "unknown")


@dataclass(frozen=True)
class Metrics:
    """An endpoint's health as discover, inspect and the public catalog show it."""

    health: str = "unknown"
    p50_seconds: float | None = None
    p90_seconds: float | None = None
    success_rate: float | None = None
    window: str = WINDOW


UNKNOWN = Metrics()


def classify(runs: store.EndpointRuns) -> str:
    """The endpoint's health from its window's judged runs (thresholds above)."""
    if runs.judged_runs < MIN_JUDGED_RUNS:
        return "unknown"
    rate = runs.completed_runs / runs.judged_runs
    if (runs.recent_runs >= RECENT_RUNS and runs.recent_failures >= RECENT_RUNS) \
            or rate < DEGRADED_RATE:
        return "outage"
    if rate < STABLE_RATE or runs.recent_failures >= RECENT_DEGRADED:
        return "degraded"
    if rate < HEALTHY_RATE:
        return "stable"
    return "healthy"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def summarize(runs: store.EndpointRuns) -> store.EndpointHealth:
    return store.EndpointHealth(
        provider=runs.provider, endpoint=runs.endpoint, health=classify(runs),
        p50_seconds=_rounded(runs.p50_seconds), p90_seconds=_rounded(runs.p90_seconds),
        success_rate=round(runs.completed_runs / runs.judged_runs, 4)
        if runs.judged_runs else None,
        judged_runs=runs.judged_runs, window_hours=WINDOW_HOURS)


def rollup_endpoint_health(conn: Conn, *, now: datetime | None = None,
                           force: bool = False) -> int | None:
    """Roll the window's runs up into `endpoint_health`, when the last rollup is over
    ROLLUP_EVERY_SECONDS old (or `force`): how many endpoints have a row, or None when
    it was not due. `conn` in autocommit mode (the sweeper's)."""
    if not force and not store.rollup_due(conn, ROLLUP_EVERY_SECONDS):
        return None
    since = (now or datetime.now(UTC)) - timedelta(hours=WINDOW_HOURS)
    with conn.transaction():
        found = store.summarize_recent_endpoint_runs(conn, since_id=run_id_floor(since),
                                                     recent=RECENT_RUNS)
        rows = [summarize(runs) for runs in found]
        store.replace_endpoint_health(conn, rows)
    return len(rows)


def _metrics(row: store.EndpointHealth | None) -> Metrics:
    if row is None:
        return UNKNOWN
    return Metrics(health=row.health, p50_seconds=row.p50_seconds, p90_seconds=row.p90_seconds,
                   success_rate=row.success_rate, window=f"{row.window_hours}h")


def read_metrics(conn: Conn, pairs: Iterable[tuple[str, str]]
                 ) -> dict[tuple[str, str], Metrics]:
    """Each (provider, endpoint) pair's metrics; `unknown` for one without runs."""
    wanted = list(dict.fromkeys(pairs))
    found = store.get_endpoint_health(conn, wanted)
    return {pair: _metrics(found.get(pair)) for pair in wanted}


def endpoint_metrics(svc: Services, pairs: Iterable[tuple[str, str]]
                     ) -> dict[tuple[str, str], Metrics]:
    """The service function: each (provider, endpoint) pair's metrics (the public
    catalog's way to them)."""
    with autocommit(svc.pool) as conn:
        return read_metrics(conn, pairs)

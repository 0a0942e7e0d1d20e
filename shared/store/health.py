"""Endpoint health in PostgreSQL: the sweeper's rollup of recent runs, and the rows
discover and inspect read. `verb_noun(conn, ...)`; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.db import Conn, query


@dataclass(frozen=True)
class EndpointRuns:
    """What an endpoint's recent judged runs did (see `summarize_recent_endpoint_runs`)."""

    provider: str
    endpoint: str
    judged_runs: int
    completed_runs: int
    recent_runs: int  # the last few judged runs...
    recent_failures: int  # ...and how many of them failed
    p50_seconds: float | None  # of the COMPLETED runs; None without one
    p90_seconds: float | None


@dataclass(frozen=True)
class EndpointHealth:
    provider: str
    endpoint: str
    health: str
    p50_seconds: float | None
    p90_seconds: float | None
    success_rate: float | None
    judged_runs: int
    window_hours: int


def rollup_due(conn: Conn, every_seconds: float) -> bool:
    row = conn.execute(query("endpoint_health_rollup_due"),
                       {"every_seconds": every_seconds}).fetchone()
    return bool(row and row["due"])


def summarize_recent_endpoint_runs(conn: Conn, *, since_id: str, recent: int
                                   ) -> list[EndpointRuns]:
    rows = conn.execute(query("summarize_recent_endpoint_runs"),
                        {"since_id": since_id, "recent": recent}).fetchall()
    return [EndpointRuns(
        provider=r["provider"], endpoint=r["endpoint"], judged_runs=int(r["judged_runs"]),
        completed_runs=int(r["completed_runs"]), recent_runs=int(r["recent_runs"]),
        recent_failures=int(r["recent_failures"]),
        p50_seconds=None if r["p50_seconds"] is None else float(r["p50_seconds"]),
        p90_seconds=None if r["p90_seconds"] is None else float(r["p90_seconds"]),
    ) for r in rows]


def replace_endpoint_health(conn: Conn, rows: Iterable[EndpointHealth]) -> None:
    """Write this rollup's rows and drop every other (endpoints with no judged run left
    in the window). Run it in one transaction: both use its now()."""
    with conn.cursor() as cur:
        cur.executemany(query("upsert_endpoint_health"), [{
            "provider": h.provider, "endpoint": h.endpoint, "health": h.health,
            "p50_seconds": h.p50_seconds, "p90_seconds": h.p90_seconds,
            "success_rate": h.success_rate, "judged_runs": h.judged_runs,
            "window_hours": h.window_hours} for h in rows])
    conn.execute(query("delete_stale_endpoint_health"))


def get_endpoint_health(conn: Conn, pairs: Iterable[tuple[str, str]]
                        ) -> dict[tuple[str, str], EndpointHealth]:
    """The rows of the given (provider, endpoint) pairs, by pair; a pair without a row
    is missing from the answer."""
    wanted = list(pairs)
    if not wanted:
        return {}
    rows = conn.execute(query("get_endpoint_health"), {
        "providers": [p for p, _ in wanted], "endpoints": [e for _, e in wanted]}).fetchall()
    return {(r["provider"], r["endpoint"]): EndpointHealth(
        provider=r["provider"], endpoint=r["endpoint"], health=r["health"],
        p50_seconds=r["p50_seconds"], p90_seconds=r["p90_seconds"],
        success_rate=r["success_rate"], judged_runs=int(r["judged_runs"]),
        window_hours=int(r["window_hours"])) for r in rows}

"""What /metrics reads from PostgreSQL: `verb_noun(conn, ...)`; the caller owns the transaction.

These are cluster-wide numbers: workers on any host write runs and attempts,
so the tables, not any one process, know how many ended and how.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import Conn, query
from shared.store.runs import END_STATUSES

OPEN_STATUSES = ("RUNNING", "STOPPING")
ATTEMPT_OUTCOMES = ("OK", "TRANSIENT_ERROR", "PERMANENT_ERROR", "TIMEOUT", "LOST", "STOPPED")


@dataclass(frozen=True)
class RunCounts:
    ended: dict[str, int]  # every end status, zero included
    open: dict[str, int]  # RUNNING and STOPPING, zero included


@dataclass(frozen=True)
class AttemptCounts:
    ended: dict[str, int]  # every outcome, zero included
    open: int  # attempts a worker holds now, which have no outcome yet


@dataclass(frozen=True)
class DurationHistogram:
    buckets: tuple[tuple[float, int], ...]  # (upper bound in seconds, cumulative count)
    count: int
    sum_seconds: float


def limit_statement_time(conn: Conn) -> None:
    """Cancel this transaction's queries that run over two seconds."""
    conn.execute(query("limit_metrics_statement_time"))


def count_runs_by_status(conn: Conn) -> RunCounts:
    found = {row["status"]: int(row["runs"]) for row in conn.execute(query("count_runs_by_status"))}
    ended = {status: found.get(status, 0) for status in sorted(END_STATUSES)}
    open_ = {status: found.get(status, 0) for status in OPEN_STATUSES}
    return RunCounts(ended=ended, open=open_)


def count_attempts_by_outcome(conn: Conn) -> AttemptCounts:
    found: dict[str | None, int] = {
        row["outcome"]: int(row["attempts"])
        for row in conn.execute(query("count_attempts_by_outcome"))
    }
    ended = {outcome: found.get(outcome, 0) for outcome in ATTEMPT_OUTCOMES}
    # An outcome the schema gained later is still counted, under its own name.
    ended.update({k: v for k, v in found.items() if k is not None and k not in ended})
    return AttemptCounts(ended=ended, open=found.get(None, 0))


def _histogram(conn: Conn, name: str) -> DurationHistogram:
    row = conn.execute(query(name)).fetchone()
    assert row is not None  # an aggregate without GROUP BY always answers one row
    count = int(row.pop("count"))
    sum_seconds = float(row.pop("sum"))
    buckets = sorted((float(bound), int(n)) for bound, n in row.items())
    return DurationHistogram(buckets=tuple(buckets), count=count, sum_seconds=sum_seconds)


def summarize_run_durations(conn: Conn) -> DurationHistogram:
    return _histogram(conn, "summarize_run_durations")


def summarize_start_delays(conn: Conn) -> DurationHistogram:
    """The time from accept to first start of every started run."""
    return _histogram(conn, "summarize_start_delays")


@dataclass(frozen=True)
class WaitingRuns:
    total: int  # runs not started yet
    top_callers: tuple[tuple[str, int], ...]  # the callers with the most, most first
    by_slot: dict[str, int]  # runs parked until a slot frees, by slot


def count_waiting_runs(conn: Conn, top: int = 5) -> WaitingRuns:
    rows = conn.execute(query("count_runs_waiting_to_start"), {"top": top}).fetchall()
    by_slot = {r["slot"]: int(r["runs"]) for r in conn.execute(
        query("count_runs_waiting_for_slots"))}
    return WaitingRuns(total=int(rows[0]["total"]) if rows else 0,
                       top_callers=tuple((r["caller"], int(r["runs"])) for r in rows),
                       by_slot=by_slot)


def find_oldest_unclaimed_run_age(conn: Conn) -> float:
    """Seconds since the oldest run that no worker has started was created; 0 if none."""
    row = conn.execute(query("find_oldest_unclaimed_run_age")).fetchone()
    assert row is not None
    return max(0.0, float(row["age_seconds"]))


DELIVERY_STATUSES = ("DELIVERED", "FAILED", "PENDING")


@dataclass(frozen=True)
class DeliveryCounts:
    by_status: dict[str, int]  # every status, zero included
    due: int  # PENDING and due now (retries waiting are not)
    oldest_pending_age: float  # seconds since the oldest PENDING one was made; 0 if none


def count_webhook_deliveries(conn: Conn) -> DeliveryCounts:
    found = {r["status"]: int(r["deliveries"])
             for r in conn.execute(query("count_webhook_deliveries_by_status"))}
    row = conn.execute(query("find_pending_webhook_deliveries")).fetchone()
    assert row is not None  # an aggregate without GROUP BY always answers one row
    return DeliveryCounts(by_status={s: found.get(s, 0) for s in DELIVERY_STATUSES},
                          due=int(row["due"]),
                          oldest_pending_age=max(0.0, float(row["age_seconds"])))

"""The sweeper's store: one sweeper at a time (an advisory lock) hands back expired
leases, ends the runs that must end, publishes the runs that are due and wakes runs
waiting for a slot that has room again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Conn, json_param, query
from shared.store.claims import Woken, woken_runs


def try_sweeper_lock(conn: Conn, key: int) -> bool:
    row = conn.execute(query("try_sweeper_lock"), {"key": key}).fetchone()
    return bool(row and row["locked"])


def release_sweeper_lock(conn: Conn, key: int) -> None:
    conn.execute(query("release_sweeper_lock"), {"key": key})


def release_expired_leases(conn: Conn, *, limit: int) -> list[str]:
    rows = conn.execute(query("release_expired_leases"), {"limit": limit}).fetchall()
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class RunToEnd:
    id: str
    provider: str
    endpoint: str
    adapter: str
    input: Any
    provider_state: Any
    attempt_count: int
    deadline_at: datetime
    reason: str


def find_runs_to_end(conn: Conn, *, max_lost: int, limit: int) -> list[RunToEnd]:
    rows = conn.execute(query("find_runs_to_end"), {"max_lost": max_lost, "limit": limit})
    return [RunToEnd(**r) for r in rows]


def end_unheld_run(conn: Conn, run_id: str, *, status: str, error: Any, outcome: str,
                   message: str) -> bool:
    """End a run no worker holds, and settle it (a stop asked of an idle run ends it so
    too); False when a worker took it or it ended meanwhile."""
    row = conn.execute(query("end_unheld_run"), {
        "run_id": run_id, "status": status, "error": json_param(error), "outcome": outcome,
        "message": message}).fetchone()
    return row is not None


@dataclass(frozen=True)
class ToPublish:
    run_id: str
    open_runs: int  # its caller's, for the message's priority
    provider: str = ""
    endpoint: str = ""


def take_runs_to_publish(conn: Conn, *, grace_seconds: float, limit: int) -> list[ToPublish]:
    rows = conn.execute(query("take_runs_to_publish"),
                        {"grace_seconds": grace_seconds, "limit": limit}).fetchall()
    callers = sorted({r["caller"] for r in rows})
    open_runs = {c["caller"]: c["open_runs"]
                 for c in conn.execute(query("count_open_runs"), {"callers": callers})} \
        if callers else {}
    return [ToPublish(r["id"], open_runs.get(r["caller"], 0), r["provider"], r["endpoint"])
            for r in rows]


@dataclass(frozen=True)
class WaitingSlot:
    slot: str
    caller: str | None  # for a caller's own slot
    provider: str
    endpoint: str
    waiting: int
    quiet_seconds: float  # since the last of them began to wait


def find_waiting_slots(conn: Conn) -> list[WaitingSlot]:
    """The slots runs wait for, and how many wait for each."""
    return [WaitingSlot(**r) for r in conn.execute(query("find_waiting_slots"))]


def wake_callers_run(conn: Conn, caller: str) -> tuple[Woken, ...]:
    """Hand back the oldest run of `caller` waiting for a thread of its caller's."""
    return wake_waiting_runs(conn, WaitingSlot("caller", caller, "", "", 1, 0.0),
                             limit=0, wanted=1)


def wake_waiting_runs(conn: Conn, slot: WaitingSlot, *, limit: int, wanted: int
                      ) -> tuple[Woken, ...]:
    """Hand back up to `wanted` runs waiting for `slot`, as many as it has room for
    under `limit` (0: no limit any more)."""
    endpoint = slot.endpoint if slot.slot.startswith("endpoint:") else None
    rows = conn.execute(query("wake_waiting_runs"), {
        "slot": slot.slot, "caller": slot.caller, "provider": slot.provider,
        "endpoint": endpoint, "limit": limit, "wanted": wanted}).fetchall()
    return woken_runs(rows)

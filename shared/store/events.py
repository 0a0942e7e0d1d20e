"""Runs as their live events show them (`shared.events`), and the flag that has a run's
changes notified while an event stream follows it (migration 0021). `verb_noun(conn,
...)`; the caller owns the transaction."""

from __future__ import annotations

from shared.db import Conn, query
from shared.store.runs import Run


def get_run_for_events(conn: Conn, run_id: str, caller: str) -> Run | None:
    """The caller's run with its attempts and its provider's progress but without its
    output; None when it is not the caller's (or does not exist)."""
    row = conn.execute(query("get_run_for_events"), {"id": run_id, "caller": caller}).fetchone()
    if row is None:
        return None
    row["attempts"] = tuple(row["attempts"])
    return Run(**row)


def watch_run(conn: Conn, run_id: str, caller: str) -> None:
    """Have the run's status and attempt changes notified on `monid_run_changed` until
    it ends (its end is notified on `monid_run_ended` anyway)."""
    conn.execute(query("watch_run"), {"id": run_id, "caller": caller})

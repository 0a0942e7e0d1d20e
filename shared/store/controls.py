"""Store functions of spend controls (`shared/sql/store/controls.sql`, migration 0015):
`verb_noun(conn, ...)`; the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.cursors import encode_runs_cursor as encode_cursor  # ULID-keyed, newest first
from shared.db import Conn, query

PERIODS = ("HOUR", "DAY", "WEEK", "MONTH")
CONTROL_STATUSES = ("ACTIVE", "PAUSED")
_NO_CURSOR = "Z" * 26  # sorts after every ULID


@dataclass(frozen=True)
class BudgetControl:
    """A budget as it is in its current window."""

    id: str
    caller: str
    api_key_id: int | None
    period: str
    limit_micros: int
    status: str
    window_start: datetime
    spent_micros: int
    held_micros: int
    created_at: datetime
    updated_at: datetime

    @property
    def available_micros(self) -> int:
        """What a new run may still hold (never below 0, even under a lowered limit)."""
        return max(0, self.limit_micros - self.spent_micros - self.held_micros)

    @property
    def control_type(self) -> str:
        return "WORKSPACE_BUDGET" if self.api_key_id is None else "KEY_BUDGET"


@dataclass(frozen=True)
class RunCapControl:
    id: str
    caller: str
    limit_micros: int
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ControlRecord:
    """What one control said of one run; `snapshot` in micro-dollars, as stored."""

    run_id: str
    control_id: str
    control_type: str
    hold_micros: int
    settled_micros: int | None
    status: str
    snapshot: dict[str, Any]
    created_at: datetime
    settled_at: datetime | None


def insert_budget_control(conn: Conn, *, control_id: str, caller: str, period: str,
                          limit_micros: int, api_key_id: int | None = None) -> BudgetControl:
    conn.execute(query("insert_budget_control"), {
        "id": control_id, "caller": caller, "api_key_id": api_key_id, "period": period,
        "limit_micros": limit_micros})
    found = get_budget_control(conn, control_id, caller)
    assert found is not None
    return found


def get_budget_control(conn: Conn, control_id: str, caller: str) -> BudgetControl | None:
    row = conn.execute(query("get_budget_control"), {"id": control_id,
                                                     "caller": caller}).fetchone()
    return BudgetControl(**row) if row else None


def list_budget_controls(conn: Conn, caller: str, *, limit: int, before: str | None = None
                         ) -> tuple[list[BudgetControl], str | None]:
    rows = conn.execute(query("list_budget_controls"), {
        "caller": caller, "before": before or _NO_CURSOR, "limit": limit + 1}).fetchall()
    found = [BudgetControl(**r) for r in rows[:limit]]
    return found, encode_cursor(found[-1].id) if len(rows) > limit else None


def update_budget_control(conn: Conn, control_id: str, caller: str, *,
                          limit_micros: int | None = None, status: str | None = None
                          ) -> BudgetControl | None:
    row = conn.execute(query("update_budget_control"), {
        "id": control_id, "caller": caller, "limit_micros": limit_micros,
        "status": status}).fetchone()
    return get_budget_control(conn, control_id, caller) if row else None


def insert_run_cap_control(conn: Conn, *, control_id: str, caller: str,
                           limit_micros: int) -> RunCapControl:
    row = conn.execute(query("insert_run_cap_control"), {
        "id": control_id, "caller": caller, "limit_micros": limit_micros}).fetchone()
    assert row is not None
    return RunCapControl(**row)


def get_run_cap_control(conn: Conn, control_id: str, caller: str) -> RunCapControl | None:
    row = conn.execute(query("get_run_cap_control"), {"id": control_id,
                                                      "caller": caller}).fetchone()
    return RunCapControl(**row) if row else None


def list_run_cap_controls(conn: Conn, caller: str, *, limit: int, before: str | None = None
                          ) -> tuple[list[RunCapControl], str | None]:
    rows = conn.execute(query("list_run_cap_controls"), {
        "caller": caller, "before": before or _NO_CURSOR, "limit": limit + 1}).fetchall()
    found = [RunCapControl(**r) for r in rows[:limit]]
    return found, encode_cursor(found[-1].id) if len(rows) > limit else None


def update_run_cap_control(conn: Conn, control_id: str, caller: str, *,
                           limit_micros: int | None = None, status: str | None = None
                           ) -> RunCapControl | None:
    row = conn.execute(query("update_run_cap_control"), {
        "id": control_id, "caller": caller, "limit_micros": limit_micros,
        "status": status}).fetchone()
    return RunCapControl(**row) if row else None


def list_control_records(conn: Conn, control_id: str, *, limit: int,
                         before: str | None = None) -> tuple[list[ControlRecord], str | None]:
    """A page of what the control said of runs, newest run first (the control is the
    caller's: check that first)."""
    rows = conn.execute(query("list_control_records"), {
        "control_id": control_id, "before": before or _NO_CURSOR,
        "limit": limit + 1}).fetchall()
    found = [ControlRecord(**r) for r in rows[:limit]]
    return found, encode_cursor(found[-1].run_id) if len(rows) > limit else None


def list_run_control_records(conn: Conn, run_id: str, caller: str, *, limit: int,
                             before: str | None = None
                             ) -> tuple[list[ControlRecord], str | None]:
    rows = conn.execute(query("list_run_control_records"), {
        "run_id": run_id, "caller": caller, "before": before or _NO_CURSOR,
        "limit": limit + 1}).fetchall()
    found = [ControlRecord(**r) for r in rows[:limit]]
    return found, encode_cursor(found[-1].control_id) if len(rows) > limit else None


def find_control_owner(conn: Conn, control_id: str) -> str | None:
    """The caller whose budget or run cap this is."""
    row = conn.execute(query("find_control_owner"), {"id": control_id}).fetchone()
    return row["caller"] if row else None

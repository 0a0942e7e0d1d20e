"""Spend controls: budgets (a workspace's, or one API key's) and run caps.

A budget has a period (HOUR, DAY, WEEK, MONTH: calendar windows in UTC), a limit
and a status (ACTIVE, PAUSED). Every run holds its price against each active
budget that counts (the workspace's, and its key's own) in the accept's own
statement, with the wallet hold (see migration 0015); settlement moves the hold to
spent, or releases it. A run cap is the most one run may hold. A run a control
refuses is stored as a terminal BLOCKED run: nothing held, nothing called, cost 0
(`shared.runs.start_run` answers it, with the reason and hints).

A change to a control counts from the next accept on, never for a run already
accepted. A workspace is a caller (`USER#<userId>`).

Reads take the services first and the caller second, like every operation; making
a control takes only the database pool, so that `monidctl` makes them without the
web's services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg_pool import ConnectionPool

from shared import cursors, errors, store
from shared.db import autocommit, transaction
from shared.ids import is_run_id, new_run_id
from shared.money import MICROS_PER_DOLLAR, format_usd
from shared.services import Page, Services
from shared.store import controls as controls_store
from shared.store.controls import (
    CONTROL_STATUSES,
    PERIODS,
    BudgetControl,
    ControlRecord,
    RunCapControl,
)

__all__ = ["CONTROL_STATUSES", "LIMIT_UNITS", "MAX_LIMIT_MICROS", "PERIODS", "BlockingControl",
           "BudgetControl", "ControlRecord", "RunCapControl", "create_budget", "create_run_cap",
           "get_budget", "get_run_cap", "limit_micros", "list_budget_runs", "list_budgets",
           "list_run_cap_runs", "list_run_caps", "list_run_controls", "update_budget",
           "update_run_cap"]

# A limit over a million dollars is a typo, not a budget.
MAX_LIMIT_MICROS = 1_000_000 * MICROS_PER_DOLLAR
LIMIT_UNITS = {"MICRO_DOLLAR": 1, "CENT": MICROS_PER_DOLLAR // 100, "DOLLAR": MICROS_PER_DOLLAR}


@dataclass(frozen=True)
class BlockingControl:
    """A control that refused a run: the run needed `required_micros`; `snapshot`
    is the control as it was then (micro-dollars, as stored)."""

    control_id: str
    control_type: str
    required_micros: int
    snapshot: Mapping[str, Any]


def limit_micros(value: Any, unit: str = "DOLLAR", *, field: str = "limitAmount") -> int:
    """A limit as micro-dollars: a whole number of `unit`, from 0 to MAX_LIMIT_MICROS;
    InvalidRequest naming `field` otherwise."""
    if unit not in LIMIT_UNITS:
        raise errors.InvalidRequest({f"{field}.unit": [
            f"must be one of {', '.join(LIMIT_UNITS)}"]})
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidRequest({f"{field}.value": [f"must be a whole number of {unit}"]})
    if value < 0:
        raise errors.InvalidRequest({f"{field}.value": ["must not be negative"]})
    micros = value * LIMIT_UNITS[unit]
    if micros > MAX_LIMIT_MICROS:
        raise errors.InvalidRequest({f"{field}.value": [
            f"must be at most {format_usd(MAX_LIMIT_MICROS)} USD"]})
    return micros


def _check(micros: int, field: str = "limit") -> int:
    if not 0 <= micros <= MAX_LIMIT_MICROS:
        raise errors.InvalidRequest({field: [
            f"must be from 0 to {format_usd(MAX_LIMIT_MICROS)} USD"]})
    return micros


def _before(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return cursors.decode_runs_cursor(cursor)  # ULID-keyed, newest first
    except ValueError:
        raise errors.InvalidRequest({"cursor": ["is not a cursor from this API"]}) from None


# --- making controls (monidctl) -----------------------------------------------------


def create_budget(pool: ConnectionPool, caller: str, *, period: str, limit_micros: int,
                  api_key_id: int | None = None) -> BudgetControl:
    """A new ACTIVE budget of the caller's workspace, or (`api_key_id`) of one of its
    keys; it counts from the next accept on."""
    if period not in PERIODS:
        raise errors.InvalidRequest({"period": [f"must be one of {', '.join(PERIODS)}"]})
    _check(limit_micros)
    with transaction(pool) as conn:
        return controls_store.insert_budget_control(
            conn, control_id=new_run_id(), caller=caller, period=period,
            limit_micros=limit_micros, api_key_id=api_key_id)


def create_run_cap(pool: ConnectionPool, caller: str, *, limit_micros: int) -> RunCapControl:
    """A new ACTIVE run cap of the caller's workspace."""
    _check(limit_micros)
    with transaction(pool) as conn:
        return controls_store.insert_run_cap_control(conn, control_id=new_run_id(),
                                                     caller=caller, limit_micros=limit_micros)


# --- budgets ------------------------------------------------------------------------


def list_budgets(svc: Services, caller: str, *, limit: int, cursor: str | None = None
                 ) -> Page[BudgetControl]:
    """A page of the workspace's budgets (not its keys'), newest first."""
    before = _before(cursor)
    with autocommit(svc.pool) as conn:
        found, next_cursor = controls_store.list_budget_controls(conn, caller, limit=limit,
                                                                 before=before)
    return Page(found, next_cursor)


def _budget(conn: store.Conn, caller: str, control_id: str) -> BudgetControl:
    found = (controls_store.get_budget_control(conn, control_id, caller)
             if is_run_id(control_id) else None)
    if found is None:
        raise errors.ControlNotFound(f"no budget {control_id!r}")
    return found


def get_budget(svc: Services, caller: str, control_id: str) -> BudgetControl:
    """One of the workspace's budgets (its keys' too); ControlNotFound for another
    workspace's, exactly as for one that does not exist."""
    with autocommit(svc.pool) as conn:
        return _budget(conn, caller, control_id)


def update_budget(pool_or_svc: Services | ConnectionPool, caller: str, control_id: str, *,
                  limit_micros: int | None = None, status: str | None = None
                  ) -> BudgetControl:
    """Change a budget's limit or status (at least one); from the next accept on."""
    _check_change(limit_micros, status)
    pool = pool_or_svc.pool if isinstance(pool_or_svc, Services) else pool_or_svc
    with transaction(pool) as conn:
        found = (controls_store.update_budget_control(conn, control_id, caller,
                                                      limit_micros=limit_micros, status=status)
                 if is_run_id(control_id) else None)
    if found is None:
        raise errors.ControlNotFound(f"no budget {control_id!r}")
    return found


def list_budget_runs(svc: Services, caller: str, control_id: str, *, limit: int,
                     cursor: str | None = None) -> Page[ControlRecord]:
    """What the budget said of runs, newest run first."""
    before = _before(cursor)
    with autocommit(svc.pool) as conn:
        _budget(conn, caller, control_id)
        found, next_cursor = controls_store.list_control_records(conn, control_id, limit=limit,
                                                                 before=before)
    return Page(found, next_cursor)


# --- run caps -----------------------------------------------------------------------


def list_run_caps(svc: Services, caller: str, *, limit: int, cursor: str | None = None
                  ) -> Page[RunCapControl]:
    before = _before(cursor)
    with autocommit(svc.pool) as conn:
        found, next_cursor = controls_store.list_run_cap_controls(conn, caller, limit=limit,
                                                                  before=before)
    return Page(found, next_cursor)


def _run_cap(conn: store.Conn, caller: str, control_id: str) -> RunCapControl:
    found = (controls_store.get_run_cap_control(conn, control_id, caller)
             if is_run_id(control_id) else None)
    if found is None:
        raise errors.ControlNotFound(f"no run cap {control_id!r}")
    return found


def get_run_cap(svc: Services, caller: str, control_id: str) -> RunCapControl:
    with autocommit(svc.pool) as conn:
        return _run_cap(conn, caller, control_id)


def update_run_cap(pool_or_svc: Services | ConnectionPool, caller: str, control_id: str, *,
                   limit_micros: int | None = None, status: str | None = None
                   ) -> RunCapControl:
    _check_change(limit_micros, status)
    pool = pool_or_svc.pool if isinstance(pool_or_svc, Services) else pool_or_svc
    with transaction(pool) as conn:
        found = (controls_store.update_run_cap_control(conn, control_id, caller,
                                                       limit_micros=limit_micros, status=status)
                 if is_run_id(control_id) else None)
    if found is None:
        raise errors.ControlNotFound(f"no run cap {control_id!r}")
    return found


def list_run_cap_runs(svc: Services, caller: str, control_id: str, *, limit: int,
                      cursor: str | None = None) -> Page[ControlRecord]:
    before = _before(cursor)
    with autocommit(svc.pool) as conn:
        _run_cap(conn, caller, control_id)
        found, next_cursor = controls_store.list_control_records(conn, control_id, limit=limit,
                                                                 before=before)
    return Page(found, next_cursor)


def _check_change(limit_micros: int | None, status: str | None) -> None:
    if limit_micros is None and status is None:
        raise errors.InvalidRequest({"body": ["give limitAmount, status or both"]})
    if limit_micros is not None:
        _check(limit_micros, "limitAmount")
    if status is not None and status not in CONTROL_STATUSES:
        raise errors.InvalidRequest({"status": [
            f"must be one of {', '.join(CONTROL_STATUSES)}"]})


# --- a run's records, and what a blocked run is told ---------------------------------


def list_run_controls(svc: Services, caller: str, run_id: str, *, limit: int,
                      cursor: str | None = None) -> Page[ControlRecord]:
    """What each control said of the caller's run; RunNotFound for another caller's."""
    if not is_run_id(run_id):
        raise errors.RunNotFound(run_id)
    before = _before(cursor)
    with autocommit(svc.pool) as conn:
        if store.run_status(conn, run_id, caller) is None:
            raise errors.RunNotFound(run_id)
        found, next_cursor = controls_store.list_run_control_records(
            conn, run_id, caller, limit=limit, before=before)
    return Page(found, next_cursor)


def blocking_controls(checked: list[dict[str, Any]], required_micros: int
                      ) -> tuple[BlockingControl, ...]:
    """The controls that refused a run, from what monid_check_controls said."""
    return tuple(BlockingControl(c["controlId"], c["controlType"], required_micros,
                                 dict(c["snapshot"]))
                 for c in checked if c["status"] == "BLOCKED")


def blocking_records(records: list[ControlRecord]) -> tuple[BlockingControl, ...]:
    return tuple(BlockingControl(r.control_id, r.control_type, r.hold_micros, dict(r.snapshot))
                 for r in records if r.status == "BLOCKED")


def _budget_words(control: BlockingControl) -> str:
    whose = "this API key's" if control.control_type == "KEY_BUDGET" else "the"
    return f"{whose} {control.snapshot['period']} budget"


def blocked_reason(blocking: tuple[BlockingControl, ...]) -> str:
    """Why the run was refused, in words: each control that refused it."""
    parts = []
    for control in blocking:
        snap = control.snapshot
        needs = f"this run needs {format_usd(control.required_micros)} USD"
        if control.control_type == "WORKSPACE_RUN_CAP":
            parts.append(f"the run cap of {format_usd(snap['limitMicros'])} USD is below "
                         f"what this run holds, {format_usd(control.required_micros)} USD")
        else:
            available = max(0, snap["limitMicros"] - snap["spentMicros"] - snap["heldMicros"])
            parts.append(f"{_budget_words(control)} of {format_usd(snap['limitMicros'])} USD "
                         f"has {format_usd(available)} USD available; {needs}")
    return "; ".join(parts) or "a spend control refused the run"


_WINDOW = {"HOUR": timedelta(hours=1), "DAY": timedelta(days=1), "WEEK": timedelta(weeks=1)}


def _next_window(period: str, start: datetime) -> datetime:
    if period in _WINDOW:
        return start + _WINDOW[period]
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def blocked_hints(blocking: tuple[BlockingControl, ...]) -> dict[str, Any]:
    """For an agent: which control to raise, and how."""
    hints: dict[str, Any] = {}
    for control in blocking:
        snap = control.snapshot
        if control.control_type == "WORKSPACE_RUN_CAP":
            needed = control.required_micros
            hints["raise the run cap"] = {
                "kind": "command",
                "command": f"monidctl controls run-cap set {control.control_id} "
                           f"--limit {format_usd(needed).replace(',', '')}"}
            hints["or over the API"] = (
                f"PATCH /v1/controls/workspace/run-caps/{control.control_id} with a "
                "limitAmount of at least what the run holds")
            continue
        needed = snap["spentMicros"] + snap["heldMicros"] + control.required_micros
        hints["raise the budget"] = {
            "kind": "command",
            "command": f"monidctl controls budget set {control.control_id} "
                       f"--limit {format_usd(needed).replace(',', '')}"}
        hints["or over the API"] = (
            f"PATCH /v1/controls/workspace/budgets/{control.control_id} with a limitAmount of "
            f"at least {format_usd(needed)} USD")
        start = datetime.fromisoformat(snap["windowStart"].replace("Z", "+00:00"))
        hints["or wait for the next window"] = (
            f"the {snap['period']} window starts again at "
            f"{_next_window(snap['period'], start).strftime('%Y-%m-%dT%H:%M:%S.000Z')}")
    return hints

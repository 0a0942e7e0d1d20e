"""Runs: accepted (with their hold, in one statement), read, listed, asked to stop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import Transformer

from shared.catalog import Endpoint, Price
from shared.db import Conn, json_param, jsonb_param, prepared_as, query, with_literals

# BLOCKED: refused by a spend control at accept (see shared.controls).
END_STATUSES = frozenset({"COMPLETED", "FAILED", "STOPPED", "TIMED_OUT", "BLOCKED"})
STATUSES = ("RUNNING", "STOPPING", *sorted(END_STATUSES))
_NEWEST = "Z" * 26  # sorts after every ULID


@dataclass(frozen=True)
class Run:
    id: str
    caller: str
    provider: str
    provider_name: str
    endpoint: str
    status: str
    result_count: int | None
    provider_response: Any
    error: Any
    price_type: str
    price_micros: int
    flat_fee_micros: int | None
    cost_micros: int | None
    attempt_count: int
    max_attempts: int
    next_attempt_at: datetime | None
    deadline_at: datetime
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    input: Any = None
    output: Any = None
    attempts: tuple[dict[str, Any], ...] = ()
    # `output` holds only the first of the run's items (read all of them with the
    # run's items).
    output_truncated: bool = False
    # What its provider's job last said of its progress, as kept with the provider
    # state (`shared.progress`); read only for the run's live events.
    progress: Any = None

    @property
    def ended(self) -> bool:
        return self.status in END_STATUSES

    @property
    def stoppable(self) -> bool:
        return not self.ended

    @property
    def price(self) -> Price:
        return Price(self.price_type, self.price_micros, self.flat_fee_micros)

    @property
    def result(self) -> Any:
        """The output, shown once the run has ended (None before)."""
        return self.output if self.ended else None

    @property
    def charged_micros(self) -> int | None:
        """The cost, known once the run has ended (None before)."""
        return self.cost_micros if self.ended else None

    @property
    def tries(self) -> list[dict[str, Any]]:
        """The attempts, each with when the next one is due: only the last one of a run
        that has not ended can have one."""
        tries = [dict(a) for a in self.attempts]
        for attempt in tries[:-1]:
            attempt["nextAttemptAt"] = None
        if tries and self.ended:
            tries[-1]["nextAttemptAt"] = None
        return tries


class InsufficientFunds(Exception):
    """The caller's available balance does not cover the run's hold."""


class TooManyRunsInFlight(Exception):
    """The caller has as many runs in flight as it may have."""


class RunBlocked(Exception):
    """A spend control refused the run: it is stored (in the caller's transaction, if
    any), ended BLOCKED, holding nothing. `controls`: what each control said (see
    monid_check_controls in migration 0015)."""

    def __init__(self, created_at: datetime, controls: list[dict[str, Any]]) -> None:
        super().__init__("blocked by a spend control")
        self.created_at = created_at
        self.controls = controls


def run_params(*, run_id: str, caller: str, api_key_id: int | None, endpoint: Endpoint,
               input: Any, hold_micros: int = 0, max_results: int | None = None,
               in_flight_cap: int = 0, queue_timeout_seconds: int = 900,
               webhook: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of `insert_run`'s statement for one new run."""
    return {
        "id": run_id,
        "caller": caller,
        "api_key_id": api_key_id,
        "provider": endpoint.provider,
        "provider_name": endpoint.provider_name,
        "endpoint": endpoint.path,
        "adapter": endpoint.adapter,
        "input": json_param(input),
        "price_type": endpoint.price.type,
        "price_micros": endpoint.price.amount_micros,
        "flat_fee_micros": endpoint.price.flat_fee_micros,
        "max_attempts": endpoint.max_attempts,
        "deadline_seconds": endpoint.deadline_seconds,
        "hold_micros": hold_micros,
        "max_results": max_results,
        "cap": max(0, in_flight_cap),
        "queue_timeout_seconds": queue_timeout_seconds,
        "webhook": jsonb_param(webhook),
    }


def insert_run(conn: Conn, *, run_id: str, caller: str, api_key_id: int | None,
               endpoint: Endpoint, input: Any, hold_micros: int = 0,
               max_results: int | None = None, in_flight_cap: int = 0,
               queue_timeout_seconds: int = 900,
               webhook: dict[str, Any] | None = None) -> datetime:
    """Insert a new RUNNING run and hold its price on the caller's wallet, in one
    statement; writes nothing and raises TooManyRunsInFlight when the caller has
    `in_flight_cap` runs in flight (0: no cap), InsufficientFunds when the wallet
    cannot cover the hold. A run a spend control refuses is stored BLOCKED, and
    RunBlocked raised after the statement (a transaction of the caller's goes on).
    `webhook`: `{"url", "events"?}`, what the run asked to be told of its end."""
    return insert_new_run(conn, run_params(
        run_id=run_id, caller=caller, api_key_id=api_key_id, endpoint=endpoint, input=input,
        hold_micros=hold_micros, max_results=max_results, in_flight_cap=in_flight_cap,
        queue_timeout_seconds=queue_timeout_seconds, webhook=webhook))


def insert_new_run(conn: Conn, params: dict[str, Any]) -> datetime:
    """`insert_run` of `run_params`' parameters. In a transaction, a capped caller is
    locked first, as `insert_runs` locks it."""
    if params["cap"] > 0 and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        conn.execute(query("lock_accepting_callers"), {"callers": [params["caller"]]})
    for _ in range(5):
        try:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
                with conn.transaction():  # a savepoint: a number taken meanwhile is retried
                    row = conn.execute(query("insert_run"), params).fetchone()
            else:
                row = conn.execute(query("insert_run"), params).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "runs_inflight_slot":
                raise
            continue  # a concurrent accept took the same number: pick another
        assert row is not None
        return _accepted(params["caller"], row)
    raise TooManyRunsInFlight(params["caller"])


def insert_runs(conn: Conn, batch: Sequence[dict[str, Any]]
                ) -> list[datetime | InsufficientFunds | TooManyRunsInFlight | RunBlocked]:
    """Several new runs (`run_params`' parameters, ordered by caller) in one
    transaction, on a connection outside any: one simple query (`EXECUTE` of
    insert_run, prepared once a connection, for each run), one round trip and one
    commit. For each, its `created_at` or what `insert_run` would raise for it alone.
    Raises what a statement raised (nothing is then written): a number of a caller's
    taken by a concurrent accept, a deadlock, a value one of them spoils the others
    with.

    One query rather than psycopg's pipeline: the pipeline waits on the socket once a
    statement, and under load each wait hands the GIL to the process's other threads
    and waits for it back, while every accept of the group waits for this one thread.
    The values go in as literals (about 11 µs of Python a run against 60 for the
    pipeline's parameters); PostgreSQL runs the statements of one query as one transaction.

    The callers are locked first, in the order given, when a cap counts their runs in
    flight (an advisory lock each, until the commit): the numbers another transaction
    holds uncommitted are then none of theirs, so two such transactions do not pick
    the same number (one would fail when the other commits: the whole group), and the
    wallets and budgets that follow are taken in the same order by every writer."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise RuntimeError("insert_runs needs a connection outside any transaction")
    literal = Transformer(conn).as_literal
    capped = list(dict.fromkeys(p["caller"] for p in batch if p["cap"] > 0))
    statements = [with_literals("lock_accepting_callers", {"callers": capped}, literal)
                  ] if capped else []
    statements += [with_literals("execute_insert_run", params, literal) for params in batch]
    text = b"\n".join(statements)  # each ends with its semicolon
    cursor = conn.cursor()
    try:
        cursor.execute(text, prepare=False)
    except errors.InvalidSqlStatementName:
        # Not prepared on this connection yet (or psycopg deallocated every statement
        # after a rollback): nothing ran; prepare it and run the group.
        conn.execute(prepared_as("prepare_insert_run", "insert_run", "execute_insert_run"),
                     prepare=False)
        cursor.execute(text, prepare=False)
    if capped:
        cursor.nextset()
    answers: list[datetime | InsufficientFunds | TooManyRunsInFlight | RunBlocked] = []
    for n, params in enumerate(batch):
        if n and not cursor.nextset():
            raise RuntimeError(f"{n} answers for {len(batch)} runs")
        row = cursor.fetchone()
        assert row is not None
        try:
            answers.append(_accepted(params["caller"], row))
        except (InsufficientFunds, TooManyRunsInFlight, RunBlocked) as refused:
            answers.append(refused)
    return answers


def _accepted(caller: str, row: dict[str, Any]) -> datetime:
    """The statement's answer for one run: when it was stored, or why it was not."""
    if not row["under_cap"]:
        raise TooManyRunsInFlight(caller)
    if not row["funded"]:
        raise InsufficientFunds(caller)
    if row["blocked"]:
        raise RunBlocked(row["created_at"], row["controls"])
    created_at: datetime = row["created_at"]
    return created_at


def get_run(conn: Conn, run_id: str, caller: str) -> Run | None:
    row = conn.execute(query("get_run"), {"id": run_id, "caller": caller}).fetchone()
    if row is None:
        return None
    row["attempts"] = tuple(row["attempts"])
    return Run(**row)


def list_runs(conn: Conn, caller: str, *, limit: int, before: str | None = None,
              status: str | None = None) -> tuple[list[Run], bool]:
    """Up to `limit` of the caller's runs older than `before`, newest first, and
    whether older ones follow."""
    params = {"caller": caller, "before": before or _NEWEST, "limit": limit + 1,
              "status": status}
    name = "list_runs_by_status" if status else "list_runs"
    rows = conn.execute(query(name), params).fetchall()
    return [Run(**r) for r in rows[:limit]], len(rows) > limit


@dataclass(frozen=True)
class StopRequest:
    run_id: str
    held: bool
    following: bool


def request_stop(conn: Conn, run_id: str, caller: str) -> StopRequest | None:
    """Mark an open run STOPPING; None when it has ended (or is not the caller's)."""
    row = conn.execute(query("request_stop"), {"run_id": run_id, "caller": caller}).fetchone()
    return StopRequest(row["id"], row["held"], row["following"]) if row else None


def run_status(conn: Conn, run_id: str, caller: str) -> str | None:
    row = conn.execute(query("run_status"), {"run_id": run_id, "caller": caller}).fetchone()
    return row["status"] if row else None


@dataclass(frozen=True)
class RunEnd:
    status: str
    error: Any


def get_run_end(conn: Conn, run_id: str) -> RunEnd | None:
    """A run's status and error, for monitors (whoever's run it is)."""
    row = conn.execute(query("get_run_end"), {"run_id": run_id}).fetchone()
    return RunEnd(row["status"], row["error"]) if row else None

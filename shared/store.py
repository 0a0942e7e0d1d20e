"""Store functions: `verb_noun(conn, ...)`; the caller owns the transaction."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Json

from shared.catalog import Endpoint, Price
from shared.db import Row, query
from shared.ids import is_run_id
from shared.scheduling import Freed, Limits

Conn = psycopg.Connection[Row]
# BLOCKED: refused by a spend control at accept (see shared.controls).
END_STATUSES = frozenset({"COMPLETED", "FAILED", "STOPPED", "TIMED_OUT", "BLOCKED"})
STATUSES = ("RUNNING", "STOPPING", *sorted(END_STATUSES))
_NO_CURSOR = "Z" * 26  # sorts after every ULID


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json(value: Any) -> Json | None:
    return None if value is None else Json(value, dumps=_dumps)


# --- API keys ---------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    id: int
    user_id: str
    label: str | None
    mode: str
    key_prefix: str
    key_hash: bytes
    created_at: datetime
    revoked_at: datetime | None

    @property
    def caller(self) -> str:
        return f"USER#{self.user_id}"


def insert_api_key(conn: Conn, *, user_id: str, label: str | None, mode: str,
                   key_prefix: str, key_hash: bytes) -> ApiKey:
    row = conn.execute(query("insert_api_key"), {
        "user_id": user_id, "label": label, "mode": mode,
        "key_prefix": key_prefix, "key_hash": key_hash,
    }).fetchone()
    assert row is not None
    key = ApiKey(**row)
    ensure_wallet(conn, key.caller)
    return key


def find_api_key(conn: Conn, key_hash: bytes) -> ApiKey | None:
    row = conn.execute(query("find_api_key_by_hash"), {"key_hash": key_hash}).fetchone()
    return ApiKey(**row) if row else None


def list_api_keys(conn: Conn, user_id: str) -> list[ApiKey]:
    return [ApiKey(**r) for r in conn.execute(query("list_api_keys"), {"user_id": user_id})]


def revoke_api_key(conn: Conn, key_id: int, user_id: str | None = None) -> ApiKey | None:
    row = conn.execute(query("revoke_api_key"), {"id": key_id, "user_id": user_id}).fetchone()
    return ApiKey(**row) if row else None


def user_known(conn: Conn, user_id: str) -> bool:
    """Whether the user has a key or a wallet."""
    row = conn.execute(query("user_known"), {"user_id": user_id,
                                             "caller": f"USER#{user_id}"}).fetchone()
    return bool(row and row["known"])


# --- runs -------------------------------------------------------------------


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




def insert_run(conn: Conn, *, run_id: str, caller: str, api_key_id: int | None,
               endpoint: Endpoint, input: Any, hold_micros: int = 0,
               max_results: int | None = None, in_flight_cap: int = 0,
               queue_timeout_seconds: int = 900) -> datetime:
    """Insert a new RUNNING run and hold its price on the caller's wallet, in one
    statement; writes nothing and raises TooManyRunsInFlight when the caller has
    `in_flight_cap` runs in flight (0: no cap), InsufficientFunds when the wallet
    cannot cover the hold. A run a spend control refuses is stored BLOCKED, and
    RunBlocked raised after the statement (a transaction of the caller's goes on)."""
    params = {
        "id": run_id,
        "caller": caller,
        "api_key_id": api_key_id,
        "provider": endpoint.provider,
        "provider_name": endpoint.provider_name,
        "endpoint": endpoint.path,
        "adapter": endpoint.adapter,
        "input": _json(input),
        "price_type": endpoint.price.type,
        "price_micros": endpoint.price.amount_micros,
        "flat_fee_micros": endpoint.price.flat_fee_micros,
        "max_attempts": endpoint.max_attempts,
        "deadline_seconds": endpoint.deadline_seconds,
        "hold_micros": hold_micros,
        "max_results": max_results,
        "cap": max(0, in_flight_cap),
        "queue_timeout_seconds": queue_timeout_seconds,
    }
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
        if not row["under_cap"]:
            raise TooManyRunsInFlight(caller)
        if not row["funded"]:
            raise InsufficientFunds(caller)
        if row["blocked"]:
            raise RunBlocked(row["created_at"], row["controls"])
        created_at: datetime = row["created_at"]
        return created_at
    raise TooManyRunsInFlight(caller)


def get_run(conn: Conn, run_id: str, caller: str) -> Run | None:
    row = conn.execute(query("get_run"), {"id": run_id, "caller": caller}).fetchone()
    if row is None:
        return None
    row["attempts"] = tuple(row["attempts"])
    return Run(**row)


def encode_cursor(run_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": run_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The run ID a cursor points before; ValueError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        before = data["before"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise ValueError("not a cursor from this API") from None
    if not isinstance(before, str) or not is_run_id(before):
        raise ValueError("not a cursor from this API")
    return before


def list_runs(conn: Conn, caller: str, *, limit: int, before: str | None = None,
              status: str | None = None) -> tuple[list[Run], str | None]:
    """A page of the caller's runs, newest first, and the cursor of the next page."""
    params = {"caller": caller, "before": before or _NO_CURSOR, "limit": limit + 1,
              "status": status}
    name = "list_runs_by_status" if status else "list_runs"
    rows = conn.execute(query(name), params).fetchall()
    runs = [Run(**r) for r in rows[:limit]]
    cursor = encode_cursor(runs[-1].id) if len(rows) > limit else None
    return runs, cursor


# --- the worker's side --------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    run_id: str
    caller: str
    status: str
    provider: str
    endpoint: str
    adapter: str
    input: Any
    provider_state: Any
    attempt: int
    max_attempts: int
    deadline_at: datetime
    price_type: str
    price_micros: int
    flat_fee_micros: int | None
    malformed_answers: int
    hold_micros: int
    max_results: int | None
    new_attempt: bool
    lease_token: uuid.UUID


@dataclass(frozen=True)
class ClaimState:
    status: str
    leased: bool
    attempt_count: int
    max_attempts: int
    wait_seconds: float


@dataclass(frozen=True)
class Waiting:
    """The run needs a slot that is full: it waits in PostgreSQL until one frees."""

    run_id: str
    slot: str  # "caller", "provider:<slug>" or "endpoint:<slug><path>"
    caller: str = field(default="", compare=False)


@dataclass(frozen=True)
class Woken:
    """A run handed back to the queue from waiting for a slot."""

    run_id: str
    caller: str
    open_runs: int
    provider: str = ""
    endpoint: str = ""


def woken_runs(rows: Any) -> tuple[Woken, ...]:
    return tuple(Woken(r["id"], r["caller"], r["open_runs"], r["provider"], r["endpoint"])
                 for r in rows or ())


def claim_run(conn: Conn, run_id: str, *, worker: str, lease_seconds: int,
              limits: Limits | None = None, full_callers: Sequence[str] = ()
              ) -> Claim | Waiting | None:
    """Take the run for this worker (a new attempt, a check of its provider job, or a
    stop to carry out); park it when a slot it needs is full (a provider's limit, or
    its caller among `full_callers`, those this worker process has no thread left
    for); None when there is nothing to take."""
    limits = limits or Limits()
    token = uuid.uuid4()
    params = {"run_id": run_id, "worker": worker, "lease_seconds": lease_seconds,
              "lease_token": token}
    if limits.by_key or full_callers:
        row = conn.execute(query("claim_run_or_wait"), {
            **params, "full_callers": list(full_callers), "limits": limits.as_json(),
        }).fetchone()
    else:  # nothing to wait for: the plain claim, one UPDATE
        row = conn.execute(query("claim_run"), params).fetchone()
    if row is None:
        return None
    if row["waiting_for"] is not None:
        return Waiting(row["id"], row["waiting_for"], row["caller"])
    return Claim(
        run_id=row["id"], caller=row["caller"], status=row["status"], provider=row["provider"],
        endpoint=row["endpoint"], adapter=row["adapter"], input=row["input"],
        provider_state=row["provider_state"], attempt=row["attempt_count"],
        max_attempts=row["max_attempts"], deadline_at=row["deadline_at"],
        price_type=row["price_type"], price_micros=row["price_micros"],
        flat_fee_micros=row["flat_fee_micros"], malformed_answers=row["malformed_answers"],
        hold_micros=row["hold_micros"], max_results=row["max_results"],
        new_attempt=row["new_attempt"], lease_token=token,
    )


def get_claim_state(conn: Conn, run_id: str) -> ClaimState | None:
    row = conn.execute(query("get_claim_state"), {"run_id": run_id}).fetchone()
    if row is None:
        return None
    return ClaimState(status=row["status"], leased=row["lease_token"] is not None,
                      attempt_count=row["attempt_count"], max_attempts=row["max_attempts"],
                      wait_seconds=row["wait_seconds"] or 0.0)


@dataclass(frozen=True)
class AttemptEnd:
    outcome: str
    http_status: int | None = None
    message: str | None = None


@dataclass(frozen=True)
class Ended:
    status: str  # STOPPED when a stop was asked meanwhile
    woken: tuple[Woken, ...] = ()


def slot_params(freed: Freed | None) -> dict[str, Any]:
    freed = freed or Freed()
    return {"wake": freed.wake, "caller_freed": freed.caller,
            "provider_limit": freed.provider_limit, "endpoint_limit": freed.endpoint_limit}


def end_run(conn: Conn, claim: Claim, attempt: AttemptEnd, *, status: str, output: Any = None,
            result_count: int | None = None, provider_response: Any = None, error: Any = None,
            cost_micros: int | None = None, freed: Freed | None = None) -> Ended | None:
    """Give the run its end state and settle it, in one statement, and hand back a
    run waiting for each slot it `freed`. None when this attempt no longer holds the
    run."""
    row = conn.execute(query("end_run"), {
        **slot_params(freed),
        "run_id": claim.run_id, "lease_token": claim.lease_token, "number": claim.attempt,
        "status": status, "output": _json(output), "result_count": result_count,
        "provider_response": _json(provider_response), "error": _json(error),
        "cost_micros": cost_micros, "outcome": attempt.outcome,
        "http_status": attempt.http_status, "message": attempt.message,
    }).fetchone()
    if row is None:
        return None
    return Ended(row["status"], woken_runs(row["woken"]))


@dataclass(frozen=True)
class RunEnd:
    status: str
    error: Any


def get_run_end(conn: Conn, run_id: str) -> RunEnd | None:
    """A run's status and error, for monitors (whoever's run it is)."""
    row = conn.execute(query("get_run_end"), {"run_id": run_id}).fetchone()
    return RunEnd(row["status"], row["error"]) if row else None


@dataclass(frozen=True)
class HandedBack:
    due: datetime
    status: str  # STOPPING when a stop was asked meanwhile
    woken: tuple[Woken, ...] = ()


def schedule_retry(conn: Conn, claim: Claim, attempt: AttemptEnd, delay_seconds: float, *,
                   published: bool, malformed: bool = False,
                   freed: Freed | None = None) -> HandedBack | None:
    """Hand the run back for a new attempt after a delay; its provider job, if any,
    is forgotten, and a run waiting for each slot it freed is handed back. None when
    this attempt no longer holds the run."""
    row = conn.execute(query("schedule_retry"), {
        **slot_params(freed),
        "run_id": claim.run_id, "lease_token": claim.lease_token, "number": claim.attempt,
        "delay_seconds": delay_seconds, "outcome": attempt.outcome,
        "http_status": attempt.http_status, "message": attempt.message,
        "malformed": int(malformed), "published": published,
    }).fetchone()
    return HandedBack(row["next_attempt_at"], row["status"], woken_runs(row["woken"])) \
        if row else None


def follow_run(conn: Conn, claim: Claim, provider_state: Any, delay_seconds: float, *,
               published: bool, freed: Freed | None = None) -> HandedBack | None:
    """Keep the provider's job state and hand the run back until the next check (it
    keeps its provider's slot; a run waiting for its caller's is handed back). None
    when this attempt no longer holds the run."""
    row = conn.execute(query("follow_run"), {
        "run_id": claim.run_id, "lease_token": claim.lease_token,
        "provider_state": _json(provider_state), "delay_seconds": delay_seconds,
        "published": published, "caller_freed": bool(freed and freed.caller),
    }).fetchone()
    return HandedBack(row["next_attempt_at"], row["status"], woken_runs(row["woken"])) \
        if row else None


def renew_leases(conn: Conn, tokens: list[uuid.UUID], lease_seconds: int) -> int:
    cursor = conn.execute(query("renew_leases"), {"tokens": tokens,
                                                  "lease_seconds": lease_seconds})
    return cursor.rowcount


# --- the sweeper ------------------------------------------------------------------


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
    row = conn.execute(query("end_unheld_run"), {
        "run_id": run_id, "status": status, "error": _json(error), "outcome": outcome,
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


def hand_back_runs(conn: Conn, owner_prefix: str) -> list[str]:
    """Release every run whose lease owner starts with `owner_prefix`."""
    pattern = owner_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute(query("hand_back_runs"), {"owner_prefix": pattern}).fetchall()
    return [r["id"] for r in rows]


# --- wallets ------------------------------------------------------------------------


@dataclass(frozen=True)
class Wallet:
    caller: str
    balance_micros: int
    held_micros: int

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.held_micros


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    caller: str
    run_id: str | None
    kind: str
    amount_micros: int
    note: str | None
    created_at: datetime


def ensure_wallet(conn: Conn, caller: str) -> None:
    conn.execute(query("ensure_wallet"), {"caller": caller})


def get_wallet(conn: Conn, caller: str) -> Wallet:
    row = conn.execute(query("get_wallet"), {"caller": caller}).fetchone()
    return Wallet(**row) if row else Wallet(caller, 0, 0)


def credit_wallet(conn: Conn, caller: str, amount_micros: int, note: str | None = None
                  ) -> Wallet:
    if amount_micros <= 0:
        raise ValueError("a credit must be positive")
    row = conn.execute(query("credit_wallet"), {"caller": caller, "amount": amount_micros,
                                                "note": note}).fetchone()
    assert row is not None
    return Wallet(**row)


def list_ledger_entries(conn: Conn, caller: str, limit: int = 20) -> list[LedgerEntry]:
    rows = conn.execute(query("list_ledger_entries"), {"caller": caller, "limit": limit})
    return [LedgerEntry(**r) for r in rows]


# --- stop and idempotency -------------------------------------------------------------


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


class IdempotencyKeyTaken(Exception):
    """The caller used this Idempotency-Key in the last 24 hours."""


@dataclass(frozen=True)
class StartedRun:
    """What a run was when it was accepted."""

    id: str
    caller: str
    provider: str
    provider_name: str
    endpoint: str
    price: Price
    created_at: datetime


@dataclass(frozen=True)
class IdempotentAnswer:
    request_hash: bytes
    run: StartedRun  # the run the key started


def claim_idempotency_key(conn: Conn, *, caller: str, key: str, request_hash: bytes,
                          run_id: str) -> None:
    """Record the key with the run it started; IdempotencyKeyTaken (roll back) when
    the caller used it in the last 24 hours."""
    row = conn.execute(query("claim_idempotency_key"), {
        "caller": caller, "key": key, "request_hash": request_hash,
        "run_id": run_id}).fetchone()
    if row is None:
        raise IdempotencyKeyTaken(key)


def find_idempotency_key(conn: Conn, caller: str, key: str) -> IdempotentAnswer | None:
    """The key, if the caller used it in the last 24 hours, with the run it started."""
    row = conn.execute(query("find_idempotency_key"), {"caller": caller, "key": key}).fetchone()
    if row is None:
        return None
    run = StartedRun(row["run_id"], row["caller"], row["provider"], row["provider_name"],
                     row["endpoint"], Price(row["price_type"], row["price_micros"],
                                            row["flat_fee_micros"]), row["created_at"])
    return IdempotentAnswer(bytes(row["request_hash"]), run)


def delete_expired_idempotency_keys(conn: Conn, limit: int = 1000) -> int:
    return conn.execute(query("delete_expired_idempotency_keys"), {"limit": limit}).rowcount

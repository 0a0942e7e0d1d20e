"""Claims and leases: a worker takes a run with one guarded UPDATE (or parks it until a
slot it needs frees), and only the holder of the lease ends it, hands it back for a
retry, or keeps following its provider job. Live workers renew their leases; one on
its way out hands back all it holds."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.db import Conn, json_param, query
from shared.ids import random_uuid
from shared.jsontext import dumps
from shared.scheduling import Freed, Limits


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
    if not (limits.by_key or full_callers):  # nothing to wait for: the plain claim
        return claim_runs(conn, [run_id], worker=worker, lease_seconds=lease_seconds)[0]
    token = random_uuid()
    row = conn.execute(query("claim_run_or_wait"), {
        "run_id": run_id, "worker": worker, "lease_seconds": lease_seconds,
        "lease_token": token, "full_callers": list(full_callers),
        "limits": limits.as_json(),
    }).fetchone()
    if row is None:
        return None
    if row["waiting_for"] is not None:
        return Waiting(row["id"], row["waiting_for"], row["caller"])
    return _claim(row, token)


def claim_runs(conn: Conn, run_ids: Sequence[str], *, worker: str,
               lease_seconds: int) -> list[Claim | None]:
    """Take runs for this worker, each as `claim_run` takes it where nothing is to be
    waited for, in one statement: the claim of each, in the order given (None where
    there is nothing to take; a run given twice is taken once)."""
    tokens = [random_uuid() for _ in run_ids]
    asked = dumps([[run_id, str(token)] for run_id, token in zip(run_ids, tokens, strict=True)])
    rows = conn.execute(query("claim_runs"), {
        "asked": asked, "worker": worker, "lease_seconds": lease_seconds,
    }).fetchall()
    taken = {row["lease_token"]: row for row in rows}
    return [_claim(taken[token], token) if token in taken else None for token in tokens]


def _claim(row: Any, token: uuid.UUID) -> Claim:
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


def get_run_caller(conn: Conn, run_id: str) -> str | None:
    """Whose run it is (None: no such run)."""
    row = conn.execute(query("get_run_caller"), {"run_id": run_id}).fetchone()
    return None if row is None else str(row["caller"])


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
        "status": status, "output": json_param(output), "result_count": result_count,
        "provider_response": json_param(provider_response), "error": json_param(error),
        "cost_micros": cost_micros, "outcome": attempt.outcome,
        "http_status": attempt.http_status, "message": attempt.message,
    }).fetchone()
    if row is None:
        return None
    return Ended(row["status"], woken_runs(row["woken"]))


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
        "provider_state": json_param(provider_state), "delay_seconds": delay_seconds,
        "published": published, "caller_freed": bool(freed and freed.caller),
    }).fetchone()
    return HandedBack(row["next_attempt_at"], row["status"], woken_runs(row["woken"])) \
        if row else None


def renew_leases(conn: Conn, tokens: list[uuid.UUID], lease_seconds: int) -> int:
    cursor = conn.execute(query("renew_leases"), {"tokens": tokens,
                                                  "lease_seconds": lease_seconds})
    return cursor.rowcount


def hand_back_runs(conn: Conn, owner_prefix: str) -> list[str]:
    """Release every run whose lease owner starts with `owner_prefix`."""
    pattern = owner_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute(query("hand_back_runs"), {"owner_prefix": pattern}).fetchall()
    return [r["id"] for r in rows]

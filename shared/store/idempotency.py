"""Idempotency keys: a key a caller sent, kept 24 hours with the run it started."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.catalog import Price
from shared.db import Conn, query


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

"""Webhook deliveries as the workers send them: `verb_noun(conn, ...)`; the caller owns
the transaction.

A delivery is due while PENDING and `next_attempt_at` has passed. Publishing one marks
it (`lease_until` without a token) so that it is not published again until the mark
passes; a sender takes it with a lease and a token of its own, sends outside any
transaction, and records the try only while it still holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Conn, query


@dataclass(frozen=True)
class TakenDelivery:
    id: str
    event_id: str  # the `webhook-id` of every try
    endpoint_id: str | None  # None: the run's own webhook
    caller: str
    url: str
    attempt_count: int  # tries before this one
    event_type: str
    payload: dict[str, Any]
    event_created_at: datetime
    endpoint_enabled: bool | None  # None: no standing webhook (or it was deleted)


@dataclass(frozen=True)
class RecordedTry:
    delivery_id: str
    next_retry_at: datetime | None


def publish_due_deliveries(conn: Conn, *, hold_seconds: float, limit: int) -> list[str]:
    """Due deliveries nobody holds or published lately, marked published: their IDs,
    in turns among the callers who have any (each one's oldest first), the order to
    publish them in."""
    rows = conn.execute(query("publish_due_deliveries"),
                        {"hold_seconds": hold_seconds, "limit": limit}).fetchall()
    return [r["id"] for r in rows]


def publish_deliveries_of(conn: Conn, keys: Sequence[str], *, hold_seconds: float,
                          limit: int) -> list[str]:
    """As `publish_due_deliveries`, among the deliveries of these events (or these
    deliveries)."""
    rows = conn.execute(query("publish_deliveries_of"),
                        {"keys": list(keys), "hold_seconds": hold_seconds,
                         "limit": limit}).fetchall()
    return [r["id"] for r in rows]


def take_delivery(conn: Conn, delivery_id: str, *, token: str,
                  lease_seconds: float) -> TakenDelivery | None:
    """The delivery, held by `token`, if it is due and nobody else holds it."""
    row = conn.execute(query("take_delivery"), {"id": delivery_id, "token": token,
                                                "lease_seconds": lease_seconds}).fetchone()
    if row is None:
        return None
    return TakenDelivery(**row)


def record_delivery_try(conn: Conn, delivery_id: str, *, token: str, status: str,
                        retry_in: float | None, attempted_at: datetime,
                        status_code: int | None, duration_ms: int, head: str | None,
                        error: str | None) -> RecordedTry | None:
    """Record a try and move the delivery to `status` (PENDING: due in `retry_in`
    seconds); None when `token` no longer holds it (nothing is written)."""
    row = conn.execute(query("record_delivery_try"), {
        "id": delivery_id, "token": token, "status": status, "retry_in": retry_in,
        "attempted_at": attempted_at, "status_code": status_code,
        "duration_ms": duration_ms, "head": head, "error": error}).fetchone()
    return None if row is None else RecordedTry(**row)


def disable_webhook_endpoint(conn: Conn, endpoint_id: str, reason: str) -> bool:
    """Switch a standing webhook off; False if it was off already (or is gone)."""
    return conn.execute(query("disable_webhook_endpoint"),
                        {"id": endpoint_id, "reason": reason}).fetchone() is not None


def hand_back_delivery(conn: Conn, delivery_id: str) -> None:
    """Clear a published delivery's mark (its sender had no room for it now): the next
    sweep publishes it again. A delivery a sender holds is left alone."""
    conn.execute(query("hand_back_delivery"), {"id": delivery_id})

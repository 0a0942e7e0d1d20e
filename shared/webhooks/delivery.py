"""What a delivery sends and what a try leads to, pure: the body of an event (the same
bytes on every try), and the delivery's next state after a try (the retry schedule,
with jitter)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.jsontext import dumps
from shared.timefmt import iso
from shared.webhooks.sender import TryResult

JITTER = 0.2  # each wait of the schedule, up to a fifth shorter or longer


def event_body(event_type: str, created_at: datetime, data: Mapping[str, Any]) -> bytes:
    """`{"type", "timestamp", "data"}`, compact JSON: the same event gives the same bytes
    (jsonb keeps its keys in one order), so every try and redelivery carries the body
    its signature covers and the receiver saw before."""
    return dumps({"type": event_type, "timestamp": iso(created_at), "data": data}).encode()


def retry_wait(schedule: Sequence[float], failed_tries: int,
               rng: random.Random | None = None) -> float | None:
    """Seconds until the next try after `failed_tries` failed ones, jittered; None when
    the schedule is spent."""
    if failed_tries < 1 or failed_tries > len(schedule):
        return None
    return schedule[failed_tries - 1] * (rng or random).uniform(1 - JITTER, 1 + JITTER)


@dataclass(frozen=True)
class NextState:
    status: str  # DELIVERED, PENDING (tried again in `retry_in`), FAILED
    retry_in: float | None
    disable_endpoint: bool  # the receiver answered 410 Gone


def next_state(result: TryResult, tries: int, schedule: Sequence[float],
               rng: random.Random | None = None) -> NextState:
    """Where a delivery goes after its `tries`-th try: 2xx delivered; 410 failed for
    good (and its standing webhook switched off); anything else tried again on the
    schedule, or failed once it is spent."""
    if result.delivered:
        return NextState("DELIVERED", None, False)
    if result.gone:
        return NextState("FAILED", None, True)
    wait = retry_wait(schedule, tries, rng)
    if wait is None:
        return NextState("FAILED", None, False)
    return NextState("PENDING", wait, False)

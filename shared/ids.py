"""Run IDs (ULIDs) and request IDs."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from datetime import datetime

from ulid import ULID

ULID_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

_lock = threading.Lock()
_last = [0]  # the last run ID made here, as a number


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _randomness() -> int:
    return int.from_bytes(os.urandom(10), "big")


def new_run_id() -> str:
    """A ULID, monotonic within this process: IDs made one after another sort in that
    order, within one millisecond too (the last one plus one, as ULID's monotonic mode).
    The random part is drawn before the lock is taken: os.urandom lets go of the GIL,
    and a thread that did so while holding the lock kept every other accept of its
    process waiting until it had the GIL back."""
    value = _now_ms() << 80 | _randomness()
    with _lock:
        last = _last[0]
        if value <= last:
            value = last + 1
        _last[0] = value
    return str(ULID.from_bytes(value.to_bytes(16, "big")))


def is_run_id(value: str) -> bool:
    return bool(ULID_PATTERN.fullmatch(value))


def sane_request_id(value: str | None) -> str:
    """Echo a client's request ID when it is sane, else make a new one."""
    if value and _REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return uuid.uuid4().hex


def run_id_floor(at: datetime) -> str:
    """The smallest run ID a run accepted at `at` (or later) can have: a lower bound of
    a time range on the runs' primary key."""
    millis = max(0, int(at.timestamp() * 1000))
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + bytes(10)))

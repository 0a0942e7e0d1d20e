"""Run IDs (ULIDs) and request IDs."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import datetime

from ulid import ULID

ULID_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

_lock = threading.Lock()
_last: list[bytes] = [b""]


def new_run_id() -> str:
    """A ULID, monotonic within this process so IDs made in one millisecond still sort."""
    with _lock:
        candidate = ULID().bytes
        last = _last[0]
        if last and candidate[:6] == last[:6] and candidate <= last:
            candidate = (int.from_bytes(last, "big") + 1).to_bytes(16, "big")
        _last[0] = candidate
    return str(ULID.from_bytes(candidate))


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

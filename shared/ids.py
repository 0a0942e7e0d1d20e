"""Run IDs (ULIDs), request IDs, and the random bytes they and other IDs are made of."""

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


class _RandomBytes:
    """os.urandom's bytes, drawn a few KiB at a time. os.urandom lets go of the GIL, and
    under load a thread that does so waits for its turn among every runnable thread of
    its process before it runs again: once an ID, that wait was paid by every accept
    (its run ID, its request ID) and every message and claim. Drawn once for about 400
    IDs, it is paid once for them. A forked child draws its own (it must not hand out
    its parent's bytes); the draw is made outside the lock, so that no thread waits for
    another's wait."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._used = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buffer, self._used = b"", 0

    def take(self, n: int) -> bytes:
        if n > self.SIZE:
            return os.urandom(n)
        while True:
            with self._lock:
                if self._used + n <= len(self._buffer):
                    self._used += n
                    return self._buffer[self._used - n:self._used]
            fresh = os.urandom(self.SIZE)
            with self._lock:
                if self._used + n > len(self._buffer):
                    self._buffer, self._used = fresh, 0


_random = _RandomBytes()


def random_bytes(n: int) -> bytes:
    """`n` bytes from the operating system's random source."""
    return _random.take(n)


def random_uuid() -> uuid.UUID:
    """A random (version 4) UUID, as `uuid.uuid4()` makes, from `random_bytes`."""
    return uuid.UUID(bytes=random_bytes(16), version=4)


def _randomness() -> int:
    return int.from_bytes(random_bytes(10), "big")


def new_run_id() -> str:
    """A ULID, monotonic within this process: IDs made one after another sort in that
    order, within one millisecond too (the last one plus one, as ULID's monotonic mode).
    The random part is drawn before the lock is taken: were os.urandom called under it
    (it lets go of the GIL), every other accept of the process would wait for it."""
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
    return random_uuid().hex


def run_id_floor(at: datetime) -> str:
    """The smallest run ID a run accepted at `at` (or later) can have: a lower bound of
    a time range on the runs' primary key."""
    millis = max(0, int(at.timestamp() * 1000))
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + bytes(10)))

"""When each API key was last used, without a write per request.

A web process notes each key's last use in memory (`KeyUse.record`, a dictionary
write under a lock) and writes what it noted in one statement at most once every
`API_KEY_LAST_USED_FLUSH_SECONDS` (default 60): the first request after that long
takes the notes and writes them, every other thread goes on without waiting. A
time is never moved backwards, so processes writing in any order agree. A key's
`lastUsedAt` is thus late by at most that long (plus the time to the next request of
the process that saw the use); a process that dies loses at most its last interval's
notes. A failed write puts its notes back for the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from shared import store
from shared.db import Conn

log = logging.getLogger("monid.keys")


class KeyUse:
    def __init__(self, flush_seconds: float) -> None:
        self.flush_seconds = flush_seconds
        self._used: dict[int, datetime] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flushed_at = time.monotonic()

    def record(self, key_id: int) -> None:
        now = datetime.now(UTC)
        with self._lock:
            self._used[key_id] = now

    def noted(self, key_id: int) -> datetime | None:
        """The use of the key this process noted and has not written yet."""
        return self._used.get(key_id)

    def due(self) -> bool:
        return bool(self._used) and \
            time.monotonic() - self._flushed_at >= self.flush_seconds

    def take(self) -> dict[int, datetime] | None:
        """The notes to write, when a write is due and no other thread is writing;
        `done` must follow."""
        if not self.due() or not self._flushing.acquire(blocking=False):
            return None
        with self._lock:
            taken, self._used = self._used, {}
            self._flushed_at = time.monotonic()
        return taken

    def done(self, taken: dict[int, datetime], *, written: bool) -> None:
        if not written:
            with self._lock:
                for key_id, used_at in taken.items():
                    if key_id not in self._used or self._used[key_id] < used_at:
                        self._used[key_id] = used_at
        self._flushing.release()

    def flush(self, conn: Conn) -> None:
        """Write the notes now, whether due or not (tests, shutdown)."""
        with self._lock:
            taken, self._used = self._used, {}
            self._flushed_at = time.monotonic()
        if taken:
            store.record_api_keys_used(conn, taken)

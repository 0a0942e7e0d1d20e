"""A short-lived cache of API key lookups, per web process.

Under load every request would otherwise read its key from PostgreSQL. A key
found is reused for `API_KEY_CACHE_SECONDS`, so a revoked key is refused
within that long on every web process. Keys not found are never cached: a
client sending random keys cannot fill the cache, and a new key works at once.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 10_000


class KeyCache(Generic[T]):
    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> T | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, value = entry
        if time.monotonic() >= expires:
            self._entries.pop(digest, None)
            return None
        return value

    def put(self, digest: bytes, value: T) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[digest] = (time.monotonic() + self.ttl, value)

    def discard(self, digest: bytes) -> None:
        """Forget a key (this process refuses it at once once it is revoked)."""
        with self._lock:
            self._entries.pop(digest, None)

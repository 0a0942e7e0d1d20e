"""Waiting for runs to end, for `GET /v1/runs/:runId?wait=N`.

One thread per web process LISTENs on PostgreSQL's `monid_run_ended`
channel (a trigger notifies it when a run ends) and wakes the requests waiting
on that run. A waiting request holds one of the process's threads but no
database connection; a semaphore keeps some threads free for every other
request, and a request that finds no free waiting slot is answered at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

log = logging.getLogger("monid.api")

CHANNEL = "monid_run_ended"
# However quiet the channel, a waiter looks at the database this often: a
# notification lost while the listener reconnects cannot keep it waiting.
RECHECK_SECONDS = 5.0


class RunWaiter:
    def __init__(self, database_url: str, slots: int) -> None:
        self.database_url = database_url
        self.slots = threading.BoundedSemaphore(max(1, slots))
        self._waiters: dict[str, list[threading.Event]] = {}
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()

    def close(self) -> None:
        """Stop listening (within RECHECK_SECONDS); waiters go on polling."""
        self._closed.set()

    def _ensure_listening(self) -> None:
        with self._lock:
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._listen, name="monid-listen",
                                                  daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True,
                                     connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._wake_all()  # anything missed while not listening
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=RECHECK_SECONDS):
                            self._wake(note.payload)
            except Exception as exc:  # the database went away: listen again shortly
                log.warning("run listener lost its connection", extra={"error": str(exc)})
                self._wake_all()
                self._closed.wait(1.0)

    def _wake(self, run_id: str) -> None:
        with self._lock:
            events = self._waiters.get(run_id, [])
            for event in events:
                event.set()

    def _wake_all(self) -> None:
        with self._lock:
            for events in self._waiters.values():
                for event in events:
                    event.set()

    def wait(self, run_id: str, seconds: float, ended: Callable[[], bool]) -> bool:
        """Wait until `ended()` is true or `seconds` pass; False when no waiting
        slot was free (the caller answers at once)."""
        if not self.slots.acquire(blocking=False):
            return False
        event = threading.Event()
        try:
            self._ensure_listening()
            with self._lock:
                self._waiters.setdefault(run_id, []).append(event)
            deadline = time.monotonic() + seconds
            while not ended():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                event.wait(min(left, RECHECK_SECONDS))
                event.clear()
            return True
        finally:
            with self._lock:
                events = self._waiters.get(run_id, [])
                if event in events:
                    events.remove(event)
                if not events:
                    self._waiters.pop(run_id, None)
            self.slots.release()

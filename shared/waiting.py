"""Waiting for runs to end (`GET /v1/runs/:runId?wait=N`, and any other caller of
the service layer that waits).

One thread per web process LISTENs on PostgreSQL's `monid_run_ended`
channel (a trigger notifies it when a run ends) and wakes the requests waiting
on that run. A waiting request holds one of the process's threads but no
database connection; a fixed number of waiting slots keeps some threads free for
every other request.

The slots are shared fairly between callers: when none is free, a caller's
request takes one from the caller holding the most, if that one holds at least
two more than it does (the oldest of its waits is answered at once, with the run
as it is); otherwise the request is answered at once. One caller can use every
slot nobody else wants, and never keep another caller from its share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.db import connect, listen

log = logging.getLogger("monid.api")

CHANNEL = "monid_run_ended"
# However quiet the channel, a waiter looks at the database this often: a
# notification lost while the listener reconnects cannot keep it waiting.
RECHECK_SECONDS = 5.0


@dataclass(eq=False)
class _Slot:
    """A waiting request's hold on one of the slots."""

    caller: str
    event: threading.Event = field(default_factory=threading.Event)
    taken_back: bool = False  # given to another caller's request


class RunWaiter:
    def __init__(self, database_url: str, slots: int) -> None:
        self.database_url = database_url
        self.slots = max(1, slots)
        self._in_use = 0
        self._held: dict[str, list[_Slot]] = {}  # by caller, oldest first
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
                with connect(self.database_url, autocommit=True) as conn:
                    listen(conn, CHANNEL)
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

    def held(self) -> dict[str, int]:
        """How many slots each caller holds now."""
        with self._lock:
            return {caller: len(slots) for caller, slots in self._held.items()}

    def _take_slot(self, caller: str) -> _Slot | None:
        with self._lock:
            if self._in_use < self.slots:
                self._in_use += 1
            else:
                mine = len(self._held.get(caller, ()))
                richest = max(self._held, key=lambda c: len(self._held[c]), default=None)
                if richest is None or len(self._held[richest]) < mine + 2:
                    return None
                given_up = self._held[richest].pop(0)
                if not self._held[richest]:
                    del self._held[richest]
                given_up.taken_back = True
                given_up.event.set()
            slot = _Slot(caller)
            self._held.setdefault(caller, []).append(slot)
            return slot

    def _give_back(self, slot: _Slot) -> None:
        with self._lock:
            if slot.taken_back:
                return  # it is another request's slot now
            self._held[slot.caller].remove(slot)
            if not self._held[slot.caller]:
                del self._held[slot.caller]
            self._in_use -= 1

    def wait(self, run_id: str, seconds: float, ended: Callable[[], bool],
             caller: str = "") -> bool:
        """Wait until `ended()` is true or `seconds` pass; False when no waiting
        slot was free for `caller` (the caller answers at once). A wait whose slot is
        taken back for a fairer share ends early."""
        slot = self._take_slot(caller)
        if slot is None:
            return False
        try:
            self._ensure_listening()
            with self._lock:
                self._waiters.setdefault(run_id, []).append(slot.event)
            deadline = time.monotonic() + seconds
            while not slot.taken_back and not ended():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                slot.event.wait(min(left, RECHECK_SECONDS))
                slot.event.clear()
            return True
        finally:
            with self._lock:
                events = self._waiters.get(run_id, [])
                if slot.event in events:
                    events.remove(slot.event)
                if not events:
                    self._waiters.pop(run_id, None)
            self._give_back(slot)

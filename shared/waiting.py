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

Live event streams of runs (`shared.events`) take their slots from the same ones,
so that waits and streams together always leave the process its reserved threads,
within their own bounds (per process and per caller); a stream's slot is never
taken back. A stream is woken by its run's end and, on the second channel
`monid_run_changed` (notified only for runs somebody follows, migration 0021), by
its run's other changes.
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
CHANGED_CHANNEL = "monid_run_changed"
# However quiet the channel, a waiter looks at the database this often: a
# notification lost while the listener reconnects cannot keep it waiting.
RECHECK_SECONDS = 5.0


@dataclass(eq=False)
class _Slot:
    """A waiting request's hold on one of the slots."""

    caller: str
    event: threading.Event = field(default_factory=threading.Event)
    taken_back: bool = False  # given to another caller's request


class StreamsFull(Exception):
    """No stream slot free: `per_caller` says whether the caller's own bound is reached
    (otherwise the process's)."""

    def __init__(self, *, per_caller: bool) -> None:
        super().__init__("per caller" if per_caller else "per process")
        self.per_caller = per_caller


@dataclass(eq=False)
class StreamSlot:
    """An open event stream's hold on one of the slots; `event` is set when its run
    changes or ends (or the process stops listening)."""

    caller: str
    event: threading.Event = field(default_factory=threading.Event)
    run_id: str | None = None
    released: bool = False


class RunWaiter:
    def __init__(self, database_url: str, slots: int) -> None:
        self.database_url = database_url
        self.slots = max(1, slots)
        self._in_use = 0
        self._held: dict[str, list[_Slot]] = {}  # by caller, oldest first
        self._waiters: dict[str, list[threading.Event]] = {}
        # Open streams: how many each caller holds, and the streams following each run.
        self._streams: dict[str, int] = {}
        self._watchers: dict[str, list[threading.Event]] = {}
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()
        self._streams_ending = threading.Event()  # the process is shutting down

    def close(self) -> None:
        """Stop listening (within RECHECK_SECONDS); waiters go on polling, streams end."""
        self._closed.set()
        self._wake_all()

    @property
    def closed(self) -> bool:
        """Whether open streams should end now (the process is stopping)."""
        return self._closed.is_set() or self._streams_ending.is_set()

    def end_streams(self) -> None:
        """End every open stream now and open no more (a process shutting down: its
        clients reconnect elsewhere with Last-Event-ID); waits go on."""
        self._streams_ending.set()
        with self._lock:
            for events in self._watchers.values():
                for event in events:
                    event.set()

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
                    listen(conn, CHANGED_CHANNEL)
                    self._wake_all()  # anything missed while not listening
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=RECHECK_SECONDS):
                            self._wake(note.payload, ended=note.channel == CHANNEL)
            except Exception as exc:  # the database went away: listen again shortly
                log.warning("run listener lost its connection", extra={"error": str(exc)})
                self._wake_all()
                self._closed.wait(1.0)

    def _wake(self, run_id: str, *, ended: bool = True) -> None:
        with self._lock:
            for event in self._watchers.get(run_id, []):
                event.set()
            if ended:
                for event in self._waiters.get(run_id, []):
                    event.set()

    def _wake_all(self) -> None:
        with self._lock:
            for registry in (self._waiters, self._watchers):
                for events in registry.values():
                    for event in events:
                        event.set()

    # --- event streams -------------------------------------------------------------

    def open_stream(self, caller: str, *, per_caller: int, per_process: int) -> StreamSlot:
        """A slot for an event stream of `caller`'s, out of the same slots as waits;
        StreamsFull when the caller holds `per_caller` streams already, or the process
        `per_process` (or every slot is taken)."""
        with self._lock:
            if self._streams.get(caller, 0) >= per_caller:
                raise StreamsFull(per_caller=True)
            if sum(self._streams.values()) >= per_process or self._in_use >= self.slots \
                    or self._streams_ending.is_set():
                raise StreamsFull(per_caller=False)
            self._in_use += 1
            self._streams[caller] = self._streams.get(caller, 0) + 1
        return StreamSlot(caller)

    def follow(self, slot: StreamSlot, run_id: str) -> None:
        """Wake the stream's `event` whenever the run changes or ends, from now on while
        the listener listens (`listen`), and once more as soon as it starts to."""
        with self._lock:
            slot.run_id = run_id
            self._watchers.setdefault(run_id, []).append(slot.event)

    def listen(self) -> None:
        """Have the listener listen (it starts at the first wait or stream)."""
        self._ensure_listening()

    def close_stream(self, slot: StreamSlot) -> None:
        """Give the slot back (a second time does nothing)."""
        with self._lock:
            if slot.released:
                return
            slot.released = True
            if slot.run_id is not None:
                events = self._watchers.get(slot.run_id, [])
                if slot.event in events:
                    events.remove(slot.event)
                if not events:
                    self._watchers.pop(slot.run_id, None)
            self._streams[slot.caller] -= 1
            if not self._streams[slot.caller]:
                del self._streams[slot.caller]
            self._in_use -= 1

    def streams(self) -> dict[str, int]:
        """How many streams each caller holds open now."""
        with self._lock:
            return dict(self._streams)

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

"""Writes of many threads put together: group commit in a process.

Each of a worker process's threads claims and ends its own runs (and each of a web
process's threads accepts its own, `shared.accepts`). Under load many of them
write at the same moment, and a statement each costs PostgreSQL a statement's start
and a commit (a flush of the WAL) for every run. A `Group` lets one thread at a time
write: a thread that finds nobody writing writes its own part at once, so at low load
nothing waits and a statement holds one run. The parts handed in while a write is
under way wait for it to end; the first of them then writes all of them (up to
`most`) in one statement, and each thread gets its own answer back.

While the process is busy (its last write took in parts that had waited), a thread
that takes the lead first waits up to `linger` (WORKER_GROUP_LINGER_MS) for others
to hand theirs in, or until `most` have: a statement of one or two runs costs
PostgreSQL and the worker nearly as much as one of ten, and a run's end some
milliseconds later costs the run nothing. At low load nothing lingers: a part that
follows a write of one part alone is written at once.

With `writers` above 1, that many writes may be under way at once, each on a
connection of its own: a part is written at once while fewer are, and what waits
goes in the next to start.

A write that fails fails for every part in it (each thread handles the error as it
would its own statement's). A write that one part spoils for the others (a deadlock
between two groups, a unique key) is the write function's to split up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

# The most parts in one statement: enough to take in every thread of a process that
# is waiting, small enough that one statement stays short.
MOST = 64


class _Part(Generic[A, R]):
    __slots__ = ("answer", "error", "item", "leads", "ready")

    def __init__(self, item: A) -> None:
        self.item = item
        self.ready = threading.Event()
        self.leads = False
        self.answer: R | None = None
        self.error: BaseException | None = None


class Group(Generic[A, R]):
    """Parts of many threads written together by `write` (which answers each part,
    in the order given)."""

    def __init__(self, write: Callable[[Sequence[A]], Sequence[R]], *, most: int = MOST,
                 linger: float = 0.0, writers: int = 1) -> None:
        self._write = write
        self._most = most
        self._linger = linger
        self._writers = writers
        self._lock = threading.Lock()
        self._full = threading.Condition(self._lock)  # notified when `most` parts wait
        self._waiting: list[_Part[A, R]] = []
        self._writing = 0  # writes under way
        # Whether the last write took in parts that had waited (the process is busy).
        self._had_company = False
        # How many writes and how many parts they held (for tests and benchmarks).
        self.writes = 0
        self.parts = 0

    @property
    def waiting(self) -> int:
        """How many parts wait for a write under way to end."""
        with self._lock:
            return len(self._waiting)

    def submit(self, item: A) -> R:
        """Write `item` with whatever else waits; its answer (or its write's error)."""
        part: _Part[A, R] = _Part(item)
        with self._lock:
            if self._writing >= self._writers:
                self._waiting.append(part)
                if len(self._waiting) == self._most - 1:
                    self._full.notify()
            else:
                self._writing += 1
                part.leads = True
        if not part.leads:
            part.ready.wait()
        if part.leads:
            self._lead(part)
        if part.error is not None:
            raise part.error
        return part.answer  # type: ignore[return-value]

    def _lead(self, part: _Part[A, R]) -> None:
        """Write this part and those waiting, then hand the lead to the next waiting."""
        with self._lock:
            if self._linger > 0 and self._had_company:
                self._full.wait_for(lambda: len(self._waiting) >= self._most - 1,
                                    timeout=self._linger)
            batch = [part, *self._waiting[:self._most - 1]]
            del self._waiting[:self._most - 1]
            self._had_company = len(batch) > 1
            self.writes += 1
            self.parts += len(batch)
        try:
            answers = self._write([p.item for p in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for {len(batch)} parts")
            for p, answer in zip(batch, answers, strict=True):
                p.answer = answer
        except BaseException as exc:  # every part's thread raises it as its own
            for p in batch:
                p.error = exc
        finally:
            with self._lock:
                if self._waiting:
                    following = self._waiting.pop(0)
                    following.leads = True
                    following.ready.set()
                else:
                    self._writing -= 1
            for p in batch:
                if p is not part:
                    p.ready.set()

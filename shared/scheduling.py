"""Fair scheduling: who may start a run now, and how soon a message is taken.

Two mechanisms, both in every worker and web process, none a process of its own:

- **Concurrency slots.** A worker process gives one caller at most
  `CALLER_CONCURRENCY` of its threads at once, so every process always has threads
  for other callers; a run over it first waits a moment in the process for one of
  its caller's threads to free (`CALLER_WAIT_SECONDS`, while at most a quarter of
  the process's threads wait so), then waits parked in PostgreSQL
  (`runs.waiting_for`), and the process hands one back to the queue when it frees
  a thread of that caller's. Providers and endpoints with a concurrency limit (the
  catalog's `maxConcurrent`, `PROVIDER_CONCURRENCY`) have slots counted in
  PostgreSQL, exactly, under an advisory lock; the run that frees one hands the
  next waiting run back, to the waiting caller holding the fewest first. The
  sweeper hands back what a dead worker left waiting. See `monid_claim` and
  `monid_wake` (migration 0009).
- **Message priorities** on Redis (kombu's priority lists, which a worker reads
  in order): a run is published with a priority from how busy its caller is, so
  a caller with a few runs is served before another caller's backlog.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from psycopg.types.json import Jsonb

from shared.catalog import Catalog
from shared.settings import Settings, SettingsError

# Redis priorities, lowest first (kombu's default steps). A caller's runs (those it
# started in the last few seconds, or its open runs) up to each bound get that
# priority: a few come first, a backlog of more than 100 last.
PRIORITY_BOUNDS = ((3, 0), (30, 3), (100, 6))
LOWEST_PRIORITY = 9
# How long a web process remembers the runs a caller started, for their priority.
RECENT_SECONDS = 10.0


def priority_for(runs: int | None) -> int:
    """The message priority of a run whose caller has `runs` runs going: 0 (first) for
    a caller with a few, 9 for a caller with a backlog of over a hundred."""
    for bound, priority in PRIORITY_BOUNDS:
        if (runs or 0) <= bound:
            return priority
    return LOWEST_PRIORITY


class RecentStarts:
    """How many runs each caller started in this process in the last RECENT_SECONDS:
    a flood shows at once, and the database is not asked. Counts past the
    priorities' last bound are not kept."""

    def __init__(self, window: float = RECENT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._starts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def note(self, caller: str) -> int:
        """Count a start of `caller`'s; how many it made within the window, this one too."""
        now = self.clock()
        with self._lock:
            starts = self._starts.get(caller)
            if starts is None:
                starts = self._starts[caller] = deque(maxlen=PRIORITY_BOUNDS[-1][0] + 1)
            while starts and now - starts[0] > self.window:
                starts.popleft()
            starts.append(now)
            count = len(starts)
            if now - self._swept > self.window:  # callers gone quiet are forgotten
                self._swept = now
                for quiet in [c for c, s in self._starts.items() if now - s[-1] > self.window]:
                    del self._starts[quiet]
            return count


@dataclass(frozen=True)
class Freed:
    """What a run lets go of when it ends or hands itself back, for the statement that
    does it to hand back a run waiting for each: a thread of its caller's in a worker
    process that had none left, and its provider's and endpoint's slots (their
    limits; 0: none)."""

    caller: bool = False
    provider_limit: int = 0
    endpoint_limit: int = 0

    @property
    def wake(self) -> bool:
        return self.caller or self.provider_limit > 0 or self.endpoint_limit > 0


@dataclass(frozen=True)
class Limits:
    """Every concurrency limit of this deployment."""

    # Threads of one worker process that one caller's runs may hold (0: no limit).
    caller: int = 0
    # By provider slug ("apify") and by provider and endpoint path ("apify/a/b").
    by_key: Mapping[str, int] = field(default_factory=dict)
    # How long a run of a caller with every thread it may have waits in its worker
    # process for one to free before it is parked, and how many runs of a process may
    # wait so at once (0: parked at once).
    caller_wait: float = 0.0
    caller_waiters: int = 0

    def freed(self, provider: str, endpoint: str, *, caller: bool = False) -> Freed:
        """What a run of this provider and endpoint frees (`caller`: also a thread of its
        caller's in a worker process that had none left)."""
        return Freed(caller, self.by_key.get(provider, 0), self.by_key.get(provider + endpoint, 0))

    def for_slot(self, slot: str) -> int:
        """The limit of a slot a run waits for (`caller`, `provider:<key>`,
        `endpoint:<key>`); 0 when it has none (any longer)."""
        if slot == "caller":
            return self.caller
        return self.by_key.get(slot.partition(":")[2], 0)

    def as_json(self) -> Jsonb:
        return Jsonb(dict(self.by_key))


def concurrency_limits(settings: Settings, catalog: Catalog) -> Limits:
    """The catalog's limits with the settings' over them; a setting that names no
    provider or endpoint of the catalog is a configuration error."""
    by_key: dict[str, int] = dict(catalog.provider_limits)
    by_key.update({e.provider + e.path: e.max_concurrent for e in catalog.all()
                   if e.max_concurrent is not None})
    known = set(catalog.provider_names) | {e.provider + e.path for e in catalog.all()}
    for key, limit in settings.provider_concurrency.items():
        if key not in known:
            raise SettingsError("PROVIDER_CONCURRENCY",
                                f"is malformed: {key!r} is no provider or endpoint of the "
                                "catalog (write provider=N or provider/endpoint/path=N)")
        by_key[key] = limit
    caller = settings.caller_concurrency
    return Limits(caller=caller, by_key=by_key,
                  caller_wait=settings.caller_wait_seconds if caller else 0.0,
                  caller_waiters=settings.worker_concurrency // 4 if caller else 0)

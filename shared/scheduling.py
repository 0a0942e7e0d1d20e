"""Fair scheduling: who may start a run now, and how soon a message is taken.

Two mechanisms, both in every worker and web process, none a process of its own:

- **Concurrency slots**, kept in PostgreSQL. A new attempt needs a free slot of
  its caller (`CALLER_CONCURRENCY` runs of one caller worked on at once) and,
  where the catalog or `PROVIDER_CONCURRENCY` gives one, of its provider and of
  its endpoint. A claim that finds a slot full parks the run in PostgreSQL
  (`runs.waiting_for`); whoever frees a slot hands the next waiting run back to
  the queue, the waiting caller holding the fewest of the slot first, and the
  sweeper fills any slot left free. See `monid_claim` and `monid_wake`
  (migration 0009).
- **Message priorities** on Redis (kombu's priority lists, which a worker reads
  in order): a run is published with a priority from its caller's open runs,
  so a caller with a few runs is served before another caller's backlog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg.types.json import Jsonb

from shared.catalog import Catalog
from shared.settings import Settings, SettingsError

# Redis priorities, lowest first (kombu's default steps). A caller's open runs
# (accepted, not ended) up to each bound get that priority: a few runs come first,
# a backlog of more than 100 last. Counting stops at 101, so it stays cheap.
PRIORITY_BOUNDS = ((3, 0), (30, 3), (100, 6))
LOWEST_PRIORITY = 9


def priority_for(open_runs: int | None) -> int:
    """The message priority of a run whose caller has `open_runs` open runs: 0 (first)
    for a caller with a few, 9 for a caller with a backlog of over a hundred."""
    for bound, priority in PRIORITY_BOUNDS:
        if (open_runs or 0) <= bound:
            return priority
    return LOWEST_PRIORITY


@dataclass(frozen=True)
class SlotLimits:
    """The limits a run is under: its caller's, its provider's, its endpoint's (0: none)."""

    caller: int = 0
    provider: int = 0
    endpoint: int = 0


@dataclass(frozen=True)
class Limits:
    """Every concurrency limit of this deployment."""

    caller: int = 0
    # By provider slug ("apify") and by provider and endpoint path ("apify/a/b").
    by_key: Mapping[str, int] = field(default_factory=dict)

    def for_run(self, provider: str, endpoint: str) -> SlotLimits:
        return SlotLimits(self.caller, self.by_key.get(provider, 0),
                          self.by_key.get(provider + endpoint, 0))

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
    return Limits(caller=settings.caller_concurrency, by_key=by_key)

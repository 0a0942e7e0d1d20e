"""The adapter kinds a catalog may name, and what each says an endpoint's `call` is.

Each provider adapter owns the description of its calls: it registers itself under
the entry point group `monid.adapters` (pyproject.toml), by the name the catalog
gives it, and carries

- `CALL_SCHEMA`: the JSON Schema of an endpoint's `call`;
- optionally `check_call(call, endpoint) -> list[str]`: problems the schema cannot
  see (e.g. a path template naming a parameter the endpoint does not require);
- `from_settings(settings, client)`: the adapter, as a worker makes it.

The catalog finds them through the installed package's metadata, so `shared` names
no adapter and imports nothing of `worker`; a new provider is its adapter's module
and one line in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "monid.adapters"

CallCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]


class AdaptersMissing(Exception):
    """No adapter is registered: the project is not installed (`pip install -e .`)."""


@dataclass(frozen=True, eq=False)  # one of each, compared and hashed by identity
class AdapterKind:
    name: str
    call_schema: Mapping[str, Any]
    check_call: CallCheck | None = None


def kind_of(name: str, adapter: Any) -> AdapterKind:
    """The catalog's view of an adapter class (or any object with `CALL_SCHEMA`)."""
    return AdapterKind(name=name, call_schema=adapter.CALL_SCHEMA,
                       check_call=getattr(adapter, "check_call", None))


@lru_cache(maxsize=1)
def registered_adapters() -> Mapping[str, Any]:
    """Every registered adapter class, by the name the catalog gives it."""
    found = {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if not found:
        raise AdaptersMissing(f"no provider adapters are registered (entry point group "
                              f"{ENTRY_POINT_GROUP!r}): install the project, "
                              "e.g. pip install -e .")
    return found


@lru_cache(maxsize=1)
def adapter_kinds() -> Mapping[str, AdapterKind]:
    """What the catalog checks an endpoint's `call` against, by adapter name."""
    return {name: kind_of(name, adapter) for name, adapter in registered_adapters().items()}

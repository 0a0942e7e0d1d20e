"""The catalog for callers: discover endpoints by what they do, inspect one, list them.

Every answer is read from the synced catalog table (`monidctl catalog sync`), so
every process serves the same catalog. Each endpoint comes with its health
(`metrics`, read from the sweeper's rollup: `shared.health`), and each answer with
`hints` for an agent (`shared.hints`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from shared import cursors, errors, hints
from shared.catalog import Endpoint
from shared.db import autocommit
from shared.health import UNKNOWN, Metrics, read_metrics
from shared.services import Page, Services, page_start
from shared.store.catalog import (
    Match,
    NoSearchableWords,
    get_endpoint,
    list_endpoints,
    search_endpoints,
)


@dataclass(frozen=True)
class Found(Match):
    """A match, with its endpoint's health."""

    metrics: Metrics = UNKNOWN


@dataclass(frozen=True)
class Discovery:
    query: str
    results: list[Found]  # best first
    hints: Mapping[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class Card(Endpoint):
    """An endpoint's card, with its health, and hints on how to run it."""

    metrics: Metrics = UNKNOWN
    hints: Mapping[str, Any] = field(default_factory=dict)


def discover(svc: Services, query: str, *, limit: int) -> Discovery:
    """The endpoints that best match `query` (words), at most `limit`."""
    try:
        with autocommit(svc.pool) as conn:
            matches = search_endpoints(conn, query, limit)
            metrics = read_metrics(conn, [(m.entry.provider, m.entry.path) for m in matches])
    except NoSearchableWords:
        raise errors.InvalidRequest({"query": ["has no words to search for"]}) from None
    found = [Found(m.entry, m.score, metrics[(m.entry.provider, m.entry.path)])
             for m in matches]
    return Discovery(query, found, hints.after_discover([m.entry for m in matches], query))


def inspect(svc: Services, provider: str, endpoint: str) -> Card:
    """An endpoint's whole card; EndpointNotFound, naming the closest there is."""
    entry = None
    # No endpoint's name has a NUL in it, and PostgreSQL refuses one in a text parameter.
    if "\x00" not in provider + endpoint:
        with autocommit(svc.pool) as conn:
            entry = get_endpoint(conn, provider, endpoint)
            metrics = read_metrics(conn, [(provider, endpoint)]) if entry else {}
    if entry is None:
        raise errors.EndpointNotFound(svc.catalog.not_found_message(provider, endpoint))
    card = {f.name: getattr(entry, f.name) for f in fields(Endpoint)}
    return Card(**card, metrics=metrics[(provider, endpoint)],
                hints=hints.after_inspect(entry))


def list_all(svc: Services, *, limit: int, cursor: str | None = None) -> Page[Endpoint]:
    """A page of every endpoint, in (provider, endpoint) order."""
    after = page_start(cursors.decode_endpoints_cursor, cursor)
    with autocommit(svc.pool) as conn:
        entries, more = list_endpoints(conn, limit, after)
    cursor = cursors.encode_endpoints_cursor(entries[-1].provider, entries[-1].path) \
        if more else None
    return Page(entries, cursor)

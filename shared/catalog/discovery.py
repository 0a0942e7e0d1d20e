"""The catalog for callers: discover endpoints by what they do, inspect one, list them.

Every answer is read from the synced catalog table (`monidctl catalog sync`), so
every process serves the same catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import cursors, errors
from shared.catalog import Endpoint
from shared.db import autocommit
from shared.services import Page, Services, page_start
from shared.store.catalog import (
    Match,
    NoSearchableWords,
    get_endpoint,
    list_endpoints,
    search_endpoints,
)


@dataclass(frozen=True)
class Discovery:
    query: str
    results: list[Match]  # best first

    @property
    def count(self) -> int:
        return len(self.results)


def discover(svc: Services, query: str, *, limit: int) -> Discovery:
    """The endpoints that best match `query` (words), at most `limit`."""
    try:
        with autocommit(svc.pool) as conn:
            matches = search_endpoints(conn, query, limit)
    except NoSearchableWords:
        raise errors.InvalidRequest({"query": ["has no words to search for"]}) from None
    return Discovery(query, matches)


def inspect(svc: Services, provider: str, endpoint: str) -> Endpoint:
    """An endpoint's whole card; EndpointNotFound, naming the closest there is."""
    entry = None
    # No endpoint's name has a NUL in it, and PostgreSQL refuses one in a text parameter.
    if "\x00" not in provider + endpoint:
        with autocommit(svc.pool) as conn:
            entry = get_endpoint(conn, provider, endpoint)
    if entry is None:
        raise errors.EndpointNotFound(svc.catalog.not_found_message(provider, endpoint))
    return entry


def list_all(svc: Services, *, limit: int, cursor: str | None = None) -> Page[Endpoint]:
    """A page of every endpoint, in (provider, endpoint) order."""
    after = page_start(cursors.decode_endpoints_cursor, cursor)
    with autocommit(svc.pool) as conn:
        entries, more = list_endpoints(conn, limit, after)
    cursor = cursors.encode_endpoints_cursor(entries[-1].provider, entries[-1].path) \
        if more else None
    return Page(entries, cursor)

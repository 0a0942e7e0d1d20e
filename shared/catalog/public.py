"""The catalog for anyone, without a key (`/public/v1`): its figures, its providers,
a provider's endpoints, an endpoint's card, and search in pages.

Everything is read with `shared.catalog.discovery`'s functions (the synced catalog
table, the same search and ranking as `POST /v1/discover`), only shaped here.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import cursors, errors
from shared.catalog import Endpoint
from shared.catalog.discovery import Discovery, discover, inspect, list_all
from shared.services import Services, page_start

# Search answers at most this many results in all, in pages; `totalIsCapped` says
# when there were more.
SEARCH_TOTAL_CAP = 100
_READ_PAGE = 500


@dataclass(frozen=True)
class Stats:
    provider_count: int
    endpoint_count: int


@dataclass(frozen=True)
class Provider:
    provider: str
    provider_name: str
    endpoint_count: int


@dataclass(frozen=True)
class SearchPage:
    results: Discovery  # this page's matches, best first
    cursor: str | None
    total: int
    total_is_capped: bool


def _every_endpoint(svc: Services) -> list[Endpoint]:
    """Every endpoint, in (provider, endpoint) order."""
    found: list[Endpoint] = []
    cursor = None
    while True:
        page = list_all(svc, limit=_READ_PAGE, cursor=cursor)
        found += page.items
        if page.cursor is None:
            return found
        cursor = page.cursor


def stats(svc: Services) -> Stats:
    endpoints = _every_endpoint(svc)
    return Stats(provider_count=len({e.provider for e in endpoints}),
                 endpoint_count=len(endpoints))


def providers(svc: Services) -> list[Provider]:
    """Every provider, by its name, with how many endpoints it has."""
    found: dict[str, Provider] = {}
    for entry in _every_endpoint(svc):
        known = found.get(entry.provider)
        found[entry.provider] = Provider(entry.provider, entry.provider_name,
                                         (known.endpoint_count if known else 0) + 1)
    return list(found.values())


def provider_endpoints(svc: Services, provider: str) -> list[Endpoint]:
    """A provider's endpoints; EndpointNotFound for an unknown provider."""
    found = [e for e in _every_endpoint(svc) if e.provider == provider]
    if not found:
        raise errors.EndpointNotFound(f"unknown provider {provider!r}. See GET "
                                      "/public/v1/providers for every provider.")
    return found


def endpoint(svc: Services, provider: str, path: str) -> Endpoint:
    """An endpoint's card, by its path with or without the first `/`."""
    return inspect(svc, provider, path if path.startswith("/") else f"/{path}")


def search(svc: Services, query: str, *, limit: int, cursor: str | None = None) -> SearchPage:
    """A page of the endpoints best matching `query` (at most SEARCH_TOTAL_CAP in all)."""
    start = page_start(lambda c: cursors.decode_offset_cursor(c, query), cursor) or 0
    found = discover(svc, query, limit=SEARCH_TOTAL_CAP + 1)
    capped = found.count > SEARCH_TOTAL_CAP
    matches = found.results[:SEARCH_TOTAL_CAP]
    end = start + limit
    return SearchPage(results=Discovery(query, matches[start:end]),
                      cursor=cursors.encode_offset_cursor(query, end)
                      if end < len(matches) else None,
                      total=len(matches), total_is_capped=capped)

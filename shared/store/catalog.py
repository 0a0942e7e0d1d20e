"""The catalog in the database: copy the files there, then search, list and read it.

The JSON files stay the source of the catalog; `sync_catalog` makes the
`catalog_endpoints` table match them, so every process (whichever files it
was started with) serves the same catalog, and discovery can rank endpoints
with PostgreSQL's full-text search. An endpoint read back from the table is the
`Endpoint` the files describe, but for what only an adapter or the accept needs and
the table does not keep (its `call`, its price's `maxResultsInput`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.catalog import Catalog, Endpoint, Price
from shared.db import Conn, Row, jsonb_param, query

# Any fixed number, the same in every process: serialises catalog syncs.
SYNC_LOCK_KEY = 0x6D6F6E6964_05
_WORD = re.compile(r"\w+")
_FIRST_PAGE = ("", "")  # sorts before every (provider, path)


class NoSearchableWords(ValueError):
    """The search query has no word to search for (empty, punctuation, stop words)."""


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    unchanged: int
    removed: int

    @property
    def total(self) -> int:
        """How many endpoints the catalog has after the sync."""
        return self.added + self.updated + self.unchanged

    def __str__(self) -> str:
        return (f"{self.total} endpoint(s): {self.added} added, {self.updated} updated, "
                f"{self.unchanged} unchanged, {self.removed} removed")


@dataclass(frozen=True)
class Match:
    """A search result: the endpoint and how well it matches, 0..1 (4 decimals)."""

    entry: Endpoint
    score: float


def _endpoint(row: Row) -> Endpoint:
    return Endpoint(
        provider=row["provider"], provider_name=row["provider_name"], path=row["path"],
        name=row["name"], description=row["description"], tags=tuple(row["tags"]),
        input_schema=row["input_schema"], query_params_schema=row["query_params_schema"],
        path_params_schema=row["path_params_schema"],
        price=Price(row["price_type"], row["price_micros"], row["flat_fee_micros"],
                    row["max_results"]),
        deadline_seconds=row["deadline_seconds"], max_attempts=row["max_attempts"],
        adapter=row["adapter"], example_input=row["example_input"])


def _endpoint_params(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "provider": endpoint.provider,
        "provider_name": endpoint.provider_name,
        "path": endpoint.path,
        "name": endpoint.name,
        "description": endpoint.description,
        "tags": list(endpoint.tags),
        "input_schema": jsonb_param(endpoint.input_schema),
        "query_params_schema": jsonb_param(endpoint.query_params_schema),
        "path_params_schema": jsonb_param(endpoint.path_params_schema),
        "price_type": endpoint.price.type,
        "price_micros": endpoint.price.amount_micros,
        "flat_fee_micros": endpoint.price.flat_fee_micros,
        "max_results": endpoint.price.max_results,
        "deadline_seconds": endpoint.deadline_seconds,
        "max_attempts": endpoint.max_attempts,
        "adapter": endpoint.adapter,
        "example_input": jsonb_param(endpoint.example_input),
    }


def sync_catalog(conn: Conn, catalog: Catalog) -> SyncReport:
    """Make the catalog table match `catalog`: add new endpoints, change changed
    ones, remove those no longer in the files. Safe to run again (it then
    changes nothing) and from several processes at once."""
    conn.execute(query("lock_catalog_sync"), {"key": SYNC_LOCK_KEY})
    added = updated = 0
    endpoints = catalog.all()
    for endpoint in endpoints:
        row = conn.execute(query("upsert_catalog_endpoint"), _endpoint_params(endpoint)).fetchone()
        if row is None:
            continue
        if row["inserted"]:
            added += 1
        else:
            updated += 1
    removed = conn.execute(query("delete_catalog_endpoints_except"), {
        "providers": [e.provider for e in endpoints],
        "paths": [e.path for e in endpoints],
    }).fetchall()
    return SyncReport(added=added, updated=updated, unchanged=len(endpoints) - added - updated,
                      removed=len(removed))


def get_endpoint(conn: Conn, provider: str, path: str) -> Endpoint | None:
    row = conn.execute(query("get_catalog_endpoint"),
                       {"provider": provider, "path": path}).fetchone()
    return _endpoint(row) if row else None


def search_terms(text: str) -> str:
    """The words of `text` OR-ed, in `websearch_to_tsquery` syntax: an endpoint
    matching any word is found, and one matching more of them ranks higher."""
    words = [w for w in _WORD.findall(text) if w.lower() != "or"]
    return " or ".join(words)


def search_endpoints(conn: Conn, text: str, limit: int) -> list[Match]:
    """The endpoints best matching `text`, best first (ties by provider, path).

    NoSearchableWords when `text` has nothing to search for, e.g. only stop words.
    """
    terms = search_terms(text)
    if not terms:
        raise NoSearchableWords(text)
    row = conn.execute(query("count_search_terms"), {"terms": terms}).fetchone()
    if row is None or not row["nodes"]:
        raise NoSearchableWords(text)
    rows = conn.execute(query("search_catalog_endpoints"),
                        {"terms": terms, "limit": limit}).fetchall()
    return [Match(entry=_endpoint(r), score=float(r["score"])) for r in rows]


def list_endpoints(conn: Conn, limit: int, after: tuple[str, str] | None = None
                   ) -> tuple[list[Endpoint], bool]:
    """Up to `limit` endpoints after `after`, in (provider, path) order, and whether
    more follow."""
    provider, path = after or _FIRST_PAGE
    rows = conn.execute(query("list_catalog_endpoints"),
                        {"provider": provider, "path": path, "limit": limit + 1}).fetchall()
    return [_endpoint(r) for r in rows[:limit]], len(rows) > limit

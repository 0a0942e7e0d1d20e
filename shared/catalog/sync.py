"""The catalog in the database: copy the files there, then search, list and read it.

The JSON files stay the source of the catalog; `sync_catalog` makes the
`catalog_endpoints` table match them, so every process (whichever files it
was started with) serves the same catalog, and discovery can rank endpoints
with PostgreSQL's full-text search. Store-style: `verb_noun(conn, ...)`, the
caller owns the transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.catalog import Catalog, Endpoint, Price
from shared.db import Row, query

Conn = psycopg.Connection[Row]

# Any fixed number, the same in every process: serialises catalog syncs.
SYNC_LOCK_KEY = 0x6D6F6E6964_05
_WORD = re.compile(r"\w+")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
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
class CatalogEntry:
    """One endpoint as the database holds it: its card."""

    provider: str
    provider_name: str
    path: str
    name: str
    description: str
    tags: tuple[str, ...]
    input_schema: dict[str, Any]
    query_params_schema: dict[str, Any] | None
    path_params_schema: dict[str, Any] | None
    price_type: str
    price_micros: int
    flat_fee_micros: int | None
    max_results: int | None
    deadline_seconds: int
    max_attempts: int
    adapter: str
    example_input: dict[str, Any] | None
    synced_at: datetime

    @property
    def price(self) -> Price:
        return Price(self.price_type, self.price_micros, self.flat_fee_micros)


@dataclass(frozen=True)
class Match:
    """A search result: the endpoint and how well it matches, 0..1 (4 decimals)."""

    entry: CatalogEntry
    score: float


def _entry(row: Row) -> CatalogEntry:
    return CatalogEntry(**{**row, "tags": tuple(row["tags"])})


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=_dumps)


def _endpoint_params(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "provider": endpoint.provider,
        "provider_name": endpoint.provider_name,
        "path": endpoint.path,
        "name": endpoint.name,
        "description": endpoint.description,
        "tags": list(endpoint.tags),
        "input_schema": _jsonb(endpoint.input_schema),
        "query_params_schema": _jsonb(endpoint.query_params_schema),
        "path_params_schema": _jsonb(endpoint.path_params_schema),
        "price_type": endpoint.price.type,
        "price_micros": endpoint.price.amount_micros,
        "flat_fee_micros": endpoint.price.flat_fee_micros,
        "max_results": endpoint.price.max_results,
        "deadline_seconds": endpoint.deadline_seconds,
        "max_attempts": endpoint.max_attempts,
        "adapter": endpoint.adapter,
        "example_input": _jsonb(endpoint.example_input),
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


def get_endpoint(conn: Conn, provider: str, path: str) -> CatalogEntry | None:
    row = conn.execute(query("get_catalog_endpoint"),
                       {"provider": provider, "path": path}).fetchone()
    return _entry(row) if row else None


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
    return [Match(entry=_entry({k: v for k, v in r.items() if k != "score"}),
                  score=float(r["score"])) for r in rows]


def encode_endpoint_cursor(provider: str, path: str) -> str:
    raw = json.dumps({"after": [provider, path]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_endpoint_cursor(cursor: str) -> tuple[str, str]:
    """The (provider, path) a cursor points after; ValueError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        provider, path = data["after"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise ValueError("not a cursor from this API") from None
    if not (isinstance(provider, str) and isinstance(path, str)
            and _PROVIDER.fullmatch(provider) and _PATH.fullmatch(path)):
        raise ValueError("not a cursor from this API")
    return provider, path


def list_endpoints(conn: Conn, limit: int,
                   after: tuple[str, str] | None = None) -> tuple[list[CatalogEntry], str | None]:
    """A page of endpoints in (provider, path) order, and the cursor of the next page
    (None on the last one)."""
    provider, path = after or _FIRST_PAGE
    rows = conn.execute(query("list_catalog_endpoints"),
                        {"provider": provider, "path": path, "limit": limit + 1}).fetchall()
    entries = [_entry(r) for r in rows[:limit]]
    cursor = (encode_endpoint_cursor(entries[-1].provider, entries[-1].path)
              if len(rows) > limit else None)
    return entries, cursor

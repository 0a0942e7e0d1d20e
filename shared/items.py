"""A run's items: in pages, or as a JSONL or CSV download, streamed.

A run has items once it has ended COMPLETED (none before, none for a run that
ended otherwise). Neither a page nor a download is ever built whole in memory:
pages stop at PAGE_BYTES, and downloads are read from PostgreSQL a batch at a time
(taking a database connection per batch only, so a slow reader holds none) and
handed on as they come. PostgreSQL puts each batch together, JSONL or CSV (taking
the items' fields apart), as bytes that are passed on untouched: the process does
next to nothing per byte, and serving downloads leaves its other work its share.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shared import cursors, errors
from shared.db import Conn, DatabaseUnavailable, autocommit
from shared.ids import is_run_id
from shared.jsontext import dumps
from shared.services import Services
from shared.store import results

log = logging.getLogger("monid.items")

FORMATS = ("json", "jsonl", "csv")
DOWNLOADS = ("jsonl", "csv")
MAX_PAGE_ITEMS = 1000
DEFAULT_PAGE_ITEMS = 100
# A JSON page holds no more items once those before pass this size.
PAGE_BYTES = 4 * 1024 * 1024
# A download is read in batches of at most this many items, or about this size.
BATCH_ITEMS = 2000
BATCH_BYTES = 1024 * 1024
MAX_FIELDS = 200
MAX_FIELD_DEPTH = 20
# A CSV without `fields` has a column for each field of its items, up to this many.
MAX_CSV_COLUMNS = results.MAX_ITEM_FIELDS

Path = tuple[str, ...]


@dataclass(frozen=True)
class ItemsPage:
    """A page of items, each the JSON text it is stored as."""

    texts: list[str]
    cursor: str | None
    total: int


@dataclass(frozen=True)
class Download:
    """Every item of a run, in `format`, as bytes read a batch at a time."""

    run_id: str
    format: str
    chunks: Iterator[bytes]


def parse_fields(raw: str | None) -> list[Path] | None:
    """`a,b.c` as paths; ValueError saying what is wrong with it."""
    if raw is None:
        return None
    paths: list[Path] = []
    for name in raw.split(","):
        parts = tuple(name.split("."))
        if not name or "" in parts:
            raise ValueError("must be field names separated by commas, nested ones by their "
                             "dotted path (a,b.c), none of them empty")
        if len(parts) > MAX_FIELD_DEPTH:
            raise ValueError(f"a field is nested at most {MAX_FIELD_DEPTH} deep")
        if parts not in paths:
            paths.append(parts)
    if len(paths) > MAX_FIELDS:
        raise ValueError(f"at most {MAX_FIELDS} fields")
    return paths


def pick(item: Any, paths: Sequence[Path]) -> dict[str, Any]:
    """The fields of `item` at `paths`, nested as they were; an item that is not an
    object is its own `value`."""
    if not isinstance(item, dict):
        return {"value": item} if ("value",) in paths else {}
    picked: dict[str, Any] = {}
    for path in paths:
        value: Any = item
        for part in path:
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            into = picked
            for part in path[:-1]:
                into = into.setdefault(part, {})
                if not isinstance(into, dict):
                    break
            else:
                into[path[-1]] = value
    return picked


def read_items(svc: Services, caller: str, run_id: str, *, format: str = "json",
               limit: int | None = None, cursor: str | None = None,
               fields: str | None = None, page_bytes: int = PAGE_BYTES) -> ItemsPage | Download:
    """A page of the run's items (`format` json: `limit` of them from `cursor`, fewer once
    they pass `page_bytes`), or a download of all of them (`jsonl`, `csv`); `fields`
    (`a,b.c`) picks and orders their fields."""
    try:
        paths = parse_fields(fields)
    except ValueError as exc:
        raise errors.InvalidRequest({"fields": [str(exc)]}) from None
    download = format != "json"
    if download:
        for name, value in (("limit", limit), ("cursor", cursor)):
            if value is not None:
                raise errors.InvalidRequest({name: ["only for JSON pages: a download has "
                                                    "every item"]})
    start = 0
    if cursor is not None:
        try:
            start = cursors.decode_items_cursor(cursor, run_id)
        except ValueError:
            raise errors.InvalidRequest({"cursor": ["is not a cursor of this run's "
                                                    "items"]}) from None
    if not is_run_id(run_id):
        raise errors.RunNotFound(run_id)
    with autocommit(svc.pool) as conn:
        state = results.get_run_items_state(conn, run_id, caller)
        if state is None:
            raise errors.RunNotFound(run_id)
        total = state.item_count if state.status == "COMPLETED" else 0
        if not download:
            return _page(conn, run_id, total, start, limit or DEFAULT_PAGE_ITEMS, paths,
                         page_bytes)
        if format == "csv":
            columns = paths or list(state.item_fields or ())
            if paths is None and state.item_fields is None and total:
                # A run that ended before its items' fields were noted.
                columns = results.list_run_item_columns(conn, run_id, limit=MAX_CSV_COLUMNS)
    reader = _Reader(svc, run_id)
    chunks = (_jsonl(reader, total, paths) if format == "jsonl"
              else _csv(reader, total, columns))
    return Download(run_id, format, chunks)


def items_cursor(run_id: str, start: int) -> str:
    """The cursor of the page of the run's items that starts at item `start` (0 is the
    first): where a reader of the first `start` items goes on."""
    return cursors.encode_items_cursor(run_id, start)


def _page(conn: Conn, run_id: str, total: int, start: int, limit: int,
          paths: list[Path] | None, page_bytes: int) -> ItemsPage:
    rows = (results.list_run_items(conn, run_id, from_seq=start, limit=limit,
                                   max_bytes=page_bytes) if start < total else [])
    # The items as they are stored (compact JSON), not parsed and written again.
    texts = [r.text for r in rows] if paths is None else [
        dumps(pick(json.loads(r.text), paths)) for r in rows]
    after = rows[-1].seq + 1 if rows else total
    cursor = cursors.encode_items_cursor(run_id, after) if after < total else None
    return ItemsPage(texts, cursor, total)


def _jsonl(reader: _Reader, total: int, paths: list[Path] | None) -> Iterator[bytes]:
    run_id = reader.run_id
    at = 0
    while at < total:
        with reader.batch() as conn:
            if paths is None:  # put together by PostgreSQL, passed on as it comes
                chunk = results.read_run_items_jsonl(conn, run_id, from_seq=at,
                                                     limit=BATCH_ITEMS, max_bytes=BATCH_BYTES)
                if chunk is None:
                    return
                at = chunk.last_seq + 1
                data = chunk.data
            else:
                rows = results.list_run_items(conn, run_id, from_seq=at, limit=BATCH_ITEMS,
                                              max_bytes=BATCH_BYTES)
                if not rows:
                    return
                at = rows[-1].seq + 1
                data = "".join(dumps(pick(json.loads(r.text), paths)) + "\n"
                               for r in rows).encode()
        yield data


def _csv(reader: _Reader, total: int, columns: Sequence[Sequence[str]]) -> Iterator[bytes]:
    run_id = reader.run_id
    if not columns:
        return
    header = io.StringIO()
    csv.writer(header, lineterminator="\r\n").writerow([".".join(p) for p in columns])
    yield header.getvalue().encode()
    at = 0
    while at < total:
        with reader.batch() as conn:
            chunk = results.read_run_items_csv(conn, run_id, columns, from_seq=at,
                                               limit=BATCH_ITEMS, max_bytes=BATCH_BYTES)
        if chunk is None:
            return
        at = chunk.last_seq + 1
        yield chunk.data


class _Reader:
    """Reads a download's batches: one at a time, each with a pooled connection taken for
    it alone, and no more of them at once in this process than its services allow."""

    def __init__(self, svc: Services, run_id: str) -> None:
        self.pool = svc.pool
        self.slots = svc.download_batches
        self.run_id = run_id

    @contextmanager
    def batch(self) -> Iterator[Conn]:
        """Should the database go away half way, it is said in the log and the error goes
        on: the connection is then cut, and the client sees an incomplete answer, not a
        short file."""
        try:
            with self.slots, autocommit(self.pool) as conn:
                yield conn
        except DatabaseUnavailable as exc:
            log.warning("download cut off: the database is unavailable",
                        extra={"runId": self.run_id, "error": str(exc)})
            raise

"""Results: a run's items, written with its end, read in pages.

A result is stored as items, one row of `run_items` each, in the transaction that
ends the run (see `worker/results.py`); the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from shared.db import Conn, query
from shared.jsontext import dumps
from shared.scheduling import Freed
from shared.store.claims import Claim, Woken, woken_runs

# The most fields of a run's items that are noted (the columns of its CSV).
MAX_ITEM_FIELDS = 1000

FieldPath = tuple[str, ...]


class ItemsAlreadyWritten(Exception):
    """Another attempt wrote this run's items first: this one no longer holds the run."""


@dataclass(frozen=True)
class WriteState:
    status: str
    held: bool


def get_write_state(conn: Conn, run_id: str, lease_token: Any) -> WriteState | None:
    row = conn.execute(query("get_write_state"),
                       {"run_id": run_id, "lease_token": lease_token}).fetchone()
    return WriteState(row["status"], row["held"]) if row else None


def _copy_line(run_id: bytes, seq: int, text: bytes) -> bytes:
    # COPY's text format: a backslash is its escape character. Compact JSON holds no
    # raw tab or line break, and every control character is escaped with a backslash.
    return b"%s\t%d\t%s\n" % (run_id, seq, text.replace(b"\\", b"\\\\"))


def copy_run_items(conn: Conn, run_id: str, first_seq: int, texts: Sequence[bytes]) -> None:
    """Add items (their compact JSON, UTF-8) numbered from `first_seq`, in one COPY."""
    key = run_id.encode()
    data = b"".join(_copy_line(key, first_seq + n, text) for n, text in enumerate(texts))
    try:
        with conn.cursor().copy(query("copy_run_items")) as copy:
            copy.write(data)
    except psycopg.errors.UniqueViolation as exc:
        raise ItemsAlreadyWritten(run_id) from exc


@dataclass(frozen=True)
class Delivered:
    """How a delivered run ended: COMPLETED, or STOPPED when a stop was asked meanwhile;
    and the runs handed back from waiting for a slot it freed."""

    status: str
    woken: tuple[Woken, ...] = ()


@dataclass(frozen=True)
class Delivery:
    """A delivered run's end, to be written: its inline output, its items (`items_json`,
    a JSON array of those not copied yet, numbered from `first_seq`), the fields of its
    items, and what it costs."""

    claim: Claim
    http_status: int
    output: Any
    output_truncated: bool
    item_count: int
    item_fields: Sequence[FieldPath]
    items_json: str
    first_seq: int
    provider_response: Any
    cost_micros: int
    freed: Freed | None = None


def deliver_run(conn: Conn, delivery: Delivery) -> Delivered | None:
    """One run's end, as `deliver_runs` writes it; None where its attempt no longer holds
    the run, also when another attempt wrote its items first."""
    try:
        return deliver_runs(conn, [delivery])[0]
    except ItemsAlreadyWritten:
        return None


def deliver_runs(conn: Conn, deliveries: Sequence[Delivery]) -> list[Delivered | None]:
    """End delivered runs and settle them, in one statement, in the order given: each
    run's items of `items_json` (a JSON array) added from `first_seq` on and the fields
    of its items noted; how each ended (None where its attempt no longer holds the
    run). Raises
    ItemsAlreadyWritten when another attempt wrote the items of one of them first (the
    statement then wrote nothing)."""
    try:
        rows = conn.execute(query("deliver_runs"),
                            {"deliveries": _deliveries_json(deliveries)}).fetchall()
    except psycopg.errors.UniqueViolation as exc:
        raise ItemsAlreadyWritten(", ".join(d.claim.run_id for d in deliveries)) from exc
    ended = {row["lease_token"]: row for row in rows}
    return [Delivered(row["status"], woken_runs(row["woken"]))
            if (row := ended.get(d.claim.lease_token)) is not None else None
            for d in deliveries]


def _deliveries_json(deliveries: Sequence[Delivery]) -> str:
    """The deliveries as deliver_runs reads them: a JSON array of objects."""
    given = []
    for d in deliveries:
        freed = d.freed or Freed()
        given.append({
            "run_id": d.claim.run_id, "lease_token": str(d.claim.lease_token),
            "number": d.claim.attempt, "http_status": d.http_status,
            "output": _json_text(d.output), "output_truncated": d.output_truncated,
            "item_count": d.item_count,
            "item_fields": dumps([list(p) for p in d.item_fields]),
            "items": d.items_json, "first_seq": d.first_seq,
            "provider_response": _json_text(d.provider_response),
            "cost_micros": d.cost_micros, "wake": freed.wake, "caller_freed": freed.caller,
            "provider_limit": freed.provider_limit, "endpoint_limit": freed.endpoint_limit,
        })
    return dumps(given)


def _json_text(value: Any) -> str | None:
    return None if value is None else dumps(value)


# --- reading ------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemsState:
    """A run's status, how many items it holds (0 until it ends COMPLETED), and the
    fields of its items (None when they were not noted)."""

    status: str
    item_count: int
    item_fields: tuple[FieldPath, ...] | None


def get_run_items_state(conn: Conn, run_id: str, caller: str) -> ItemsState | None:
    row = conn.execute(query("get_run_items_state"),
                       {"run_id": run_id, "caller": caller}).fetchone()
    if row is None:
        return None
    fields = row["item_fields"]
    return ItemsState(row["status"], row["item_count"],
                      None if fields is None else tuple(tuple(p) for p in fields))


@dataclass(frozen=True)
class ItemText:
    seq: int
    text: str


def list_run_items(conn: Conn, run_id: str, *, from_seq: int, limit: int,
                   max_bytes: int) -> list[ItemText]:
    """Items from `from_seq` on, as JSON text: at most `limit`, and past the first, only
    while the page stays under `max_bytes`."""
    rows = conn.execute(query("list_run_items"), {
        "run_id": run_id, "from_seq": from_seq, "limit": limit, "max_bytes": max_bytes})
    return [ItemText(r["seq"], r["text"]) for r in rows]


@dataclass(frozen=True)
class Chunk:
    """A batch of a download, as bytes, and the last item in it."""

    last_seq: int
    data: bytes


def _chunk(conn: Conn, statement: sql.SQL | sql.Composed, params: dict[str, Any]) -> Chunk | None:
    # Binary: the bytes as PostgreSQL made them, never decoded and encoded again here.
    row = conn.cursor(binary=True, row_factory=tuple_row).execute(statement, params).fetchone()
    if row is None or row[0] is None:
        return None
    return Chunk(row[0], bytes(row[1]))


def read_run_items_jsonl(conn: Conn, run_id: str, *, from_seq: int, limit: int,
                         max_bytes: int) -> Chunk | None:
    """The page list_run_items gives, as JSONL put together by PostgreSQL; None past the
    last item."""
    return _chunk(conn, query("read_run_items_jsonl"), {
        "run_id": run_id, "from_seq": from_seq, "limit": limit, "max_bytes": max_bytes})


def read_run_items_csv(conn: Conn, run_id: str, paths: Sequence[Sequence[str]], *,
                       from_seq: int, limit: int, max_bytes: int) -> Chunk | None:
    """The page list_run_items gives, as CSV rows of the fields at `paths`, put together
    by PostgreSQL; None past the last item."""
    params: dict[str, Any] = {"run_id": run_id, "from_seq": from_seq, "limit": limit,
                              "max_bytes": max_bytes}
    cells = []
    for n, path in enumerate(paths):
        params[f"path_{n}"] = list(path)
        cells.append(query("csv_cell").format(path=sql.Placeholder(f"path_{n}")))
    line = query("csv_line").format(cells=sql.SQL(", ").join(cells))
    return _chunk(conn, query("read_run_items_csv").format(cells=line), params)


def list_run_item_columns(conn: Conn, run_id: str, *, limit: int) -> list[FieldPath]:
    """The paths of the fields of a run's items, in the order they first appear."""
    rows = conn.execute(query("list_run_item_columns"), {"run_id": run_id, "limit": limit})
    return [tuple(r["path"]) for r in rows]


def items_json(texts: Iterable[bytes]) -> str:
    """Items' JSON texts as one JSON array."""
    return (b"[" + b",".join(texts) + b"]").decode()

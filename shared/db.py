"""The database seam: every connection (pooled or not), named queries, query parameters
of JSON, and migrations. Nothing else calls `psycopg.connect` or opens a pool."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, LiteralString, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Json, Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from shared.jsontext import dumps

SQL_DIR = Path(__file__).parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
# The named queries: the seam's own (db.sql), then one file per aggregate of the store.
QUERY_FILES = (SQL_DIR / "db.sql", SQL_DIR / "store")
# Any fixed number, the same in every process: serialises `monidctl migrate`.
MIGRATION_LOCK_KEY = 0x6D6F6E6964_01

Row = dict[str, Any]
Conn = psycopg.Connection[Row]


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or dropped the connection."""


@cache
def queries() -> dict[str, str]:
    """The named queries of `sql/db.sql` and every `sql/store/*.sql` file, read once.
    Each block starts with `-- name: <name>` and runs to the next. Comment lines are left
    out: the server has no use for them, and psycopg caches its parsing of a statement's
    parameters only for statements up to 4 KiB (`insert_run` is one only without its
    comment; parsed anew, it cost about 9% of the web's CPU per accepted run)."""
    named: dict[str, str] = {}
    db_file, store_dir = QUERY_FILES
    for path in [db_file, *sorted(store_dir.glob("*.sql"))]:
        for block in re.split(r"^-- name: ", path.read_text(), flags=re.MULTILINE)[1:]:
            name, _, body = block.partition("\n")
            if name.strip() in named:
                raise ValueError(f"query {name.strip()} is named twice ({path.name})")
            named[name.strip()] = "\n".join(
                line for line in body.strip().splitlines()
                if not line.lstrip().startswith("--"))
    return named


def query(name: str) -> sql.SQL:
    return sql.SQL(cast(LiteralString, queries()[name]))


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@cache
def _split(name: str) -> tuple[list[bytes], list[str]]:
    """A named query cut at its `%(param)s` placeholders: the texts around them, and
    their names in order."""
    pieces = _PLACEHOLDER.split(queries()[name])
    return [piece.encode() for piece in pieces[0::2]], pieces[1::2]


def _filled(name: str, fill: Callable[[str], bytes]) -> bytes:
    """The named query with each placeholder replaced by `fill(its name)`."""
    texts, names = _split(name)
    out = [texts[0]]
    for param, text in zip(names, texts[1:], strict=True):
        out += (fill(param), text)
    return b"".join(out)


def with_literals(name: str, params: dict[str, Any], literal: Callable[[Any], bytes]) -> bytes:
    """The named query with each parameter written in as a literal (`literal`: a
    transformer's `as_literal`, which quotes and escapes as psycopg's sql.Literal
    does): for statements sent together in one simple query, which takes no
    parameters."""
    return _filled(name, lambda param: literal(params[param]))


def prepared_as(prepare: str, name: str, order: str) -> bytes:
    """`prepare` (a named `PREPARE ... AS`) with the named query `name` after it, its
    placeholders numbered in the order the named query `order` gives them (the
    `EXECUTE` that runs it)."""
    positions = {param: n for n, param in enumerate(_split(order)[1], start=1)}
    return (queries()[prepare].encode() + b" "
            + _filled(name, lambda param: f"${positions[param]}".encode()))


def json_param(value: Any) -> Json | None:
    """A value for a `json` parameter (compact, as it is stored); None stays NULL."""
    return None if value is None else Json(value, dumps=dumps)


def jsonb_param(value: Any) -> Jsonb | None:
    """A value for a `jsonb` parameter; None stays NULL."""
    return None if value is None else Jsonb(value, dumps=dumps)


# A connection used less than this long ago is handed out without a check: under
# load that saves a round trip per request, and one idle longer (as any is after a
# database restart) is checked before use.
CHECK_AFTER_IDLE_SECONDS = 2.0


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    last_used = getattr(conn, "_monid_last_used", None)
    if last_used is None or time.monotonic() - last_used > CHECK_AFTER_IDLE_SECONDS:
        ConnectionPool.check_connection(conn)


def make_pool(database_url: str, *, min_size: int = 1, max_size: int = 10,
              name: str = "monid", timeout: float = 5.0,
              by_keys: bool = False) -> ConnectionPool:
    """A pool of connections with dict rows, opened by the caller. The connections are
    in autocommit mode: a lone statement costs one round trip (`autocommit`), and
    statements that belong together take an explicit transaction (`transaction`).

    `by_keys`: for statements that write a batch of rows given by their keys (arrays of
    a varying length, shared/grouping.py). Knowing an array's length, PostgreSQL would
    plan such a statement anew for every execution, which costs as much as running
    it; here each is planned once for the connection (a generic plan). A generic plan
    made while a table was small or had no statistics yet may scan the whole table,
    and would stay: so these connections plan only lookups by index, every table
    read as a nested loop over the keys given (no sequential, bitmap, hash or merge
    scan), which is the right plan for a batch of keys at any size of table. The keys
    must be the loop's outer side: a statement unpacks them with a function that says
    it returns few rows (migration 0024), else a plan made on an empty table may read
    the table's whole index and compare each row with every key."""
    return ConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        timeout=timeout,
        open=False,
        kwargs={"row_factory": dict_row, "connect_timeout": 5, "prepare_threshold": 0,
                "autocommit": True},
        check=_check_if_idle,
        configure=_plan_by_keys if by_keys else None,
        reconnect_timeout=60,
    )


def _plan_by_keys(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET plan_cache_mode = force_generic_plan")
    for scan in ("seqscan", "bitmapscan", "hashjoin", "mergejoin"):
        conn.execute(f"SET enable_{scan} = off")


@contextmanager
def transaction(pool: ConnectionPool) -> Iterator[Conn]:
    """A pooled connection in a transaction, committed on success, rolled back on error.

    Connection-level failures come out as `DatabaseUnavailable`.
    """
    with autocommit(pool) as conn, conn.transaction():
        yield conn


@contextmanager
def autocommit(pool: ConnectionPool) -> Iterator[Conn]:
    """A pooled connection outside any transaction: each statement, read or write,
    commits on its own, so a single one is one round trip. Connection-level failures
    come out as `DatabaseUnavailable`."""
    try:
        with pool.connection() as conn:
            conn._monid_last_used = time.monotonic()  # type: ignore[attr-defined]
            yield cast(Conn, conn)
    except PoolTimeout as exc:
        raise DatabaseUnavailable("no database connection available in time") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise unavailable(exc) from exc


def unavailable(exc: psycopg.Error) -> DatabaseUnavailable:
    """A connection-level failure as `DatabaseUnavailable`, with its first line."""
    return DatabaseUnavailable(str(exc).splitlines()[0] if str(exc) else "connection failed")


def connect(database_url: str, *, autocommit: bool = False,
            connect_timeout: int = 5) -> Conn:
    """A connection of its own, outside the pool, with dict rows: for what a pool does
    not serve (migrations, a LISTEN, a last write on the way out, a command-line tool).
    As a context manager it commits on success (unless in autocommit) and closes."""
    return psycopg.connect(database_url, autocommit=autocommit, row_factory=dict_row,
                           connect_timeout=connect_timeout)


def listen(conn: Conn, channel: str) -> None:
    conn.execute(query("listen").format(channel=sql.Identifier(channel)))


def notify(conn: Conn, channel: str, payload: str = "") -> None:
    conn.execute(query("notify"), {"channel": channel, "payload": payload})


def create_database(admin_url: str, name: str) -> None:
    """Make database `name` on the server of `admin_url` unless it exists."""
    with connect(admin_url, autocommit=True) as conn:
        if conn.execute(query("database_exists"), {"name": name}).fetchone() is None:
            conn.execute(query("create_database").format(name=sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, cutting off whoever is still connected to it."""
    with connect(admin_url, autocommit=True) as conn:
        conn.execute(query("drop_database").format(name=sql.Identifier(name)))


def ping(conn: Conn) -> None:
    conn.execute(query("ping"))


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def list_migrations() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = re.match(r"^(\d{4})_([a-z0-9_]+)\.sql$", path.name)
        if not match:
            raise ValueError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a number")
    return found


def migrate(database_url: str) -> list[Migration]:
    """Apply the migrations not yet applied, in order, in one transaction.

    An advisory lock makes concurrent runs wait for each other; the second
    finds nothing left to do. Returns what this call applied.
    """
    applied_now: list[Migration] = []
    with connect(database_url, connect_timeout=10) as conn, conn.transaction():
        conn.execute(query("lock_migrations"), {"key": MIGRATION_LOCK_KEY})
        conn.execute(query("create_schema_migrations"))
        done = {row["version"] for row in conn.execute(query("list_applied_migrations"))}
        for migration in list_migrations():
            if migration.version in done:
                continue
            conn.execute(cast(LiteralString, migration.path.read_text()))
            conn.execute(query("note_applied_migration"),
                         {"version": migration.version, "name": migration.name})
            applied_now.append(migration)
    return applied_now

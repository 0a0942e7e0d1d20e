"""The database seam: the connection pool, named queries and migrations."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, LiteralString, cast

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

SQL_DIR = Path(__file__).parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
# Any fixed number, the same in every process: serialises `monidctl migrate`.
MIGRATION_LOCK_KEY = 0x6D6F6E6964_01

Row = dict[str, Any]


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or dropped the connection."""


@cache
def queries() -> dict[str, str]:
    """The named queries of every `sql/*.sql` file, read once."""
    named: dict[str, str] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        for block in re.split(r"^-- name: ", path.read_text(), flags=re.MULTILINE)[1:]:
            name, _, body = block.partition("\n")
            if name.strip() in named:
                raise ValueError(f"query {name.strip()} is named twice ({path.name})")
            named[name.strip()] = body.strip()
    return named


def query(name: str) -> sql.SQL:
    return sql.SQL(cast(LiteralString, queries()[name]))


# A connection used less than this long ago is handed out without a check: under
# load that saves a round trip per request, and one idle longer (as any is after a
# database restart) is checked before use.
CHECK_AFTER_IDLE_SECONDS = 2.0


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    last_used = getattr(conn, "_monid_last_used", None)
    if last_used is None or time.monotonic() - last_used > CHECK_AFTER_IDLE_SECONDS:
        ConnectionPool.check_connection(conn)


def make_pool(database_url: str, *, min_size: int = 1, max_size: int = 10,
              name: str = "monid", timeout: float = 5.0) -> ConnectionPool:
    """A pool of connections with dict rows, opened by the caller. The connections are
    in autocommit mode: a lone read costs one round trip (`reading`), and writes
    take an explicit transaction (`transaction`)."""
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
        reconnect_timeout=60,
    )


@contextmanager
def transaction(pool: ConnectionPool) -> Iterator[psycopg.Connection[Row]]:
    """A connection in a transaction, committed on success, rolled back on error.

    Connection-level failures come out as `DatabaseUnavailable`.
    """
    with reading(pool) as conn, conn.transaction():
        yield conn


@contextmanager
def reading(pool: ConnectionPool) -> Iterator[psycopg.Connection[Row]]:
    """A connection outside any transaction: each statement commits on its own, so a
    single read is one round trip. Connection-level failures come out as
    `DatabaseUnavailable`."""
    try:
        with pool.connection() as conn:
            conn._monid_last_used = time.monotonic()  # type: ignore[attr-defined]
            yield cast(psycopg.Connection[Row], conn)
    except PoolTimeout as exc:
        raise DatabaseUnavailable("no database connection available in time") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "connection failed"
        raise DatabaseUnavailable(first_line) from exc


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
    with psycopg.connect(database_url, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in list_migrations():
            if migration.version in done:
                continue
            conn.execute(cast(LiteralString, migration.path.read_text()))
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration)
    return applied_now

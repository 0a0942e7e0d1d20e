"""The schema snapshot: `shared/sql/schema.sql` is the whole schema the migrations make,
as `pg_dump --schema-only` writes it, normalised (no comments, no session settings).
It is what to read to see the tables, indexes and functions as they are now; the
migrations stay the only thing applied to a database. Made again after a migration
is added, against DATABASE_URL's server (a scratch database is made, migrated,
dumped and dropped):

    python -m shared.schema            # writes shared/sql/schema.sql
    python -m shared.schema --check    # says whether it matches, exit 1 if not

`tests/integration/test_schema.py` checks that the migrations make exactly this.
pg_dump's text differs a little between PostgreSQL versions: the snapshot names
the major version it was made with, and is compared only with a dump of the same.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

from shared.db import SQL_DIR, connect, create_database, drop_database, migrate, query
from shared.embedded import bundled_postgres_bin
from shared.settings import SettingsError, load_database_url

SNAPSHOT = SQL_DIR / "schema.sql"
HEADER = ("-- The whole schema the migrations make, as pg_dump writes it (normalised), with\n"
          "-- PostgreSQL {major}. Made by `python -m shared.schema`; never applied: the\n"
          "-- migrations are. tests/integration/test_schema.py checks the two agree.\n")
_MAJOR_IN_HEADER = re.compile(r"with\n-- PostgreSQL (\d+)\.")
# What pg_dump writes that is not the schema: its own comments (versions, object
# headers), session settings and psql's guards.
_NOT_SCHEMA = re.compile(r"^(--|-- Name: .*|-- PostgreSQL database dump.*|-- Dumped .*"
                         r"|SET .*|SELECT pg_catalog\.set_config\(.*|\\(un)?restrict .*)$")


class SchemaError(Exception):
    """pg_dump is missing or failed."""


def pg_dump_path() -> str:
    """pg_dump on the PATH, else the one of the embedded PostgreSQL (the `local` extra)."""
    found = shutil.which("pg_dump")
    if found:
        return found
    bundled = bundled_postgres_bin()
    if bundled and (bundled / "pg_dump").exists():
        return str(bundled / "pg_dump")
    raise SchemaError("pg_dump not found: install the PostgreSQL client")


def server_major(database_url: str) -> int:
    with connect(database_url) as conn:
        row = conn.execute(query("server_version_num")).fetchone()
    assert row is not None
    return int(row["server_version_num"]) // 10000


def normalise(dump: str) -> str:
    lines = [line.rstrip() for line in dump.splitlines() if not _NOT_SCHEMA.match(line)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"


def dump_schema(database_url: str) -> str:
    """The schema of the database at `database_url`, as the snapshot holds it."""
    done = subprocess.run(
        [pg_dump_path(), "--schema-only", "--no-owner", "--no-privileges", "--no-tablespaces",
         f"--dbname={database_url}"],
        capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SchemaError(f"pg_dump failed: {done.stderr.strip()}")
    return HEADER.format(major=server_major(database_url)) + "\n" + normalise(done.stdout)


def snapshot_major(text: str) -> int | None:
    match = _MAJOR_IN_HEADER.search(text)
    return int(match.group(1)) if match else None


def migrated_schema(admin_url: str) -> str:
    """The schema the migrations make in an empty database of `admin_url`'s server."""
    name = f"monid_schema_{uuid.uuid4().hex[:10]}"
    create_database(admin_url, name)
    try:
        url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        migrate(url)
        return dump_schema(url)
    finally:
        drop_database(admin_url, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.schema", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="compare with shared/sql/schema.sql instead of writing it")
    args = parser.parse_args(argv)
    try:
        admin_url = load_database_url()
    except SettingsError as exc:
        print(f"monid: configuration error: {exc}", file=sys.stderr)
        return 2
    if not admin_url:
        print("monid: configuration error: DATABASE_URL is not set", file=sys.stderr)
        return 2
    made = migrated_schema(admin_url)
    if not args.check:
        SNAPSHOT.write_text(made)
        print(f"wrote {SNAPSHOT}")
        return 0
    if SNAPSHOT.read_text() == made:
        print(f"{SNAPSHOT.name} matches the migrations")
        return 0
    print(f"{SNAPSHOT.name} differs from what the migrations make: "
          "run `python -m shared.schema` and review the change", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())

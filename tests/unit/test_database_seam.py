"""Every connection is opened in shared/db.py, and no SQL is written in Python: it is in
the named queries of shared/sql/ (and the migrations)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared.db import queries

ROOT = Path(__file__).resolve().parents[2]
CODE = sorted(p for folder in ("api", "worker", "shared") for p in (ROOT / folder).rglob("*.py"))
SQL_TEXT = re.compile(r"^\s*(SELECT |INSERT INTO |UPDATE \w+ |DELETE FROM |CREATE [A-Z]|DROP [A-Z]|"
                      r"ALTER [A-Z]|TRUNCATE |LISTEN |NOTIFY |WITH \w+ AS |COPY \w+)")


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_connections_are_opened_in_the_database_seam_only(path: Path) -> None:
    if path == ROOT / "shared" / "db.py":
        return
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            assert called not in {"psycopg.connect", "ConnectionPool",
                                  "psycopg.Connection.connect"}, f"{path.name}: {called}"


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_is_written_in_python(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not SQL_TEXT.match(node.value), f"{path.name}: {node.value[:60]!r}"


def test_every_named_query_is_used() -> None:
    code = "\n".join(p.read_text() for p in CODE)
    unused = [name for name in queries() if f'"{name}"' not in code]
    assert not unused, unused


def test_named_queries_are_sent_without_comments_and_parsed_once() -> None:
    """psycopg caches how it splits a statement's parameters only for statements up to
    MAX_CACHED_STATEMENT_LENGTH bytes: a longer one is split again at every execute."""
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    for name, text in queries().items():
        assert not any(line.lstrip().startswith("--") for line in text.splitlines()), name
        assert len(text.encode()) <= MAX_CACHED_STATEMENT_LENGTH, name

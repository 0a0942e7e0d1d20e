"""The schema snapshot (shared/sql/schema.sql) is exactly what the migrations make."""

from __future__ import annotations

import difflib

import pytest

from shared.schema import (
    SNAPSHOT,
    SchemaError,
    migrated_schema,
    normalise,
    pg_dump_path,
    server_major,
    snapshot_major,
)


def test_the_migrations_make_the_snapshot_exactly(admin_database_url: str) -> None:
    snapshot = SNAPSHOT.read_text()
    try:
        pg_dump_path()
    except SchemaError as exc:
        pytest.skip(str(exc))
    made_with, server = snapshot_major(snapshot), server_major(admin_database_url)
    assert made_with is not None, "the snapshot names the PostgreSQL it was made with"
    if made_with != server:
        pytest.skip(f"the snapshot is pg_dump's text of PostgreSQL {made_with}; "
                    f"this server is {server}")
    made = migrated_schema(admin_database_url)
    diff = "".join(difflib.unified_diff(snapshot.splitlines(True), made.splitlines(True),
                                        "shared/sql/schema.sql", "the migrations"))
    assert made == snapshot, ("the migrations no longer make schema.sql; run "
                              "`python -m shared.schema` and review the change:\n" + diff)


def test_normalising_drops_what_is_not_the_schema() -> None:
    dump = "\n".join([
        "--", "-- PostgreSQL database dump", "--", "",
        "\\restrict abc123", "-- Dumped from database version 15.20",
        "SET statement_timeout = 0;", "SELECT pg_catalog.set_config('search_path', '', false);",
        "", "", "--", "-- Name: f(); Type: FUNCTION; Schema: public; Owner: -", "--", "",
        "CREATE FUNCTION public.f() RETURNS integer", "    LANGUAGE sql",
        "    AS $$", "-- a comment of the function's own", "SELECT 1 $$;", "", "",
        "\\unrestrict abc123", "-- PostgreSQL database dump complete", ""])
    assert normalise(dump) == ("CREATE FUNCTION public.f() RETURNS integer\n    LANGUAGE sql\n"
                               "    AS $$\n-- a comment of the function's own\nSELECT 1 $$;\n")

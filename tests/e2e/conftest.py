"""A running stack for end-to-end tests: real gunicorn and celery processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from tests.helpers import KeyMaker
from tests.processes import Process, start_web, start_worker


@dataclass
class Stack:
    base_url: str
    web: Process
    worker: Process
    env: dict[str, str]
    log_dir: Path


@pytest.fixture(scope="module")
def stack(base_env: dict[str, str], pool: ConnectionPool,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("logs")
    env = dict(base_env)
    web, base_url = start_web(env, log_dir)
    worker = start_worker(env, log_dir, concurrency=8)
    yield Stack(base_url=base_url, web=web, worker=worker, env=env, log_dir=log_dir)
    worker.stop()
    web.stop()


@pytest.fixture(scope="module")
def web_process_env(base_env: dict[str, str]) -> dict[str, str]:
    """The environment of the module's `web` process; a module may override it."""
    return base_env


@pytest.fixture(scope="module")
def web(web_process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[Process, str]]:
    """A web process of the module's own, and its base URL."""
    proc, base_url = start_web(web_process_env, tmp_path_factory.mktemp("web"))
    yield proc, base_url
    proc.stop()


@pytest.fixture
def e2e_key(pool: ConnectionPool) -> KeyMaker:
    """Makes keys without wiping the database under the running processes."""
    return KeyMaker(pool)

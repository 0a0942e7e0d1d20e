"""Apps whose database or broker cannot be reached, for the tests of what then; the demo
provider's echo endpoint, for tests that store runs themselves."""

from __future__ import annotations

import dataclasses
import time
import types
from collections.abc import Iterator

import pytest
from flask import Flask
from psycopg_pool import ConnectionPool

from api import ratelimit
from api.app import create_app
from shared.catalog import Endpoint, load_catalog
from shared.settings import DEFAULT_CATALOG_DIR, Settings
from tests.helpers import UNREACHABLE_DATABASE, UNREACHABLE_REDIS


@pytest.fixture
def app_without_database(settings: Settings, db: ConnectionPool) -> Iterator[Flask]:
    app = create_app(dataclasses.replace(settings, database_url=UNREACHABLE_DATABASE))
    yield app
    app.extensions["monid"].pool.close()


@pytest.fixture
def app_without_broker(settings: Settings, db: ConnectionPool) -> Iterator[Flask]:
    app = create_app(dataclasses.replace(settings, redis_url=UNREACHABLE_REDIS))
    yield app
    app.extensions["monid"].pool.close()


@pytest.fixture
def echo() -> Endpoint:
    found = load_catalog(DEFAULT_CATALOG_DIR).find("demo", "/echo")
    assert found is not None
    return found


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The rate limiter's clock, stopped 20 s into a window (set [0] to move it): a test
    that counts a window's requests is not split by a minute's end between two of them."""
    now = [(time.time() // 60 + 1) * 60 + 20]
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: now[0]))
    return now

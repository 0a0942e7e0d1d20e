"""Apps whose database or broker cannot be reached, for the tests of what then; the demo
provider's echo endpoint, for tests that store runs themselves."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from flask import Flask
from psycopg_pool import ConnectionPool

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

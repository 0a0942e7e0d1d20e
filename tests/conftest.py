"""Fixtures: a fresh PostgreSQL database per test run, a Redis database of its own,
a clean slate per test, and the Flask app on top of them."""

from __future__ import annotations

import fcntl
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared.db import create_database, drop_database, make_pool, migrate, transaction
from shared.settings import Settings, load_settings
from tests.fakes.jsonapi import FakeJsonApi
from tests.helpers import KeyMaker

# The Redis database of each pytest-xdist worker (gw0, gw1, ...), or of a run without
# workers; the benchmarks' are others (bench.common.REDIS_DBS).
TEST_REDIS_DBS = (14, 13, 12, 10, 9, 8, 7, 6)
# Each folder's tier, as a marker: `pytest -m unit`, `-m "not e2e and not chaos"`...
TIERS = {"unit": "unit", "fakes": "unit", "integration": "integration", "e2e": "e2e",
         "chaos": "chaos"}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        tier = TIERS.get(folder)
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test outside the tiers' folders "
                                    f"({', '.join(sorted(TIERS))})")
        item.add_marker(tier)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker a core, at most one a Redis database of TEST_REDIS_DBS."""
    return max(1, min(os.cpu_count() or 1, len(TEST_REDIS_DBS)))


def _test_redis_db() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    if index >= len(TEST_REDIS_DBS):
        raise pytest.UsageError(f"at most {len(TEST_REDIS_DBS)} test workers (-n)")
    return TEST_REDIS_DBS[index]


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    from tests.processes import STARTED

    for proc in STARTED:
        proc.signal_group(signal.SIGKILL)


@pytest.fixture(autouse=True)
def chaos_alone(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """With test workers, a chaos test runs while no other test of any worker does: it
    kills and restarts processes against a clock, and a neighbour's load would decide
    its outcome; so does a test marked `alone`, which bounds a time. Every other test
    holds the same lock shared; such a test holds it alone."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    alone = any(request.node.get_closest_marker(m) is not None for m in ("chaos", "alone"))
    with open(tmp_path_factory.getbasetemp().parent / "chaos.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def admin_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DATABASE_URL's server, or an embedded PostgreSQL when it is unset."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from shared.embedded import start_postgres

    server = start_postgres(tmp_path_factory.mktemp("embedded-postgres"))
    try:
        yield server.admin_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def database_url(admin_database_url: str) -> Iterator[str]:
    """A database made for this test run, migrated, dropped at the end."""
    admin_url = admin_database_url
    name = f"monid_test_{uuid.uuid4().hex[:10]}"
    create_database(admin_url, name)
    url = _with_database(admin_url, name)
    migrate(url)
    yield url
    drop_database(admin_url, name)


@pytest.fixture
def empty_database(admin_database_url: str) -> Iterator[str]:
    """A database with nothing in it, not even the migrations."""
    name = f"monid_empty_{uuid.uuid4().hex[:8]}"
    create_database(admin_database_url, name)
    yield _with_database(admin_database_url, name)
    drop_database(admin_database_url, name)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of REDIS_URL's server of this test worker's own (14 without workers),
    or of an embedded Redis when REDIS_URL is unset."""
    server = None
    base = os.environ.get("REDIS_URL")
    if not base:
        from shared.embedded import start_redis

        server = start_redis(tmp_path_factory.mktemp("embedded-redis") / "redis.db")
        base = server.url
    url = _with_redis_db(base, _test_redis_db())
    redis_lib.Redis.from_url(url).flushdb()
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def base_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment a web or worker process of the tests gets."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RETRY_BASE_SECONDS": "0.1",
        "RETRY_MAX_SECONDS": "1",
        "LOG_LEVEL": "INFO",
        # Tests send far more than an agent would; tests/integration/test_limits.py
        # checks the limits themselves.
        "RATE_LIMIT_PER_MINUTE": "1000000",
        # Short, so that tests of revoked keys wait little; still reused within a test.
        "API_KEY_CACHE_SECONDS": "0.3",
        "PUBLIC_RATE_LIMIT_PER_MINUTE": "1000000",
    }


@pytest.fixture(scope="session")
def settings(base_env: dict[str, str]) -> Settings:
    return load_settings(base_env)


@pytest.fixture(scope="session")
def pool(settings: Settings) -> Iterator[ConnectionPool]:
    pool = make_pool(settings.database_url, max_size=20, name="tests")
    pool.open(wait=True)
    yield pool
    pool.close()


# What a clean slate keeps: what the migrations and the catalog's sync wrote.
KEPT_TABLES = ("schema_migrations", "catalog_endpoints")


@pytest.fixture(scope="session")
def clean_slate(pool: ConnectionPool) -> str:
    """The statements that empty every other table and restart its sequences. Rows are
    deleted rather than truncated: TRUNCATE makes every table and index anew and costs
    70 to 140 ms a test here, DELETE of a test's few rows about 5. The deletes run as
    a replica (neither foreign keys nor triggers fire, as with TRUNCATE)."""
    with transaction(pool) as conn:
        tables = [r["tablename"] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> ALL(%s) ORDER BY tablename", (list(KEPT_TABLES),))]
        sequences = [r["name"] for r in conn.execute(
            "SELECT s.relname AS name FROM pg_class s "
            "JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i') "
            "JOIN pg_class t ON t.oid = d.refobjid "
            "WHERE s.relkind = 'S' AND t.relname = ANY(%s) ORDER BY 1", (tables,))]
    return "; ".join(["SET LOCAL session_replication_role = replica",
                      *(f'DELETE FROM "{t}"' for t in tables),
                      *(f'ALTER SEQUENCE "{s}" RESTART' for s in sequences)])


@pytest.fixture
def db(pool: ConnectionPool, redis_url: str, clean_slate: str) -> ConnectionPool:
    """A clean slate: no keys, no runs, an empty queue."""
    with transaction(pool) as conn:
        conn.execute(clean_slate, prepare=False)  # type: ignore[arg-type]
    redis_lib.Redis.from_url(redis_url).flushdb()
    return pool


@pytest.fixture
def redis(redis_url: str) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(redis_url)


@pytest.fixture
def app(settings: Settings, db: ConnectionPool) -> Iterator[Flask]:
    from api.app import create_app

    app = create_app(settings)
    yield app
    app.extensions["monid"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_key(db: ConnectionPool) -> KeyMaker:
    return KeyMaker(db)


@pytest.fixture
def key(make_key: KeyMaker) -> str:
    return make_key("user_abc123")


@pytest.fixture
def api() -> Iterator[FakeJsonApi]:
    """A loopback JSON API that follows a provider's habits (see tests/fakes/jsonapi.py)."""
    with FakeJsonApi() as fake:
        yield fake

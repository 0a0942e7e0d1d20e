"""Endpoint health on the real database: the sweeper's rollup of recent runs, and the
`metrics` and `hints` that discover, inspect and the runs' answers carry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared import health
from shared.catalog import load_catalog
from shared.db import autocommit, transaction
from shared.services import Services
from shared.settings import Settings
from shared.store.catalog import sync_catalog
from tests.helpers import auth, insert_demo_run
from worker.sweeper import Sweeper

UNKNOWN = {"health": "unknown", "p50Seconds": None, "p90Seconds": None, "successRate": None,
           "window": "24h"}
QUEUE_TIMEOUT = '{"source": "platform", "code": "QUEUE_TIMEOUT", "message": "late"}'


@pytest.fixture
def client(app: Flask, settings: Settings, db: ConnectionPool) -> FlaskClient:
    """The app, with the test database's catalog table matching the catalog files."""
    with transaction(db) as conn:
        sync_catalog(conn, load_catalog(settings.catalog_dir))
    return app.test_client()


def ended(pool: ConnectionPool, endpoint: str, status: str, seconds: float = 1.0,
          error: str | None = None) -> str:
    """A demo run ended `status`, `seconds` after its start."""
    run_id = insert_demo_run(pool, endpoint, {"message": "hi"})
    with transaction(pool) as conn:
        conn.execute("UPDATE runs SET status = %(status)s, started_at = created_at, "
                     "completed_at = created_at + make_interval(secs => %(seconds)s), "
                     "error = %(error)s::json WHERE id = %(id)s",
                     {"status": status, "seconds": seconds, "error": error, "id": run_id})
    return run_id


def rollup(pool: ConnectionPool, **kwargs: Any) -> int | None:
    with autocommit(pool) as conn:
        return health.rollup_endpoint_health(conn, force=True, **kwargs)


def metrics(pool: ConnectionPool, endpoint: str) -> health.Metrics:
    with autocommit(pool) as conn:
        return health.read_metrics(conn, [("demo", endpoint)])[("demo", endpoint)]


def inspect(client: FlaskClient, key: str, endpoint: str) -> Any:
    resp = client.post("/v1/inspect", json={"provider": "demo", "endpoint": endpoint},
                       headers=auth(key))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def test_an_endpoint_without_runs_is_unknown(client: FlaskClient, key: str,
                                             db: ConnectionPool) -> None:
    assert rollup(db) == 0
    assert inspect(client, key, "/echo")["metrics"] == UNKNOWN
    found = client.post("/v1/discover", json={"query": "echo"}, headers=auth(key)).get_json()
    assert found["results"] and all(r["metrics"] == UNKNOWN for r in found["results"])


def test_the_rollup_judges_the_runs_that_say_something_of_the_endpoint(
        client: FlaskClient, key: str, db: ConnectionPool) -> None:
    for seconds in range(1, 10):
        ended(db, "/echo", "COMPLETED", seconds)
    ended(db, "/echo", "FAILED", 0.5)
    # Not judged: stopped by its caller, blocked by a control, never started in time,
    # still running.
    ended(db, "/echo", "STOPPED")
    ended(db, "/echo", "BLOCKED")
    ended(db, "/echo", "TIMED_OUT", error=QUEUE_TIMEOUT)
    insert_demo_run(db, "/echo", {"message": "hi"})
    assert rollup(db) == 1
    expected = {"health": "degraded", "p50Seconds": 5.0, "p90Seconds": 8.2,
                "successRate": 0.9, "window": "24h"}
    assert inspect(client, key, "/echo")["metrics"] == expected
    found = client.post("/v1/discover", json={"query": "echo", "limit": 20},
                        headers=auth(key)).get_json()
    by_endpoint = {(r["provider"], r["endpoint"]): r["metrics"] for r in found["results"]}
    assert by_endpoint[("demo", "/echo")] == expected
    assert all(m == UNKNOWN for pair, m in by_endpoint.items() if pair != ("demo", "/echo"))


def test_a_steady_endpoint_is_healthy_and_one_that_just_broke_is_an_outage(
        db: ConnectionPool) -> None:
    for _ in range(20):
        ended(db, "/echo", "COMPLETED")
    for _ in range(19):
        ended(db, "/fail", "COMPLETED")
    rollup(db)
    assert metrics(db, "/echo").health == "healthy"
    assert metrics(db, "/fail").health == "healthy"
    for _ in range(5):
        ended(db, "/fail", "FAILED")
    ended(db, "/echo", "TIMED_OUT")
    rollup(db)
    assert metrics(db, "/fail").health == "outage"
    assert (metrics(db, "/echo").health, metrics(db, "/echo").success_rate) == \
        ("stable", round(20 / 21, 4))


def test_runs_older_than_the_window_and_endpoints_left_without_runs_drop_out(
        db: ConnectionPool) -> None:
    for _ in range(5):
        ended(db, "/echo", "COMPLETED")
    assert rollup(db) == 1
    later = datetime.now(UTC) + timedelta(hours=health.WINDOW_HOURS, minutes=1)
    assert rollup(db, now=later) == 0
    assert metrics(db, "/echo") == health.UNKNOWN


def test_the_sweeper_rolls_up_about_once_a_minute(settings: Settings, db: ConnectionPool) -> None:
    for _ in range(5):
        ended(db, "/echo", "COMPLETED")
    sweeper = Sweeper(settings=settings, pool=db, catalog=load_catalog(settings.catalog_dir),
                      adapters={}, publish=lambda *_: None)
    assert sweeper.sweep().endpoints_rolled_up == 1
    assert metrics(db, "/echo").health == "healthy"
    assert sweeper.sweep().endpoints_rolled_up is None  # not due again yet


def test_the_service_function_answers_unknown_for_endpoints_without_a_row(
        client: FlaskClient, db: ConnectionPool) -> None:
    for _ in range(5):
        ended(db, "/echo", "COMPLETED")
    rollup(db)
    svc: Services = client.application.extensions["monid"]
    found = health.endpoint_metrics(svc, [("demo", "/echo"), ("demo", "/nope")])
    assert found[("demo", "/echo")].health == "healthy"
    assert found[("demo", "/nope")] == health.UNKNOWN


def test_answers_carry_hints(client: FlaskClient, key: str, db: ConnectionPool) -> None:
    card = inspect(client, key, "/echo")
    assert card["hints"]["run it"]["kind"] == "run"
    assert (card["hints"]["run it"]["provider"], card["hints"]["run it"]["endpoint"]) == \
        ("demo", "/echo")
    found = client.post("/v1/discover", json={"query": "echo"}, headers=auth(key)).get_json()
    best = found["results"][0]
    assert found["hints"]["inspect the best match"] == {
        "kind": "inspect", "provider": best["provider"], "endpoint": best["endpoint"]}
    accepted = client.post("/v1/run", json={"provider": "demo", "endpoint": "/echo",
                                            "input": {"message": "hi"}}, headers=auth(key))
    assert accepted.status_code == 202
    run_id = accepted.get_json()["runId"]
    assert accepted.get_json()["hints"]["wait for its end"] == {
        "kind": "getRun", "runId": run_id, "wait": 30}
    polled = client.get(f"/v1/runs/{run_id}", headers=auth(key)).get_json()
    assert polled["hints"]["wait for its end"]["runId"] == run_id

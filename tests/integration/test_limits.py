"""Rate limits per key (shared by every web process through Redis) and the cap
on a caller's runs in flight."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from psycopg_pool import ConnectionPool

from api.app import create_app
from shared.catalog import load_catalog
from shared.settings import Settings
from tests.helpers import KeyMaker, auth
from worker.providers.demo import DemoAdapter
from worker.runner import Runner


@pytest.fixture
def limited(settings: Settings, db: ConnectionPool) -> Iterator[list[Flask]]:
    """Two web 'processes' sharing one Redis, 5 requests a minute, 3 runs in flight."""
    limited_settings = dataclasses.replace(settings, rate_limit_per_minute=5,
                                           max_runs_in_flight=3)
    apps = [create_app(limited_settings) for _ in range(2)]
    yield apps
    for app in apps:
        app.extensions["monid"].pool.close()


def echo(app: Flask, key: str) -> Any:
    return app.test_client().post("/v1/run", headers=auth(key), json={
        "provider": "demo", "endpoint": "/echo", "input": {}})


def test_a_key_over_its_limit_gets_429_with_the_headers(limited: list[Flask], key: str,
                                                        make_key: KeyMaker) -> None:
    one, two = limited
    answers = [one.test_client().get("/v1/runs", headers=auth(key)) for _ in range(3)]
    answers += [two.test_client().get("/v1/runs", headers=auth(key)) for _ in range(2)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0"]
    assert all(a.headers["RateLimit-Limit"] == "5" for a in answers)
    over = one.test_client().get("/v1/runs", headers=auth(key))
    assert over.status_code == 429
    body = over.get_json()
    assert body["code"] == 429 and body["errorCode"] == "RATE_LIMITED"
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert over.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(over.headers["RateLimit-Reset"]) <= 60
    # Another key has its own budget.
    other = make_key("user_other")
    assert two.test_client().get("/v1/runs", headers=auth(other)).status_code == 200


def test_the_count_survives_redis_forgetting_its_scripts(limited: list[Flask],
                                                         key: str) -> None:
    """A restarted Redis has no scripts: the counting script is sent again, and the window
    keeps its expiry."""
    one, _ = limited
    client = one.test_client()
    assert client.get("/v1/runs", headers=auth(key)).headers["RateLimit-Remaining"] == "4"
    redis_client = one.extensions["monid"].redis
    redis_client.script_flush()
    assert client.get("/v1/runs", headers=auth(key)).headers["RateLimit-Remaining"] == "3"
    (window,) = redis_client.keys("monid:ratelimit:*")
    assert 0 < redis_client.ttl(window) <= 65


def test_requests_go_through_when_redis_is_down(settings: Settings, db: ConnectionPool,
                                                key: str) -> None:
    app = create_app(dataclasses.replace(settings, rate_limit_per_minute=1,
                                         redis_url="redis://127.0.0.1:1/0"))
    try:
        client = app.test_client()
        assert [client.get("/v1/runs", headers=auth(key)).status_code
                for _ in range(3)] == [200] * 3
    finally:
        app.extensions["monid"].pool.close()


def test_runs_in_flight_are_capped_per_caller(limited: list[Flask], settings: Settings,
                                              make_key: KeyMaker, db: ConnectionPool) -> None:
    one, _ = limited
    keys = [make_key("user_busy") for _ in range(2)]  # the cap is the caller's, not a key's
    accepted = [echo(one, keys[n % 2]) for n in range(3)]
    assert [a.status_code for a in accepted] == [202] * 3
    refused = echo(one, keys[0])
    assert refused.status_code == 429
    assert refused.get_json()["errorCode"] == "RATE_LIMITED"
    assert "in flight" in refused.get_json()["message"]
    runner = Runner(settings=settings, pool=db, catalog=load_catalog(settings.catalog_dir),
                    adapters={"demo": DemoAdapter()}, publish=lambda *_: None)
    assert runner.run(accepted[0].get_json()["runId"]) == "completed"
    assert echo(one, keys[1]).status_code == 202

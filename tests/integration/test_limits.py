"""Rate limits per key (shared by every web process through Redis) and the cap
on a caller's runs in flight."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask, g
from psycopg_pool import ConnectionPool

from api import ratelimit
from api.app import create_app
from api.errors import ApiError
from shared.catalog import load_catalog
from shared.settings import Settings
from tests.helpers import KeyMaker, auth
from worker.providers.demo import DemoAdapter
from worker.runner import Runner


@pytest.fixture
def apps(settings: Settings, db: ConnectionPool) -> Iterator[Callable[..., list[Flask]]]:
    """Web 'processes' sharing one Redis, made with the settings given."""
    made: list[Flask] = []

    def make(count: int = 2, **changes: Any) -> list[Flask]:
        new = [create_app(dataclasses.replace(settings, **changes)) for _ in range(count)]
        made.extend(new)
        return new

    yield make
    for app in made:
        app.extensions["monid"].close()


@pytest.fixture
def limited(apps: Callable[..., list[Flask]]) -> list[Flask]:
    """Two web 'processes' sharing one Redis, 5 requests a minute, 3 runs in flight."""
    return apps(rate_limit_per_minute=5, max_runs_in_flight=3)


def hit(app: Flask, key_id: int | str, limit: int) -> ratelimit.Quota | None:
    """One request of `key_id` against `limit`, straight to the limiter: its quota, or
    ApiError when refused."""
    with app.app_context():
        ratelimit.check_rate(app.extensions["monid"].redis, key_id, limit)
        quota: ratelimit.Quota | None = g.get("quota")
        return quota


def echo(app: Flask, key: str) -> Any:
    return app.test_client().post("/v1/run", headers=auth(key), json={
        "provider": "demo", "endpoint": "/echo", "input": {}})


def test_a_key_over_its_limit_gets_429_with_the_headers(limited: list[Flask], key: str,
                                                        make_key: KeyMaker,
                                                        clock: list[float]) -> None:
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


def test_the_count_survives_redis_forgetting_its_scripts(limited: list[Flask], key: str,
                                                         clock: list[float]) -> None:
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
                                              make_key: KeyMaker, db: ConnectionPool,
                                              clock: list[float]) -> None:
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


def test_the_chunk_grows_with_the_limit() -> None:
    assert [ratelimit.chunk_for(n) for n in (1, 5, 60, 1200, 1999, 2000, 10_000, 64_000,
                                             10_000_000)] == [1, 1, 1, 1, 1, 2, 10, 64, 64]


def test_a_small_limit_is_exact_across_processes_and_threads(apps: Callable[..., list[Flask]],
                                                             key: str,
                                                             clock: list[float]) -> None:
    """Under 2,000 a minute every request asks Redis: exactly the limit is admitted, each
    with its own RateLimit-Remaining."""
    one, two = apps(rate_limit_per_minute=40)
    statuses: list[int] = []
    remaining: list[str] = []
    lock = threading.Lock()

    def client(app: Flask) -> None:
        web = app.test_client()
        for _ in range(10):
            answer = web.get("/v1/runs", headers=auth(key))
            with lock:
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    remaining.append(answer.headers["RateLimit-Remaining"])

    threads = [threading.Thread(target=client, args=(app,)) for app in (one, two) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [200] * 40 + [429] * 20
    assert sorted(remaining, key=int) == [str(n) for n in range(40)]


def test_a_high_limit_is_never_exceeded_by_the_fleet(apps: Callable[..., list[Flask]],
                                                     redis: redis_lib.Redis,
                                                     clock: list[float]) -> None:
    """Two processes of 8 threads each, 30,000 requests against 20,010 a minute (chunks of
    20): together they admit at most the limit, and at least the limit less what each may
    hold unused (one chunk less one)."""
    limit = 20_010  # chunks of 20, the last one cut to 10
    chunk = ratelimit.chunk_for(limit)
    assert chunk == 20
    fleet = apps(rate_limit_per_minute=limit)
    admitted = [0] * 16
    refused = [0] * 16
    start = threading.Barrier(16)

    def requests(n: int) -> None:
        app = fleet[n % 2]
        start.wait()
        for _ in range(30_000 // 16):
            try:
                hit(app, "busy", limit)
            except ApiError as exc:
                assert exc.status == 429
                refused[n] += 1
            else:
                admitted[n] += 1

    threads = [threading.Thread(target=requests, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert limit - 2 * (chunk - 1) <= sum(admitted) <= limit
    assert sum(admitted) + sum(refused) == 30_000 // 16 * 16
    (window,) = redis.keys("monid:ratelimit:busy:*")
    assert int(redis.get(window) or 0) == limit  # granted in all, never past the limit
    # Each process now refuses the key without asking Redis again.
    for app in fleet:
        with pytest.raises(ApiError):
            hit(app, "busy", limit)


def test_a_chunk_is_counted_in_the_process_with_sensible_headers(
        apps: Callable[..., list[Flask]], redis: redis_lib.Redis, clock: list[float]) -> None:
    one, two = apps(rate_limit_per_minute=10_000)  # chunks of 10
    quotas = [hit(one, 7, 10_000) for _ in range(3)]
    assert [q.remaining if q else None for q in quotas] == [9_999, 9_998, 9_997]
    (window,) = redis.keys("monid:ratelimit:7:*")
    assert int(redis.get(window) or 0) == 10  # one round trip for ten requests
    assert 0 < redis.ttl(window) <= 65
    quota = hit(two, 7, 10_000)  # the other process asks for its own chunk
    assert quota is not None and quota.remaining == 9_980 + 9
    assert int(redis.get(window) or 0) == 20
    assert hit(one, 7, 10_000) == ratelimit.Quota(10_000, 9_996, 40)


def test_the_last_chunk_stops_at_the_limit_and_the_window_rolls_over(
        apps: Callable[..., list[Flask]], redis: redis_lib.Redis, clock: list[float]) -> None:
    (one,) = apps(1, rate_limit_per_minute=2_005)  # chunks of 2
    for _ in range(2_004):
        hit(one, "k", 2_005)
    (window,) = redis.keys("monid:ratelimit:k:*")
    assert int(redis.get(window) or 0) == 2_004
    last = hit(one, "k", 2_005)  # granted 1, not 2: never past the limit
    assert last is not None and last.remaining == 0
    assert int(redis.get(window) or 0) == 2_005
    with pytest.raises(ApiError) as refused:
        hit(one, "k", 2_005)
    assert refused.value.status == 429
    assert refused.value.headers["RateLimit-Remaining"] == "0"
    assert refused.value.headers["Retry-After"] == "40"
    clock[0] += 40  # the next window
    quota = hit(one, "k", 2_005)
    assert quota is not None and quota.remaining == 2_004 and quota.reset_seconds == 60
    limiter = one.extensions[ratelimit.EXTENSION]
    assert {slot[2] for slot in limiter.held} == {int(clock[0] // 60)}  # the past forgotten
    assert len(redis.keys("monid:ratelimit:k:*")) == 2


def test_requests_go_through_when_redis_is_down_with_a_high_limit(
        apps: Callable[..., list[Flask]], key: str) -> None:
    (app,) = apps(1, rate_limit_per_minute=100_000, redis_url="redis://127.0.0.1:1/0")
    client = app.test_client()
    answers = [client.get("/v1/runs", headers=auth(key)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert all("RateLimit-Remaining" not in a.headers for a in answers)


def test_a_redis_that_hangs_holds_no_queue_of_asks(apps: Callable[..., list[Flask]],
                                                   clock: list[float],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What a process holds is still counted when Redis goes away; past it, the threads
    that waited for an ask that failed go through at once instead of each asking in turn."""
    (app,) = apps(1, rate_limit_per_minute=10_000)
    assert hit(app, "k", 10_000) is not None  # a chunk of 10 held
    asks = []

    def hangs(*_: Any) -> tuple[int, int]:
        asks.append(1)
        time.sleep(0.5)
        raise redis_lib.TimeoutError("Timeout reading from socket")

    limiter = app.extensions[ratelimit.EXTENSION]
    monkeypatch.setattr(limiter, "grant", hangs)
    assert [hit(app, "k", 10_000) is not None for _ in range(9)] == [True] * 9
    quotas: list[ratelimit.Quota | None] = []
    threads = [threading.Thread(target=lambda: quotas.append(hit(app, "k", 10_000)))
               for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert quotas == [None] * 8  # through, without the headers
    assert time.monotonic() - started < 2.5
    assert len(asks) < 4

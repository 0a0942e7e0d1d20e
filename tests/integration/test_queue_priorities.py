"""Priorities on the real Redis: the lists our publisher writes are the ones
Celery's own publishing writes, and a worker's consumer takes them lowest first."""

from __future__ import annotations

import json
import time

import redis as redis_lib
from flask.testing import FlaskClient

from shared.queue import QUEUE, QUEUE_KEYS, RunPublisher, enqueue_run, make_publisher, queue_key
from shared.settings import Settings
from tests.helpers import auth


def test_celery_and_our_publisher_write_the_same_lists(settings: Settings,
                                                       redis: redis_lib.Redis) -> None:
    redis.flushdb()
    app = make_publisher(settings)
    try:
        for step in (0, 3, 6, 9):
            enqueue_run(app, f"01JABCDEFGHJKMNPQRSTVWXY{step:02d}", priority=step)
            RunPublisher(redis).publish(f"01JABCDEFGHJKMNPQRSTVWXZ{step:02d}", step)
    finally:
        app.close()
    for step in (0, 3, 6, 9):
        messages = [json.loads(m) for m in redis.lrange(queue_key(step), 0, -1)]
        assert len(messages) == 2, step
        assert {m["properties"]["priority"] for m in messages} == {step}


def test_a_caller_with_a_backlog_is_published_behind_a_caller_with_a_few(
        client: FlaskClient, make_key: object, redis: redis_lib.Redis) -> None:
    heavy = make_key("heavy")  # type: ignore[operator]
    light = make_key("light")  # type: ignore[operator]
    body = {"provider": "demo", "endpoint": "/echo", "input": {}}
    for _ in range(12):
        assert client.post("/v1/run", json=body, headers=auth(heavy)).status_code == 202
    assert client.post("/v1/run", json=body, headers=auth(light)).status_code == 202
    deadline = time.monotonic() + 5
    while sum(redis.llen(k) for k in QUEUE_KEYS) < 13 and time.monotonic() < deadline:
        time.sleep(0.05)
    # The heavy caller's first three go first; its fourth on get priority 3. The
    # light caller's one run is in the first list, which a worker reads first.
    assert redis.llen(QUEUE) == 4
    assert redis.llen(queue_key(3)) == 9

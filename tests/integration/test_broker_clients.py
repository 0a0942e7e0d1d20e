"""The worker's Redis transport builds a redis-py client per channel, not one per
command: counted while a real Celery worker (threads pool, acks late, task events
on, as Flower switches them on) runs tasks against the real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis as redis_lib
from celery import Celery
from celery.contrib.testing.worker import start_worker
from kombu.transport import redis as kombu_redis

from shared.broker import Transport
from shared.queue import worker_config
from shared.settings import Settings

TASKS = 60


class Constructions:
    """Counts redis.Redis objects built while it is on."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    @contextmanager
    def on(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        original = redis_lib.Redis.__init__

        def counting(client: Any, *args: Any, **kwargs: Any) -> None:
            with self.lock:
                self.count += 1
            original(client, *args, **kwargs)

        monkeypatch.setattr(redis_lib.Redis, "__init__", counting)
        try:
            yield
        finally:
            monkeypatch.setattr(redis_lib.Redis, "__init__", original)


def clients_per_task(settings: Settings, redis_url: str, transport: type,
                     monkeypatch: pytest.MonkeyPatch) -> float:
    redis_lib.Redis.from_url(redis_url).flushdb()
    config = {**worker_config(settings), "broker_url": redis_url, "broker_transport": transport,
              "worker_send_task_events": True, "worker_concurrency": 4}
    app = Celery("clients", set_as_current=False)
    app.config_from_object(config)
    done = redis_lib.Redis.from_url(redis_url)

    @app.task(name="clients.count")
    def count() -> None:
        done.incr("clients:done")

    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False,
                      loglevel="WARNING"):
        count.delay()  # the first task opens what the worker keeps
        deadline = time.monotonic() + 30
        while int(done.get("clients:done") or 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        counted = Constructions()
        with counted.on(monkeypatch):
            for _ in range(TASKS):
                count.delay()
            while int(done.get("clients:done") or 0) < TASKS + 1:
                assert time.monotonic() < deadline + 60, "the tasks did not run"
                time.sleep(0.05)
            time.sleep(0.5)  # the last acks
    app.close()
    return counted.count / TASKS


def test_one_redis_client_per_channel_not_per_command(
        settings: Settings, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = clients_per_task(settings, redis_url, Transport, monkeypatch)
    kombus = clients_per_task(settings, redis_url, kombu_redis.Transport, monkeypatch)
    # kombu's own builds a client for each ack, unacked record and event at least; ours
    # builds none once its channels have theirs (publishing the tasks here included).
    print(f"\nredis-py clients built a task: kombu's transport {kombus:.2f}, ours {ours:.2f}")
    assert kombus >= 3, kombus
    assert ours < 0.2, ours

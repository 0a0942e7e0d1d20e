"""The worker's Redis transport builds a redis-py client per channel, not one per
command: counted while a real Celery worker (threads pool, acks late, task events
on, as Flower switches them on) runs tasks against the real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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


@contextmanager
def worker_running(settings: Settings, redis_url: str,
                   transport: type) -> Iterator[Callable[[int], None]]:
    """A real Celery worker on `transport` that has run its first task; yields a function
    that sends it N more tasks and returns once they ran and were acknowledged."""
    redis_lib.Redis.from_url(redis_url).flushdb()
    config = {**worker_config(settings), "broker_url": redis_url, "broker_transport": transport,
              "worker_send_task_events": True, "worker_concurrency": 4}
    app = Celery("clients", set_as_current=False)
    app.config_from_object(config)
    done = redis_lib.Redis.from_url(redis_url)

    @app.task(name=f"clients.count.{uuid.uuid4().hex}")  # Celery keeps names it has seen
    def count() -> None:
        done.incr("clients:done")

    def run(tasks: int) -> None:
        target = int(done.get("clients:done") or 0) + tasks
        deadline = time.monotonic() + 60
        for _ in range(tasks):
            count.delay()
        while int(done.get("clients:done") or 0) < target:
            assert time.monotonic() < deadline, "the tasks did not run"
            time.sleep(0.05)
        time.sleep(0.5)  # the last acks

    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False,
                      loglevel="WARNING"):
        run(1)  # the first task opens what the worker keeps
        yield run
    app.close()


def clients_per_task(settings: Settings, redis_url: str, transport: type,
                     monkeypatch: pytest.MonkeyPatch) -> float:
    with worker_running(settings, redis_url, transport) as run:
        counted = Constructions()
        with counted.on(monkeypatch):
            run(TASKS)
    return counted.count / TASKS


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server of this test's own: a server counts the commands of all its
    clients, and the suite's other tests share REDIS_URL's server."""
    from shared.embedded import start_redis

    server = start_redis(tmp_path / "redis.db")
    try:
        yield server.url
    finally:
        server.stop()


def transactions_per_task(settings: Settings, redis_url: str, transport: type) -> float:
    """MULTI/EXEC transactions the server saw a task (the whole server's count, so the
    server must be the worker's alone)."""
    server = redis_lib.Redis.from_url(redis_url)

    def multis() -> int:
        return int(server.info("commandstats").get("cmdstat_multi", {}).get("calls", 0))

    with worker_running(settings, redis_url, transport) as run:
        before = multis()
        run(TASKS)
        return (multis() - before) / TASKS


def test_one_redis_client_per_channel_not_per_command(
        settings: Settings, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = clients_per_task(settings, redis_url, Transport, monkeypatch)
    kombus = clients_per_task(settings, redis_url, kombu_redis.Transport, monkeypatch)
    # kombu's own builds a client for each ack, unacked record and event at least; ours
    # builds none once its channels have theirs (publishing the tasks here included).
    print(f"\nredis-py clients built a task: kombu's transport {kombus:.2f}, ours {ours:.2f}")
    assert kombus >= 3, kombus
    assert ours < 0.2, ours


def test_the_unacked_record_is_written_without_a_transaction(
        settings: Settings, own_redis: str) -> None:
    """kombu records each message a worker holds, and removes it at the ack, each time in
    a MULTI/EXEC; ours sends the same two commands in one round trip without one."""
    ours = transactions_per_task(settings, own_redis, Transport)
    kombus = transactions_per_task(settings, own_redis, kombu_redis.Transport)
    print(f"\nMULTI/EXEC a task: kombu's transport {kombus:.2f}, ours {ours:.2f}")
    assert kombus >= 1.9, kombus
    assert ours < 0.2, ours


def test_the_restorer_hands_back_a_held_message_and_drops_an_index_entry_alone(
        redis_url: str) -> None:
    """What the record without a transaction leans on: a message held past the visibility
    timeout goes back to its queue, and an index entry whose message is gone (a connection
    lost between the two commands) is dropped without handing anything back."""
    from kombu import Connection

    server = redis_lib.Redis.from_url(redis_url)
    server.flushdb()
    with Connection(redis_url, transport=Transport) as connection:
        channel = connection.channel()
        queue = connection.SimpleQueue("held", channel=channel)
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        qos = channel.qos
        assert server.hlen(qos.unacked_key) == 1 and server.zcard(qos.unacked_index_key) == 1
        server.zadd(qos.unacked_index_key, {"lost-tag": 1.0})  # its message never written
        # Both older than the visibility timeout.
        server.zadd(qos.unacked_index_key, {message.delivery_tag: 1.0})
        qos.restore_visible(num=10)
        assert server.zcard(qos.unacked_index_key) == 0 and server.hlen(qos.unacked_key) == 0
        assert server.llen("held") == 1  # the held message, once; nothing for the lost tag
        queue.close()

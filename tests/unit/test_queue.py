"""The web's RunPublisher writes the message Celery's send_task writes."""

from __future__ import annotations

import base64
import json
from typing import Any

import fakeredis
import pytest
import redis

from shared.queue import (
    QUEUE,
    QUEUE_KEYS,
    TASK_RUN,
    PublishFailed,
    RunPublisher,
    make_publisher,
    queue_key,
    task_name,
)
from shared.settings import load_settings

RUN_ID = "01JABCDEFGHJKMNPQRSTVWXYZ0"
# Differ per message or per process by design.
VARYING_HEADERS = {"id", "root_id", "origin"}
VARYING_PROPERTIES = {"correlation_id", "reply_to", "delivery_tag"}


def _celery_message(priority: int | None = None, shadow: str | None = None
                    ) -> dict[str, Any]:
    """What `send_task` puts on the queue, caught at the transport."""
    settings = load_settings({"DATABASE_URL": "postgresql://u@127.0.0.1/x",
                              "REDIS_URL": "redis://127.0.0.1:6379/0"})
    app = make_publisher(settings)
    app.conf.broker_url = "memory://"
    app.conf.broker_transport = None
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        app.send_task(TASK_RUN, args=[RUN_ID], queue=QUEUE, retry=False, priority=priority,
                      shadow=shadow)
        raw = channel._get(QUEUE)  # the memory transport keeps the envelope as a dict
    app.close()
    return raw if isinstance(raw, dict) else json.loads(raw)


@pytest.mark.parametrize("shadow", [None, task_name("demo", "/echo")])
def test_message_matches_celerys(shadow: str | None) -> None:
    ours = json.loads(RunPublisher(fakeredis.FakeRedis()).message(RUN_ID, shadow=shadow))
    theirs = _celery_message(shadow=shadow)
    assert ours["headers"]["shadow"] == shadow
    assert set(ours) == set(theirs)
    for field in ("content-encoding", "content-type"):
        assert ours[field] == theirs[field]
    assert json.loads(base64.b64decode(ours["body"])) == json.loads(base64.b64decode(
        theirs["body"]) if theirs["properties"].get("body_encoding") == "base64"
        else theirs["body"])
    assert set(ours["headers"]) == set(theirs["headers"])
    for name, value in theirs["headers"].items():
        if name not in VARYING_HEADERS:
            assert ours["headers"][name] == value, name
    assert ours["headers"]["root_id"] == ours["headers"]["id"]
    assert ours["properties"]["correlation_id"] == ours["headers"]["id"]
    assert set(ours["properties"]) >= set(theirs["properties"]) - {"delivery_tag"}
    for name, value in theirs["properties"].items():
        if name not in VARYING_PROPERTIES:
            assert ours["properties"][name] == value, name


def test_publish_pushes_onto_the_runs_list() -> None:
    client = fakeredis.FakeRedis()
    publisher = RunPublisher(client)
    publisher.publish(RUN_ID)
    publisher.publish(RUN_ID)
    raw = client.lrange(QUEUE, 0, -1)
    assert len(raw) == 2
    first, second = (json.loads(m) for m in raw)
    assert first["headers"]["id"] != second["headers"]["id"]  # one task ID per message
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]


def test_publish_failure_is_publish_failed() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(PublishFailed, match="ConnectionError"):
        RunPublisher(client).publish(RUN_ID)


def test_publish_soon_sends_everything_in_order_and_flush_waits_for_it() -> None:
    client = fakeredis.FakeRedis()
    publisher = RunPublisher(client)
    ids = [f"01JABCDEFGHJKMNPQRSTVW{n:04d}" for n in range(1200)]
    for run_id in ids:
        publisher.publish_soon(run_id)
    assert publisher.flush(timeout=10)
    raw = client.lrange(QUEUE, 0, -1)
    # Workers take from the tail (BRPOP): the first published is the first taken.
    taken = [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in reversed(raw)]
    assert taken == ids


def test_publish_soon_with_redis_down_logs_and_carries_on(
        caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    publisher = RunPublisher(client)
    with caplog.at_level("WARNING", logger="monid.queue"):
        publisher.publish_soon(RUN_ID)
        assert publisher.flush(timeout=10)
    assert any("sweeper will publish" in r.getMessage() for r in caplog.records)
    # The thread is still there for the next one.
    publisher.client = fakeredis.FakeRedis()
    publisher.publish_soon(RUN_ID)
    assert publisher.flush(timeout=10)
    assert publisher.client.llen(QUEUE) == 1


def test_close_sends_what_is_pending_and_the_publisher_can_go_on() -> None:
    client = fakeredis.FakeRedis()
    publisher = RunPublisher(client)
    for _ in range(3):
        publisher.publish_soon(RUN_ID)
    publisher.close()
    assert client.llen(QUEUE) == 3
    assert publisher._thread is not None
    publisher._thread.join(timeout=5)
    assert not publisher._thread.is_alive()
    publisher.publish_soon(RUN_ID)
    assert publisher.flush(timeout=10)
    assert client.llen(QUEUE) == 4


@pytest.mark.parametrize("priority", [0, 3, 6, 9])
def test_a_message_with_a_priority_matches_celerys(priority: int) -> None:
    ours = json.loads(RunPublisher(fakeredis.FakeRedis()).message(RUN_ID, priority))
    theirs = _celery_message(priority)
    assert ours["properties"]["priority"] == theirs["properties"]["priority"] == priority


def test_publish_soon_puts_each_priority_in_its_own_list_in_order() -> None:
    client = fakeredis.FakeRedis()
    publisher = RunPublisher(client)
    ids = [f"01JABCDEFGHJKMNPQRSTVW{n:04d}" for n in range(30)]
    for n, run_id in enumerate(ids):
        publisher.publish_soon(run_id, (n % 3) * 3)
    assert publisher.flush(timeout=10)
    for step in (0, 3, 6):
        raw = client.lrange(queue_key(step), 0, -1)
        taken = [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in reversed(raw)]
        assert taken == [run_id for n, run_id in enumerate(ids) if (n % 3) * 3 == step]
    assert set(QUEUE_KEYS) == {QUEUE, f"{QUEUE}\x06\x163", f"{QUEUE}\x06\x166",
                               f"{QUEUE}\x06\x169"}


def test_the_broker_transport_turns_a_detached_connection_into_a_connection_error() -> None:
    from kombu import Connection

    from shared.broker import Channel, Transport

    settings = load_settings({"DATABASE_URL": "postgresql://u@127.0.0.1/x",
                              "REDIS_URL": "redis://127.0.0.1:1/0"})
    app = make_publisher(settings)
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
    connection = Connection("redis://127.0.0.1:1/0", transport=Transport)
    channel = Channel.__new__(Channel)
    channel.connection = connection.transport
    connection.transport.client = None  # what closing the connection leaves behind
    with pytest.raises(redis.ConnectionError):
        channel._connparams()
def test_publish_soon_names_each_task_after_its_provider_and_endpoint() -> None:
    client = fakeredis.FakeRedis()
    publisher = RunPublisher(client)
    publisher.publish_soon(RUN_ID, shadow=task_name("github", "/repos/get"))
    publisher.publish_soon(RUN_ID)
    assert publisher.flush(timeout=10)
    first, second = (json.loads(m) for m in reversed(client.lrange(QUEUE, 0, -1)))
    assert first["headers"]["shadow"] == "monid.run github /repos/get"
    assert second["headers"]["shadow"] is None
    assert first["headers"]["task"] == second["headers"]["task"] == TASK_RUN

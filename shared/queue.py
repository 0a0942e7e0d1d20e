"""The queue: Celery on Redis, shared by the web (which publishes) and the worker.

PostgreSQL is the source of truth; a message only wakes a worker up, and
carries nothing but the run ID.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import socket
import ssl
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery
from kombu import Queue

from shared.broker import Transport as BrokerTransport
from shared.ids import random_uuid
from shared.settings import FlowerSettings, Settings

log = logging.getLogger("monid.queue")
TASK_RUN = "monid.run"
QUEUE = "runs"
# Webhook deliveries have a queue of their own, which every worker also consumes: a
# worker takes from both in turn, so a flood of runs does not hold deliveries back
# behind it, nor a flood of deliveries the runs (a try lasts WEBHOOK_TIMEOUT_SECONDS
# at most).
TASK_DELIVER = "monid.deliver_webhook"
WEBHOOK_QUEUE = "webhooks"
# kombu's Redis transport keeps a queue's messages of each priority step in a list
# of their own (`runs` for 0, `runs\x06\x163` for 3, ...) and a worker asks for them
# in this order: a lower priority is taken sooner.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEPARATOR = "\x06\x16"


def queue_key(priority: int) -> str:
    """The Redis list holding this queue's messages of a priority."""
    step = max(s for s in PRIORITY_STEPS if s <= max(0, priority))
    return QUEUE if step == 0 else f"{QUEUE}{PRIORITY_SEPARATOR}{step}"


QUEUE_KEYS = tuple(queue_key(step) for step in PRIORITY_STEPS)


def task_name(provider: str, endpoint: str) -> str:
    """What a run's task is called in Flower and the worker's logs (Celery's `shadow`
    name), so that its provider and endpoint show at a glance: `monid.run demo /echo`.
    The task itself is always `monid.run`, with the run ID as its one argument."""
    return f"{TASK_RUN} {provider} {endpoint}"


class PublishFailed(Exception):
    """The broker did not take the message; the run stays in PostgreSQL."""


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
              "required": ssl.CERT_REQUIRED}


def redis_tls(settings: Settings | FlowerSettings) -> dict[str, Any] | None:
    """The TLS options of a rediss:// REDIS_URL (None for plain redis://), as both
    redis-py and Celery's `broker_use_ssl` (kombu, Flower) take them: every client of
    Redis checks its certificate the one way REDIS_SSL_CERT_REQS says."""
    if urlsplit(settings.redis_url).scheme != "rediss":
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[settings.redis_ssl_cert_reqs]}
    if settings.redis_ssl_ca_certs is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_certs)
    return options


def make_redis(settings: Settings, **options: Any) -> redis.Redis:
    """A redis-py client of REDIS_URL, with its TLS policy; it connects on first use."""
    return redis.Redis.from_url(settings.redis_url, **(redis_tls(settings) or {}), **options)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Configuration for at-least-once delivery on Redis."""
    return {
        "broker_url": settings.redis_url,
        "broker_transport": BrokerTransport,
        "broker_transport_options": {
            # An unacknowledged message is handed out again after this long:
            # it must outlast the longest task plus the longest countdown.
            "visibility_timeout": settings.task_visibility_timeout,
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
            "socket_keepalive": True,
            "retry_on_timeout": True,
            "health_check_interval": 25,
            "priority_steps": list(PRIORITY_STEPS),
            "sep": PRIORITY_SEPARATOR,
        },
        # Without it kombu would not check a rediss:// certificate at all.
        "broker_use_ssl": redis_tls(settings),
        "broker_connection_retry_on_startup": True,
        # One pooled producer per thread that may publish at once: with Celery's
        # default of 10, the web's 64 threads queued for a producer.
        "broker_pool_limit": max(10, settings.web_threads, settings.worker_concurrency),
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # Task events (received, started, succeeded...) cost a worker a sixth of its CPU
        # and serve only whoever watches: Flower switches them on for the workers it
        # watches (and a worker started with WORKER_TASK_EVENTS=true sends them from the
        # start). A "sent" event per publish would cost the web a second Redis write on
        # every accepted run.
        "worker_send_task_events": settings.worker_task_events,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
    }


def flower_config(settings: FlowerSettings) -> dict[str, Any]:
    """What Flower's Celery app needs: the broker (with its TLS policy) and the queue."""
    return {
        "broker_url": settings.redis_url,
        "broker_use_ssl": redis_tls(settings),
        "broker_transport_options": {"socket_connect_timeout": 3, "socket_timeout": 10,
                                     "socket_keepalive": True, "retry_on_timeout": True,
                                     "health_check_interval": 25},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_default_queue": QUEUE,
        "accept_content": ["json"],
        "enable_utc": True,
    }


def worker_config(settings: Settings) -> dict[str, Any]:
    """`celery_config` with what a worker process adds: its pool, concurrency and
    shutdown. The benchmarks' no-op worker uses it too, to be measured alike."""
    return {
        **celery_config(settings),
        "task_queues": (Queue(QUEUE), Queue(WEBHOOK_QUEUE)),
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.worker_concurrency,
        "worker_enable_remote_control": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # With REMAP_SIGTERM=SIGQUIT, Celery's own soft shutdown waits this long.
        "worker_soft_shutdown_timeout": settings.worker_shutdown_grace_seconds,
    }


def make_publisher(settings: Settings) -> Celery:
    """A Celery app used only to publish; it connects on first use."""
    return Celery("monid", config_source=celery_config(settings), set_as_current=False)


class RunPublisher:
    """Publishes run IDs straight to Redis: the web's publishing path.

    It writes the message Celery's `send_task(TASK_RUN, args=[run_id], queue=QUEUE,
    priority=p)` writes (task protocol 2, kombu's Redis envelope, in the list of
    its priority) without going through
    Celery's producer machinery, which cost the web a third of its CPU per
    accepted run. Delayed publishes (a countdown) go through Celery
    (`enqueue_run`). `tests/unit/test_queue.py` checks the two messages match.
    kombu's own Producer, used directly without Celery, was measured against it
    (`python -m bench.publish`, BENCHMARKS.md): 0.21 of this template's rate as the
    publishing thread sends (many IDs a LPUSH), 0.80 even one message at a time,
    with 6x the CPU a message: far outside the 5% it would need to replace it.

    `publish` sends one message and says whether Redis took it. `publish_soon`
    hands the ID to a background thread that sends whatever has gathered in one
    LPUSH: a request does not wait on Redis, and under load one round trip
    carries many runs. The run is committed before either is called; a message
    that never goes out (Redis down, the process killed) is published by the
    sweeper, so a run is late but never lost.
    """

    MAX_BATCH = 500

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"
        self._reply_to = str(uuid.uuid4())
        self._template = self._envelope()
        self._pending: list[tuple[str, int, str | None]] = []
        self._sending = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._thread_pid = 0
        self._closed = False
        self._flush_at_exit = False

    def message(self, run_id: str, priority: int = 0, shadow: str | None = None) -> bytes:
        """The message for a run ID (a ULID: nothing in it needs escaping in JSON), with
        its priority and the name its task shows (see `task_name`)."""
        task_id = str(random_uuid())
        body = base64.b64encode(_BODY_TEMPLATE.replace(_RUN, run_id).encode()).decode("ascii")
        return (self._template.replace(_TASK, task_id).replace(_BODY, body)
                .replace(_QUOTED_SHADOW, json.dumps(shadow)).replace(_RUN, run_id)
                .replace(_TAG, str(random_uuid()))
                .replace(_PRIORITY_JSON, str(max(0, min(9, priority)))).encode())

    def _envelope(self) -> str:
        """The message with placeholders, made once: building each from a dict took
        longer than sending it."""
        return json.dumps({
            "body": _BODY,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py", "task": TASK_RUN, "id": _TASK, "shadow": _SHADOW, "eta": None,
                "expires": None, "group": None, "group_index": None, "retries": 0,
                "timelimit": [None, None], "root_id": _TASK, "parent_id": None,
                "argsrepr": repr([_RUN]), "kwargsrepr": "{}", "origin": self._origin,
                "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": _TASK, "reply_to": self._reply_to, "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE}, "priority": _PRIORITY,
                "body_encoding": "base64", "delivery_tag": _TAG,
            },
        })

    def publish(self, run_id: str, priority: int = 0, shadow: str | None = None) -> None:
        """Publish the run's ID; raises PublishFailed if Redis does not take it."""
        try:
            self.client.lpush(queue_key(priority), self.message(run_id, priority, shadow))
        except redis.RedisError as exc:
            raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc

    def publish_soon(self, run_id: str, priority: int = 0, shadow: str | None = None) -> None:
        """Publish the run's ID from the background thread, without waiting."""
        with self._changed:
            self._pending.append((run_id, priority, shadow))
            if self._thread is None or self._thread_pid != os.getpid() or self._closed:
                self._start()
            self._changed.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every ID handed to `publish_soon` went out (or failed to)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._sending,
                                          timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, then let the thread end (a later `publish_soon` starts
        another)."""
        self.flush(timeout)
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _start(self) -> None:
        # A forked child gets the lists but not the thread: it starts its own.
        self._closed = False
        if self._thread_pid != os.getpid():
            self._sending = 0  # a forked child: the parent's sends are not its own
        self._thread_pid = os.getpid()
        self._thread = threading.Thread(target=self._send_forever, name="monid-publisher",
                                        daemon=True)
        self._thread.start()
        if not self._flush_at_exit:
            atexit.register(self.flush)
            self._flush_at_exit = True

    def _send_forever(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending) or self._closed)
                if not self._pending:
                    return
                batch = self._pending[:self.MAX_BATCH]
                del self._pending[:self.MAX_BATCH]
                self._sending += len(batch)
            try:
                self._send(batch)
            except Exception as exc:  # redis raises many kinds; all mean "not published"
                log.warning("publish failed; the sweeper will publish the runs",
                            extra={"runs": len(batch), "error": f"{type(exc).__name__}: {exc}"})
            finally:
                with self._changed:
                    self._sending -= len(batch)
                    self._changed.notify_all()


    def _send(self, batch: list[tuple[str, int, str | None]]) -> None:
        """One LPUSH per priority list, in one round trip; order kept within each."""
        by_key: dict[str, list[bytes]] = {}
        for run_id, priority, shadow in batch:
            by_key.setdefault(queue_key(priority), []).append(
                self.message(run_id, priority, shadow))
        if len(by_key) == 1:
            [(key, messages)] = by_key.items()
            self.client.lpush(key, *messages)
            return
        pipe = self.client.pipeline(transaction=False)
        for key, messages in by_key.items():
            pipe.lpush(key, *messages)
        pipe.execute()


# Placeholders of the message template: no JSON, hostname or ULID contains them.
_TASK, _RUN, _BODY, _TAG = "@@task-id@@", "@@run-id@@", "@@body@@", "@@delivery-tag@@"
_PRIORITY = "@@priority@@"
_PRIORITY_JSON = json.dumps(_PRIORITY)  # a number in the message, not a string
_SHADOW = "@@shadow@@"
_QUOTED_SHADOW = json.dumps(_SHADOW)  # replaced by a JSON string, or null
_BODY_TEMPLATE = json.dumps(
    [[_RUN], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])


def enqueue_run(app: Celery, run_id: str, countdown: float | None = None,
                priority: int = 0, *, shadow: str | None = None, task_id: str | None = None,
                retries: int = 0) -> None:
    """Publish the run's ID; raises PublishFailed if the broker does not take it.
    `task_id` and `retries` make the message a retry of that task (Flower shows it so)."""
    try:
        # No retry here: a message that does not go out is published by the
        # sweeper, and retrying would hold the request that waits on it.
        app.send_task(TASK_RUN, args=[run_id], queue=QUEUE, countdown=countdown, retry=False,
                      priority=priority, shadow=shadow, task_id=task_id, retries=retries)
    except Exception as exc:  # kombu and redis raise many kinds; all mean "not published"
        raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc


def enqueue_delivery(app: Celery, delivery_id: str) -> None:
    """Publish a webhook delivery's ID, at once; raises PublishFailed if the broker does
    not take it (the delivery stays in PostgreSQL, and the sweeper publishes it)."""
    try:
        app.send_task(TASK_DELIVER, args=[delivery_id], queue=WEBHOOK_QUEUE, retry=False)
    except Exception as exc:  # kombu and redis raise many kinds; all mean "not published"
        raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc

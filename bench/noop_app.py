"""A Celery app whose one task does nothing but count itself: the floor under the
worker's own throughput and latency.

    celery --app bench.noop_app worker ...   (as bench.throughput and bench.polling start it)

Configured as worker/app.py configures the monid worker, by `shared.queue.worker_config`
(the same broker, queue, acks, prefetch, events, pool, concurrency and worker options),
from the same environment variables. The task `bench.noop` counts its
executions with one Redis INCR (NOOP_COUNT); given `sent_at` (time.time() when it was
published) it also pushes how long the message took to start (NOOP_LATENCY).
bench.common.publish_noop publishes it as shared.queue.enqueue_run publishes a run.
"""

from __future__ import annotations

import threading
import time

import redis
from celery import Celery

from bench.common import NOOP_COUNT, NOOP_LATENCY, TASK_NOOP
from shared.logs import configure_logging
from shared.queue import make_redis, worker_config
from shared.settings import load_settings_or_exit

settings = load_settings_or_exit()
configure_logging(settings.log_level)
app = Celery("monid", set_as_current=True)
app.config_from_object(worker_config(settings))

_client: redis.Redis | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = make_redis(settings)
    return _client


@app.task(name=TASK_NOOP, ignore_result=True)
def noop(sent_at: float | None = None) -> None:
    if sent_at is not None:
        _redis().rpush(NOOP_LATENCY, time.time() - sent_at)
    _redis().incr(NOOP_COUNT)


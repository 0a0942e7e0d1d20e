"""The cluster's numbers for /metrics: what every worker on every host wrote to
PostgreSQL and Redis (runs ended, attempts, run durations, waits, queue depth), read
at scrape time and kept a few seconds per process so scrapes stay cheap.

A scrape never fails because PostgreSQL or Redis is down: the numbers of that
source are left out, `monid_metrics_source_up` says which, and the failed read is
counted in `monid_scrape_errors_total`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis
from prometheus_client import Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from psycopg_pool import ConnectionPool

from shared.db import DatabaseUnavailable, transaction
from shared.queue import QUEUE_KEYS
from shared.store import metrics as metrics_store

log = logging.getLogger("monid.metrics")

# Callers shown by name in monid_runs_waiting_to_start_top_callers.
TOP_WAITING_CALLERS = 5

T = TypeVar("T")


@dataclass(frozen=True)
class DatabaseNumbers:
    runs: metrics_store.RunCounts
    attempts: metrics_store.AttemptCounts
    durations: metrics_store.DurationHistogram
    oldest_unclaimed_age: float
    start_delays: metrics_store.DurationHistogram
    waiting: metrics_store.WaitingRuns
    deliveries: metrics_store.DeliveryCounts


@dataclass(frozen=True)
class _Reading(Generic[T]):
    value: T | None  # None: the source could not be read
    read_at: float  # time.monotonic()


class ClusterCollector:
    """Cluster-wide numbers read from PostgreSQL and Redis, each kept `cache_seconds`.

    A failed read is kept as long as a good one, so a database that is down
    costs one connection timeout per `cache_seconds`, not one per scrape.
    """

    def __init__(self, pool: ConnectionPool, redis_client: redis.Redis, *,
                 cache_seconds: float, scrape_errors: Counter,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._redis = redis_client
        self._cache_seconds = cache_seconds
        self._scrape_errors = scrape_errors
        self._clock = clock
        self._lock = threading.Lock()  # one read at a time per process; the others wait
        self._database: _Reading[DatabaseNumbers] | None = None
        self._queue: _Reading[int] | None = None

    def describe(self) -> list[Metric]:
        return []  # registering must not read the database

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._database = self._fresh(self._database, "database", self._read_database)
            self._queue = self._fresh(self._queue, "redis", self._read_queue_depth)
            database, queue = self._database, self._queue
            now = self._clock()
        up = GaugeMetricFamily("monid_metrics_source_up",
                               "1 if /metrics could read this source (within the cache time)",
                               labels=["source"])
        up.add_metric(["database"], 0.0 if database.value is None else 1.0)
        up.add_metric(["redis"], 0.0 if queue.value is None else 1.0)
        yield up
        if database.value is not None:
            yield from _database_families(database.value, now - database.read_at)
        if queue.value is not None:
            yield GaugeMetricFamily("monid_queue_depth",
                                    "Messages waiting in the queue's Redis lists (every "
                                    "priority)", value=queue.value)

    def _fresh(self, reading: _Reading[T] | None, source: str,
               read: Callable[[], T]) -> _Reading[T]:
        now = self._clock()
        if reading is not None and now - reading.read_at < self._cache_seconds:
            return reading
        try:
            return _Reading(read(), now)
        except (DatabaseUnavailable, redis.RedisError) as exc:
            log.warning("metrics could not read a source",
                        extra={"source": source, "error": str(exc)})
        except Exception:  # a scrape answers without this source rather than fail
            log.exception("metrics could not read a source", extra={"source": source})
        self._scrape_errors.labels(source=source).inc()
        return _Reading(None, now)

    def _read_database(self) -> DatabaseNumbers:
        with transaction(self._pool) as conn:
            metrics_store.limit_statement_time(conn)
            return DatabaseNumbers(
                runs=metrics_store.count_runs_by_status(conn),
                attempts=metrics_store.count_attempts_by_outcome(conn),
                durations=metrics_store.summarize_run_durations(conn),
                oldest_unclaimed_age=metrics_store.find_oldest_unclaimed_run_age(conn),
                start_delays=metrics_store.summarize_start_delays(conn),
                waiting=metrics_store.count_waiting_runs(conn, top=TOP_WAITING_CALLERS),
                deliveries=metrics_store.count_webhook_deliveries(conn),
            )

    def _read_queue_depth(self) -> int:
        pipe = self._redis.pipeline(transaction=False)
        for key in QUEUE_KEYS:
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())


def _database_families(numbers: DatabaseNumbers, cached_for: float) -> Iterator[Metric]:
    ended = CounterMetricFamily("monid_runs_ended", "Runs that ended, by final status",
                                labels=["status"])
    for status, count in numbers.runs.ended.items():
        ended.add_metric([status], count)
    yield ended
    in_progress = GaugeMetricFamily("monid_runs_in_progress", "Runs not ended yet, by status",
                                    labels=["status"])
    for status, count in numbers.runs.open.items():
        in_progress.add_metric([status], count)
    yield in_progress
    attempts = CounterMetricFamily("monid_attempts",
                                   "Ended attempts to call a provider, by outcome "
                                   "(attempts in progress: monid_attempts_in_progress)",
                                   labels=["outcome"])
    for outcome, count in numbers.attempts.ended.items():
        attempts.add_metric([outcome], count)
    yield attempts
    yield GaugeMetricFamily("monid_attempts_in_progress",
                            "Attempts a worker holds now, without an outcome yet",
                            value=numbers.attempts.open)
    yield _histogram("monid_run_duration_seconds",
                     "Time from accepted to ended (completed_at - created_at) of ended runs",
                     numbers.durations)
    # The database's clock stopped when it answered; a cached age keeps growing.
    age = numbers.oldest_unclaimed_age
    yield GaugeMetricFamily("monid_oldest_unclaimed_run_age_seconds",
                            "Age of the oldest RUNNING run that no worker has started; 0 if none",
                            value=age + cached_for if age > 0 else 0.0)
    yield _histogram("monid_run_start_delay_seconds",
                     "Time from accepted to first started (started_at - created_at) of "
                     "started runs", numbers.start_delays)
    waiting = numbers.waiting
    yield GaugeMetricFamily("monid_runs_waiting_to_start",
                            "Runs accepted that no worker has started yet",
                            value=waiting.total)
    top = GaugeMetricFamily("monid_runs_waiting_to_start_top_callers",
                            f"Runs not started yet of the {TOP_WAITING_CALLERS} callers with "
                            "the most", labels=["caller"])
    for caller, count in waiting.top_callers:
        top.add_metric([caller], count)
    yield top
    slots = GaugeMetricFamily("monid_runs_waiting_for_slot",
                              "Runs held back until a concurrency slot frees: the caller's "
                              "(slot=\"caller\") or a provider's or endpoint's limit",
                              labels=["slot"])
    for slot, count in sorted(waiting.by_slot.items()):
        slots.add_metric([slot], count)
    yield slots
    sent = numbers.deliveries
    by_status = GaugeMetricFamily("monid_webhook_deliveries",
                                  "Webhook deliveries by status: DELIVERED (sent, answered "
                                  "2xx), FAILED (schedule spent or 410 Gone), PENDING",
                                  labels=["status"])
    for status, count in sent.by_status.items():
        by_status.add_metric([status], count)
    yield by_status
    yield GaugeMetricFamily("monid_webhook_deliveries_due",
                            "PENDING webhook deliveries whose next try is due now",
                            value=sent.due)
    pending_age = sent.oldest_pending_age
    yield GaugeMetricFamily("monid_webhook_oldest_pending_delivery_age_seconds",
                            "Age of the oldest PENDING webhook delivery; 0 if none",
                            value=pending_age + cached_for if pending_age > 0 else 0.0)


def _histogram(name: str, documentation: str,
               histogram: metrics_store.DurationHistogram) -> HistogramMetricFamily:
    buckets = [(floatToGoString(bound), float(count)) for bound, count in histogram.buckets]
    buckets.append(("+Inf", float(histogram.count)))
    return HistogramMetricFamily(name, documentation, buckets=buckets,
                                 sum_value=histogram.sum_seconds)

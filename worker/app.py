"""The Celery app factory for worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import uuid
from typing import Any

from celery import Celery, Task, current_task
from celery.exceptions import Retry
from celery.signals import (
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from shared import store
from shared.catalog import Catalog, load_catalog
from shared.db import DatabaseUnavailable, autocommit, connect, make_pool
from shared.logs import run_id_var
from shared.queue import TASK_DELIVER, TASK_RUN, enqueue_delivery, enqueue_run, worker_config
from shared.scheduling import Limits, concurrency_limits
from shared.settings import Settings, SettingsError
from shared.startup import settle_heap
from worker.providers import make_adapters
from worker.retry import RetryPolicy
from worker.runner import Runner
from worker.sweeper import Background, Sweeper, publish_with
from worker.webhooks import Deliverer, DeliveryListener

log = logging.getLogger("monid.worker")


class RunFailed(Exception):
    """A run this task ended FAILED or TIMED_OUT. Raised so that monitors (Flower) show
    the task failed, with the run's error; the task's `throws` makes it an expected
    error, its message is acknowledged as after a success (task_acks_on_failure_or_timeout),
    and nothing retries it: the run has ended."""

    def __init__(self, status: str, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class DeliveryFailed(Exception):
    """A webhook try that was not answered 2xx: raised so that monitors (Flower) show the
    task failed, with why; an expected error (`throws`), acknowledged like a success.
    The delivery's next try is due in PostgreSQL, not in a retry of this task."""


class RunRetrying(Exception):
    """The reason monitors are given for a retry of a run's task."""


def _same_task(run_id: str) -> Any:
    """The request of the task running now in this thread, if it is `run_id`'s."""
    task = current_task
    request = getattr(task, "request", None) if task else None
    if request is None or not request.id or list(request.args or ()) != [run_id]:
        return None
    return request


class MonidCelery(Celery):
    """A Celery app that owns, per process that runs tasks, one runner with its
    database pool and HTTP client, and the background threads (heartbeat,
    sweeper). With the threads pool that is the worker process itself; with
    prefork, each pool child."""

    monid_settings: Settings
    monid_catalog: Catalog
    monid_limits: Limits
    monid_retry: RetryPolicy
    # Shared by this worker and its pool children: the prefix of their leases.
    monid_instance: str
    _runner: Runner | None = None
    _background: Background | None = None
    _deliverer: Deliverer | None = None
    _listener: DeliveryListener | None = None
    _lock = threading.Lock()

    @property
    def lease_prefix(self) -> str:
        return f"{socket.gethostname()}/{self.monid_instance}:"

    def runner(self) -> Runner:
        runner = self._runner
        if runner is not None:
            return runner
        with self._lock:
            if self._runner is None:
                settings = self.monid_settings
                # Of the process's connections, two (one of three or fewer) serve the
                # threads' claims and ends written together: one claims, one ends runs.
                size = settings.worker_db_pool_size
                grouped = 2 if size >= 4 else 1 if size >= 2 else 0
                pool = make_pool(settings.database_url, min_size=1, max_size=size - grouped,
                                 name="monid-worker", timeout=30)
                pool.open(wait=False)
                group_pool = None
                if grouped:
                    group_pool = make_pool(settings.database_url, min_size=1,
                                           max_size=grouped, name="monid-worker-group",
                                           timeout=30, by_keys=True)
                    group_pool.open(wait=False)
                self._runner = Runner(
                    settings=settings, pool=pool, catalog=self.monid_catalog,
                    adapters=make_adapters(settings, self.monid_catalog),
                    publish=self.publish_next, publish_retry=self.publish_retry,
                    name=f"{self.lease_prefix}{os.getpid()}", limits=self.monid_limits,
                    policy=self.monid_retry, group_pool=group_pool,
                )
            return self._runner

    def publish_next(self, run_id: str, countdown: float | None, priority: int = 0,
                     shadow: str | None = None) -> None:
        """The run's next message, under the name given, or the name its task has now
        (provider, endpoint)."""
        request = _same_task(run_id)
        enqueue_run(self, run_id, countdown, priority,
                    shadow=shadow or (request.shadow if request else None))

    def publish_retry(self, run_id: str, countdown: float | None, priority: int = 0,
                      shadow: str | None = None) -> None:
        """A retry's message: the same task again, one retry more, as Celery's own
        retry publishes it (the task then raises Retry, and Flower shows a retry)."""
        request = _same_task(run_id)
        if request is None:
            enqueue_run(self, run_id, countdown, priority, shadow=shadow)
            return
        request.monid_retry_in = countdown
        enqueue_run(self, run_id, countdown, priority, shadow=request.shadow,
                    task_id=request.id, retries=(request.retries or 0) + 1)

    def run_failed(self, run_id: str, outcome: str) -> RunFailed:
        """Why the run failed, from its stored error."""
        status, code, message = outcome.upper(), "UNKNOWN", "see the run's error"
        try:
            with autocommit(self.runner().pool) as conn:
                ended = store.get_run_end(conn, run_id)
            if ended is not None and isinstance(ended.error, dict):
                status = ended.status
                code = str(ended.error.get("code") or code)
                message = str(ended.error.get("message") or message)
        except DatabaseUnavailable:
            pass
        return RunFailed(status, code, message)

    def deliverer(self) -> Deliverer:
        deliverer = self._deliverer
        if deliverer is None:
            with self._lock:
                if self._deliverer is None:
                    self._deliverer = Deliverer(
                        self.monid_settings, self.runner().pool,
                        name=f"{self.lease_prefix}{os.getpid()}")
                deliverer = self._deliverer
        return deliverer

    def publish_delivery(self, delivery_id: str) -> None:
        enqueue_delivery(self, delivery_id)

    def sweeper(self) -> Sweeper:
        runner = self.runner()
        return Sweeper(settings=self.monid_settings, pool=runner.pool, catalog=runner.catalog,
                       adapters=runner.adapters, limits=self.monid_limits,
                       publish=publish_with(self), publish_delivery=self.publish_delivery)

    def start_background(self) -> None:
        runner = self.runner()
        self._background = Background(
            settings=self.monid_settings, renew=runner.renew_leases,
            sweeper=self.sweeper() if self.monid_settings.sweeper_enabled else None)
        self._background.start()
        self._listener = DeliveryListener(self.monid_settings, runner.pool,
                                          self.publish_delivery,
                                          handed_back=self.deliverer().handed_back)
        self._listener.start()

    def close_runner(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._background is not None:
            self._background.stop()
            self._background = None
        self._deliverer = None
        if self._runner is not None:
            if self._runner.group_pool is not self._runner.pool:
                self._runner.group_pool.close()
            self._runner.pool.close()
            self._runner = None

    def hand_back_and_exit(self) -> None:
        """The shutdown grace is over: hand back every run this worker (and its
        pool children) still holds, publish them for other workers, and exit."""
        try:
            with connect(self.monid_settings.database_url) as conn:
                released = store.hand_back_runs(conn, self.lease_prefix)
            for run_id in released:
                try:
                    enqueue_run(self, run_id)
                except Exception as exc:  # the sweeper publishes them after the grace
                    log.warning("publish failed", extra={"runId": run_id, "error": str(exc)})
            log.warning("shutdown grace over: runs handed back",
                        extra={"count": len(released), "runIds": released})
        except Exception:
            log.exception("hand back failed; the runs' leases will expire instead")
        finally:
            for child in multiprocessing.active_children():
                if child.pid:
                    os.kill(child.pid, signal.SIGKILL)
            os._exit(0)


def check_visibility_timeout(settings: Settings, catalog: Catalog) -> None:
    """Redis hands an unacknowledged message out again after the visibility
    timeout: it must outlast the longest task (bounded by the longest deadline)
    plus the longest countdown (LONG_WAIT_SECONDS)."""
    longest = max(e.deadline_seconds for e in catalog.all()) + settings.long_wait_seconds
    if settings.task_visibility_timeout <= longest:
        raise SettingsError("TASK_VISIBILITY_TIMEOUT",
                            f"is too small: {settings.task_visibility_timeout} s must exceed the "
                            f"longest deadline plus LONG_WAIT_SECONDS ({longest:g} s)")


def make_celery(settings: Settings, *, catalog: Catalog | None = None) -> MonidCelery:
    catalog = catalog or load_catalog(settings.catalog_dir)
    check_visibility_timeout(settings, catalog)
    limits = concurrency_limits(settings, catalog)
    app = MonidCelery("monid", set_as_current=True)
    app.config_from_object(worker_config(settings))
    app.monid_settings = settings
    app.monid_catalog = catalog
    app.monid_limits = limits
    app.monid_retry = RetryPolicy.from_settings(settings)
    app.monid_instance = uuid.uuid4().hex[:12]

    # A run that ends FAILED or TIMED_OUT raises RunFailed: an expected error (`throws`:
    # logged without a traceback), acknowledged like a success, never retried.
    # shared=False: a task is this app's alone. Celery's default also registers it on
    # every app made after it in the process, where the first made would answer.
    @app.task(name=TASK_RUN, bind=True, ignore_result=True, throws=(RunFailed,), shared=False,
              acks_on_failure_or_timeout=True, autoretry_for=(), max_retries=None)
    def run_task(self: Task, run_id: str) -> str:
        token = run_id_var.set(run_id)
        try:
            outcome = app.runner().run(run_id)
        except DatabaseUnavailable as exc:
            # The run is safe in PostgreSQL; ask again once the database is back.
            log.warning("database unavailable; the task will be retried",
                        extra={"error": str(exc)})
            raise self.retry(countdown=app.monid_retry.database_retry_seconds,
                             max_retries=None) from exc
        finally:
            run_id_var.reset(token)
        if outcome in ("failed", "timed_out"):
            raise app.run_failed(run_id, outcome)
        retry_in = getattr(self.request, "monid_retry_in", None)
        if outcome == "retry" and retry_in is not None:
            # Its message is out already (publish_retry): this only tells monitors.
            raise Retry(exc=RunRetrying(f"a transient failure; the next attempt is due in "
                                        f"{retry_in:.1f} s"), when=retry_in)
        return outcome

    # One webhook try: its lease, the send, the record (worker.webhooks). A try that
    # was not answered 2xx raises DeliveryFailed, so that Flower shows it failed and why.
    @app.task(name=TASK_DELIVER, bind=True, ignore_result=True, throws=(DeliveryFailed,),
              shared=False,
              acks_on_failure_or_timeout=True, autoretry_for=(), max_retries=None)
    def deliver_task(self: Task, delivery_id: str) -> str:
        try:
            outcome = app.deliverer().deliver(delivery_id)
        except DatabaseUnavailable as exc:
            # The delivery is safe in PostgreSQL; ask again once the database is back.
            log.warning("database unavailable; the delivery will be tried again",
                        extra={"deliveryId": delivery_id, "error": str(exc)})
            raise self.retry(countdown=app.monid_retry.database_retry_seconds,
                             max_retries=None) from exc
        if outcome.skipped:
            return "busy" if outcome.busy else "skipped"
        result = outcome.result
        if result is not None and not result.delivered:
            raise DeliveryFailed(f"{outcome.status or 'not recorded'}: {result.error}")
        return (outcome.status or "not recorded").lower()

    @worker_process_init.connect(weak=False)
    def _child_started(**_: Any) -> None:
        # A prefork pool child: its own connections and background threads.
        app._runner = None
        app._background = None
        app._deliverer = None
        app._listener = None
        app.start_background()
        settle_heap("worker")

    @worker_ready.connect(weak=False)
    def _ready(**_: Any) -> None:
        if settings.worker_pool == "threads":
            app.start_background()
            settle_heap("worker")

    @worker_shutting_down.connect(weak=False)
    def _shutting_down(**_: Any) -> None:
        grace = settings.worker_shutdown_grace_seconds
        log.info("shutting down: finishing runs in progress", extra={"graceSeconds": grace})
        timer = threading.Timer(grace, app.hand_back_and_exit)
        timer.daemon = True
        timer.start()

    @worker_shutdown.connect(weak=False)
    def _close(**_: Any) -> None:
        app.close_runner()

    return app

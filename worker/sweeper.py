"""The sweeper: finds runs that nobody is moving forward and moves them.

One sweep, under a PostgreSQL advisory lock so that only one process sweeps at
a time however many run one:

1. hands back runs whose lease expired (their worker died), counting the loss;
2. ends runs that must end: asked to stop (STOPPED), past their deadline or,
   never started, past their queue limit (TIMED_OUT), lost by their workers too
   often (FAILED: a poison run must not crash workers forever), or out of
   attempts — aborting a followed provider job first, so that its provider's
   slot is free only once the job is;
3. hands back runs waiting for a concurrency slot that has room (a slot freed
   by a worker that died, or by a run the sweeper ended);
4. publishes runs whose next step is due and whose message is not on its way:
   never published (the broker was down at accept time), lost by the broker
   (Redis restarted empty), or waiting in PostgreSQL for a long retry;
5. publishes webhook deliveries that are due and that nobody holds or published
   within the grace: a retry coming due, a notification missed, a message lost with
   Redis, a sender that died holding one;
6. about once a minute, rolls each endpoint's recent runs up into its health
   (`shared.health`), which discover and inspect read.

It runs inside every worker process (a thread), so there is no extra process to
deploy or to forget; `python -m worker.sweeper` runs it on its own.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from celery import Celery
from psycopg_pool import ConnectionPool

from shared import health, store
from shared.catalog import Catalog, load_catalog, split_input
from shared.db import DatabaseUnavailable, autocommit, make_pool
from shared.logs import run_id_var
from shared.queue import enqueue_delivery, enqueue_run, make_publisher, task_name
from shared.scheduling import Limits, concurrency_limits, priority_for
from shared.settings import Settings
from shared.startup import configured, or_exit
from shared.store import deliveries
from worker.providers import make_adapters
from worker.providers.base import Adapter, ProviderCall

log = logging.getLogger("monid.sweeper")

SWEEPER_LOCK_KEY = 0x6D6F6E6964_02
BATCH = 500

_END: dict[str, tuple[str, str, dict[str, str] | None]] = {
    "STOPPED": ("STOPPED", "STOPPED", None),
    "TIMED_OUT": ("TIMED_OUT", "TIMEOUT", {"source": "platform", "code": "DEADLINE_EXCEEDED",
                                           "message": "the run passed its endpoint's deadline"}),
    "QUEUE_TIMEOUT": ("TIMED_OUT", "TIMEOUT", {
        "source": "platform", "code": "QUEUE_TIMEOUT",
        "message": "the run could not start within the queue limit (QUEUE_TIMEOUT_SECONDS)"}),
    "WORKER_LOST": ("FAILED", "LOST", {"source": "platform", "code": "WORKER_LOST",
                                       "message": "the run's worker was lost too many times"}),
    "RETRIES_EXHAUSTED": ("FAILED", "LOST", {
        "source": "platform", "code": "RETRIES_EXHAUSTED",
        "message": "the last attempt was lost with its worker; no attempts are left"}),
}


# Publish a run's ID with a priority and the name its task shows.
SweepPublish = Callable[[str, int, str | None], None]


def publish_with(app: Celery) -> SweepPublish:
    """How a sweeper publishes through a Celery app: the run's ID, at once."""
    def publish(run_id: str, priority: int, shadow: str | None) -> None:
        enqueue_run(app, run_id, priority=priority, shadow=shadow)
    return publish


@dataclass
class SweepReport:
    released: list[str] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    woken: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    deliveries_published: list[str] = field(default_factory=list)
    endpoints_rolled_up: int | None = None  # None: the health rollup was not due
    skipped: bool = False


class Sweeper:
    def __init__(self, *, settings: Settings, pool: ConnectionPool, catalog: Catalog,
                 adapters: Mapping[str, Adapter], publish: SweepPublish,
                 limits: Limits | None = None,
                 publish_delivery: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.catalog = catalog
        self.adapters = adapters
        self.publish = publish
        self.limits = limits or Limits()
        self.publish_delivery = publish_delivery

    def sweep(self) -> SweepReport:
        """One sweep; `skipped` when another process holds the sweeper lock."""
        report = SweepReport()
        # A session lock, held across the sweep's transactions (the pool's
        # connections are in autocommit mode).
        with autocommit(self.pool) as conn:
            if not store.try_sweeper_lock(conn, SWEEPER_LOCK_KEY):
                report.skipped = True
                return report
            try:
                self._sweep(conn, report)
            finally:
                store.release_sweeper_lock(conn, SWEEPER_LOCK_KEY)
        return report

    def _sweep(self, conn: store.Conn, report: SweepReport) -> None:
        with conn.transaction():
            report.released = store.release_expired_leases(conn, limit=BATCH)
        for run_id in report.released:
            log.warning("lease expired: the worker was lost", extra={"runId": run_id})
        with conn.transaction():
            to_end = store.find_runs_to_end(conn, max_lost=self.settings.max_lost_attempts,
                                            limit=BATCH)
        for run in to_end:
            if run.provider_state:
                self._abort(run)  # before the end: the provider's slot frees with the job
            status, outcome, error = _END[run.reason]
            message = error["message"] if error else "stopped on request"
            # Guarded: a run a worker took meanwhile is left to it.
            if store.end_unheld_run(conn, run.id, status=status, error=error,
                                    outcome=outcome, message=message):
                report.ended[run.id] = status
                log.info("run ended by the sweeper", extra={"runId": run.id, "status": status})
        with conn.transaction():
            store.delete_expired_idempotency_keys(conn)
        self._wake(conn, report)
        with conn.transaction():
            due = store.take_runs_to_publish(
                conn, grace_seconds=self.settings.sweep_grace_seconds, limit=BATCH)
        for item in due:
            try:
                self.publish(item.run_id, priority_for(item.open_runs),
                             task_name(item.provider, item.endpoint))
                report.published.append(item.run_id)
            except Exception as exc:  # the next sweep tries again after the grace
                log.warning("publish failed", extra={"runId": item.run_id, "error": str(exc)})
                break
        if self.publish_delivery is not None:
            self._publish_deliveries(conn, report)
        report.endpoints_rolled_up = health.rollup_endpoint_health(conn)

    def _publish_deliveries(self, conn: store.Conn, report: SweepReport) -> None:
        """Due webhook deliveries nobody holds, marked for the grace and published."""
        assert self.publish_delivery is not None
        with conn.transaction():
            due = deliveries.publish_due_deliveries(
                conn, hold_seconds=self.settings.sweep_grace_seconds, limit=BATCH)
        for delivery_id in due:
            try:
                self.publish_delivery(delivery_id)
                report.deliveries_published.append(delivery_id)
            except Exception as exc:  # the next sweep tries again after the grace
                log.warning("publish failed", extra={"deliveryId": delivery_id,
                                                     "error": str(exc)})
                break

    def _wake(self, conn: store.Conn, report: SweepReport) -> None:
        """Fill every provider's slot that has room with runs waiting for it, and hand
        back runs waiting for a thread of their caller's that nothing has moved for the
        grace (as many as one worker process gives a caller: a process that has none
        left parks them again). What a worker that died, or a run this sweeper ended,
        left waiting goes on. A run handed back whose message goes astray is published
        again after the grace, like any."""
        for slot in store.find_waiting_slots(conn):
            limit = self.limits.for_slot(slot.slot)
            wanted = min(slot.waiting, BATCH)
            if slot.slot == "caller" and limit:
                if slot.quiet_seconds < self.settings.sweep_grace_seconds:
                    continue  # its runs are parked and handed back as they go: leave them
                wanted = min(wanted, limit)
            woken = store.wake_waiting_runs(conn, slot, limit=limit, wanted=wanted)
            for run in woken:
                report.woken.append(run.run_id)
                try:
                    self.publish(run.run_id, priority_for(run.open_runs),
                                 task_name(run.provider, run.endpoint))
                except Exception as exc:
                    log.warning("publish failed", extra={"runId": run.run_id,
                                                         "error": str(exc)})

    def _abort(self, run: store.RunToEnd) -> None:
        endpoint = self.catalog.find(run.provider, run.endpoint)
        adapter = self.adapters.get(run.adapter)
        if endpoint is None or adapter is None:
            return
        parts = split_input(run.input)
        token = run_id_var.set(run.id)
        try:
            adapter.abort(ProviderCall(
                run_id=run.id, provider=run.provider, endpoint=run.endpoint, call=endpoint.call,
                body=parts["body"], query_params=parts["queryParams"],
                path_params=parts["pathParams"], attempt=run.attempt_count,
                deadline_at=run.deadline_at, state=run.provider_state))
        except Exception:
            log.exception("abort failed")
        finally:
            run_id_var.reset(token)


class Background:
    """The heartbeat (lease renewal) and the sweeper loop, as daemon threads."""

    def __init__(self, *, settings: Settings, renew: Callable[[], int],
                 sweeper: Sweeper | None) -> None:
        self.settings = settings
        self.renew = renew
        self.sweeper = sweeper
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._heartbeat, name="monid-heartbeat",
                                         daemon=True)]
        if self.sweeper is not None:
            self.threads.append(threading.Thread(target=self._sweep_loop, name="monid-sweeper",
                                                 daemon=True))
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def _heartbeat(self) -> None:
        interval = max(1.0, self.settings.lease_seconds / 3)
        while not self.stopping.wait(interval):
            try:
                self.renew()
            except DatabaseUnavailable as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)})
            except Exception:
                log.exception("heartbeat failed")

    def _sweep_loop(self) -> None:
        assert self.sweeper is not None
        while not self.stopping.wait(self.settings.sweep_interval_seconds):
            try:
                self.sweeper.sweep()
            except Exception as exc:  # a database outage: the next sweep tries again
                log.warning("sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    """Run the sweeper alone, until interrupted: the pieces a worker would give it, made
    here, without a worker."""
    settings = configured()
    catalog = or_exit(lambda: load_catalog(settings.catalog_dir))
    limits = or_exit(lambda: concurrency_limits(settings, catalog))
    pool = make_pool(settings.database_url, min_size=1, max_size=2, name="monid-sweeper",
                     timeout=30)
    pool.open(wait=False)
    publisher = make_publisher(settings)
    sweeper = Sweeper(settings=settings, pool=pool, catalog=catalog,
                      adapters=make_adapters(settings, catalog), limits=limits,
                      publish=publish_with(publisher),
                      publish_delivery=lambda delivery_id: enqueue_delivery(publisher,
                                                                            delivery_id))
    stopping = threading.Event()
    # SIGTERM (the platform's stop) and SIGINT end the loop after the sweep at hand,
    # rather than raising wherever the sweep happens to be (a library may swallow it).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    log.info("sweeper running", extra={"intervalSeconds": settings.sweep_interval_seconds})
    try:
        while not stopping.wait(settings.sweep_interval_seconds):
            try:
                sweeper.sweep()
            except Exception as exc:
                log.warning("sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
    finally:
        pool.close()
    log.info("sweeper stopped")


if __name__ == "__main__":
    main()

"""The Celery app factory for worker processes."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from shared.catalog import Catalog, load_catalog
from shared.db import DatabaseUnavailable, make_pool
from shared.queue import TASK_RUN, celery_config, enqueue_run
from shared.settings import Settings
from worker.providers import make_adapters
from worker.runner import Runner
from worker.sweeper import Background, Sweeper

log = logging.getLogger("monid.worker")


class MonidCelery(Celery):
    """A Celery app that owns, per process, one runner with its database pool and
    HTTP client, and the background threads (heartbeat, sweeper)."""

    monid_settings: Settings
    monid_catalog: Catalog
    _runner: Runner | None = None
    _background: Background | None = None
    _lock = threading.Lock()

    def runner(self) -> Runner:
        runner = self._runner
        if runner is not None:
            return runner
        with self._lock:
            if self._runner is None:
                settings = self.monid_settings
                pool = make_pool(settings.database_url, min_size=1,
                                 max_size=settings.worker_db_pool_size, name="monid-worker",
                                 timeout=30)
                pool.open(wait=False)
                self._runner = Runner(
                    settings=settings, pool=pool, catalog=self.monid_catalog,
                    adapters=make_adapters(settings),
                    publish=lambda run_id, countdown: enqueue_run(self, run_id, countdown),
                )
            return self._runner

    def sweeper(self) -> Sweeper:
        runner = self.runner()
        return Sweeper(settings=self.monid_settings, pool=runner.pool, catalog=runner.catalog,
                       adapters=runner.adapters,
                       publish=lambda run_id: enqueue_run(self, run_id))

    def start_background(self) -> None:
        runner = self.runner()
        self._background = Background(
            settings=self.monid_settings, renew=runner.renew_leases,
            sweeper=self.sweeper() if self.monid_settings.sweeper_enabled else None)
        self._background.start()

    def close_runner(self) -> None:
        if self._background is not None:
            self._background.stop()
            self._background = None
        if self._runner is not None:
            self._runner.pool.close()
            self._runner = None


def make_celery(settings: Settings, *, catalog: Catalog | None = None) -> MonidCelery:
    app = MonidCelery("monid", set_as_current=True)
    config: dict[str, Any] = celery_config(settings)
    config.update(
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        worker_enable_remote_control=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.config_from_object(config)
    app.monid_settings = settings
    app.monid_catalog = catalog or load_catalog(settings.catalog_dir)

    @app.task(name=TASK_RUN, bind=True, ignore_result=True)
    def run_task(self: Task, run_id: str) -> str:
        try:
            return app.runner().run(run_id)
        except DatabaseUnavailable as exc:
            # The run is safe in PostgreSQL; ask again once the database is back.
            log.warning("database unavailable; the task will be retried",
                        extra={"runId": run_id, "error": str(exc)})
            raise self.retry(countdown=5, max_retries=None) from exc

    @worker_process_init.connect(weak=False)
    def _fresh_runner(**_: Any) -> None:
        # A forked pool child must not share its parent's connections.
        app._runner = None

    @worker_ready.connect(weak=False)
    def _start_background(**_: Any) -> None:
        app.start_background()

    @worker_shutdown.connect(weak=False)
    def _close(**_: Any) -> None:
        app.close_runner()

    return app

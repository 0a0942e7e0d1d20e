"""The Celery app factory for worker processes."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_shutdown

from shared.catalog import Catalog, load_catalog
from shared.db import DatabaseUnavailable, make_pool
from shared.queue import TASK_RUN, celery_config, enqueue_run
from shared.settings import Settings
from worker.providers import make_adapters
from worker.runner import Runner

log = logging.getLogger("monid.worker")


class MonidCelery(Celery):
    """A Celery app that owns one runner (and its database pool) per process."""

    monid_settings: Settings
    monid_catalog: Catalog
    _runner: Runner | None = None
    _runner_lock = threading.Lock()

    def runner(self) -> Runner:
        with self._runner_lock:
            return self._runner or self._make_runner()

    def _make_runner(self) -> Runner:
        if self._runner is None:
            pool = make_pool(self.monid_settings.database_url, min_size=1,
                             max_size=self.monid_settings.worker_db_pool_size,
                             name="monid-worker", timeout=30)
            pool.open(wait=False)
            self._runner = Runner(
                settings=self.monid_settings,
                pool=pool,
                catalog=self.monid_catalog,
                adapters=make_adapters(self.monid_settings),
                publish=lambda run_id, countdown: enqueue_run(self, run_id, countdown),
            )
        return self._runner

    def close_runner(self) -> None:
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

    @worker_shutdown.connect(weak=False)
    def _close(**_: Any) -> None:
        app.close_runner()

    return app

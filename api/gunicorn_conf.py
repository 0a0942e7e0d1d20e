"""gunicorn settings. Runs in the master before any worker starts, so a bad
environment or a broken catalog stops the process at once with one line."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

from shared.catalog import CatalogError, load_catalog
from shared.scheduling import concurrency_limits
from shared.settings import SettingsError, load_settings_or_exit
from shared.startup import settle_heap

_settings = load_settings_or_exit()
try:
    concurrency_limits(_settings, load_catalog(_settings.catalog_dir))
except CatalogError as exc:
    print(f"monid: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)
except SettingsError as exc:
    print(f"monid: configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)

# /metrics adds up what every worker process counted: each writes its counts to
# files in this folder. prometheus_client reads the variable when a worker first
# imports it, so it is set here, before any worker starts; files of an earlier
# server would add its counts to ours, so they go.
if _settings.metrics_multiproc_dir is None:
    _metrics_dir = Path(tempfile.mkdtemp(prefix="monid-metrics-"))
    _own_metrics_dir = True
else:
    _metrics_dir = _settings.metrics_multiproc_dir
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for _stale in _metrics_dir.glob("*.db"):
        _stale.unlink(missing_ok=True)
    _own_metrics_dir = False
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
# gunicorn's threaded worker, answering what gunicorn refuses itself in the envelope.
worker_class = "api.gunicorn_worker.EnvelopeThreadWorker"
threads = _settings.web_threads
keepalive = 75
graceful_timeout = 25
timeout = 60
accesslog = None  # the app logs each request itself, as JSON, with its request ID
# No control socket: every gunicorn of a host would share its one default path (and
# the platform restarts the process rather than talk to it), and stopping its thread
# held up every shutdown by about 4 s after the workers had exited.
control_socket_disable = True


class AppLogsRequests(Logger):
    """gunicorn's logger without its access line, whose fields gunicorn works out for
    every request even when the line is not written (3% of the web's CPU under load)."""

    def access(self, *args: Any, **kwargs: Any) -> None:
        pass


logger_class = AppLogsRequests
# gunicorn's own lines are JSON too, like every other line of the web process.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "shared.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"}},
    "root": {"level": _settings.log_level, "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        # The app logs each request itself (at INFO, with its request ID).
        "gunicorn.access": {"level": "CRITICAL", "handlers": ["stderr"], "propagate": False},
    },
}


def post_worker_init(worker: Any) -> None:
    """A worker process has loaded the app: its start-up objects stay out of the
    collector's full passes, which stopped every request of the process for 100+ ms."""
    settle_heap("web")


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended: its counters still count, its live gauges no longer do."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_metrics_dir))


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)

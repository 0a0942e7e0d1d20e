"""gunicorn settings. Runs in the master before any worker starts, so a bad
environment or a broken catalog stops the process at once with one line."""

from __future__ import annotations

import sys

from shared.catalog import CatalogError, load_catalog
from shared.settings import load_settings_or_exit

_settings = load_settings_or_exit()
try:
    load_catalog(_settings.catalog_dir)
except CatalogError as exc:
    print(f"monid: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "gthread"
threads = _settings.web_threads
keepalive = 75
graceful_timeout = 25
timeout = 60
accesslog = None

"""The module `celery -A worker.main worker` loads."""

from __future__ import annotations

import sys

from shared.catalog import CatalogError
from shared.logs import configure_logging
from shared.settings import SettingsError, load_settings_or_exit
from worker.app import make_celery

settings = load_settings_or_exit()
configure_logging(settings.log_level)
try:
    app = make_celery(settings)
except CatalogError as exc:
    print(f"monid: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
except SettingsError as exc:
    print(f"monid: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None

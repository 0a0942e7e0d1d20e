"""The WSGI entry point for gunicorn: `gunicorn -c api/gunicorn_conf.py api.wsgi:app`."""

from __future__ import annotations

import sys

from api.app import create_app
from shared.catalog import CatalogError
from shared.logs import configure_logging
from shared.settings import SettingsError, load_settings_or_exit

settings = load_settings_or_exit()
configure_logging(settings.log_level)
try:
    app = create_app(settings)
except CatalogError as exc:
    print(f"monid: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
except SettingsError as exc:
    print(f"monid: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None

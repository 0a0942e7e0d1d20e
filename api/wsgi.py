"""The WSGI entry point for gunicorn: `gunicorn -c api/gunicorn_conf.py api.wsgi:app`."""

from __future__ import annotations

from api.app import create_app
from shared.startup import configured, or_exit

settings = configured()
app = or_exit(lambda: create_app(settings))

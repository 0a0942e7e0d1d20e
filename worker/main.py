"""The module `celery -A worker.main worker` loads."""

from __future__ import annotations

from shared.startup import configured, or_exit
from worker.app import make_celery

settings = configured()
app = or_exit(lambda: make_celery(settings))

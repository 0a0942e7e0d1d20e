"""The module `celery -A worker.main worker` loads."""

from __future__ import annotations

from shared.logs import quiet_celery_task_lines
from shared.startup import configured, or_exit
from worker.app import make_celery

settings = configured()
quiet_celery_task_lines(settings.log_level)
app = or_exit(lambda: make_celery(settings))

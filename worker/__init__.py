"""The worker: Celery tasks that claim runs, call providers and record the results."""

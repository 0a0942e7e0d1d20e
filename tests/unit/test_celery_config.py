"""The worker's Celery configuration is the at-least-once one."""

from __future__ import annotations

import pytest

from shared.catalog import load_catalog
from shared.queue import QUEUE, TASK_RUN
from shared.settings import DEFAULT_CATALOG_DIR, SettingsError, load_settings
from worker.app import make_celery

ENV = {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/db", "REDIS_URL": "redis://127.0.0.1:1/0"}


def test_the_worker_is_configured_for_at_least_once_delivery() -> None:
    settings = load_settings(ENV)
    conf = make_celery(settings).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup is True
    assert conf.worker_send_task_events is True  # Flower sees every task from the workers
    assert conf.task_send_sent_event is False  # not one more Redis write per accepted run
    assert conf.task_ignore_result is True and not conf.result_backend
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_default_queue == QUEUE
    assert conf.worker_soft_shutdown_timeout == 25.0 < 30  # inside Heroku's 30 s
    # Redis hands an unacknowledged message out again after the visibility
    # timeout: it outlasts the longest task (bounded by the longest deadline)
    # plus the longest countdown.
    catalog = load_catalog(DEFAULT_CATALOG_DIR)
    longest_task = max(e.deadline_seconds for e in catalog.all())
    longest_countdown = settings.long_wait_seconds
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility > longest_task + longest_countdown


def test_a_visibility_timeout_shorter_than_the_longest_task_refuses_to_start() -> None:
    settings = load_settings({**ENV, "TASK_VISIBILITY_TIMEOUT": "900"})
    with pytest.raises(SettingsError) as caught:
        make_celery(settings)
    assert caught.value.variable == "TASK_VISIBILITY_TIMEOUT"


def test_messages_carry_only_the_run_id() -> None:
    from shared.queue import enqueue_run

    settings = load_settings(ENV)
    app = make_celery(settings)
    sent: list[dict[str, object]] = []
    app.send_task = lambda name, **kw: sent.append({"name": name, **kw})  # type: ignore
    enqueue_run(app, "01JGXYZABCDEFGHJKMNPQRSTVW")
    assert sent[0]["name"] == TASK_RUN
    assert sent[0]["args"] == ["01JGXYZABCDEFGHJKMNPQRSTVW"]
    assert "kwargs" not in sent[0]

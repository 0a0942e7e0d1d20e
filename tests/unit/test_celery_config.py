"""The worker's Celery configuration is the at-least-once one."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import pytest
from celery import Celery

from shared.catalog import load_catalog
from shared.queue import QUEUE, TASK_DELIVER, TASK_RUN, make_redis, redis_tls
from shared.settings import (
    DEFAULT_CATALOG_DIR,
    SettingsError,
    load_flower_settings,
    load_settings,
)
from worker.app import make_celery
from worker.flower import make_flower_app

ENV = {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/db", "REDIS_URL": "redis://127.0.0.1:1/0"}


def test_the_worker_is_configured_for_at_least_once_delivery() -> None:
    settings = load_settings(ENV)
    conf = make_celery(settings).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup is True
    # Task events only while someone watches: Flower switches them on.
    assert conf.worker_send_task_events is False
    watched = make_celery(load_settings({**ENV, "WORKER_TASK_EVENTS": "true"})).conf
    assert watched.worker_send_task_events is True
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


def test_each_app_answers_its_tasks_with_its_own_and_lends_them_to_no_other() -> None:
    """Two apps in one process (the tests, an embedded run): each runs its own task
    functions, and an app made after them has none of theirs, nor a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # DuplicateTaskNameWarning among them
        first = make_celery(load_settings(ENV))
        second = make_celery(load_settings(ENV))
        other = Celery("other", set_as_current=False)
        other.finalize(auto=True)
        for app in (first, second):
            app.finalize(auto=True)
    for name in (TASK_RUN, TASK_DELIVER):
        assert first.tasks[name].app is first
        assert second.tasks[name].app is second
        assert first.tasks[name].run is not second.tasks[name].run
        assert name not in other.tasks


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


def test_every_redis_client_follows_the_one_tls_policy(tmp_path: Path) -> None:
    plain = load_settings(ENV)
    assert redis_tls(plain) is None and make_celery(plain).conf.broker_use_ssl is None
    tls = {**ENV, "REDIS_URL": "rediss://127.0.0.1:1/0"}
    required = load_settings(tls)
    assert redis_tls(required) == {"ssl_cert_reqs": ssl.CERT_REQUIRED}  # by default
    assert make_celery(required).conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    relaxed = load_settings({**tls, "REDIS_SSL_CERT_REQS": "none", "REDIS_SSL_CA_CERTS": str(ca)})
    assert redis_tls(relaxed) == {"ssl_cert_reqs": ssl.CERT_NONE, "ssl_ca_certs": str(ca)}
    client = make_redis(relaxed)
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_NONE
    flower = load_flower_settings({"REDIS_URL": "rediss://127.0.0.1:1/0",
                                   "REDIS_SSL_CERT_REQS": "optional",
                                   "FLOWER_BASIC_AUTH": "a:b"})
    assert make_flower_app(flower).conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_OPTIONAL}


def test_redis_answers_are_parsed_by_hiredis() -> None:
    """The C parser is installed with the project (redis[hiredis]): redis-py takes it
    on its own, for the worker's consumer and acks and the web's rate limit."""
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE

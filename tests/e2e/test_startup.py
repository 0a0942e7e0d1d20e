"""A bad environment or catalog stops a process at start-up with one clear line; the
sweeper runs on its own."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool
from redis import Redis

from shared.db import transaction
from shared.queue import QUEUE
from tests.helpers import insert_demo_run
from tests.processes import Process, free_port, run_to_exit

WEB = [sys.executable, "-m", "gunicorn", "--config", "api/gunicorn_conf.py", "api.wsgi:app"]
WORKER = [sys.executable, "-m", "celery", "--app", "worker.main", "worker", "--pool", "solo"]
SWEEPER = [sys.executable, "-m", "worker.sweeper"]


def _env_without(base_env: dict[str, str], *names: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in base_env.items() if k not in names}
    env.update({name: "" for name in names})
    env.update(overrides)
    env["PORT"] = str(free_port())
    return env


@pytest.mark.parametrize("argv", [WEB, WORKER], ids=["web", "worker"])
@pytest.mark.parametrize(("change", "expected"), [
    ({"unset": "DATABASE_URL"}, "DATABASE_URL is not set"),
    ({"unset": "REDIS_URL"}, "REDIS_URL is not set"),
    ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL is malformed"),
    ({"WORKER_CONCURRENCY": "lots"}, "WORKER_CONCURRENCY is malformed"),
    ({"PORT": "99999"}, "PORT is out of range"),
    ({"PROVIDER_CONCURRENCY": "demo=0"}, "PROVIDER_CONCURRENCY is malformed"),
    ({"PROVIDER_CONCURRENCY": "nobody=3"}, "PROVIDER_CONCURRENCY is malformed"),
    ({"CALLER_CONCURRENCY": "-2"}, "CALLER_CONCURRENCY is out of range"),
], ids=["no-db", "no-redis", "bad-db", "bad-concurrency", "bad-port", "zero-limit",
        "unknown-provider", "bad-caller-limit"])
def test_bad_settings_stop_the_process_with_one_line(
        argv: list[str], change: dict[str, str], expected: str,
        base_env: dict[str, str]) -> None:
    change = dict(change)
    unset = [change.pop("unset")] if "unset" in change else []
    env = _env_without(base_env, *unset)
    env.update(change)
    done = run_to_exit(argv, env)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "configuration error" in line]
    assert len(lines) >= 1 and expected in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [WEB, WORKER, SWEEPER], ids=["web", "worker", "sweeper"])
def test_a_broken_catalog_stops_the_process(argv: list[str], base_env: dict[str, str],
                                            tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"provider": "x", "name": "X", "adapter": "nope"}')
    env = _env_without(base_env, CATALOG_DIR=str(tmp_path))
    done = run_to_exit(argv, env)
    assert done.returncode != 0
    assert "broken.json" in done.stderr and "catalog" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_web_process_binds_the_port_it_is_given(base_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    import requests

    port = free_port()
    web = Process("web", WEB, {**base_env, "PORT": str(port), "WEB_CONCURRENCY": "1"}, tmp_path)
    try:
        from tests.processes import wait_http

        wait_http(f"http://127.0.0.1:{port}/healthz", web)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json() == {
            "status": "ok"}
        # Idle, it stops at once on SIGTERM: no control socket (whose default path every
        # gunicorn of the host would share) holds the master up.
        began = time.monotonic()
        assert web.stop() == 0
        assert time.monotonic() - began < 3.0, web.output()[-2000:]
        assert "Control socket" not in web.output()
    finally:
        web.stop()


def test_the_sweeper_runs_alone_and_publishes_a_run_nobody_published(
        base_env: dict[str, str], db: ConnectionPool, redis: Redis, tmp_path: Path) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    with transaction(db) as conn:  # accepted a minute ago, its message lost on the way
        conn.execute("UPDATE runs SET created_at = now() - interval '1 minute',"
                     " last_published_at = now() - interval '1 minute' WHERE id = %s",
                     (run_id,))
    sweeper = Process("sweeper", SWEEPER, {**base_env, "SWEEP_INTERVAL_SECONDS": "0.2"},
                      tmp_path)
    try:
        sweeper.wait_for_output("sweeper running")
        deadline = time.monotonic() + 30
        while redis.llen(QUEUE) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        (message,) = redis.lrange(QUEUE, 0, -1)
        assert json.loads(message)["headers"]["argsrepr"] == repr([run_id])
    finally:
        # The platform's stop: the sweep at hand ends, then the process, at once.
        began = time.monotonic()
        assert sweeper.stop(sig=signal.SIGTERM) == 0
        assert time.monotonic() - began < 5
    assert "Traceback" not in sweeper.output()
    assert "sweeper stopped" in sweeper.output()

"""Flower, read through its own API, tells the truth about runs: a run that ends FAILED
or TIMED_OUT is a failed task with the run's error; a retry is a retry of the same task;
a task's name and arguments show its provider, endpoint and run ID. Its messages are
acknowledged as ever, and nothing is retried because a task is shown failed. And Flower
does not start without a login."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
from psycopg_pool import ConnectionPool

from shared.db import transaction
from shared.settings import DEFAULT_CATALOG_DIR
from tests.e2e.test_end_to_end import poll_until_ended
from tests.helpers import KeyMaker, insert_standing_webhook
from tests.processes import Process, free_port, run_to_exit, start_web, start_worker, wait_http

AUTH = ("ops", "flower-test-password")


@dataclass
class Watched:
    api: str
    flower: str
    key: str
    redis: redis_lib.Redis

    def start(self, endpoint: str, input: dict[str, Any], provider: str = "demo") -> str:
        answer = requests.post(f"{self.api}/v1/run",
                               headers={"Authorization": f"Bearer {self.key}"},
                               json={"provider": provider, "endpoint": endpoint,
                                     "input": input}, timeout=5)
        assert answer.status_code == 202, answer.text
        run_id: str = answer.json()["runId"]
        return run_id

    def tasks_of(self, run_id: str) -> list[dict[str, Any]]:
        """The run's tasks, found as the README says: by searching for its run ID."""
        tasks = requests.get(f"{self.flower}/api/tasks", params={"search": run_id}, auth=AUTH,
                             timeout=5).json()
        assert all(run_id in str(t.get("args")) for t in tasks.values())
        return list(tasks.values())

    def messages_left(self, run_id: str) -> list[bytes]:
        """The run's messages Redis still holds: waiting, or handed out and not
        acknowledged (kombu's `unacked`)."""
        held = list(self.redis.hvals("unacked")) + list(self.redis.lrange("runs", 0, -1))
        return [m for m in held if run_id.encode() in m]

    def task_in(self, run_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = self.tasks_of(run_id)
            if len(seen) == 1 and seen[0]["state"] == state:
                return seen[0]
            time.sleep(0.3)
        raise AssertionError(f"Flower shows {seen} for {run_id}, not one {state} task")


@pytest.fixture(scope="module")
def watched(base_env: dict[str, str], pool: ConnectionPool,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    folder = tmp_path_factory.mktemp("flower")
    catalog = folder / "catalog"
    catalog.mkdir()
    (catalog / "demo.json").write_text((DEFAULT_CATALOG_DIR / "demo.json").read_text())
    (catalog / "quick.json").write_text(json.dumps({
        "provider": "quick", "name": "Quick", "adapter": "demo",
        "endpoints": [{"path": "/nap", "name": "Nap", "description": "Sleeps past its deadline.",
                       "inputSchema": {"type": "object"},
                       "price": {"type": "PER_CALL", "amount": 0}, "deadlineSeconds": 1,
                       "call": {"action": "sleep"}}]}))
    env = {**base_env, "CATALOG_DIR": str(catalog)}
    port = free_port()
    flower = Process("flower", [sys.executable, "-m", "worker.flower", f"--port={port}"],
                     {**env, "FLOWER_BASIC_AUTH": ":".join(AUTH)}, folder)
    web = worker = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthcheck", flower)
        web, api = start_web(env, folder)
        worker = start_worker(env, folder)
        # Workers send no task events until someone watches: Flower switches them on.
        worker.wait_for_output("Events of group {task} enabled by remote", timeout=30)
        key = KeyMaker(pool)("user_flower")
        yield Watched(api=api, flower=base, key=key, redis=redis_lib.Redis.from_url(
            base_env["REDIS_URL"]))
    finally:
        for proc in (worker, web, flower):
            if proc is not None:
                proc.stop()


def attempts(pool: ConnectionPool, run_id: str) -> int:
    with transaction(pool) as conn:
        row = conn.execute("SELECT count(*) AS n FROM attempts WHERE run_id = %s",
                           (run_id,)).fetchone()
    return int(row["n"]) if row else 0


def test_flower_wants_a_login(watched: Watched) -> None:
    assert requests.get(f"{watched.flower}/api/tasks", timeout=5).status_code == 401
    assert requests.get(f"{watched.flower}/api/tasks", auth=("ops", "wrong"),
                        timeout=5).status_code == 401


def test_a_task_shows_its_provider_endpoint_and_run_id(watched: Watched) -> None:
    run_id = watched.start("/echo", {"hello": "flower"})
    assert poll_until_ended(watched.api, watched.key, run_id)["status"] == "COMPLETED"
    task = watched.task_in(run_id, "SUCCESS")
    assert task["name"] == "monid.run demo /echo"
    assert task["args"] == f"['{run_id}']"
    assert task["result"] == "'completed'"


def test_a_failed_run_is_a_failed_task_with_the_runs_error(watched: Watched,
                                                          pool: ConnectionPool) -> None:
    run_id = watched.start("/fail", {"status": 503})  # fails every time: 5 attempts
    run = poll_until_ended(watched.api, watched.key, run_id, timeout=60)
    assert run["status"] == "FAILED" and run["error"]["code"] == "RETRIES_EXHAUSTED"
    task = watched.task_in(run_id, "FAILURE")
    assert task["name"] == "monid.run demo /fail"
    assert "FAILED RETRIES_EXHAUSTED" in task["exception"]
    assert run["error"]["message"] in task["exception"]
    assert task["retries"] == 4  # the four retries, as retries of this one task
    # Nothing retried it for failing: no fifth retry, no sixth attempt, and its message
    # and every retry's are acknowledged.
    time.sleep(3)
    assert watched.task_in(run_id, "FAILURE")["retries"] == 4
    assert attempts(pool, run_id) == 5
    assert watched.messages_left(run_id) == []


def test_a_retried_run_is_one_task_that_was_retried(watched: Watched) -> None:
    run_id = watched.start("/fail", {"status": 503, "times": 2})
    assert poll_until_ended(watched.api, watched.key, run_id)["status"] == "COMPLETED"
    task = watched.task_in(run_id, "SUCCESS")
    assert task["retries"] == 2
    assert task["name"] == "monid.run demo /fail"


def test_a_timed_out_run_is_a_failed_task(watched: Watched) -> None:
    run_id = watched.start("/nap", {"seconds": 10}, provider="quick")
    run = poll_until_ended(watched.api, watched.key, run_id, timeout=30)
    assert run["status"] == "TIMED_OUT"
    task = watched.task_in(run_id, "FAILURE")
    assert task["exception"].startswith("RunFailed(") and "TIMED_OUT DEADLINE_EXCEEDED" in (
        task["exception"])
    assert watched.messages_left(run_id) == []


def test_a_stopped_run_is_not_a_failure(watched: Watched) -> None:
    run_id = watched.start("/sleep", {"seconds": 20})
    deadline = time.monotonic() + 10
    while not watched.tasks_of(run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    requests.post(f"{watched.api}/v1/runs/{run_id}/stop",
                  headers={"Authorization": f"Bearer {watched.key}"}, timeout=5)
    assert poll_until_ended(watched.api, watched.key, run_id)["status"] == "STOPPED"
    # The stop woke a second task (which found nothing to claim); neither failed.
    deadline = time.monotonic() + 20
    tasks: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        tasks = watched.tasks_of(run_id)
        if any(t["result"] == "'stopped'" for t in tasks) and all(
                t["state"] == "SUCCESS" for t in tasks):
            break
        time.sleep(0.3)
    assert any(t["result"] == "'stopped'" for t in tasks), tasks
    assert {t["state"] for t in tasks} == {"SUCCESS"}, tasks


def test_flower_does_not_start_without_a_login(base_env: dict[str, str]) -> None:
    env = {"REDIS_URL": base_env["REDIS_URL"], "FLOWER_BASIC_AUTH": "",
           "FLOWER_PORT": str(free_port())}
    done = run_to_exit([sys.executable, "-m", "worker.flower"], env, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "monid: configuration error: FLOWER_BASIC_AUTH is not set"), done.stderr


def test_flower_starts_open_only_when_told_to(base_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    flower = Process("flower-open", [sys.executable, "-m", "worker.flower", f"--port={port}"],
                     {"REDIS_URL": base_env["REDIS_URL"], "FLOWER_BASIC_AUTH": "",
                      "FLOWER_UNAUTHENTICATED": "true", "DATABASE_URL": ""}, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthcheck", flower)
        # No login asked for its pages (its API stays closed unless Flower is told more).
        assert requests.get(f"http://127.0.0.1:{port}/workers", timeout=5).status_code == 200
    finally:
        flower.stop()


def test_a_webhook_try_is_a_task_that_says_how_it_went(watched: Watched,
                                                       pool: ConnectionPool) -> None:
    # A standing webhook made in the tables (as POST /v1/webhooks makes one) to a plain
    # http URL, which this stack (without WEBHOOKS_ALLOW_INSECURE) refuses at send time.
    with transaction(pool) as conn:
        insert_standing_webhook(conn, "USER#user_flower_hooks", "http://127.0.0.1:9/hook")
    key = KeyMaker(pool)("user_flower_hooks")
    answer = requests.post(f"{watched.api}/v1/run", headers={"Authorization": f"Bearer {key}"},
                           json={"provider": "demo", "endpoint": "/echo", "input": {}},
                           timeout=5)
    run_id = answer.json()["runId"]
    assert poll_until_ended(watched.api, key, run_id)["status"] == "COMPLETED"
    with transaction(pool) as conn:
        row = conn.execute("SELECT d.id FROM webhook_deliveries d JOIN webhook_events e"
                           " ON e.id = d.event_id WHERE e.run_id = %s", (run_id,)).fetchone()
    assert row is not None
    task = watched.task_in(row["id"], "FAILURE")
    assert task["name"] == "monid.deliver_webhook"
    assert task["args"] == f"['{row['id']}']"
    assert task["exception"] == ("DeliveryFailed('PENDING: not sent: a webhook URL is "
                                 "https')")

"""Over real HTTP against real gunicorn and celery processes, PostgreSQL and Redis."""

from __future__ import annotations

import re
import time
from typing import Any

import requests
from psycopg_pool import ConnectionPool

from shared.db import transaction
from shared.queue import enqueue_run, make_publisher
from shared.settings import Settings
from tests.e2e.conftest import Stack
from tests.helpers import KeyMaker

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
END = ("COMPLETED", "FAILED", "STOPPED", "TIMED_OUT")


def poll_until_ended(base_url: str, key: str, run_id: str, timeout: float = 30.0,
                     every: float = 0.2) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = requests.get(f"{base_url}/v1/runs/{run_id}",
                                           headers={"Authorization": f"Bearer {key}"},
                                           timeout=5).json()
        if run["status"] in END or time.monotonic() > deadline:
            return run
        time.sleep(every)


def test_the_seed_python_example_runs_to_completed(stack: Stack, e2e_key: KeyMaker) -> None:
    key = e2e_key("user_abc123")
    base = stack.base_url
    # The seed's own Python example, with the base URL, the key and a built-in provider.
    response = requests.post(
        f"{base}/v1/run",
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
        },
        json={
            "provider": "demo",
            "endpoint": "/echo",
            "input": {
                "searchTerms": ["AI"],
                "maxItems": 10,
            },
        },
    )
    assert response.status_code == 202
    data = response.json()
    run_id = data["runId"]
    assert response.headers["Location"] == f"/v1/runs/{run_id}"
    assert data["status"] == "RUNNING"
    assert ISO_MS.match(data["createdAt"])

    started = time.monotonic()
    while True:
        result = requests.get(
            f"{base}/v1/runs/{run_id}",
            headers={"Authorization": f"Bearer {key}"},
        ).json()
        if result["status"] in ("COMPLETED", "FAILED"):
            break
        assert time.monotonic() - started < 30, result
        time.sleep(1)

    assert result["status"] == "COMPLETED"
    assert result["output"] == {"searchTerms": ["AI"], "maxItems": 10}
    assert result["input"] == {"searchTerms": ["AI"], "maxItems": 10}
    assert result["resultCount"] == 1
    assert result["providerResponse"] == {"httpStatus": 200}
    assert result["error"] is None
    assert result["cost"] == {"value": 0, "currency": "USD"}
    assert result["stoppable"] is False
    assert [(a["number"], a["outcome"], a["httpStatus"]) for a in result["attempts"]] == [
        (1, "OK", 200)]
    for field in ("createdAt", "startedAt", "completedAt"):
        assert ISO_MS.match(result[field]), field
    assert result["createdAt"] <= result["startedAt"] <= result["completedAt"]


def test_transient_failures_are_retried_and_shown(stack: Stack, e2e_key: KeyMaker) -> None:
    key = e2e_key("user_retry")
    headers = {"Authorization": f"Bearer {key}"}
    started = requests.post(f"{stack.base_url}/v1/run", headers=headers, timeout=5, json={
        "provider": "demo", "endpoint": "/fail", "input": {"status": 503, "times": 2}})
    assert started.status_code == 202
    run = poll_until_ended(stack.base_url, key, started.json()["runId"])
    assert run["status"] == "COMPLETED"
    assert [(a["outcome"], a["httpStatus"]) for a in run["attempts"]] == [
        ("TRANSIENT_ERROR", 503), ("TRANSIENT_ERROR", 503), ("OK", 200)]


def test_retries_exhausted_fail_the_run_with_a_provider_error(
        stack: Stack, e2e_key: KeyMaker) -> None:
    key = e2e_key("user_exhaust")
    headers = {"Authorization": f"Bearer {key}"}
    started = requests.post(f"{stack.base_url}/v1/run", headers=headers, timeout=5, json={
        "provider": "demo", "endpoint": "/fail", "input": {"status": 502}})
    run = poll_until_ended(stack.base_url, key, started.json()["runId"])
    assert run["status"] == "FAILED"
    assert run["error"]["source"] == "provider"
    assert len(run["attempts"]) == 5
    assert {a["outcome"] for a in run["attempts"]} == {"TRANSIENT_ERROR"}
    assert run["providerResponse"]["httpStatus"] == 502
    assert run["cost"] == {"value": 0, "currency": "USD"}


def test_a_permanent_provider_error_completes_with_its_status(
        stack: Stack, e2e_key: KeyMaker) -> None:
    key = e2e_key("user_perm")
    headers = {"Authorization": f"Bearer {key}"}
    started = requests.post(f"{stack.base_url}/v1/run", headers=headers, timeout=5, json={
        "provider": "demo", "endpoint": "/fail", "input": {"status": 404}})
    run = poll_until_ended(stack.base_url, key, started.json()["runId"])
    assert run["status"] == "COMPLETED"
    assert run["providerResponse"]["httpStatus"] == 404
    assert run["providerResponse"]["error"]["error"]["status"] == 404
    assert run["output"] is None
    assert [a["outcome"] for a in run["attempts"]] == ["PERMANENT_ERROR"]


def test_a_duplicated_task_message_does_not_call_the_provider_twice(
        stack: Stack, e2e_key: KeyMaker, settings: Settings, pool: ConnectionPool) -> None:
    key = e2e_key("user_dup")
    headers = {"Authorization": f"Bearer {key}"}
    started = requests.post(f"{stack.base_url}/v1/run", headers=headers, timeout=5, json={
        "provider": "demo", "endpoint": "/sleep", "input": {"seconds": 1.5}})
    run_id = started.json()["runId"]
    publisher = make_publisher(settings)
    # Two more deliveries while the first is calling the provider ...
    time.sleep(0.5)
    enqueue_run(publisher, run_id)
    enqueue_run(publisher, run_id)
    run = poll_until_ended(stack.base_url, key, run_id)
    # ... and one after the run has ended.
    enqueue_run(publisher, run_id)

    def skipped() -> list[str]:
        return [line for line in stack.worker.output().splitlines()
                if "nothing to claim" in line and run_id in line]

    deadline = time.monotonic() + 15
    while len(skipped()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    run = poll_until_ended(stack.base_url, key, run_id)
    assert run["status"] == "COMPLETED"
    assert len(run["attempts"]) == 1
    with transaction(pool) as conn:
        row = conn.execute("SELECT attempt_count, (SELECT count(*) FROM attempts WHERE run_id=%s)"
                           " AS n FROM runs WHERE id = %s", (run_id, run_id)).fetchone()
    assert row == {"attempt_count": 1, "n": 1}
    # Every extra delivery reached a worker and found nothing to claim.
    assert len(skipped()) == 3

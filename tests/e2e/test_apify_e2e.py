"""Apify runs through real web and worker processes against a fake Apify."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import transaction
from tests.e2e.test_end_to_end import poll_until_ended
from tests.fakes.apify import FakeApify
from tests.helpers import KeyMaker
from tests.processes import Process, start_web, start_worker

TOKEN = "apify-e2e-token"


@pytest.fixture(scope="module")
def apify() -> Iterator[FakeApify]:
    with FakeApify(token=TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def env(base_env: dict[str, str], apify: FakeApify) -> dict[str, str]:
    return {**base_env, "APIFY_API_BASE_URL": apify.base_url, "APIFY_TOKEN": TOKEN,
            "LEASE_SECONDS": "5", "SWEEP_INTERVAL_SECONDS": "0.5", "SWEEP_GRACE_SECONDS": "2"}


@pytest.fixture(scope="module")
def web(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[Process, str]]:
    proc, base_url = start_web(env, tmp_path_factory.mktemp("web"))
    yield proc, base_url
    proc.stop()


def credit(pool: ConnectionPool, caller: str, micros: int) -> None:
    with transaction(pool) as conn:
        store.credit_wallet(conn, caller, micros, "test funds")


def test_the_seed_example_completes_with_the_actors_items(
        env: dict[str, str], web: tuple[Process, str], apify: FakeApify, e2e_key: KeyMaker,
        pool: ConnectionPool, tmp_path: Path) -> None:
    def tweets(actor_input: dict[str, Any]) -> list[dict[str, Any]]:
        term = actor_input["searchTerms"][0]
        return [{"id": str(n), "text": f"tweet {n} about {term}"}
                for n in range(actor_input["maxItems"])]

    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.5, items=tweets)
    worker = start_worker(env, tmp_path)
    try:
        key = e2e_key("user_seed")
        credit(pool, "USER#user_seed", 1_000_000)
        _, base = web
        response = requests.post(
            f"{base}/v1/run",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            json={"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
                  "input": {"searchTerms": ["AI"], "maxItems": 10}},
            timeout=5)
        assert response.status_code == 202
        accepted = response.json()
        assert accepted["providerName"] == "Apify"
        assert accepted["price"] == {"type": "PER_CALL", "amount": 0.003, "currency": "USD"}
        run = poll_until_ended(base, key, accepted["runId"], every=1.0)
        assert run["status"] == "COMPLETED", run
        assert run["resultCount"] == 10
        assert run["output"][0] == {"id": "0", "text": "tweet 0 about AI"}
        assert run["cost"] == {"value": 0.003, "currency": "USD"}
        assert apify.runs_started("apidojo~tweet-scraper") == 1
        assert TOKEN not in worker.output() and TOKEN not in web[0].output()
        assert key not in worker.output() and key not in web[0].output()
    finally:
        worker.stop()


def test_a_worker_killed_after_starting_an_actor_run_does_not_start_a_second(
        env: dict[str, str], web: tuple[Process, str], apify: FakeApify, e2e_key: KeyMaker,
        pool: ConnectionPool, tmp_path: Path) -> None:
    apify.add_actor("apify~instagram-scraper", run_seconds=4, items=[{"post": 1}, {"post": 2}])
    before = apify.runs_started("apify~instagram-scraper")
    key = e2e_key("user_kill")
    credit(pool, "USER#user_kill", 10_000_000)
    _, base = web
    first = start_worker(env, tmp_path, name="first")
    second: Process | None = None
    try:
        response = requests.post(
            f"{base}/v1/run", headers={"Authorization": f"Bearer {key}"}, timeout=5,
            json={"provider": "apify", "endpoint": "/apify/instagram-scraper",
                  "input": {"search": "cats", "resultsLimit": 2}})
        assert response.status_code == 202, response.text
        run_id = response.json()["runId"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with transaction(pool) as conn:
                row = conn.execute("SELECT provider_state FROM runs WHERE id = %s",
                                   (run_id,)).fetchone()
            if row and row["provider_state"]:
                break
            time.sleep(0.05)
        assert row and row["provider_state"]["actorRunId"]
        first.signal_group(signal.SIGKILL)
        first.stop()
        second = start_worker(env, tmp_path, name="second")
        run = poll_until_ended(base, key, run_id, timeout=45, every=0.5)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert run["status"] == "COMPLETED", run
    assert run["output"] == [{"post": 1}, {"post": 2}]
    assert apify.runs_started("apify~instagram-scraper") - before == 1
    assert len(run["attempts"]) == 1

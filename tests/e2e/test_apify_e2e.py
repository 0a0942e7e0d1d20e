"""Apify runs through real web and worker processes against a fake Apify, and the
actor's status messages as progress events of the run's live events."""

from __future__ import annotations

import csv
import io
import json
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
from tests.e2e.test_run_events_e2e import follow
from tests.fakes.apify import FakeApify, SizedDataset
from tests.helpers import KeyMaker
from tests.processes import Process, start_worker

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
def web_process_env(env: dict[str, str]) -> dict[str, str]:
    return env


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


# --- results at real size ---------------------------------------------------------------


def start_run(base: str, key: str, endpoint: str, input: dict[str, Any]) -> str:
    response = requests.post(f"{base}/v1/run", headers={"Authorization": f"Bearer {key}"},
                             json={"provider": "apify", "endpoint": endpoint, "input": input},
                             timeout=5)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["runId"]
    return run_id


def test_a_per_result_run_delivers_exactly_what_it_is_charged_for(
        env: dict[str, str], web: tuple[Process, str], apify: FakeApify, e2e_key: KeyMaker,
        pool: ConnectionPool, tmp_path: Path) -> None:
    # A careless actor: asked for at most 500 places, it writes 5,000.
    apify.add_actor("compass~crawler-google-places", run_seconds=0.5, ignores_max_items=True,
                    items=[{"name": f"place {n}", "rating": n % 5} for n in range(5000)])
    key = e2e_key("user_places")
    credit(pool, "USER#user_places", 10_000_000)
    _, base = web
    worker = start_worker(env, tmp_path)
    try:
        run_id = start_run(base, key, "/compass/crawler-google-places",
                           {"searchStringsArray": ["coffee"], "locationQuery": "Berlin"})
        run = poll_until_ended(base, key, run_id, every=0.5)
    finally:
        worker.stop()
    assert run["status"] == "COMPLETED", run
    assert run["resultCount"] == 500 and len(run["output"]) == 500
    assert run["cost"] == {"value": 2.001, "currency": "USD"}
    page = requests.get(f"{base}/v1/runs/{run_id}/items", params={"limit": 1000},
                        headers={"Authorization": f"Bearer {key}"}, timeout=5).json()
    assert page["total"] == 500 and page["cursor"] is None
    assert page["items"][-1] == {"name": "place 499", "rating": 4}
    balance = requests.get(f"{base}/v1/wallet/balance", timeout=5,
                           headers={"Authorization": f"Bearer {key}"}).json()
    assert balance["held"]["value"] == 0 and balance["balance"]["value"] == 7.999


def test_a_large_result_is_paged_and_downloaded_through_real_processes(
        env: dict[str, str], web: tuple[Process, str], apify: FakeApify, e2e_key: KeyMaker,
        pool: ConnectionPool, tmp_path: Path) -> None:
    dataset = SizedDataset(20_000, 1000)  # 20 MB
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.5, items=dataset)
    key = e2e_key("user_large")
    credit(pool, "USER#user_large", 1_000_000)
    headers = {"Authorization": f"Bearer {key}"}
    _, base = web
    worker = start_worker(env, tmp_path)
    try:
        run_id = start_run(base, key, "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
        run = poll_until_ended(base, key, run_id, timeout=90, every=0.5)
    finally:
        worker.stop()
    assert run["status"] == "COMPLETED", run
    assert run["resultCount"] == 20_000 and run["outputTruncated"] is True
    assert run["itemsUrl"] == f"/v1/runs/{run_id}/items"
    assert 0 < len(run["output"]) < 300 and run["output"][0] == dataset[0]

    with requests.get(f"{base}{run['itemsUrl']}", params={"format": "jsonl"}, headers=headers,
                      stream=True, timeout=30) as download:
        assert download.status_code == 200
        assert download.headers["Transfer-Encoding"] == "chunked"  # streamed
        assert download.headers["Content-Disposition"] == (
            f'attachment; filename="{run_id}.jsonl"')
        lines = 0
        for line in download.iter_lines(chunk_size=1 << 20):
            assert json.loads(line) == dataset[lines]
            lines += 1
    assert lines == 20_000

    with requests.get(f"{base}{run['itemsUrl']}", params={"format": "csv"}, headers=headers,
                      stream=True, timeout=30) as download:
        assert download.status_code == 200
        rows = list(csv.reader(io.StringIO(download.content.decode(), newline="")))
    assert rows[0] == ["id", "text"] and len(rows) == 20_001
    assert rows[20_000] == ["19999", dataset[19_999]["text"]]


def test_a_failed_actor_run_is_not_started_again(
        env: dict[str, str], web: tuple[Process, str], apify: FakeApify, e2e_key: KeyMaker,
        pool: ConnectionPool, tmp_path: Path) -> None:
    apify.add_actor("apify~instagram-scraper", run_seconds=0.3, final_status="FAILED",
                    status_message="Login required")
    before = apify.runs_started("apify~instagram-scraper")
    key = e2e_key("user_failed")
    credit(pool, "USER#user_failed", 10_000_000)
    _, base = web
    worker = start_worker(env, tmp_path)
    try:
        run_id = start_run(base, key, "/apify/instagram-scraper", {"search": "cats"})
        run = poll_until_ended(base, key, run_id, every=0.5)
    finally:
        worker.stop()
    assert run["status"] == "FAILED", run
    assert run["error"]["source"] == "provider"
    assert run["error"]["code"] == "PROVIDER_RUN_FAILED"
    assert run["providerResponse"]["status"] == "FAILED"
    assert run["providerResponse"]["statusMessage"] == "Login required"
    assert [a["outcome"] for a in run["attempts"]] == ["PERMANENT_ERROR"]
    assert "Login required" in run["attempts"][0]["message"]
    assert run["cost"] == {"value": 0, "currency": "USD"}
    assert apify.runs_started("apify~instagram-scraper") - before == 1


def test_a_run_stopped_mid_read_ends_stopped_with_no_items(
        env: dict[str, str], web: tuple[Process, str], apify: FakeApify, e2e_key: KeyMaker,
        pool: ConnectionPool, tmp_path: Path) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.3, items=SizedDataset(20_000, 1000))
    key = e2e_key("user_stop")
    credit(pool, "USER#user_stop", 1_000_000)
    headers = {"Authorization": f"Bearer {key}"}
    _, base = web
    worker = start_worker(env, tmp_path)
    apify.delay = 0.2  # a slow dataset: about 20 pages of 1 MB
    try:
        run_id = start_run(base, key, "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
        reads = apify.count("GET", "/v2/datasets/")
        assert apify.wait_for_count(reads + 4, "GET", "/v2/datasets/", timeout=30)
        stop = requests.post(f"{base}/v1/runs/{run_id}/stop", headers=headers, timeout=5)
        assert stop.status_code == 202, stop.text
        run = poll_until_ended(base, key, run_id, timeout=30, every=0.3)
    finally:
        apify.delay = 0.0
        worker.stop()
    assert run["status"] == "STOPPED", run
    assert run["output"] is None and run["cost"] == {"value": 0, "currency": "USD"}
    page = requests.get(f"{base}/v1/runs/{run_id}/items", headers=headers, timeout=5).json()
    assert page == {"items": [], "cursor": None, "total": 0}
    with transaction(pool) as conn:
        row = conn.execute("SELECT count(*) AS n FROM run_items WHERE run_id = %s",
                           (run_id,)).fetchone()
    assert row is not None and row["n"] == 0


# --- progress in the live events ------------------------------------------------------------


def test_an_actors_status_messages_are_live_progress_events_resumed_after_their_id(
        env: dict[str, str], web: tuple[Process, str], apify: FakeApify, e2e_key: KeyMaker,
        pool: ConnectionPool, tmp_path: Path) -> None:
    # The worker checks the actor run about 2 s, 5 s and 9.5 s after its start (each
    # check waits 1.5 times longer than the one before): the first check reads the
    # first message, the second the next one, the third the end.
    apify.add_actor("apidojo~tweet-scraper", run_seconds=7.5, items=[{"id": "1"}],
                    progress=[(0.0, "Starting the crawler"), (3.5, "Crawled 1 of 2 pages")])
    before = apify.runs_started("apidojo~tweet-scraper")
    worker = start_worker(env, tmp_path)
    try:
        key = e2e_key("user_progress")
        credit(pool, "USER#user_progress", 1_000_000)
        _, base = web
        run_id = start_run(base, key, "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
        # A client that drops its connection after the first progress event ...
        first = [e for e, _ in follow(base, key, run_id, stop_after=3)]
        assert [(e.id, e.event) for e in first] == [
            ("1.0.0", "status"), ("1.1.0", "attempt"), ("1.1.0.1", "progress")]
        said = first[-1].json()
        assert said["runId"] == run_id and said["attempt"] == 1
        assert said["message"] == "Starting the crawler"
        # ... and reconnects with its ID gets the next message, once, then the end.
        rest = [e for e, _ in follow(base, key, run_id, last=first[-1].id)]
        assert [(e.id, e.event) for e in rest] == [
            ("1.1.0.2", "progress"), ("1.1.1", "attempt"), ("3.1.1", "status"),
            ("4.1.1", "end")]
        assert rest[0].json()["message"] == "Crawled 1 of 2 pages"
        assert rest[-1].json()["status"] == "COMPLETED"
        # The ended run's story has no progress: its attempt has ended.
        whole = [e.event for e, _ in follow(base, key, run_id)]
        assert whole == ["status", "attempt", "status", "end"]
        assert apify.runs_started("apidojo~tweet-scraper") - before == 1
    finally:
        worker.stop()

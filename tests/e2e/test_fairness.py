"""Callers sharing a fleet, through real gunicorn and celery processes: one caller's
flood does not hold up another's runs, and a provider's concurrency limit holds
across workers, even when one of them is killed holding its slots."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import autocommit, transaction
from tests.fakes.apify import ApifyRun, FakeApify
from tests.helpers import KeyMaker
from tests.processes import Process, start_web, start_worker

TOKEN = "apify-fairness-token"


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def post_runs(base: str, key: str, body: dict[str, Any], count: int,
              threads: int = 16) -> list[str]:
    """Start `count` runs from `threads` clients at once; the IDs of those accepted."""
    ids: list[str] = []
    lock = threading.Lock()
    per_thread = math.ceil(count / threads)

    def post(n: int) -> None:
        session = requests.Session()
        for _ in range(min(per_thread, count - n * per_thread)):
            answer = session.post(f"{base}/v1/run", json=body, timeout=30,
                                  headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 202, answer.text
            with lock:
                ids.append(answer.json()["runId"])

    workers = [threading.Thread(target=post, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return ids


def wait_for_runs(pool: ConnectionPool, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        with autocommit(pool) as conn:
            rows = conn.execute("SELECT id, status FROM runs WHERE id = ANY(%s)"
                                " AND completed_at IS NOT NULL", (ids,)).fetchall()
        if len(rows) == len(ids) or time.monotonic() > deadline:
            return {r["id"]: r["status"] for r in rows}
        time.sleep(0.5)


@pytest.fixture
def fleet(base_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Web (2 processes) and one worker with the default concurrency and the default
    caller limit (half of it)."""
    env = {**base_env, "MAX_RUNS_IN_FLIGHT": "5000", "LOG_LEVEL": "WARNING",
           "SWEEP_INTERVAL_SECONDS": "1"}
    web, base = start_web(env, tmp_path)
    worker = start_worker(env, tmp_path, concurrency=200)
    try:
        yield base, env
    finally:
        worker.stop()
        web.stop()


def test_a_callers_flood_does_not_hold_up_another_callers_runs(
        fleet: tuple[str, dict[str, str]], e2e_key: KeyMaker, pool: ConnectionPool) -> None:
    base, _ = fleet
    flooder, other = e2e_key("flooder"), e2e_key("bystander")
    flood = post_runs(base, flooder, {"provider": "demo", "endpoint": "/sleep",
                                      "input": {"seconds": 1}}, 2000)
    assert len(flood) == 2000
    # Right after the flood, the other caller's runs.
    mine = post_runs(base, other, {"provider": "demo", "endpoint": "/echo",
                                   "input": {"n": 1}}, 10, threads=10)
    statuses = wait_for_runs(pool, mine, timeout=30)
    assert statuses == dict.fromkeys(mine, "COMPLETED")
    waits = []
    for run_id in mine:
        run = requests.get(f"{base}/v1/runs/{run_id}", timeout=10,
                           headers={"Authorization": f"Bearer {other}"}).json()
        waits.append((parse(run["startedAt"]) - parse(run["createdAt"])).total_seconds())
    print(f"\nthe bystander's runs waited {max(waits):.2f} s at most to start")
    assert max(waits) < 5, f"the bystander's runs waited {sorted(waits)} s to start"
    # The flood itself completes, however long its runs waited for their turn.
    statuses = wait_for_runs(pool, flood, timeout=240)
    assert len(statuses) == len(flood), "the flood's runs did not all end"
    assert set(statuses.values()) == {"COMPLETED"}
    with autocommit(pool) as conn:
        waited = conn.execute("SELECT max(started_at - created_at) AS longest FROM runs"
                              " WHERE id = ANY(%s)", (flood,)).fetchone()
    assert waited is not None and waited["longest"].total_seconds() > 5, \
        "the flood never had to wait: the test proves nothing"


# --- a provider's limit, with a worker killed holding slots ----------------------------------


def most_at_once(runs: list[ApifyRun], abort_seconds: float) -> int:
    """The most actor runs the fake had going at the same time."""
    events = []
    for run in runs:
        end = run.started_mono + min(run.run_seconds, run.timeout_secs or math.inf)
        if run.abort_mono is not None:
            end = min(end, run.abort_mono + abort_seconds)
        events += [(run.started_mono, 1), (end, -1)]
    most = current = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        current += step
        most = max(most, current)
    return most


@pytest.fixture
def apify() -> Iterator[FakeApify]:
    with FakeApify(token=TOKEN) as fake:
        yield fake


def test_a_provider_limit_holds_across_workers_and_a_killed_worker_frees_its_slots(
        base_env: dict[str, str], apify: FakeApify, e2e_key: KeyMaker, pool: ConnectionPool,
        tmp_path: Path) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=1.5)
    env = {**base_env, "APIFY_API_BASE_URL": apify.base_url, "APIFY_TOKEN": TOKEN,
           "PROVIDER_CONCURRENCY": "apify=3", "LEASE_SECONDS": "3",
           "SWEEP_INTERVAL_SECONDS": "0.5", "SWEEP_GRACE_SECONDS": "2"}
    web, base = start_web(env, tmp_path)
    victim: Process = start_worker(env, tmp_path, concurrency=8, name="victim")
    survivor = start_worker(env, tmp_path, concurrency=8, name="survivor")
    try:
        ids = []
        for user in ("limit_x", "limit_y"):
            key = e2e_key(user)
            with transaction(pool) as conn:
                store.credit_wallet(conn, f"USER#{user}", 1_000_000, "test funds")
            ids += post_runs(base, key, {"provider": "apify",
                                         "endpoint": "/apidojo/tweet-scraper",
                                         "input": {"searchTerms": ["AI"], "maxItems": 2}},
                             6, threads=3)
        deadline = time.monotonic() + 20
        while len(apify.runs()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        with autocommit(pool) as conn:
            waiting = conn.execute("SELECT count(*) AS n FROM runs WHERE waiting_for"
                                   " = 'provider:apify'").fetchone()
        victim.signal_group(signal.SIGKILL)
        statuses = wait_for_runs(pool, ids, timeout=90)
        assert statuses == dict.fromkeys(ids, "COMPLETED"), statuses
        assert most_at_once(apify.runs(), apify.abort_seconds) <= 3
        assert len(apify.runs()) >= len(ids)
        assert waiting is not None and waiting["n"] > 0, "no run waited for the provider"
        assert survivor.alive()
    finally:
        survivor.stop()
        victim.stop()
        web.stop()

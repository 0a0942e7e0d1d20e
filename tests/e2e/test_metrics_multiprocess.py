"""GET /metrics from a real gunicorn with two worker processes: whichever answers,
it shows what both counted, and still after one of them is killed."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import ConnectionPool

from shared.queue import QUEUE_KEYS
from tests.helpers import KeyMaker
from tests.processes import Process, child_pids, start_web

RUNS = 40
ECHO = {"provider": "demo", "endpoint": "/echo", "input": {"message": "count me"}}
ACCEPTED = "monid_runs_accepted_total"


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One exposition, as {(sample name, sorted labels): value}; a new connection each
    time, so that either worker process may answer."""
    resp = requests.get(f"{base_url}/metrics", headers={"Connection": "close"}, timeout=10)
    if resp.status_code == 404:
        pytest.skip("create_app does not call api.metrics.init_app yet")
    assert resp.status_code == 200, resp.text
    return {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for f in text_string_to_metric_families(resp.text) for s in f.samples}


def wait_for_workers(master: Process, count: int, other_than: set[int],
                     timeout: float = 30.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = set(child_pids(master.pid))
        if len(pids) == count and not pids & other_than:
            return pids
        time.sleep(0.1)
    raise TimeoutError(f"gunicorn did not have {count} new workers:\n{master.output()[-4000:]}")


def folder_of(workers: set[int]) -> Path:
    """The folder gunicorn's master made in the temp folder, holding these workers' files."""
    for folder in Path(tempfile.gettempdir()).glob("monid-metrics-*"):
        if any((folder / f"counter_{pid}.db").exists() for pid in workers):
            return folder
    raise AssertionError(f"no metrics folder of the workers {workers}")


def accepted_by_file(metrics_dir: Path) -> dict[str, float]:
    """What each process wrote: {file name: runs accepted}."""
    found = {}
    for path in sorted(metrics_dir.glob("counter_*.db")):
        found[path.name] = sum(
            s.value for m in MultiProcessCollector.merge([str(path)]) for s in m.samples
            if s.name == ACCEPTED)
    return found


def start_runs(base_url: str, key: str, count: int) -> None:
    def one(_: int) -> int:
        # A new connection for each, so that both worker processes take some.
        return requests.post(f"{base_url}/v1/run", json=ECHO, timeout=10, headers={
            "Authorization": f"Bearer {key}", "Connection": "close"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(one, range(count))) == [202] * count


@pytest.fixture
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics-logs")


@pytest.fixture
def web_env(base_env: dict[str, str]) -> Iterator[dict[str, str]]:
    env = {**base_env, "WEB_CONCURRENCY": "2"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    yield env


def test_accepted_runs_add_up_across_worker_processes(
        web_env: dict[str, str], pool: ConnectionPool, log_dir: Path) -> None:
    key = KeyMaker(pool)("user_metrics_e2e")
    web, base_url = start_web(web_env, log_dir)
    try:
        workers = wait_for_workers(web, 2, other_than=set())
        start_runs(base_url, key, RUNS)
        # A run is published just after its answer, by the process's publishing thread,
        # and each process keeps the queue's depth METRICS_CACHE_SECONDS from its first
        # scrape: every message goes out before the first scrape.
        deadline = time.monotonic() + 30
        with redis_lib.Redis.from_url(web_env["REDIS_URL"]) as queued:
            while sum(queued.llen(key) for key in QUEUE_KEYS) < RUNS:
                assert time.monotonic() < deadline, "the runs were not published"
                time.sleep(0.05)

        for _ in range(8):
            sample = scrape(base_url)
            assert sample[(ACCEPTED, (("provider", "demo"),))] == RUNS
            assert sample[("monid_http_requests_total", (
                ("method", "POST"), ("route", "/v1/run"), ("status", "202")))] == RUNS
            assert sample[("monid_accept_latency_seconds_count", ())] == RUNS
            assert sample[("monid_accept_latency_seconds_bucket", (("le", "+Inf"),))] == RUNS
            # The cluster's numbers are there too, read from PostgreSQL and Redis.
            assert sample[("monid_metrics_source_up", (("source", "database"),))] == 1
            assert sample[("monid_runs_in_progress", (("status", "RUNNING"),))] >= RUNS
            assert sample[("monid_queue_depth", ())] >= RUNS

        # gunicorn's master made a folder for the workers' files; what they wrote adds
        # up (which worker took how many connections is the kernel's choice).
        metrics_dir = folder_of(workers)
        by_file = accepted_by_file(metrics_dir)
        assert set(by_file) <= {f"counter_{pid}.db" for pid in workers}
        assert sum(by_file.values()) == RUNS

        # A worker killed keeps what it counted; its replacement adds to it.
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        wait_for_workers(web, 2, other_than={killed})
        start_runs(base_url, key, 2)
        for _ in range(4):
            assert scrape(base_url)[(ACCEPTED, (("provider", "demo"),))] == RUNS + 2
    finally:
        web.stop()
    # The master removes the folder it made when it stops.
    assert not metrics_dir.exists()


def test_a_given_metrics_folder_is_cleared_of_an_earlier_servers_counts(
        web_env: dict[str, str], pool: ConnectionPool, log_dir: Path,
        tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale = MmapedDict(str(metrics_dir / "counter_4242.db"))
    stale.write_value(mmap_key("monid_runs_accepted", ACCEPTED, ["provider"], ["demo"],
                               "Runs accepted by POST /v1/run"), 1000.0, 0.0)
    stale.close()
    key = KeyMaker(pool)("user_metrics_e2e")
    web, base_url = start_web({**web_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                              log_dir)
    try:
        start_runs(base_url, key, 3)
        for _ in range(4):
            assert scrape(base_url)[(ACCEPTED, (("provider", "demo"),))] == 3
        assert not (metrics_dir / "counter_4242.db").exists()
    finally:
        web.stop()
    assert metrics_dir.is_dir()  # a folder given to it is not the master's to remove

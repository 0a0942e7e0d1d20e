"""200 clients waiting on runs (`?wait=`) at once, while other requests are served."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from psycopg_pool import ConnectionPool

from tests.helpers import KeyMaker
from tests.processes import start_web, start_worker


def test_200_waiters_do_not_stop_other_requests(base_env: dict[str, str], e2e_key: KeyMaker,
                                                pool: ConnectionPool, tmp_path: Path) -> None:
    env = {**base_env, "WEB_CONCURRENCY": "1", "WEB_THREADS": "256"}
    web, base = start_web(env, tmp_path)
    worker = None
    try:
        key = e2e_key("user_waiters")
        headers = {"Authorization": f"Bearer {key}"}
        session = requests.Session()
        run_ids = [session.post(f"{base}/v1/run", headers=headers, timeout=10,
                                json={"provider": "demo", "endpoint": "/echo",
                                      "input": {"n": n}}).json()["runId"]
                   for n in range(200)]
        waiting = threading.Barrier(201)

        def wait_for(run_id: str) -> tuple[str, float]:
            own = requests.Session()
            waiting.wait()
            answer = own.get(f"{base}/v1/runs/{run_id}?wait=30", headers=headers, timeout=60)
            return answer.json()["status"], time.monotonic()

        with ThreadPoolExecutor(max_workers=200) as executor:
            futures = [executor.submit(wait_for, run_id) for run_id in run_ids]
            waiting.wait()
            time.sleep(1.0)  # every waiter is now parked in the web process
            latencies = []
            for n in range(60):
                started = time.monotonic()
                if n % 3 == 0:
                    answer = session.get(f"{base}/healthz", timeout=5)
                elif n % 3 == 1:
                    answer = session.get(f"{base}/v1/runs?limit=5", headers=headers, timeout=5)
                else:
                    answer = session.get(f"{base}/v1/runs/{run_ids[n]}", headers=headers,
                                         timeout=5)
                latencies.append((time.monotonic() - started) * 1000)
                assert answer.status_code == 200
            still_waiting = sum(not f.done() for f in futures)
            worker = start_worker(base_env, tmp_path, concurrency=16)
            released_at = time.monotonic()
            results = [f.result() for f in futures]
        p50, worst = statistics.median(latencies), max(latencies)
        last = max(t for _, t in results) - released_at
        print(f"\n200 waiters parked in one web process; other requests p50 {p50:.1f} ms, "
              f"max {worst:.1f} ms; all waiters answered {last:.1f} s after a worker started")
        assert still_waiting == 200, "every waiter was still waiting"
        assert [s for s, _ in results] == ["COMPLETED"] * 200
        assert p50 < 50 and worst < 250
        assert last < 20, "waiters were answered when their runs ended, not at the timeout"
    finally:
        if worker is not None:
            worker.stop()
        web.stop()

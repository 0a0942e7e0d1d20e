"""Flower sees the workers' tasks (events are on) and asks for basic auth."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import requests

from tests.e2e.test_end_to_end import poll_until_ended
from tests.helpers import KeyMaker
from tests.processes import Process, free_port, start_web, start_worker, wait_http


def test_a_runs_task_appears_in_flowers_api(base_env: dict[str, str], e2e_key: KeyMaker,
                                            tmp_path: Path) -> None:
    port = free_port()
    env = {**base_env, "FLOWER_BASIC_AUTH": "ops:flower-test-password"}
    flower = Process("flower", [sys.executable, "-m", "celery", "--app", "worker.main",
                                "flower", f"--port={port}", "--address=127.0.0.1"],
                     env, tmp_path)
    web = worker = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthcheck", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        assert requests.get(f"{base}/api/tasks", timeout=5).status_code == 401
        web, api = start_web(base_env, tmp_path)
        wait_http(f"{api}/healthz", web)
        worker = start_worker(base_env, tmp_path)
        key = e2e_key("user_flower")
        run_id = requests.post(f"{api}/v1/run", headers={"Authorization": f"Bearer {key}"},
                               json={"provider": "demo", "endpoint": "/echo", "input": {}},
                               timeout=5).json()["runId"]
        assert poll_until_ended(api, key, run_id)["status"] == "COMPLETED"
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tasks = requests.get(f"{base}/api/tasks", auth=("ops", "flower-test-password"),
                                 timeout=5).json()
            seen = [t for t in tasks.values() if run_id in str(t.get("args"))]
            if seen and seen[0].get("state") == "SUCCESS":
                break
            time.sleep(0.5)
        assert seen, "Flower never saw the run's task"
        assert seen[0]["name"] == "monid.run" and seen[0]["state"] == "SUCCESS"
    finally:
        for proc in (worker, web, flower):
            if proc is not None:
                proc.stop()

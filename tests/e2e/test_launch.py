"""The Procfile's `worker`: several Celery worker processes from one command, every
core used; a child that dies is started again, a SIGTERM stops them all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import requests

from tests.e2e.test_end_to_end import poll_until_ended
from tests.helpers import KeyMaker
from tests.processes import Process, child_pids, start_web


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:g} s")


def cores_of(pid: int) -> set[str]:
    """The cores each thread of a process may run on (`Cpus_allowed_list` of each)."""
    found = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(FileNotFoundError):  # a thread that has just ended
            for line in status.read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    found.add(line.split(":", 1)[1].strip())
    return found


def test_one_command_runs_a_worker_process_per_core_and_stops_them_all(
        base_env: dict[str, str], e2e_key: KeyMaker, tmp_path: Path) -> None:
    env = {**base_env, "WORKER_PROCESSES": "2", "WORKER_CONCURRENCY": "4",
           "WORKER_CPU_AFFINITY": "true"}
    web, base = start_web(env, tmp_path)
    launcher = Process("launcher", [sys.executable, "-m", "worker.launch"], env, tmp_path)
    try:
        wait_for(lambda: launcher.output().count(" ready.") >= 2, 90, "two workers ready")
        children = child_pids(launcher.pid)
        assert len(children) == 2, children
        output = launcher.output()
        assert "worker1@" in output and "worker2@" in output
        # With one process a core, each keeps to its own, with every thread it started;
        # the launcher itself to every core, as it was started.
        one_a_core = len(os.sched_getaffinity(0)) == 2
        cores = [cores_of(pid) for pid in children]
        if one_a_core:
            assert all(len(c) == 1 and "," not in next(iter(c)) and "-" not in next(iter(c))
                       for c in cores), cores
            assert cores[0] != cores[1]
            assert cores_of(launcher.pid) == cores_of(os.getpid()) != cores[0]
        # Each process, web and worker, set its start-up objects aside from full collections.
        wait_for(lambda: web.output().count('"heap settled"') >= 2, 30, "both web processes")
        for log_text, role in ((output, "worker"), (web.output(), "web")):
            settled = [json.loads(line) for line in log_text.splitlines()
                       if '"heap settled"' in line]
            assert len(settled) == 2, log_text[-3000:]
            assert all(e["role"] == role and e["objectsSetAside"] > 50_000
                       for e in settled), settled
        key = e2e_key("user_launch")
        ids = [requests.post(f"{base}/v1/run", timeout=10,
                             headers={"Authorization": f"Bearer {key}"},
                             json={"provider": "demo", "endpoint": "/echo",
                                   "input": {"n": n}}).json()["runId"] for n in range(20)]
        assert all(poll_until_ended(base, key, run_id, timeout=90)["status"] == "COMPLETED"
                   for run_id in ids)
        # A child that dies is started again; the others go on.
        os.kill(children[0], signal.SIGKILL)
        wait_for(lambda: len(child_pids(launcher.pid)) == 2
                 and children[0] not in child_pids(launcher.pid), 60, "a new worker process")
        wait_for(lambda: launcher.output().count(" ready.") >= 3, 90, "the new one ready")
        if one_a_core:  # the new one keeps to the core of the one it replaces
            replaced = [pid for pid in child_pids(launcher.pid) if pid != children[1]]
            assert [cores_of(pid) for pid in replaced] == [cores[0]]
        again = requests.post(f"{base}/v1/run", timeout=10,
                              headers={"Authorization": f"Bearer {key}"},
                              json={"provider": "demo", "endpoint": "/echo", "input": {}})
        assert poll_until_ended(base, key, again.json()["runId"], timeout=90)["status"] == \
            "COMPLETED"
        # SIGTERM (the platform's warm shutdown) reaches every child; all leave.
        children = child_pids(launcher.pid)
        launcher.popen.send_signal(signal.SIGTERM)
        launcher.popen.wait(timeout=40)
        assert launcher.popen.returncode == 0
        assert children and all(not Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        launcher.stop()
        web.stop()

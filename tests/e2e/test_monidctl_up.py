"""`monidctl up` on a folder with nothing in it: embedded PostgreSQL and Redis, a
demo key, a run to COMPLETED, and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import free_port


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        if children.exists():
            for child in children.read_text().split():
                found.add(int(child))
                found |= children_of(int(child))
    return found


def test_up_runs_everything_and_stops_it(tmp_path: Path) -> None:
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        pytest.skip("the suite itself runs on the embedded servers here")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["PORT"] = str(port)
    up = subprocess.Popen([sys.executable, "-m", "shared.cli", "up"], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started: set[int] = set()
    try:
        assert up.stdout is not None
        key = None
        lines = []
        deadline = time.monotonic() + 90
        for line in up.stdout:
            lines.append(line)
            if re.fullmatch(r"monid_live_\w+", line.strip()):
                key = line.strip()
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        output = "".join(lines)
        assert key, output
        assert f"http://127.0.0.1:{port}" in output and "Flower" in output
        assert (tmp_path / ".monid" / "postgres").is_dir()
        started = children_of(up.pid)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/run", method="POST", headers=headers,
            data=json.dumps({"provider": "demo", "endpoint": "/echo",
                             "input": {"hello": "world"}}).encode())
        run = json.load(urllib.request.urlopen(request, timeout=10))
        waited = json.load(urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/runs/{run['runId']}?wait=30", headers=headers),
            timeout=40))
        assert waited["status"] == "COMPLETED" and waited["output"] == {"hello": "world"}
        balance = json.load(urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/wallet/balance", headers=headers), timeout=10))
        assert balance["balance"]["value"] == 5
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(90)
    assert up.returncode == 0
    survivors = [pid for pid in started if Path(f"/proc/{pid}").exists()
                 and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert not survivors, f"processes left running: {survivors}"
    # The embedded PostgreSQL runs as a daemon: it is stopped when its pid file is gone.
    assert not (tmp_path / ".monid" / "postgres" / "postmaster.pid").exists()

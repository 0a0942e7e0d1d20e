"""`monidctl up`: migrate, then run a web and a worker process until Ctrl-C."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from shared.db import migrate
from shared.settings import Settings


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _wait_healthy(url: str, web: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and web.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def run_local(settings: Settings, *, workers: int = 1) -> int:
    print("monid: migrating the database ...", flush=True)
    applied = migrate(settings.database_url)
    print(f"monid: database ready ({len(applied)} migration(s) applied)", flush=True)
    root = _package_dir("api").parent
    env = dict(os.environ)
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "--config",
                str(_package_dir("api") / "gunicorn_conf.py"), "api.wsgi:app"],
    }
    for n in range(1, workers + 1):
        commands[f"worker.{n}"] = [
            sys.executable, "-m", "celery", "--app", "worker.main", "worker", "--loglevel",
            "INFO", "--without-gossip", "--without-mingle", "--task-events",
            "--hostname", f"worker{n}@%h"]
    children = {name: subprocess.Popen(argv, cwd=root, env=env)
                for name, argv in commands.items()}
    base = f"http://127.0.0.1:{settings.port}"
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if _wait_healthy(f"{base}/healthz", children["web"]):
        print(f"monid: API on {base}  (health {base}/healthz, ready {base}/readyz)", flush=True)
        print("monid: make a key with: monidctl keys create --user user_abc123", flush=True)
        print("monid: Ctrl-C stops everything", flush=True)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"monid: {name} exited with {child.returncode}; stopping", flush=True)
                exit_code = child.returncode or 1
                stopping = True
        time.sleep(0.2)
    print("monid: stopping ...", flush=True)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
    print("monid: stopped", flush=True)
    return exit_code

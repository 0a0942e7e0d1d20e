"""Real web and worker processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
# Every process the tests started, so that none outlives the test session.
STARTED: list[Process] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A child process whose output goes to a log file, in its own process group."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(argv, env=full_env, cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        STARTED.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited {self.popen.returncode}:\n{self.output()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not print {text!r}:\n{self.output()[-4000:]}")

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        if self.alive():
            self.signal_group(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


def start_web(env: Mapping[str, str], log_dir: Path, *, port: int | None = None,
              wait: bool = True) -> tuple[Process, str]:
    port = port or free_port()
    web_env = {"PORT": str(port), "WEB_CONCURRENCY": "2", **env}
    proc = Process("web", [sys.executable, "-m", "gunicorn", "--config", "api/gunicorn_conf.py",
                           "api.wsgi:app"], web_env, log_dir)
    base_url = f"http://127.0.0.1:{port}"
    if wait:
        wait_http(f"{base_url}/healthz", proc)
    return proc, base_url


def start_worker(env: Mapping[str, str], log_dir: Path, *, concurrency: int = 8,
                 name: str = "worker", wait: bool = True, app: str = "worker.main",
                 ready_timeout: float = 60.0) -> Process:
    """A Celery worker as the Procfile starts one, for `app` (the monid worker unless
    said otherwise)."""
    argv = [sys.executable, "-m", "celery", "--app", app, "--quiet", "worker",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--hostname", f"{name}-{time.monotonic_ns()}@%h"]
    proc = Process(name, argv, {"WORKER_CONCURRENCY": str(concurrency), **env}, log_dir)
    if wait:
        proc.wait_for_output(" ready.", timeout=ready_timeout)
    return proc


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers of its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces, so split after its last ')'.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def wait_http(url: str, proc: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.output()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer:\n{proc.output()[-4000:]}")


def run_to_exit(argv: list[str], env: Mapping[str, str], timeout: float = 30.0
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env={**os.environ, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)

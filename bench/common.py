"""What the load benchmarks share: scratch databases, seeded keys, real processes,
bulk-loaded runs, and how figures are printed and handed to `bench.run_all`.

Every benchmark measures its baseline in the same run and prints the ratio: the
machine is shared and noisy, so only ratios travel.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from celery import Celery
from ulid import ULID

from shared import keys, store
from shared.catalog import Endpoint, load_catalog
from shared.db import make_pool, migrate, transaction
from shared.queue import QUEUE
from shared.settings import DEFAULT_CATALOG_DIR
from tests.processes import STARTED, Process, child_pids, start_web

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_USER = "bench"
BENCH_CALLER = f"USER#{BENCH_USER}"
# The seed's input (README walk-through) for demo /echo.
ECHO_BODY = {"provider": "demo", "endpoint": "/echo",
             "input": {"searchTerms": ["AI"], "maxItems": 10}}
# settings.py caps RATE_LIMIT_PER_MINUTE at 10,000,000: the limit stays on (one
# Redis round trip per request, as in production) but is never reached.
TASK_NOOP = "bench.noop"  # bench/noop_app.py
NOOP_COUNT = "bench:noop:count"
NOOP_LATENCY = "bench:noop:latency"
WEB_LOAD_ENV = {"WEB_CONCURRENCY": "2", "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_PER_MINUTE": "10000000", "MAX_RUNS_IN_FLIGHT": "0"}


# --- figures ------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], fmt: str = ".1f") -> str:
    """'median (min-max over n)'."""
    if not values:
        return "n/a"
    return (f"{med(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}} over "
            f"{len(values)})")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


@dataclass
class Figure:
    figure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    """What one benchmark found: printed at the end and, with --json, written for run_all."""

    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: str, value: str, *, baseline: str = "", ratio: str = "",
            target: str = "", met: bool | None = None) -> None:
        self.figures.append(Figure(figure, value, baseline, ratio, target, met))

    def print(self) -> None:
        print(f"\n== {self.benchmark}: summary")
        print_table(self.figures)
        for note in self.notes:
            print(f"  note: {note}")

    def write(self, path: str | None) -> None:
        if path:
            Path(path).write_text(json.dumps({
                "benchmark": self.benchmark, "notes": self.notes,
                "figures": [vars(f) for f in self.figures]}, indent=1))


def print_table(figures: Iterable[Figure], with_benchmark: str | None = None) -> None:
    header = ["figure", "value", "baseline", "ratio", "target", "met"]
    rows = []
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "NO")
        rows.append([f.figure, f.value, f.baseline, f.ratio, f.target, met])
    if with_benchmark is not None:
        header.insert(0, "benchmark")
        for row in rows:
            row.insert(0, with_benchmark)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def machine_line() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()
    return (f"machine: {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- servers ------------------------------------------------------------------------------


# Each benchmark's Redis database, which it flushes when it starts. None is one of the
# tests' (TEST_REDIS_DBS in tests/conftest.py, one per pytest-xdist worker): a benchmark
# that a test runs must not share its queue with another test's worker, which would take
# the benchmark's runs and find them in no database of its own. Nor is any 0, where a
# development server's data is.
REDIS_DBS = {"accept": 11, "accept_latency": 11, "throughput": 1, "inflight": 1,
             "polling": 2, "webhooks": 3, "results": 4, "system": 5, "fairness": 15,
             "publish": 15}


def redis_url(db: int) -> str:
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return urlunsplit(urlsplit(base)._replace(path=f"/{db}"))


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, migrated database on the PostgreSQL of DATABASE_URL, dropped afterwards."""
    name = f"monid_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_key(url: str, credit_micros: int = 1_000_000 * 1_000_000) -> tuple[str, int]:
    """A live key for BENCH_USER and a funded wallet: (key, key id)."""
    key = keys.generate_key()
    pool = make_pool(url, max_size=1)
    pool.open()
    try:
        with transaction(pool) as conn:
            found = store.insert_api_key(conn, user_id=BENCH_USER, label=None, mode="live",
                                         key_prefix=keys.display_prefix(key),
                                         key_hash=keys.hash_key(key))
            store.credit_wallet(conn, BENCH_CALLER, credit_micros, note="bench")
    finally:
        pool.close()
    return key, found.id


def echo_endpoint() -> Endpoint:
    found = load_catalog(DEFAULT_CATALOG_DIR).find("demo", "/echo")
    assert found is not None
    return found


def start_load_web(url: str, broker: str, log_dir: Path, **extra: str) -> tuple[Process, str]:
    """gunicorn as deployed (WEB_CONCURRENCY=2, default WEB_THREADS), tuned only so that a
    load test measures the request path: rate limit unreachable, no cap on runs in flight."""
    env = {"DATABASE_URL": url, "REDIS_URL": broker, **WEB_LOAD_ENV, **extra}
    return start_web(env, log_dir)


def install_cleanup() -> None:
    """Stop every process this benchmark started when it exits, also on an exception or a
    SIGTERM: a worker left behind would eat the next benchmark's messages."""

    def stop_started() -> None:
        for proc in reversed(STARTED):
            if proc.alive():
                proc.stop(timeout=30)

    atexit.register(stop_started)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def _machine_busy() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _TICK, sum(fields[:8]) / _TICK


class CpuMeter:
    """CPU seconds used meanwhile by the web workers, PostgreSQL, Redis, and the whole
    machine (the rest: the load generator, this process, other tenants)."""

    def __init__(self, web_master: int | None) -> None:
        self.web_master = web_master

    def _groups(self) -> dict[str, list[int]]:
        return {"web": child_pids(self.web_master) if self.web_master else [],
                "postgres": pids_named("postgres"), "redis": pids_named("redis-server")}

    def __enter__(self) -> CpuMeter:
        self.start = {g: {p: cpu_of(p) for p in pids} for g, pids in self._groups().items()}
        self.machine_start = _machine_busy()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.used: dict[str, float] = {}
        for group, pids in self._groups().items():
            before = self.start.get(group, {})
            self.used[group] = sum(cpu_of(p) - before.get(p, 0.0) for p in pids)
        busy, total = _machine_busy()
        self.used["machine"] = busy - self.machine_start[0]
        self.used["other"] = self.used["machine"] - sum(
            v for k, v in self.used.items() if k != "machine")
        self.busy_share = (busy - self.machine_start[0]) / max(total - self.machine_start[1],
                                                               1e-9)

    def per_request(self, requests: int) -> str:
        if not requests:
            return "n/a"
        parts = [f"{g} {1000 * self.used[g] / requests:.2f}"
                 for g in ("web", "postgres", "redis", "other")]
        return (f"CPU ms/request: {', '.join(parts)} (machine {100 * self.busy_share:.0f}% "
                "busy)")


def versions() -> str:
    out = []
    for module in ("celery", "flask", "gunicorn", "psycopg", "redis", "kombu"):
        try:
            out.append(f"{module} {__import__(module).__version__}")
        except Exception:
            out.append(f"{module} ?")
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        out.insert(0, f"PostgreSQL {row[0] if row else '?'}")
    client = redis.Redis.from_url(redis_url(0))
    out.insert(1, f"Redis {client.info('server').get('redis_version', '?')}")
    client.close()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False
                         ) if _which("wrk") else None
    if wrk is not None:
        out.append((wrk.stdout + wrk.stderr).split("Copyright")[0].strip())
    return ", ".join(out)


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


# --- bulk-loaded runs ---------------------------------------------------------------------

RUN_COLUMNS = ("id", "caller", "api_key_id", "provider", "provider_name", "endpoint", "adapter",
               "input", "status", "output", "result_count", "price_type", "price_micros",
               "flat_fee_micros", "cost_micros", "attempt_count", "max_attempts", "deadline_at",
               "created_at", "started_at", "completed_at", "updated_at", "last_published_at",
               "hold_micros", "max_results")
ATTEMPT_COLUMNS = ("run_id", "number", "lease_token", "worker", "started_at", "ended_at",
                   "outcome", "http_status", "message")


def ulid_at(when: datetime) -> str:
    return str(ULID.from_datetime(when))


def _ts(when: datetime) -> str:
    return when.isoformat()


def copy_runs(url: str, count: int, *, caller_of: Callable[[int], str], ended: bool,
              endpoint: Endpoint, spread_days: float = 30.0, deadline_seconds: float = 3600.0,
              batch: int = 50_000) -> list[str]:
    """COPY `count` runs shaped like the API's (the same columns insert_run writes) into
    `runs`; `caller_of(i)` names each run's caller. `ended`: COMPLETED (1 in 10 FAILED),
    created over the last `spread_days`, each with one attempt (1 in 5 with a retried one
    before it); else RUNNING, just published, never started. Returns the IDs in order."""
    now = datetime.now(UTC)
    start = now - timedelta(days=spread_days) if ended else now
    step = timedelta(days=spread_days) / max(count, 1) if ended else timedelta(0)
    rng = random.Random(count)
    input_json = json.dumps(ECHO_BODY["input"], separators=(",", ":"))
    output_json = json.dumps({"items": [ECHO_BODY["input"]]}, separators=(",", ":"))
    ids: list[str] = []
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        for first in range(0, count, batch):
            runs: list[tuple[Any, ...]] = []
            attempts: list[tuple[Any, ...]] = []
            for i in range(first, min(count, first + batch)):
                created = start + step * i
                run_id = ulid_at(created)
                ids.append(run_id)
                deadline = created + timedelta(seconds=deadline_seconds)
                if not ended:
                    runs.append((run_id, caller_of(i), None, endpoint.provider,
                                 endpoint.provider_name, endpoint.path, endpoint.adapter,
                                 input_json, "RUNNING", None, None, endpoint.price.type,
                                 endpoint.price.amount_micros, endpoint.price.flat_fee_micros,
                                 None, 0, endpoint.max_attempts, _ts(deadline), _ts(created),
                                 None, None, _ts(created), _ts(created), 0, None))
                    continue
                failed = i % 10 == 9
                retried = i % 5 == 0
                started = created + timedelta(milliseconds=rng.randint(2, 40))
                completed = started + timedelta(milliseconds=rng.randint(5, 400))
                runs.append((run_id, caller_of(i), None, endpoint.provider,
                             endpoint.provider_name, endpoint.path, endpoint.adapter,
                             input_json, "FAILED" if failed else "COMPLETED",
                             None if failed else output_json, None if failed else 1,
                             endpoint.price.type, endpoint.price.amount_micros,
                             endpoint.price.flat_fee_micros, 0, 2 if retried else 1,
                             endpoint.max_attempts, _ts(deadline), _ts(created), _ts(started),
                             _ts(completed), _ts(completed), _ts(created), 0, None))
                token = uuid.uuid4()
                if retried:
                    attempts.append((run_id, 1, token, "bench", _ts(started), _ts(started),
                                     "TRANSIENT_ERROR", 503, "provider answered 503"))
                attempts.append((run_id, 2 if retried else 1, token, "bench", _ts(started),
                                 _ts(completed), "PERMANENT_ERROR" if failed else "OK",
                                 None, None))
            with conn.cursor() as cur:
                with cur.copy(f"COPY runs ({', '.join(RUN_COLUMNS)}) FROM STDIN") as copy:
                    for row in runs:
                        copy.write_row(row)
                if attempts:
                    with cur.copy(f"COPY attempts ({', '.join(ATTEMPT_COLUMNS)}) FROM STDIN"
                                  ) as copy:
                        for attempt in attempts:
                            copy.write_row(attempt)
            conn.commit()
    return ids


def vacuum_analyze(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) runs")
        conn.execute("VACUUM (ANALYZE) attempts")


def publish_noop(publisher: Celery, sent_at: float | None = None) -> None:
    """Publish one bench.noop message as shared.queue.enqueue_run publishes a run."""
    publisher.send_task(TASK_NOOP, args=[sent_at] if sent_at is not None else [], queue=QUEUE,
                        retry=True, retry_policy={"max_retries": 1, "interval_start": 0.1,
                                                  "interval_step": 0.2, "interval_max": 0.3})

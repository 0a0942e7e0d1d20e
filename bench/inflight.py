"""Runs in flight per worker process against slow providers, and its peak memory.

    python -m bench.inflight [--runs 1000] [--concurrency 500] [--delay 2] [--apify 500]

1. HTTP: a loopback JSON API that answers after `--delay` seconds; one worker
   process with `--concurrency` slots works through `--runs` runs. Printed: the
   most runs in flight at once (holding a lease, i.e. waiting on the provider),
   runs per second against the ceiling `concurrency / delay`, and the worker's
   peak RSS.
2. Apify: `--apify` actor runs of a loopback fake Apify, each taking 10 s, are
   started and followed at once by the same kind of worker: the most actor runs
   followed at once, how many worker slots that took, and the peak RSS.

Needs DATABASE_URL (an admin URL: a scratch database is made and dropped) and
REDIS_URL (database 12 of it is used and flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import redis

from bench.common import REDIS_DBS, redis_url, scratch_database
from shared import store
from shared.catalog import load_catalog
from shared.db import make_pool, transaction
from shared.ids import new_run_id
from shared.queue import enqueue_run, make_publisher
from shared.settings import load_settings
from tests.fakes.apify import FakeApify
from tests.fakes.jsonapi import FakeJsonApi
from tests.processes import start_worker


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB of a process, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class Sampler(threading.Thread):
    """Samples, every 50 ms, a count from the database and the worker's RSS."""

    def __init__(self, url: str, sql: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.url, self.sql, self.pid = url, sql, pid
        self.peak = 0
        self.peak_rss = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopping.wait(0.05):
                row = conn.execute(self.sql).fetchone()
                self.peak = max(self.peak, row[0] if row else 0)
                self.peak_rss = max(self.peak_rss, rss_mb(self.pid)[0])


def insert_and_publish(url: str, settings_env: dict[str, str], provider: str, endpoint: str,
                       inputs: list[dict[str, object]]) -> list[str]:
    settings = load_settings(settings_env)
    catalog = load_catalog(settings.catalog_dir)
    found = catalog.find(provider, endpoint)
    assert found is not None
    pool = make_pool(url, max_size=2)
    pool.open()
    ids = []
    with transaction(pool) as conn:
        for body in inputs:
            run_id = new_run_id()
            store.insert_run(conn, run_id=run_id, caller="USER#bench", api_key_id=None,
                             endpoint=found, input=body)
            ids.append(run_id)
    pool.close()
    publisher = make_publisher(settings)
    for run_id in ids:
        enqueue_run(publisher, run_id)
    return ids


def wait_all_ended(url: str, count: int, timeout: float) -> float:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            row = conn.execute("SELECT count(*) FROM runs WHERE completed_at IS NOT NULL"
                               ).fetchone()
            if row and row[0] >= count:
                return time.monotonic() - started
            time.sleep(0.05)
    raise SystemExit(f"runs did not end within {timeout} s")


def http_scenario(args: argparse.Namespace, broker: str, log_dir: Path) -> None:
    with FakeJsonApi() as api, scratch_database() as url:
        api.delay = args.delay
        catalog_dir = log_dir / "catalog"
        catalog_dir.mkdir()
        (catalog_dir / "slow.json").write_text(json.dumps({
            "provider": "slow", "name": "Slow", "adapter": "http",
            "endpoints": [{"path": "/answer", "name": "Slow answer",
                           "description": "Answers after a delay.",
                           "inputSchema": {"type": "object"},
                           "price": {"type": "PER_CALL", "amount": 0},
                           "deadlineSeconds": 600,
                           "call": {"method": "POST", "baseUrl": api.base_url,
                                    "path": "/answer", "timeoutSeconds": 120}}]}))
        env = {"DATABASE_URL": url, "REDIS_URL": broker, "CATALOG_DIR": str(catalog_dir),
               "WORKER_CONCURRENCY": str(args.concurrency), "LOG_LEVEL": "WARNING"}
        worker = start_worker(env, log_dir, concurrency=args.concurrency)
        try:
            idle_rss = rss_mb(worker.pid)[0]
            sampler = Sampler(url, "SELECT count(*) FROM runs WHERE lease_token IS NOT NULL",
                              worker.pid)
            sampler.start()
            ids = insert_and_publish(url, env, "slow", "/answer",
                                     [{"n": n} for n in range(args.runs)])
            elapsed = wait_all_ended(url, len(ids), timeout=600)
            sampler.stopping.set()
            sampler.join()
            with psycopg.connect(url) as conn:
                statuses = dict(conn.execute(  # type: ignore[arg-type]
                    "SELECT status, count(*) FROM runs GROUP BY status").fetchall())
            _, hwm = rss_mb(worker.pid)
        finally:
            worker.stop()
    ceiling = args.concurrency / args.delay
    rate = args.runs / elapsed
    print(f"HTTP provider answering after {args.delay:g} s, {args.runs} runs, one worker "
          f"process with {args.concurrency} slots (threads)")
    print(f"  runs in flight at once (peak): {sampler.peak}")
    print(f"  runs/s: {rate:.1f}  (ceiling concurrency/delay = {ceiling:.1f}; "
          f"ratio {rate / ceiling:.2f})")
    print(f"  worker RSS: idle {idle_rss:.0f} MB, peak {max(hwm, sampler.peak_rss):.0f} MB")
    print(f"  end states: {statuses}")


def apify_scenario(args: argparse.Namespace, broker: str, log_dir: Path) -> None:
    with FakeApify(token="bench") as apify, scratch_database() as url:
        apify.add_actor("apidojo~tweet-scraper", run_seconds=10, items=[{"id": "1"}])
        env = {"DATABASE_URL": url, "REDIS_URL": broker, "APIFY_API_BASE_URL": apify.base_url,
               "APIFY_TOKEN": "bench", "WORKER_CONCURRENCY": "50", "LOG_LEVEL": "WARNING"}
        worker = start_worker(env, log_dir, concurrency=50)
        try:
            followed = Sampler(url, "SELECT count(*) FROM runs WHERE provider_state IS NOT NULL"
                               " AND completed_at IS NULL", worker.pid)
            leased = Sampler(url, "SELECT count(*) FROM runs WHERE lease_token IS NOT NULL",
                             worker.pid)
            followed.start()
            leased.start()
            ids = insert_and_publish(url, env, "apify", "/apidojo/tweet-scraper",
                                     [{"searchTerms": [f"t{n}"]} for n in range(args.apify)])
            elapsed = wait_all_ended(url, len(ids), timeout=600)
            for sampler in (followed, leased):
                sampler.stopping.set()
                sampler.join()
            with psycopg.connect(url) as conn:
                statuses = dict(conn.execute(  # type: ignore[arg-type]
                    "SELECT status, count(*) FROM runs GROUP BY status").fetchall())
            _, hwm = rss_mb(worker.pid)
        finally:
            worker.stop()
    print(f"Apify: {args.apify} actor runs of 10 s each, one worker process with 50 slots")
    print(f"  actor runs followed at once (peak): {followed.peak}; worker slots busy at once "
          f"(peak): {leased.peak}")
    print(f"  all ended in {elapsed:.1f} s; actor runs started: {apify.runs_started()}; "
          f"worker peak RSS {max(hwm, followed.peak_rss):.0f} MB")
    print(f"  end states: {statuses}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--apify", type=int, default=500)
    args = parser.parse_args()
    broker = redis_url(REDIS_DBS["inflight"])
    redis.Redis.from_url(broker).flushdb()
    log_dir = Path(tempfile.mkdtemp(prefix="monid-bench-"))
    print(f"machine: {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    http_scenario(args, broker, log_dir)
    redis.Redis.from_url(broker).flushdb()
    if args.apify:
        apify_scenario(args, broker, log_dir)
    redis.Redis.from_url(broker).flushdb()


if __name__ == "__main__":
    main()

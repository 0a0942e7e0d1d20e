"""Results at real size: a worker's memory reading large datasets, a web process's memory
and other callers' latency while it serves large downloads, and the download rate.

    python -m bench.results [--datasets 5] [--dataset-mb 100] [--downloads 10]
        [--download-mb 20] [--repeat 3] [--only worker|web] [--quick] [--json PATH]

1. Worker: one worker process (threads pool, WORKER_CONCURRENCY=8) follows
   `--datasets` Apify runs of a loopback fake Apify at once, each of whose datasets is
   `--dataset-mb` MB (items of 500 bytes), and stores them whole as the runs' items
   (MAX_RESULT_BYTES and MAX_RESULT_ITEMS raised above them for the occasion). Sampled
   every 50 ms: its RSS. Target: the peak under 400 MB.
2. Web: one web process (WEB_CONCURRENCY=1, gunicorn gthread, 64 threads; RSS of
   gunicorn's worker and its master added up) serves a run whose result is
   `--download-mb` MB of tweet-like items (nested fields, a list), stored as a
   worker stores one: `--downloads` downloads at once (curl), first all
   JSONL, then all CSV, while another caller polls one of its own runs back to back
   (GET /v1/runs/:runId). Sampled: the web process's RSS; measured: the other caller's
   latency. Targets: the peak under 300 MB, the other caller's p99 under 100 ms.
3. Download rate: the same result downloaded alone, as JSONL and as CSV, `--repeat`
   times each: MB/s of the body (median and spread).

Needs DATABASE_URL (an admin URL: a scratch database is made and dropped), REDIS_URL
(its database `bench.common.REDIS_DBS["results"]` is used and flushed) and curl.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.common import (
    BENCH_CALLER,
    REDIS_DBS,
    Report,
    flush,
    install_cleanup,
    log,
    machine_line,
    med,
    percentile,
    redis_url,
    scratch_database,
    seed_key,
    spread,
)
from bench.inflight import insert_and_publish, rss_mb, wait_all_ended
from shared import store
from shared.catalog import load_catalog
from shared.db import autocommit, make_pool, transaction
from shared.ids import new_run_id
from shared.settings import DEFAULT_CATALOG_DIR, load_settings
from tests.fakes.apify import FakeApify, SizedDataset
from tests.processes import child_pids, start_web, start_worker
from worker.providers.base import ProviderResult
from worker.results import ResultWriter

REDIS_DB = REDIS_DBS["results"]
MB = 1_000_000
ITEM_BYTES = 500
WORKER_TARGET_MB = 400
WEB_TARGET_MB = 300
OTHER_P99_TARGET_MS = 100.0


class RssSampler(threading.Thread):
    """The peak RSS of some processes (added up), sampled every 50 ms."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            self.peak = max(self.peak, sum(rss_mb(pid)[0] for pid in self.pids))

    def stop(self) -> float:
        self.stopping.set()
        self.join()
        return self.peak


# --- 1. the worker ---------------------------------------------------------------------


@dataclass
class WorkerFigures:
    idle_mb: float
    peak_mb: float
    seconds: float
    stored_mb: float
    statuses: dict[str, int]


def worker_memory(datasets: int, dataset_mb: float, log_dir: Path) -> WorkerFigures:
    count = int(dataset_mb * MB / ITEM_BYTES)
    dataset = SizedDataset(count, ITEM_BYTES)
    broker = redis_url(REDIS_DB)
    flush(broker)
    with FakeApify(token="bench") as apify, scratch_database() as url:
        apify.add_actor("apidojo~tweet-scraper", run_seconds=1.0, items=dataset)
        env = {"DATABASE_URL": url, "REDIS_URL": broker, "APIFY_API_BASE_URL": apify.base_url,
               "APIFY_TOKEN": "bench", "LOG_LEVEL": "WARNING",
               "MAX_RESULT_BYTES": str(int(dataset.total_bytes * 1.1)),
               "MAX_RESULT_ITEMS": str(count + 1)}
        worker = start_worker(env, log_dir, concurrency=8)
        try:
            time.sleep(1.0)
            idle = rss_mb(worker.pid)[0]
            sampler = RssSampler([worker.pid])
            sampler.start()
            log(f"worker: {datasets} Apify runs of {dataset.total_bytes / MB:.0f} MB "
                f"({count} items of {ITEM_BYTES} bytes) each, at once")
            ids = insert_and_publish(url, env, "apify", "/apidojo/tweet-scraper",
                                     [{"searchTerms": [f"t{n}"]} for n in range(datasets)])
            elapsed = wait_all_ended(url, len(ids), timeout=3600)
            peak = max(sampler.stop(), rss_mb(worker.pid)[1])
            with psycopg.connect(url) as conn:
                statuses = {str(k): int(v) for k, v in conn.execute(
                    "SELECT status || ' ' || coalesce(item_count, 0), count(*) FROM runs"
                    " GROUP BY 1").fetchall()}
                stored = conn.execute("SELECT sum(octet_length(item::text)) FROM run_items"
                                      ).fetchone()
        finally:
            worker.stop()
    return WorkerFigures(idle, peak, elapsed, (stored[0] or 0) / MB if stored else 0.0,
                         statuses)


# --- 2. and 3. the web -----------------------------------------------------------------


def tweets(total_bytes: int) -> Iterator[list[dict[str, Any]]]:
    """Tweet-like items of about 500 bytes, in pages of 1000, `total_bytes` in all."""
    made = n = 0
    while made < total_bytes:
        page = []
        for _ in range(1000):
            item = {"id": str(10**17 + n), "type": "tweet",
                    "url": f"https://x.com/user{n % 97}/status/{10**17 + n}",
                    "createdAt": "2026-03-28T10:30:00.000Z", "likeCount": n % 131,
                    "retweetCount": n % 17, "lang": "en",
                    "author": {"userName": f"user{n % 97}", "name": f"User {n % 97}",
                               "followers": n % 10007, "verified": n % 2 == 0},
                    "hashtags": ["ai", "agents"][: n % 3],
                    "text": f"tweet {n}: " + "lorem ipsum, \"dolor\" sit amet " * 6}
            made += len(json.dumps(item, separators=(",", ":")))
            n += 1
            page.append(item)
            if made >= total_bytes:
                break
        yield page


def store_result(url: str, total_bytes: int) -> str:
    """A COMPLETED run of the bench caller holding `total_bytes` of items, written as a
    worker writes a result."""
    settings = load_settings({"DATABASE_URL": url, "REDIS_URL": redis_url(REDIS_DB),
                              "MAX_RESULT_BYTES": str(total_bytes * 2),
                              "MAX_RESULT_ITEMS": "10000000"})
    endpoint = load_catalog(DEFAULT_CATALOG_DIR).find("apify", "/apidojo/tweet-scraper")
    assert endpoint is not None
    pool = make_pool(url, max_size=2)
    pool.open()
    try:
        run_id = new_run_id()
        with transaction(pool) as conn:
            store.insert_run(conn, run_id=run_id, caller=BENCH_CALLER, api_key_id=None,
                             endpoint=endpoint, input={"searchTerms": ["AI"]})
        with autocommit(pool) as conn:
            claim = store.claim_run(conn, run_id, worker="bench", lease_seconds=600)
        assert claim is not None

        ended = ResultWriter(settings=settings, pool=pool).write(
            claim, ProviderResult(pages=tweets(total_bytes)), cost_of=lambda n: 0)
        assert ended is not None and ended.status == "COMPLETED", ended
    finally:
        pool.close()
    return run_id


def curl(url: str, key: str) -> tuple[int, float]:
    """One download: (bytes, seconds)."""
    done = subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", "-H",
                           f"Authorization: Bearer {key}", "-w",
                           "%{size_download} %{time_total}", url],
                          capture_output=True, text=True, timeout=600, check=True)
    size, seconds = done.stdout.split()
    return int(size), float(seconds)


@dataclass
class Crowd:
    format: str
    peak_mb: float
    seconds: float
    body_mb: float
    other_ms: list[float]


def other_caller(base: str, key: str, run_id: str, stopping: threading.Event,
                 latencies: list[float]) -> None:
    """Another caller, polling its own run back to back (a fresh connection at times, as
    clients do)."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}"}
    while not stopping.is_set():
        started = time.perf_counter()
        answer = session.get(f"{base}/v1/runs/{run_id}", headers=headers, timeout=30)
        latencies.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
        if len(latencies) % 20 == 0:
            session.close()
            session = requests.Session()
        time.sleep(0.01)


def crowd(base: str, key: str, run_id: str, fmt: str, downloads: int, web_pids: list[int],
          other_key: str, other_run: str) -> Crowd:
    sampler = RssSampler(web_pids)
    sampler.start()
    latencies: list[float] = []
    stopping = threading.Event()
    poller = threading.Thread(target=other_caller,
                              args=(base, other_key, other_run, stopping, latencies))
    poller.start()
    time.sleep(0.5)
    sizes: list[int] = []
    url = f"{base}/v1/runs/{run_id}/items?format={fmt}"
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda: sizes.append(curl(url, key)[0]))
               for _ in range(downloads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    stopping.set()
    poller.join()
    assert len(sizes) == downloads and len(set(sizes)) == 1, sizes
    return Crowd(fmt, sampler.stop(), seconds, sizes[0] / MB, latencies)


def web_figures(args: argparse.Namespace, log_dir: Path, report: Report) -> None:
    broker = redis_url(REDIS_DB)
    flush(broker)
    with scratch_database() as url:
        key, _ = seed_key(url)
        log(f"web: storing a {args.download_mb:g} MB result")
        run_id = store_result(url, int(args.download_mb * MB))
        other_key, other_run = other_caller_run(url)
        web, base = start_web({"DATABASE_URL": url, "REDIS_URL": broker, "LOG_LEVEL": "WARNING",
                               "WEB_CONCURRENCY": "1", "RATE_LIMIT_PER_MINUTE": "10000000"},
                              log_dir)
        try:
            workers = child_pids(web.pid)
            assert len(workers) == 1, workers
            # The web process: gunicorn's worker, and its master (which only forks).
            pids = [web.pid, *workers]
            idle = sum(rss_mb(pid)[0] for pid in pids)
            log("web: the other caller alone, for a baseline")
            alone: list[float] = []
            stopping = threading.Event()
            poller = threading.Thread(target=other_caller,
                                      args=(base, other_key, other_run, stopping, alone))
            poller.start()
            time.sleep(3.0)
            stopping.set()
            poller.join()
            crowds = []
            for fmt in ("jsonl", "csv"):
                log(f"web: {args.downloads} {fmt.upper()} downloads at once, another caller "
                    "polling meanwhile")
                crowds.append(crowd(base, key, run_id, fmt, args.downloads, pids, other_key,
                                    other_run))
            rates: dict[str, list[float]] = {"jsonl": [], "csv": []}
            sizes: dict[str, float] = {}
            for _ in range(args.repeat):
                for fmt in rates:
                    size, seconds = curl(f"{base}/v1/runs/{run_id}/items?format={fmt}", key)
                    rates[fmt].append(size / MB / seconds)
                    sizes[fmt] = size / MB
            hwm = sum(rss_mb(pid)[1] for pid in pids)
        finally:
            web.stop()
    print(f"  the other caller alone: p50 {percentile(alone, 0.5):.1f} ms, p99 "
          f"{percentile(alone, 0.99):.1f} ms over {len(alone)} requests")
    for c in crowds:
        p50, p99 = percentile(c.other_ms, 0.5), percentile(c.other_ms, 0.99)
        print(f"  {args.downloads} x {c.format.upper()} ({c.body_mb:.1f} MB each) in "
              f"{c.seconds:.1f} s ({args.downloads * c.body_mb / c.seconds:.1f} MB/s in all): "
              f"web RSS peak {c.peak_mb:.0f} MB (idle {idle:.0f}); other caller "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(c.other_ms):.1f} ms over "
              f"{len(c.other_ms)} requests")
        report.add(f"web peak RSS, {args.downloads} x {c.format.upper()} download of "
                   f"{args.download_mb:g} MB", f"{c.peak_mb:.0f} MB",
                   baseline=f"idle {idle:.0f} MB", target=f"< {WEB_TARGET_MB} MB",
                   met=c.peak_mb < WEB_TARGET_MB)
        report.add(f"other caller's GET /v1/runs/:id meanwhile ({c.format.upper()})",
                   f"p99 {p99:.1f} ms (p50 {p50:.1f}, max {max(c.other_ms):.1f}, "
                   f"n {len(c.other_ms)})",
                   baseline=f"alone: p99 {percentile(alone, 0.99):.1f} ms "
                            f"(p50 {percentile(alone, 0.5):.1f})",
                   target=f"p99 < {OTHER_P99_TARGET_MS:g} ms", met=p99 < OTHER_P99_TARGET_MS)
    for fmt, values in rates.items():
        print(f"  one {fmt.upper()} download ({sizes[fmt]:.1f} MB): {spread(values)} MB/s")
        report.add(f"download rate, {fmt.upper()} of a {args.download_mb:g} MB result",
                   f"{med(values):.1f} MB/s", baseline=f"{sizes[fmt]:.1f} MB body; "
                                                        f"{spread(values)}")
    print(f"  web RSS high-water marks over it all (master and worker): {hwm:.0f} MB")


def other_caller_run(url: str) -> tuple[str, str]:
    """Another caller with a small ended run of its own."""
    from shared import keys

    key = keys.generate_key()
    endpoint = load_catalog(DEFAULT_CATALOG_DIR).find("demo", "/echo")
    assert endpoint is not None
    run_id = new_run_id()
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        store.insert_api_key(conn, user_id="bench_other", label=None, mode="live",
                             key_prefix=keys.display_prefix(key), key_hash=keys.hash_key(key))
        store.insert_run(conn, run_id=run_id, caller="USER#bench_other", api_key_id=None,
                         endpoint=endpoint, input={"searchTerms": ["AI"], "maxItems": 10})
    return key, run_id


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=5)
    parser.add_argument("--dataset-mb", type=float, default=100.0)
    parser.add_argument("--downloads", type=int, default=10)
    parser.add_argument("--download-mb", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("worker", "web"), help="one part alone")
    parser.add_argument("--quick", action="store_true",
                        help="2 datasets of 5 MB, 3 downloads of 2 MB, 1 repetition")
    parser.add_argument("--json", help="write the summary here (for bench.run_all)")
    args = parser.parse_args(argv)
    install_cleanup()
    if shutil.which("curl") is None:
        raise SystemExit("bench.results needs curl")
    if args.quick:
        args.datasets, args.dataset_mb, args.downloads, args.download_mb, args.repeat = (
            2, 5.0, 3, 2.0, 1)
    log_dir = Path(tempfile.mkdtemp(prefix="monid-bench-results-"))
    print(machine_line())
    print(f"logs in {log_dir}")
    report = Report("results")

    if args.only != "web":
        worker_part(args, log_dir, report)
    if args.only != "worker":
        web_figures(args, log_dir, report)
    report.print()
    report.write(args.json)
    return report


def worker_part(args: argparse.Namespace, log_dir: Path, report: Report) -> None:
    worker = worker_memory(args.datasets, args.dataset_mb, log_dir)
    print(f"  {args.datasets} datasets of {args.dataset_mb:g} MB at once: stored "
          f"{worker.stored_mb:.0f} MB of items in {worker.seconds:.1f} s "
          f"({worker.stored_mb / worker.seconds:.1f} MB/s); worker RSS idle "
          f"{worker.idle_mb:.0f} MB, peak {worker.peak_mb:.0f} MB; runs {worker.statuses}")
    report.add(f"worker peak RSS, {args.datasets} x {args.dataset_mb:g} MB datasets at once",
               f"{worker.peak_mb:.0f} MB", baseline=f"idle {worker.idle_mb:.0f} MB",
               target=f"< {WORKER_TARGET_MB} MB", met=worker.peak_mb < WORKER_TARGET_MB)
    report.add("items stored meanwhile", f"{worker.stored_mb:.0f} MB in {worker.seconds:.1f} s",
               baseline=", ".join(f"{k}: {v}" for k, v in worker.statuses.items()))


if __name__ == "__main__":
    main()

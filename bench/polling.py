"""Polling a run as the table grows: `GET /v1/runs/:runId` with 1,000 runs in `runs`, then
with 1,000,000; and time-to-start at low load.

    python -m bench.polling [--small 1000] [--big 1000000] [--repeat 3] [--duration 10]
        [--connections 64] [--start-runs 200] [--start-rate 20] [--tool auto|wrk|python]
        [--quick] [--json PATH]

1. Two scratch databases, each with a key and a gunicorn web (WEB_CONCURRENCY=2): one
   with `--small` runs, one with `--big`, COPYed in bulk (the columns the API writes,
   real ULIDs spread over 30 days, COMPLETED or 1 in 10 FAILED, one attempt row each and
   an earlier failed attempt for 1 in 5). Half are the caller's, the rest other
   callers'. Then, alternating small and big for each repetition, `--connections`
   keep-alive connections each GET a random run of the caller's (one of up to 20,000
   picked at random) for `--duration` s. Printed: requests/s, p50, p99, errors, and
   p99(big)/p99(small). Target: within 1.5x.
2. Time-to-start, on the small database: one worker (default WORKER_CONCURRENCY),
   `--start-runs` runs submitted one at a time through the API at `--start-rate` per
   second; created_at -> started_at read from PostgreSQL: p50 and p99. Baseline: the
   same number of no-op Celery tasks (bench/noop_app.py, same worker settings) published
   at the same rate, publish -> start of the task.

Needs DATABASE_URL (an admin URL) and REDIS_URL; Redis database 9, flushed.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
import requests

from bench.common import (
    BENCH_CALLER,
    ECHO_BODY,
    NOOP_COUNT,
    NOOP_LATENCY,
    REDIS_DBS,
    Report,
    copy_runs,
    echo_endpoint,
    flush,
    install_cleanup,
    log,
    machine_line,
    med,
    percentile,
    publish_noop,
    ratio,
    redis_url,
    scratch_database,
    seed_key,
    spread,
    start_load_web,
    vacuum_analyze,
)
from bench.load import LoadResult, pick_tool, run_load
from shared.queue import make_publisher
from shared.settings import load_settings
from tests.processes import Process, start_worker

REDIS_DB = REDIS_DBS["polling"]
SAMPLE = 20_000


@dataclass
class Table:
    name: str
    url: str
    key: str
    web: Process
    base: str
    paths: list[str]


def caller_of(i: int) -> str:
    return BENCH_CALLER if i % 2 == 0 else f"USER#other{i % 997}"


@contextmanager
def loaded_table(name: str, rows: int, broker: str, log_dir: Path) -> Iterator[Table]:
    with scratch_database() as url:
        key, _ = seed_key(url)
        started = time.perf_counter()
        copy_runs(url, rows, caller_of=caller_of, ended=True, endpoint=echo_endpoint())
        vacuum_analyze(url)
        with psycopg.connect(url) as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM runs WHERE caller = %s ORDER BY random() LIMIT %s",
                (BENCH_CALLER, SAMPLE))]
            count = conn.execute("SELECT count(*) FROM runs").fetchone()
            attempts = conn.execute("SELECT count(*) FROM attempts").fetchone()
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('runs'))"
                                ).fetchone()
        log(f"{name}: {count[0] if count else 0} runs ({len(ids)} of the caller's sampled), "
            f"{attempts[0] if attempts else 0} attempts, runs table {size[0] if size else '?'}"
            f", loaded in {time.perf_counter() - started:.1f} s")
        web, base = start_load_web(url, broker, log_dir)
        try:
            yield Table(name, url, key, web, base, [f"/v1/runs/{i}" for i in ids])
        finally:
            web.stop()


def poll(table: Table, args: argparse.Namespace, duration: float) -> LoadResult:
    return run_load(f"{table.base}/v1/runs/x", paths=table.paths,
                    headers={"Authorization": f"Bearer {table.key}"},
                    connections=args.connections, duration=duration, tool=args.tool)


def paced(count: int, rate: float) -> Iterator[int]:
    """0..count-1, the i-th no sooner than i / rate seconds after the first."""
    started = time.perf_counter()
    for i in range(count):
        wait = started + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield i


def time_to_start(table: Table, broker: str, log_dir: Path, args: argparse.Namespace
                  ) -> tuple[list[float], list[float]]:
    """(created_at -> started_at of runs, publish -> start of no-op tasks), in ms."""
    env = {"DATABASE_URL": table.url, "REDIS_URL": broker, "LOG_LEVEL": "WARNING"}
    concurrency = load_settings(env).worker_concurrency
    flush(broker)
    worker = start_worker(env, log_dir, app="worker.main", ready_timeout=90,
                          concurrency=concurrency, name="worker")
    session = requests.Session()
    headers = {"Authorization": f"Bearer {table.key}"}
    ids = []
    try:
        for _ in paced(args.start_runs, args.start_rate):
            answer = session.post(f"{table.base}/v1/run", json=ECHO_BODY, headers=headers,
                                  timeout=10)
            if answer.status_code != 202:
                raise SystemExit(f"POST /v1/run answered {answer.status_code}: {answer.text}")
            ids.append(answer.json()["runId"])
        deadline = time.monotonic() + 120
        with psycopg.connect(table.url, autocommit=True) as conn:
            while True:
                rows = conn.execute(
                    "SELECT extract(epoch FROM started_at - created_at) * 1000 FROM runs"
                    " WHERE id = ANY(%s) AND completed_at IS NOT NULL", (ids,)).fetchall()
                if len(rows) == len(ids):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {len(rows)} of {len(ids)} runs ended")
                time.sleep(0.2)
    finally:
        worker.stop(timeout=40)
        session.close()
    runs_ms = [float(r[0]) for r in rows]
    flush(broker)
    worker = start_worker(env, log_dir, app="bench.noop_app", ready_timeout=90,
                          concurrency=concurrency, name="noop")
    client = redis.Redis.from_url(broker)
    publisher = make_publisher(load_settings(env))
    try:
        for _ in paced(args.start_runs, args.start_rate):
            publish_noop(publisher, time.time())
        deadline = time.monotonic() + 60
        while int(client.get(NOOP_COUNT) or 0) < args.start_runs:
            if time.monotonic() > deadline:
                raise SystemExit("the no-op tasks did not all run")
            time.sleep(0.05)
        noop_ms = [float(v) * 1000 for v in client.lrange(NOOP_LATENCY, 0, -1)]
    finally:
        worker.stop(timeout=40)
        publisher.close()
        client.close()
        flush(broker)
    return runs_ms, noop_ms


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--start-runs", type=int, default=200)
    parser.add_argument("--start-rate", type=float, default=20.0)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--quick", action="store_true",
                        help="100,000 runs, 2 x 2 s, 40 starts: a smoke test")
    parser.add_argument("--json", help="write the summary here (for bench.run_all)")
    args = parser.parse_args(argv)
    install_cleanup()
    if args.quick:
        args.big, args.repeat, args.duration, args.warmup = 100_000, 2, 2.0, 1.0
        args.start_runs = 40
    args.tool = pick_tool(args.tool)
    broker = redis_url(REDIS_DB)
    log_dir = Path(tempfile.mkdtemp(prefix="monid-bench-polling-"))
    print(machine_line())
    print(f"{args.repeat} x {args.duration:g} s per table, {args.connections} connections "
          f"({args.tool}); logs in {log_dir}")
    flush(broker)
    polls: dict[str, list[LoadResult]] = {"small": [], "big": []}
    with contextlib.ExitStack() as stack:
        small = stack.enter_context(loaded_table("small", args.small, broker, log_dir))
        runs_ms, noop_ms = time_to_start(small, broker, log_dir, args)
        log(f"time-to-start of {len(runs_ms)} runs at {args.start_rate:g}/s: p50 "
            f"{percentile(runs_ms, 0.5):.1f} ms, p99 {percentile(runs_ms, 0.99):.1f} ms; "
            f"no-op task p50 {percentile(noop_ms, 0.5):.1f} ms, p99 "
            f"{percentile(noop_ms, 0.99):.1f} ms")
        big = stack.enter_context(loaded_table("big", args.big, broker, log_dir))
        for table in (small, big):
            poll(table, args, args.warmup)
        for rep in range(args.repeat):
            for name, table in (("small", small), ("big", big)):
                result = poll(table, args, args.duration)
                polls[name].append(result)
                log(f"rep {rep + 1} {name:5} {result.line()}")
        flush(broker)
    return report(polls, runs_ms, noop_ms, args)


def report(polls: dict[str, list[LoadResult]], runs_ms: list[float], noop_ms: list[float],
           args: argparse.Namespace) -> Report:
    rep = Report("polling")
    small, big = polls["small"], polls["big"]
    s99, b99 = [r.p99_ms for r in small], [r.p99_ms for r in big]
    s50, b50 = [r.p50_ms for r in small], [r.p50_ms for r in big]
    srps, brps = [r.ok_rps for r in small], [r.ok_rps for r in big]
    per_rep = [ratio(b, s) for b, s in zip(b99, s99, strict=True)]
    print(f"\nGET /v1/runs/:runId, {args.connections} connections, median (min-max):")
    for name, runs in ((f"{args.small} runs", small), (f"{args.big} runs", big)):
        print(f"  {name:16} req/s {spread([r.ok_rps for r in runs])}  p50 "
              f"{spread([r.p50_ms for r in runs], '.2f')} ms  p99 "
              f"{spread([r.p99_ms for r in runs], '.2f')} ms  errors "
              f"{sum(r.errors for r in runs)}")
    r99 = ratio(med(b99), med(s99))
    print(f"  ratio p99 big/small: {r99:.2f} (per repetition {spread(per_rep, '.2f')}); "
          f"p50 {ratio(med(b50), med(s50)):.2f}; req/s {ratio(med(brps), med(srps)):.2f}")
    rep.add(f"GET /v1/runs/:id p99 ms, {args.big:,} runs", spread(b99),
            baseline=f"{args.small:,} runs: {spread(s99)}", ratio=f"{r99:.2f}",
            target="<= 1.5x", met=r99 <= 1.5)
    rep.add(f"GET /v1/runs/:id p50 ms, {args.big:,} runs", spread(b50, ".2f"),
            baseline=f"{args.small:,} runs: {spread(s50, '.2f')}",
            ratio=f"{ratio(med(b50), med(s50)):.2f}")
    rep.add(f"GET /v1/runs/:id req/s, {args.big:,} runs", spread(brps),
            baseline=f"{args.small:,} runs: {spread(srps)}",
            ratio=f"{ratio(med(brps), med(srps)):.2f}")
    rep.add("errors (small / big)",
            f"{sum(r.errors for r in small)} / {sum(r.errors for r in big)}")
    rep.add(f"time-to-start p50 ms ({len(runs_ms)} runs at {args.start_rate:g}/s)",
            f"{percentile(runs_ms, 0.5):.1f}",
            baseline=f"no-op task {percentile(noop_ms, 0.5):.1f}",
            ratio=f"{ratio(percentile(runs_ms, 0.5), percentile(noop_ms, 0.5)):.2f}")
    rep.add("time-to-start p99 ms", f"{percentile(runs_ms, 0.99):.1f}",
            baseline=f"no-op task {percentile(noop_ms, 0.99):.1f}",
            ratio=f"{ratio(percentile(runs_ms, 0.99), percentile(noop_ms, 0.99)):.2f}")
    rep.notes.append("time-to-start: created_at (the API's INSERT) -> started_at (the worker's "
                     "claim), from PostgreSQL; no-op: time.time() at publish -> task start")
    rep.print()
    rep.write(args.json)
    return rep


if __name__ == "__main__":
    random.seed(1)
    main()

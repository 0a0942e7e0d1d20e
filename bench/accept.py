"""Accepting runs under load: `POST /v1/run` requests/s and latency at 64 connections,
against `GET /healthz` on the same server and a raw PostgreSQL INSERT ceiling, in one run.

    python -m bench.accept [--repeat 3] [--duration 10] [--connections 64] [--inserters 4]
        [--tool auto|wrk|python] [--profile DIR] [--quick] [--json PATH] [--priced] [--budget]

A real gunicorn web (WEB_CONCURRENCY=2, default WEB_THREADS) on a scratch database,
with one key and a funded wallet; no worker runs, so accepted runs only queue (Redis
database 11, flushed between repetitions). Each repetition, for `--duration` seconds:

1. `POST /v1/run` with demo /echo and the seed's input, `--connections` keep-alive
   connections (bench.load; wrk when installed);
2. `GET /healthz`, the same way: the web stack's own ceiling on this machine;
3. raw inserts: `--inserters` threads, each with its own psycopg connection, doing
   one INSERT of a run (the API's own `insert_run` statement into the real `runs`
   table, ULIDs from shared.ids.new_run_id) and a COMMIT per row.

Printed: requests/s, p50, p99 and errors of each (median of the repetitions, with their
spread), and the ratios accept/healthz and accept/raw-insert. Targets: accept at least
40% of /healthz's requests/s, with p99 under 50 ms.

`--profile DIR`: after the repetitions, one more accept load while py-spy samples every
gunicorn worker (raw collapsed stacks and speedscope files in DIR); prints the functions
that take the most samples.

Needs DATABASE_URL (an admin URL: a scratch database is made and dropped) and REDIS_URL.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench import pyspy
from bench.common import (
    BENCH_CALLER,
    ECHO_BODY,
    REDIS_DBS,
    CpuMeter,
    Report,
    echo_endpoint,
    flush,
    install_cleanup,
    log,
    machine_line,
    med,
    percentile,
    ratio,
    redis_url,
    scratch_database,
    seed_key,
    spread,
    start_load_web,
)
from bench.load import LoadResult, pick_tool, run_load
from shared import store
from shared.ids import new_run_id
from tests.processes import child_pids

REDIS_DB = REDIS_DBS["accept"]
# The parts of POST /v1/run a profile is broken down into: (label, function[@file part]).
PARTS = [
    ("gunicorn: the request, parsed, handled and answered", "handle_request@gthread"),
    ("  gunicorn access log line (skipped by api/gunicorn_conf.py's logger class)",
     "access@gunicorn/glogging.py"),
    ("  logging.Logger.info, wherever called", "info@logging/__init__.py"),
    ("Flask: the app, hooks and all (Flask.__call__)", "__call__@flask/app.py"),
    ("  before_request hooks (request id, timer)", "preprocess_request@flask/app.py"),
    ("  after_request hooks (JSON request log, metrics, quota headers)",
     "process_response@flask/app.py"),
    ("  after_request: JSON request log line (api/app.py _finish)", "_finish@api/app.py"),
    ("  after_request: metrics count (api/metrics.py _count_request)",
     "_count_request@api/metrics.py"),
    ("  the view start_run", "start_run@api/runs.py"),
    ("    authenticate (key lookup, cached; rate limit in Redis)", "authenticate"),
    ("      authenticate_key (shared.callers: the key's caller)", "authenticate_key"),
    ("      find_api_key (a cache miss)", "find_api_key"),
    ("      check_rate (one Redis script call)", "check_rate"),
    ("    parse_json_object + schema load", "parse_json_object"),
    ("    schema load (marshmallow)", "load@api/schemas.py"),
    ("    shared.runs.start_run (the service: validate, hold, store, publish)",
     "start_run@shared/runs.py"),
    ("    validate_input (JSON Schema)", "validate_input"),
    ("    shared.accepts: the run handed to its process's group (Group.submit)",
     "insert@shared/accepts.py"),
    ("      a write, alone or of a group (in whichever thread writes it)",
     "_write@shared/accepts.py"),
    ("        store.insert_runs (a group: one transaction, one round trip)", "insert_runs"),
    ("        store.insert_new_run (alone: one statement)", "insert_new_run"),
    ("      waiting for a write (its own, or one under way)", "wait@threading.py"),
    ("    taking a pooled PostgreSQL connection (getconn)", "getconn@psycopg_pool"),
    ("      the pool's check of it (a round trip per checkout)",
     "_check_connection@psycopg_pool"),
    ("    COMMIT (only with an Idempotency-Key)", "__exit__@psycopg/transaction.py"),
    ("    publish_soon (hand the ID to the publishing thread)", "publish_soon"),
    ("  the publishing thread: messages and their LPUSH", "_send_forever@shared/queue.py"),
    ("    metrics.note_run_accepted", "note_run_accepted"),
    ("    the answer dumped (marshmallow)", "dump@marshmallow/schema.py"),
    ("    jsonify", "jsonify"),
    ("  psycopg: waiting on the server (Connection.wait)", "wait@psycopg/connection.py"),
    ("  Redis socket reads", "_read_from_socket"),
    ("  JSON log formatting (shared.logs)", "format@shared/logs.py"),
]


PRICED_BODY = {"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
               "input": {"searchTerms": ["AI"], "maxItems": 10}}


def seed_budget(url: str) -> None:
    """An active DAY budget of the bench's caller that no load reaches."""
    from shared import controls
    from shared.db import make_pool

    pool = make_pool(url, max_size=1)
    pool.open()
    try:
        controls.create_budget(pool, BENCH_CALLER, period="DAY",
                               limit_micros=controls.MAX_LIMIT_MICROS)
    finally:
        pool.close()


def raw_inserts(conns: list[psycopg.Connection[Any]], duration: float, key_id: int
                ) -> LoadResult:
    """One thread per connection, each INSERT + COMMIT of one run after another, for
    `duration`. The connections stay open between calls (their backends are measured)."""
    endpoint = echo_endpoint()
    threads = len(conns)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    ready = threading.Barrier(threads + 1)
    deadline = [0.0]

    def work(n: int) -> None:
        conn, mine = conns[n], latencies[n]
        ready.wait()
        clock = time.perf_counter
        while clock() < deadline[0]:
            started = clock()
            try:
                store.insert_run(conn, run_id=new_run_id(), caller=BENCH_CALLER,
                                 api_key_id=key_id, endpoint=endpoint,
                                 input=ECHO_BODY["input"])
                conn.commit()
            except psycopg.Error:
                conn.rollback()
                errors[n] += 1
                continue
            if clock() <= deadline[0]:
                mine.append(clock() - started)

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    started = time.perf_counter()
    deadline[0] = started + duration
    ready.wait()
    for w in workers:
        w.join(duration + 30)
    every = sorted(x for mine in latencies for x in mine)
    return LoadResult("psycopg", threads, duration, len(every), sum(errors),
                      percentile(every, 0.5) * 1000, percentile(every, 0.99) * 1000,
                      {"exception": sum(errors)} if sum(errors) else {})


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--inserters", type=int, default=4)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--profile", type=Path, help="py-spy the web workers; files go here")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="2 x 2 s, for a smoke test")
    parser.add_argument("--json", help="write the summary here (for bench.run_all)")
    parser.add_argument("--priced", action="store_true",
                        help="accept a priced endpoint (apify /apidojo/tweet-scraper, 0.003 "
                             "USD) instead of the free demo /echo: each run holds money")
    parser.add_argument("--budget", action="store_true",
                        help="with --priced: the caller has an active DAY budget (never "
                             "reached), so each accept locks it and holds on it")
    args = parser.parse_args(argv)
    args.priced = args.priced or args.budget
    install_cleanup()
    if args.quick:
        args.repeat, args.duration, args.warmup = 2, 2.0, 1.0
        args.profile_seconds = min(args.profile_seconds, 3.0)
    tool = pick_tool(args.tool)
    broker = redis_url(REDIS_DB)
    log_dir = Path(tempfile.mkdtemp(prefix="monid-bench-accept-"))
    print(machine_line())
    print(f"{args.repeat} x {args.duration:g} s per load, {args.connections} connections "
          f"({tool}), {args.inserters} raw inserters; logs in {log_dir}")
    body = json.dumps(PRICED_BODY if args.priced else ECHO_BODY).encode()
    results: dict[str, list[LoadResult]] = {"accept": [], "healthz": [], "raw": []}
    cpus: dict[str, list[dict[str, float]]] = {"accept": [], "healthz": [], "raw": []}
    flush(broker)
    with scratch_database() as url:
        key, key_id = seed_key(url)
        if args.budget:
            seed_budget(url)
        web, base = start_load_web(url, broker, log_dir)
        conns = [psycopg.connect(url, row_factory=dict_row, prepare_threshold=0)
                 for _ in range(args.inserters)]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        def accept(duration: float) -> LoadResult:
            return run_load(f"{base}/v1/run", method="POST", body=body, headers=headers,
                            connections=args.connections, duration=duration, expect=(202,),
                            tool=tool)

        def healthz(duration: float) -> LoadResult:
            return run_load(f"{base}/healthz", connections=args.connections,
                            duration=duration, tool=tool)

        try:
            log(f"web up at {base} (gunicorn master {web.pid}, workers "
                f"{child_pids(web.pid)}); warming up {args.warmup:g} s each")
            accept(args.warmup)
            healthz(args.warmup)
            flush(broker)
            for rep in range(args.repeat):
                for name, load in (("accept", accept), ("healthz", healthz),
                                   ("raw", lambda d: raw_inserts(conns, d, key_id))):
                    with CpuMeter(web.pid) as cpu:
                        result = load(args.duration)
                    results[name].append(result)
                    cpus[name].append({g: 1000 * v / max(result.requests, 1)
                                       for g, v in cpu.used.items()})
                    log(f"rep {rep + 1} {name:8} {result.line()}")
                    log(f"      {cpu.per_request(result.requests)}")
                flush(broker)
            if args.profile:
                profile(args.profile, web.pid, args.profile_seconds, accept)
                flush(broker)
            if not web.alive():
                raise SystemExit(f"the web process died:\n{web.output()[-3000:]}")
        finally:
            for conn in conns:
                conn.close()
            web.stop()
            flush(broker)
    return report(results, cpus, args)


def profile(out_dir: Path, master: int, seconds: float,
            accept: Callable[[float], LoadResult]) -> None:
    """py-spy every gunicorn worker under accept load: once only the thread holding the GIL
    (CPU), once every thread (wall time, waiting included)."""
    workers = child_pids(master)
    for mode, what in (("gil", "threads holding the GIL: where the CPU goes"),
                       ("idle", "threads in start_run, waiting included: where a request's "
                                "wall time goes")):
        log(f"profiling gunicorn workers {workers} ({mode}) for {seconds:g} s under accept "
            "load")
        procs = pyspy.record(workers, out_dir, seconds, mode=mode)
        result = accept(seconds + 1)
        for proc in procs:
            proc.wait(seconds + 60)
        log(f"under py-spy: {result.line()}")
        files = sorted(out_dir.glob(f"{mode}-*.speedscope.json"))
        within = "start_run" if mode == "idle" else None
        pyspy.print_summary(f"POST /v1/run under load, gunicorn workers, {what}", files,
                            within=within)
        print(f"  by part of the request ({mode}; % of the samples above, inclusive):")
        for label, pct in pyspy.breakdown(files, PARTS, within=within):
            print(f"    {pct:5.1f}%  {label}")


def report(results: dict[str, list[LoadResult]], cpus: dict[str, list[dict[str, float]]],
           args: argparse.Namespace) -> Report:
    rep = Report("accept")
    accept, health, raw = results["accept"], results["healthz"], results["raw"]
    a_rps = [r.ok_rps for r in accept]
    h_rps = [r.ok_rps for r in health]
    i_rps = [r.ok_rps for r in raw]
    a_p99 = [r.p99_ms for r in accept]
    print(f"\nPOST /v1/run over {len(accept)} repetitions, median (min-max):")
    for name, runs in (("POST /v1/run", accept), ("GET /healthz", health),
                       (f"raw INSERT+COMMIT x{args.inserters}", raw)):
        print(f"  {name:24} req/s {spread([r.ok_rps for r in runs])}  "
              f"p50 {spread([r.p50_ms for r in runs], '.2f')} ms  "
              f"p99 {spread([r.p99_ms for r in runs], '.2f')} ms  "
              f"errors {sum(r.errors for r in runs)}")
    per_rep_h = [ratio(a, h) for a, h in zip(a_rps, h_rps, strict=True)]
    per_rep_i = [ratio(a, i) for a, i in zip(a_rps, i_rps, strict=True)]
    print(f"  ratio accept/healthz req/s: {med(a_rps) / med(h_rps):.3f} "
          f"(per repetition {spread(per_rep_h, '.3f')})")
    print(f"  ratio accept/raw-insert req/s: {med(a_rps) / med(i_rps):.3f} "
          f"(per repetition {spread(per_rep_i, '.3f')})")
    rep.add(f"POST /v1/run req/s ({args.connections} conns)", spread(a_rps),
            baseline=f"/healthz {spread(h_rps)}", ratio=f"{ratio(med(a_rps), med(h_rps)):.2f}",
            target=">= 0.40 of /healthz", met=ratio(med(a_rps), med(h_rps)) >= 0.40)
    rep.add("POST /v1/run p99 ms", spread(a_p99, ".1f"),
            baseline=f"/healthz {spread([r.p99_ms for r in health], '.1f')}",
            ratio=f"{ratio(med(a_p99), med([r.p99_ms for r in health])):.1f}",
            target="< 50 ms", met=med(a_p99) < 50)
    rep.add("POST /v1/run p50 ms", spread([r.p50_ms for r in accept], ".1f"),
            baseline=f"/healthz {spread([r.p50_ms for r in health], '.1f')}")
    rep.add("POST /v1/run vs raw INSERT+COMMIT req/s", spread(a_rps),
            baseline=f"raw x{args.inserters} {spread(i_rps)}",
            ratio=f"{ratio(med(a_rps), med(i_rps)):.2f}")
    for name, label in (("accept", "POST /v1/run"), ("healthz", "GET /healthz"),
                        ("raw", "raw INSERT+COMMIT")):
        parts = {g: med([c[g] for c in cpus[name]]) for g in ("web", "postgres", "redis",
                                                                "other")}
        rep.add(f"{label}: CPU ms per request", " / ".join(f"{v:.2f}" for v in parts.values()),
                baseline="web / postgres / redis / other")
    rep.add("errors (accept / healthz / raw)",
            f"{sum(r.errors for r in accept)} / {sum(r.errors for r in health)} / "
            f"{sum(r.errors for r in raw)}")
    rep.print()
    rep.write(args.json)
    return rep


if __name__ == "__main__":
    main()

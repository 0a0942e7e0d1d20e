"""Runs/s from 202 to COMPLETED (demo /echo) with one worker process, then two, beside the
drain rate of a no-op Celery task with the same worker settings on the same Redis.

    python -m bench.throughput [--runs 10000] [--workers 1 2] [--repeat 3]
        [--modes backlog live] [--concurrency N] [--publishers 2] [--cpu-affinity]
        [--quick] [--json PATH]

How the runs get there: not through the API (its accept rate, see bench.accept, would
bound what is measured), but as the API leaves them: rows COPYed in bulk into `runs`
(the columns `insert_run` writes, RUNNING, just published), then their IDs published
with shared.queue.enqueue_run as fast as `--publishers` threads can. Two ways:

- backlog (the default and the headline): everything is published, then the workers
  start; the clock runs from the first run's `started_at` to the last `completed_at`.
- live: the workers are up and idle; from the first publish to the last
  `completed_at`. On 2 cores the publishing process competes with the workers for
  CPU, and its publish rate (printed) can bound what this measures.

The no-op floor (bench/noop_app.py: shared.queue.worker_config, as the monid worker's, a
task that only INCRs a Redis counter) is measured the same ways, right
after each monid round: backlog (10,000 messages published, the workers started, from
the first execution to the last with the queue empty) and live (first publish to last
execution). Figures are medians over `--repeat` rounds, with their spread, and the ratio
monid/no-op. Target: runs/s at least 50% of the no-op drain rate.

The worker runs with SWEEP_GRACE_SECONDS=3600, so that its sweeper does not publish
again the runs of a backlog that waits longer than the default 30 s; the bulk rows get
a one-hour deadline for the same reason. Redis database 10, flushed between steps.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis
from celery import Celery

from bench.common import (
    BENCH_CALLER,
    NOOP_COUNT,
    REDIS_DBS,
    Report,
    copy_runs,
    cpu_of,
    echo_endpoint,
    flush,
    install_cleanup,
    log,
    machine_line,
    med,
    publish_noop,
    ratio,
    redis_url,
    scratch_database,
    spread,
)
from shared.queue import QUEUE, enqueue_run, make_publisher
from shared.settings import load_settings
from tests.processes import Process, start_worker
from worker.launch import cores_for, on_core

REDIS_DB = REDIS_DBS["throughput"]


def publish(env: dict[str, str], items: list[str], threads: int,
            send: Callable[[Celery, str], None]) -> tuple[float, float]:
    """Publish every item from `threads` threads, each with its own publisher app (connected
    before the clock starts); (time.time() of the first publish, seconds it all took)."""
    settings = load_settings(env)
    chunks = [items[n::threads] for n in range(threads)]
    publishers = [make_publisher(settings) for _ in range(threads)]
    for publisher in publishers:
        with publisher.producer_or_acquire() as producer:
            producer.connection.ensure_connection()
    gate = threading.Barrier(threads + 1)

    def work(publisher: Celery, chunk: list[str]) -> None:
        gate.wait()
        for item in chunk:
            send(publisher, item)

    workers = [threading.Thread(target=work, args=(p, c)) for p, c in
               zip(publishers, chunks, strict=True)]
    for w in workers:
        w.start()
    first = time.time()
    started = time.perf_counter()
    gate.wait()
    for w in workers:
        w.join()
    took = time.perf_counter() - started
    for publisher in publishers:
        publisher.close()
    return first, took


def start_workers(app: str, env: dict[str, str], log_dir: Path, count: int, concurrency: int,
                  wait: bool = True, affinity: bool = False) -> list[Process]:
    """`count` worker processes; with `affinity`, each kept to a core of its own as the
    launcher keeps them (WORKER_CPU_AFFINITY=true) where there is one a core."""
    procs = []
    for n, core in enumerate(cores_for(count, affinity)):
        with on_core(core):
            procs.append(start_worker(env, log_dir, app=app, ready_timeout=90,
                                      concurrency=concurrency, name=f"{app}-{n}", wait=False))
    if wait:
        for proc in procs:
            proc.wait_for_output(" ready.", timeout=90)
    return procs


def cpu_when_ready(procs: list[Process]) -> float:
    """The workers' CPU seconds once each is ready (its start-up left out)."""
    for proc in procs:
        proc.wait_for_output(" ready.", timeout=90)
    return sum(cpu_of(proc.pid) for proc in procs)


def stop_all(procs: list[Process]) -> None:
    for proc in procs:
        proc.signal_group(15)
    for proc in procs:
        proc.stop(timeout=40)


def wait_runs_ended(url: str, count: int, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM runs WHERE completed_at IS NOT NULL"
                               ).fetchone()
            if row and row[0] >= count:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {row[0] if row else 0} of {count} runs ended in "
                                 f"{timeout:g} s")
            time.sleep(0.1)
        found = conn.execute(
            "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(completed_at)),"
            " count(*) FILTER (WHERE status = 'COMPLETED'), sum(attempt_count)"
            " FROM runs").fetchone()
    assert found is not None
    return {"first_started": float(found[0]), "last_completed": float(found[1]),
            "completed": int(found[2]), "attempts": int(found[3])}


def monid_round(url: str, env: dict[str, str], log_dir: Path, args: argparse.Namespace,
                workers: int, backlog: bool) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE runs, attempts, ledger_entries CASCADE")
    flush(env["REDIS_URL"])
    procs = [] if backlog else start_workers("worker.main", env, log_dir, workers,
                                             args.concurrency, affinity=args.cpu_affinity)
    try:
        ids = copy_runs(url, args.runs, caller_of=lambda i: BENCH_CALLER, ended=False,
                        endpoint=echo_endpoint())
        first, took = publish(env, ids, args.publishers,
                              lambda p, run_id: enqueue_run(p, run_id))
        if backlog:
            procs = start_workers("worker.main", env, log_dir, workers, args.concurrency,
                                  wait=False, affinity=args.cpu_affinity)
        cpu_ready = cpu_when_ready(procs)
        found = wait_runs_ended(url, args.runs, timeout=args.timeout)
        cpu = sum(cpu_of(proc.pid) for proc in procs) - cpu_ready
    finally:
        stop_all(procs)
    start = found["first_started"] if backlog else first
    elapsed = found["last_completed"] - start
    return {"rate": args.runs / elapsed, "elapsed": elapsed, "publish_rate": args.runs / took,
            "completed": found["completed"], "attempts": found["attempts"],
            "cpu_ms": 1000 * cpu / args.runs}


def noop_round(env: dict[str, str], log_dir: Path, args: argparse.Namespace, workers: int,
               backlog: bool) -> dict[str, float]:
    flush(env["REDIS_URL"])
    client = redis.Redis.from_url(env["REDIS_URL"])
    procs = [] if backlog else start_workers("bench.noop_app", env, log_dir, workers,
                                             args.concurrency, affinity=args.cpu_affinity)
    try:
        first, took = publish(env, [""] * args.runs, args.publishers,
                              lambda p, _: publish_noop(p))
        if backlog:
            procs = start_workers("bench.noop_app", env, log_dir, workers, args.concurrency,
                                  wait=False, affinity=args.cpu_affinity)
        cpu_ready = cpu_when_ready(procs)
        seen_first = None
        deadline = time.monotonic() + args.timeout
        while True:
            count = int(client.get(NOOP_COUNT) or 0)
            now = time.time()
            if count and seen_first is None:
                seen_first = now
            if count >= args.runs and client.llen(QUEUE) == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {count} of {args.runs} no-op tasks ran")
            time.sleep(0.005)
        cpu = sum(cpu_of(proc.pid) for proc in procs) - cpu_ready
    finally:
        stop_all(procs)
        client.close()
    assert seen_first is not None
    elapsed = now - (seen_first if backlog else first)
    return {"rate": args.runs / elapsed, "elapsed": elapsed, "publish_rate": args.runs / took,
            "executed": count, "cpu_ms": 1000 * cpu / args.runs}


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=None,
                        help="WORKER_CONCURRENCY (default: the setting's default)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=("backlog", "live"),
                        default=["backlog"], help="backlog (the headline), live, or both")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--cpu-affinity", action="store_true",
                        help="with one worker process a core, each kept to its own (as "
                             "WORKER_CPU_AFFINITY=true keeps the launcher's)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true",
                        help="1000 runs, once, both modes: a smoke test")
    parser.add_argument("--json", help="write the summary here (for bench.run_all)")
    args = parser.parse_args(argv)
    install_cleanup()
    if args.quick:
        args.runs, args.repeat, args.modes = min(args.runs, 1000), 1, ["backlog", "live"]
    broker = redis_url(REDIS_DB)
    log_dir = Path(tempfile.mkdtemp(prefix="monid-bench-throughput-"))
    print(machine_line())
    results: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    with scratch_database() as url:
        env = {"DATABASE_URL": url, "REDIS_URL": broker, "LOG_LEVEL": "WARNING",
               "SWEEP_GRACE_SECONDS": "3600"}
        if args.concurrency is None:
            args.concurrency = load_settings(env).worker_concurrency
        print(f"{args.repeat} x {args.runs} runs of demo /echo per setting; "
              f"WORKER_CONCURRENCY={args.concurrency} (threads pool); {args.publishers} "
              f"publisher threads; {'a core each' if args.cpu_affinity else 'no core each'}"
              f" where there is one a core; logs in {log_dir}")
        for rep in range(args.repeat):
            for workers in args.workers:
                for mode in args.modes:
                    backlog = mode == "backlog"
                    found = monid_round(url, env, log_dir, args, workers, backlog)
                    results.setdefault(("monid", workers, mode), []).append(found)
                    log(f"rep {rep + 1} monid {workers} worker(s), {mode:7}: "
                        f"{found['rate']:7.1f} runs/s ({args.runs} in {found['elapsed']:.2f} s;"
                        f" published at {found['publish_rate']:.0f}/s; {found['completed']} "
                        f"COMPLETED, {found['attempts']} attempts)")
                    found = noop_round(env, log_dir, args, workers, backlog)
                    results.setdefault(("noop", workers, mode), []).append(found)
                    log(f"rep {rep + 1} no-op {workers} worker(s), {mode:7}: "
                        f"{found['rate']:7.1f} tasks/s ({args.runs} in {found['elapsed']:.2f} "
                        f"s; published at {found['publish_rate']:.0f}/s)")
        flush(broker)
    return report(results, args)


def report(results: dict[tuple[str, int, str], list[dict[str, float]]],
           args: argparse.Namespace) -> Report:
    rep = Report("throughput")
    headline = "backlog" if "backlog" in args.modes else "live"
    print(f"\nruns/s over {args.repeat} repetition(s), median (min-max):")
    for mode in args.modes:
        for workers in args.workers:
            monid = [r["rate"] for r in results[("monid", workers, mode)]]
            noop = [r["rate"] for r in results[("noop", workers, mode)]]
            paired = [ratio(m, n) for m, n in zip(monid, noop, strict=True)]
            r = ratio(med(monid), med(noop))
            print(f"  {mode:7} {workers} worker(s): monid {spread(monid)} runs/s, no-op "
                  f"{spread(noop)} tasks/s, ratio {r:.2f} (per repetition "
                  f"{spread(paired, '.2f')})")
            rep.add(f"runs/s, {workers} worker(s), {mode}", spread(monid),
                    baseline=f"no-op {spread(noop)}", ratio=f"{r:.2f}",
                    target=">= 0.50 of no-op" if mode == headline else "",
                    met=(r >= 0.5) if mode == headline else None)
            # What a run costs the worker, steadier than the rates on a busy machine.
            monid_cpu = [r["cpu_ms"] for r in results[("monid", workers, mode)]]
            noop_cpu = [r["cpu_ms"] for r in results[("noop", workers, mode)]]
            print(f"  {mode:7} {workers} worker(s): worker CPU {spread(monid_cpu, '.2f')} ms a "
                  f"run, no-op {spread(noop_cpu, '.2f')} ms a task")
            rep.add(f"worker CPU ms a run, {workers} worker(s), {mode}",
                    spread(monid_cpu, ".2f"), baseline=f"no-op {spread(noop_cpu, '.2f')}",
                    ratio=f"{ratio(med(monid_cpu), med(noop_cpu)):.2f}")
        if len(args.workers) > 1:
            first = args.workers[0]
            for workers in args.workers[1:]:
                m = ratio(med([r["rate"] for r in results[("monid", workers, mode)]]),
                          med([r["rate"] for r in results[("monid", first, mode)]]))
                n = ratio(med([r["rate"] for r in results[("noop", workers, mode)]]),
                          med([r["rate"] for r in results[("noop", first, mode)]]))
                rep.add(f"scaling {first} -> {workers} workers ({mode})", f"{m:.2f}x",
                        baseline=f"no-op {n:.2f}x")
    pub = [v["publish_rate"] for k, runs in results.items() if k[0] == "monid" for v in runs]
    rep.add("enqueue_run publish rate, msgs/s", spread(pub, ".0f"),
            baseline=f"{args.publishers} publisher threads")
    rep.notes.append(f"{args.runs} runs per round, WORKER_CONCURRENCY={args.concurrency}. "
                     "backlog: all published, then the workers started; first started_at "
                     "(no-op: first execution) -> last completed_at (last execution). live: "
                     "workers idle, then first publish -> last completed_at; on 2 cores the "
                     "publisher competes with the workers and can bound it")
    rep.print()
    rep.write(args.json)
    return rep


if __name__ == "__main__":
    main()

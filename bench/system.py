"""The whole system on this machine, measured from outside: the web (2 processes) and
one worker as the Procfile starts them, N connections posting demo /echo runs for a
while, then the time until every accepted run has ended; and, in the same round, the
naive reference (`bench/naive_app.py`: a Flask handler that INSERTs and calls
`apply_async`, a prefork Celery worker that UPDATEs) pushed the same way.

    python -m bench.system [--duration 20] [--connections 64] [--workers 1]
        [--against naive|none] [--repeat 1] [--set NAME=VALUE]... [--json FILE]

Prints, per round and as medians: runs accepted per second during the push (runs
stored / push time), runs completed per second (runs ended / time from the push's
start to the last end), the accept latency (p50, p99) under the push, and the runs'
end statuses (every run must end, COMPLETED); the project's completed rate over the
naive one's is the ratio. The web runs as the other load benchmarks run it (rate
limit unreachable, no cap on runs in flight, so that the push is not refused); the
worker with the settings' defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, LiteralString, cast

import psycopg

from bench.common import (
    ADMIN_URL,
    ECHO_BODY,
    REDIS_DBS,
    ROOT,
    CpuMeter,
    Report,
    cpu_of,
    flush,
    install_cleanup,
    log,
    machine_line,
    med,
    ratio,
    redis_url,
    scratch_database,
    seed_key,
    spread,
    start_load_web,
)
from bench.load import LoadResult, run_load

try:
    from shared.settings import available_cores
except ImportError:  # a tree from before the launcher, measured for comparison
    def available_cores() -> int:
        return os.cpu_count() or 1
from tests.processes import Process, child_pids, free_port, start_worker, wait_http

BENCH_REDIS_DB = REDIS_DBS["system"]
# The bar for the accept's tail while the push runs (on the median of the rounds).
P99_TARGET_MS = 250.0


def _sql(text: str) -> LiteralString:
    """A statement naming one of this benchmark's own tables (no caller's input)."""
    return cast(LiteralString, text)


def wait_all_ended(url: str, timeout: float, table: str = "runs") -> dict[str, Any]:
    """Wait until no run is open; the runs' counts and the span from accept to last end.
    The span is read from the runs' own `completed_at`, so the look every half second
    costs the database little and takes nothing from the figure."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(_sql(f"SELECT count(*) FROM {table}"
                                    f" WHERE completed_at IS NULL")).fetchone()
            assert row is not None
            if row[0] == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{row[0]} runs had not ended after {timeout:g} s")
            time.sleep(0.5)
        found = conn.execute(_sql(f"SELECT count(*), extract(epoch FROM max(completed_at))"
                                  f" FROM {table}")).fetchone()
        statuses: dict[str, int] = dict(conn.execute(
            _sql(f"SELECT status, count(*) FROM {table} GROUP BY status")).fetchall())
    assert found is not None
    return {"runs": float(found[0]), "last_end": float(found[1]), "statuses": statuses}


def naive_round(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """The naive reference, pushed and drained as the project is."""
    from bench.naive_app import TABLE_SQL

    broker = redis_url(BENCH_REDIS_DB)
    flush(broker)
    cores = str(os.cpu_count() or 1)
    with scratch_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_sql(TABLE_SQL))
        env = {"DATABASE_URL": url, "REDIS_URL": broker}
        port = free_port()
        web = Process("naive-web", [sys.executable, "-m", "gunicorn", "--no-control-socket",
                                    "--workers", "2",
                                    "--threads", "64", "--worker-class", "gthread",
                                    "--bind", f"127.0.0.1:{port}", "bench.naive_app:app"],
                      env, log_dir)
        worker = Process("naive-worker", [sys.executable, "-m", "celery", "--app",
                                          "bench.naive_app:celery", "worker", "--pool",
                                          "prefork",
                                          "--concurrency", cores, "--without-gossip",
                                          "--without-mingle", "--loglevel", "INFO",
                                          "--queues", "naive"], env, log_dir)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz", web)
            worker.wait_for_output(" ready.", timeout=60)
            return _push(args, base, {"Content-Type": "application/json"},
                         lambda: wait_all_ended(url, args.timeout, "naive_runs"), web, [worker])
        finally:
            worker.stop(timeout=40)
            web.stop(timeout=40)


def _worker_cpu(workers: list[Process]) -> float:
    """CPU seconds of the worker processes and their children (pool processes)."""
    pids = [w.pid for w in workers]
    pids += [c for pid in list(pids) for c in child_pids(pid)]
    pids += [c for pid in list(pids) for c in child_pids(pid)]
    return sum(cpu_of(pid) for pid in set(pids))


def _wal_position() -> int:
    """Where PostgreSQL's write-ahead log is, in bytes (the whole server's: what every
    database writes counts)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return int(row[0]) if row else 0


def _push(args: argparse.Namespace, base: str, headers: dict[str, str],
          drain: Callable[[], dict[str, Any]], web: Process,
          workers: list[Process]) -> dict[str, Any]:
    worker_before = _worker_cpu(workers)
    wal_before = _wal_position()
    with CpuMeter(web.pid) as cpu:
        started = time.time()
        load: LoadResult = run_load(
            f"{base}/v1/run", method="POST", body=json.dumps(ECHO_BODY).encode(),
            headers=headers, connections=args.connections, duration=args.duration,
            expect=(202,))
        pushed = time.time() - started
        found = drain()
        worker_used = _worker_cpu(workers) - worker_before
    wal = _wal_position() - wal_before
    runs = found["runs"]
    ms = {name: 1000 * used / max(runs, 1) for name, used in cpu.used.items()}
    ms["worker"] = 1000 * worker_used / max(runs, 1)
    ms["other"] -= ms["worker"]
    return {
        "accepted_per_s": runs / pushed,
        "completed_per_s": runs / (found["last_end"] - started),
        "runs": runs, "p50_ms": load.p50_ms, "p99_ms": load.p99_ms, "errors": load.errors,
        "statuses": found["statuses"], "cpu_ms": ms, "wal_per_run": wal / max(runs, 1),
    }


def start_procfile_worker(env: dict[str, str], log_dir: Path, concurrency: int,
                          n: int) -> Process:
    """A worker dyno as the Procfile starts it (`python -m worker.launch`: one Celery
    worker per core); a tree without the launcher gets the one Celery worker it had."""
    if not (ROOT / "worker" / "launch.py").exists():
        return start_worker(env, log_dir, concurrency=concurrency, name=f"worker-{n}",
                            ready_timeout=90)
    processes = int(env.get("WORKER_PROCESSES") or available_cores())
    proc = Process(f"worker-{n}", [sys.executable, "-m", "worker.launch"],
                   {**env, "WORKER_CONCURRENCY": str(concurrency)}, log_dir)
    deadline = time.monotonic() + 90
    while proc.output().count(" ready.") < processes:
        if time.monotonic() > deadline or not proc.alive():
            raise SystemExit(f"the worker did not start:\n{proc.output()[-3000:]}")
        time.sleep(0.2)
    return proc


def one_round(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    broker = redis_url(BENCH_REDIS_DB)
    flush(broker)
    with scratch_database() as url:
        key, _ = seed_key(url)
        web, base = start_load_web(url, broker, log_dir, **args.set)
        env = {"DATABASE_URL": url, "REDIS_URL": broker, **args.set}
        workers = [start_procfile_worker(env, log_dir, args.concurrency, n)
                   for n in range(args.workers)]
        try:
            return _push(args, base, {"Authorization": f"Bearer {key}",
                                      "Content-Type": "application/json"},
                         lambda: wait_all_ended(url, timeout=args.timeout), web, workers)
        finally:
            for proc in [*workers, web]:
                proc.stop(timeout=40)


def _line(who: str, result: dict[str, Any]) -> None:
    cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in result["cpu_ms"].items()
                    if name in ("web", "worker", "postgres", "redis", "other"))
    log(f"{who}: {result['runs']:.0f} runs, accepted {result['accepted_per_s']:.1f}/s, "
        f"completed {result['completed_per_s']:.1f}/s, accept p50 {result['p50_ms']:.1f} ms "
        f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']}, {result['statuses']}; "
        f"CPU ms/run: {cpu}; WAL {result['wal_per_run'] / 1024:.1f} KiB/run")


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=200,
                        help="WORKER_CONCURRENCY (the setting's default: 200)")
    parser.add_argument("--against", choices=("naive", "none"), default="naive",
                        help="the reference measured in the same round")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="the longest wait for the runs to end after the push")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the web and the worker (repeatable)")
    parser.add_argument("--log-dir", default="/tmp/monid-bench-system")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    args.set = dict(item.split("=", 1) for item in args.set)
    install_cleanup()
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    rounds: list[dict[str, Any]] = []
    naive: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        rounds.append(one_round(args, log_dir))
        _line("monid", rounds[-1])
        if args.against == "naive":
            naive.append(naive_round(args, log_dir))
            _line("naive", naive[-1])
    report = summarize(rounds, naive, args)
    report.print()
    report.write(args.json)
    return report


def summarize(rounds: list[dict[str, Any]], naive: list[dict[str, Any]],
              args: argparse.Namespace) -> Report:
    """The summary of the rounds (`_push`'s figures), against the naive reference's when
    it was pushed too."""
    report = Report("system")

    def values(name: str, found: list[dict[str, Any]] = rounds) -> list[float]:
        return [float(r[name]) for r in found]

    def of_naive(ours: list[float], theirs: list[float]) -> list[float]:
        """Ours over the naive job's, round by round: what the machine's speed on the day
        moves least."""
        return [ratio(a, b) for a, b in zip(ours, theirs, strict=True)]

    for name, label in (("accepted_per_s", "runs accepted / s"),
                        ("completed_per_s", "runs completed / s")):
        if naive:
            ratios = of_naive(values(name), values(name, naive))
            report.add(label, spread(values(name)), baseline=f"naive {spread(values(name, naive))}",
                       ratio=spread(ratios, ".2f"),
                       target=">= 1.0" if name == "completed_per_s" else "",
                       met=med(ratios) >= 1.0 if name == "completed_per_s" else None)
        else:
            report.add(label, spread(values(name)))
    p99, naive_p99 = values("p99_ms"), values("p99_ms", naive)
    report.add("accept p99 under the push (ms)", spread(p99),
               baseline=f"naive {spread(naive_p99)}" if naive else "",
               ratio=spread(of_naive(p99, naive_p99), ".2f") if naive else "",
               target=f"< {P99_TARGET_MS:g}", met=med(p99) < P99_TARGET_MS)
    for part in ("worker", "web", "postgres"):
        ours = [float(r["cpu_ms"][part]) for r in rounds]
        theirs = [float(r["cpu_ms"][part]) for r in naive]
        report.add(f"CPU ms a run: {part}", spread(ours, ".2f"),
                   baseline=f"naive {spread(theirs, '.2f')}" if naive else "",
                   ratio=spread(of_naive(ours, theirs), ".2f") if naive else "")
    report.add("WAL KiB a run", spread([float(r["wal_per_run"]) / 1024 for r in rounds]),
               baseline=f"naive {spread([float(r['wal_per_run']) / 1024 for r in naive])}"
               if naive else "")
    report.add("errors", f"{sum(values('errors')):.0f}")
    not_completed = sum(sum(n for s, n in r["statuses"].items() if s != "COMPLETED")
                        for r in rounds)
    report.add("runs not COMPLETED", str(not_completed), target="0", met=not_completed == 0)
    report.notes.append(f"{args.workers} worker dyno(s) (python -m worker.launch) x "
                        f"{args.concurrency} threads a process, "
                        f"{args.connections} connections for {args.duration:g} s, "
                        f"median runs {med(values('runs')):.0f}")
    return report


if __name__ == "__main__":
    main()

"""The whole system on this machine, measured from outside: the web (2 processes) and
one worker as the Procfile starts them, N connections posting demo /echo runs for a
while, then the time until every accepted run has ended.

    python -m bench.system [--duration 20] [--connections 64] [--workers 1]
        [--repeat 1] [--set NAME=VALUE]... [--json FILE]

Prints, per round and as medians: runs accepted per second during the push (runs
stored / push time), runs completed per second (runs ended / time from the push's
start to the last end), the accept latency (p50, p99) under the push, and the runs'
end statuses (every run must end, COMPLETED). The web runs as the other load
benchmarks run it (rate limit unreachable, no cap on runs in flight, so that the
push is not refused); the worker with the settings' defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import psycopg

from bench.common import (
    ECHO_BODY,
    Report,
    flush,
    install_cleanup,
    log,
    machine_line,
    med,
    redis_url,
    scratch_database,
    seed_key,
    spread,
    start_load_web,
)
from bench.load import LoadResult, run_load
from tests.processes import Process, start_worker

BENCH_REDIS_DB = 13


def wait_all_ended(url: str, timeout: float) -> dict[str, float]:
    """Wait until no run is open; the runs' counts and the span from accept to last end."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FILTER (WHERE completed_at IS NULL),"
                               " count(*) FROM runs").fetchone()
            assert row is not None
            if row[0] == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{row[0]} of {row[1]} runs had not ended after {timeout:g} s")
            time.sleep(0.2)
        found = conn.execute("SELECT count(*), extract(epoch FROM max(completed_at))"
                             " FROM runs").fetchone()
        statuses = dict(conn.execute(  # type: ignore[arg-type]
            "SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    assert found is not None
    return {"runs": float(found[0]), "last_end": float(found[1]), "statuses": statuses}


def one_round(args: argparse.Namespace, log_dir: Path) -> dict[str, object]:
    broker = redis_url(BENCH_REDIS_DB)
    flush(broker)
    with scratch_database() as url:
        key, _ = seed_key(url)
        web, base = start_load_web(url, broker, log_dir, **args.set)
        workers: list[Process] = [
            start_worker({"DATABASE_URL": url, "REDIS_URL": broker, **args.set}, log_dir,
                         concurrency=args.concurrency, name=f"worker-{n}", ready_timeout=90)
            for n in range(args.workers)]
        try:
            started = time.time()
            load: LoadResult = run_load(
                f"{base}/v1/run", method="POST", body=json.dumps(ECHO_BODY).encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                connections=args.connections, duration=args.duration, expect=(202,))
            pushed = time.time() - started
            found = wait_all_ended(url, timeout=args.timeout)
        finally:
            for proc in [*workers, web]:
                proc.stop(timeout=40)
    runs = found["runs"]
    result: dict[str, object] = {
        "accepted_per_s": runs / pushed,
        "completed_per_s": runs / (found["last_end"] - started),
        "runs": runs, "p50_ms": load.p50_ms, "p99_ms": load.p99_ms, "errors": load.errors,
        "statuses": found["statuses"],
    }
    log(f"round: {runs:.0f} runs, accepted {result['accepted_per_s']:.1f}/s, completed "
        f"{result['completed_per_s']:.1f}/s, accept p50 {load.p50_ms:.1f} ms p99 "
        f"{load.p99_ms:.1f} ms, errors {load.errors}, {found['statuses']}")
    return result


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=200,
                        help="WORKER_CONCURRENCY (the setting's default: 200)")
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
    rounds = [one_round(args, log_dir) for _ in range(args.repeat)]
    report = Report("system")

    def values(name: str) -> list[float]:
        return [float(r[name]) for r in rounds]  # type: ignore[arg-type]

    report.add("runs accepted / s", spread(values("accepted_per_s")))
    report.add("runs completed / s", spread(values("completed_per_s")))
    report.add("accept p99 under the push (ms)", spread(values("p99_ms")))
    report.add("errors", f"{sum(values('errors')):.0f}")
    not_completed = sum(sum(n for s, n in r["statuses"].items() if s != "COMPLETED")  # type: ignore[attr-defined]
                        for r in rounds)
    report.add("runs not COMPLETED", str(not_completed), target="0", met=not_completed == 0)
    report.notes.append(f"{args.workers} worker(s) x {args.concurrency} threads, "
                        f"{args.connections} connections for {args.duration:g} s, "
                        f"median runs {med(values('runs')):.0f}")
    report.print()
    report.write(args.json)
    return report


if __name__ == "__main__":
    main()

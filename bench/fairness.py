"""Fairness under a flood: how long caller B's runs wait to start while caller A floods
the same fleet, beside how long they wait on an idle one, in the same run.

    python -m bench.fairness [--flood 2000] [--sleep 1] [--probes 50] [--repeat 1]
        [--set NAME=VALUE]... [--json FILE]

The web (2 processes) and one worker as deployed (default concurrency and caller
limit). First B starts `--probes` demo /echo runs, a few a second, on the idle
system; then A starts `--flood` demo /sleep runs from 16 clients at once and, while
the flood goes on, B starts its runs again. A run's wait is its startedAt minus its
createdAt, read from PostgreSQL once everything has ended. Printed: B's p50 and
p99 idle and under the flood, and A's own (A's runs wait their turn).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import psycopg
import requests

from bench.common import (
    REDIS_DBS,
    Report,
    flush,
    install_cleanup,
    log,
    machine_line,
    percentile,
    redis_url,
    scratch_database,
    seed_key,
    spread,
    start_load_web,
)
from shared import keys, store
from shared.db import make_pool, transaction
from tests.processes import start_worker

BENCH_REDIS_DB = REDIS_DBS["fairness"]
PROBE = {"provider": "demo", "endpoint": "/echo", "input": {"probe": True}}


def second_key(url: str, user: str) -> str:
    key = keys.generate_key()
    pool = make_pool(url, max_size=1)
    pool.open()
    try:
        with transaction(pool) as conn:
            store.insert_api_key(conn, user_id=user, label=None, mode="live",
                                 key_prefix=keys.display_prefix(key),
                                 key_hash=keys.hash_key(key))
    finally:
        pool.close()
    return key


def probe(base: str, key: str, count: int, every: float) -> list[str]:
    """Start `count` /echo runs, one every `every` seconds; their IDs."""
    session = requests.Session()
    ids = []
    for _ in range(count):
        answer = session.post(f"{base}/v1/run", json=PROBE, timeout=30,
                              headers={"Authorization": f"Bearer {key}"})
        answer.raise_for_status()
        ids.append(answer.json()["runId"])
        time.sleep(every)
    return ids


def flood(base: str, key: str, count: int, seconds: float, threads: int,
          accepted: list[str]) -> None:
    body = {"provider": "demo", "endpoint": "/sleep", "input": {"seconds": seconds}}
    lock = threading.Lock()
    share = -(-count // threads)

    def post(n: int) -> None:
        session = requests.Session()
        for _ in range(min(share, count - n * share)):
            answer = session.post(f"{base}/v1/run", json=body, timeout=60,
                                  headers={"Authorization": f"Bearer {key}"})
            answer.raise_for_status()
            with lock:
                accepted.append(answer.json()["runId"])

    clients = [threading.Thread(target=post, args=(n,)) for n in range(threads)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()


def waits(url: str, ids: list[str], timeout: float) -> list[float]:
    """Each run's wait to start, in ms, once every one of them has ended."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM runs WHERE id = ANY(%s)"
                               " AND completed_at IS NULL", (ids,)).fetchone()
            if row is not None and row[0] == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"runs had not ended after {timeout:g} s")
            time.sleep(0.5)
        rows = conn.execute("SELECT extract(epoch FROM started_at - created_at) * 1000, status"
                            " FROM runs WHERE id = ANY(%s)", (ids,)).fetchall()
    bad = [status for _, status in rows if status != "COMPLETED"]
    if bad:
        raise SystemExit(f"{len(bad)} runs did not complete: {sorted(set(bad))}")
    return [float(ms) for ms, _ in rows]


def one_round(args: argparse.Namespace, log_dir: Path) -> dict[str, list[float]]:
    broker = redis_url(BENCH_REDIS_DB)
    flush(broker)
    with scratch_database() as url:
        flooder, _ = seed_key(url)
        bystander = second_key(url, "bystander")
        web, base = start_load_web(url, broker, log_dir, **args.set)
        worker = start_worker({"DATABASE_URL": url, "REDIS_URL": broker, **args.set}, log_dir,
                              concurrency=args.concurrency, ready_timeout=90)
        try:
            idle = waits(url, probe(base, bystander, args.probes, args.every), args.timeout)
            accepted: list[str] = []
            flooding = threading.Thread(target=flood, args=(base, flooder, args.flood,
                                                            args.sleep, 16, accepted))
            flooding.start()
            while len(accepted) < min(args.flood, 200) and flooding.is_alive():
                time.sleep(0.05)
            loaded = probe(base, bystander, args.probes, args.every)
            flooding.join()
            under = waits(url, loaded, args.timeout)
            flooded = waits(url, accepted, args.timeout)
        finally:
            worker.stop(timeout=40)
            web.stop(timeout=40)
    log(f"round: bystander idle p50 {percentile(idle, 0.5):.0f} ms p99 "
        f"{percentile(idle, 0.99):.0f} ms; under the flood p50 {percentile(under, 0.5):.0f} ms "
        f"p99 {percentile(under, 0.99):.0f} ms; the flood's own p50 "
        f"{percentile(flooded, 0.5) / 1000:.1f} s p99 {percentile(flooded, 0.99) / 1000:.1f} s")
    return {"idle": idle, "under": under, "flood": flooded}


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", type=int, default=2000, help="caller A's /sleep runs")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each of them sleeps")
    parser.add_argument("--probes", type=int, default=50, help="caller B's /echo runs")
    parser.add_argument("--every", type=float, default=0.1,
                        help="seconds between two of B's runs")
    parser.add_argument("--concurrency", type=int, default=200,
                        help="WORKER_CONCURRENCY (the setting's default: 200)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the web and the worker (repeatable)")
    parser.add_argument("--log-dir", default="/tmp/monid-bench-fairness")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    args.set = {"MAX_RUNS_IN_FLIGHT": str(args.flood + args.probes),
                **dict(item.split("=", 1) for item in args.set)}
    install_cleanup()
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    rounds = [one_round(args, log_dir) for _ in range(args.repeat)]
    report = Report("fairness")
    for name, phase in (("idle", "idle"), ("A floods", "under")):
        for q in (0.5, 0.99):
            report.add(f"B's wait to start, {name}, p{int(q * 100)} (ms)",
                       spread([percentile(r[phase], q) for r in rounds], ".0f"))
    report.add("B's p99 under the flood / idle",
               spread([percentile(r["under"], 0.99) / max(percentile(r["idle"], 0.99), 1.0)
                       for r in rounds], ".2f"))
    report.add("B's worst wait under the flood (s)",
               spread([max(r["under"]) / 1000 for r in rounds], ".2f"), target="< 5",
               met=all(max(r["under"]) < 5000 for r in rounds))
    for q in (0.5, 0.99):
        report.add(f"A's own wait to start, p{int(q * 100)} (s)",
                   spread([percentile(r["flood"], q) / 1000 for r in rounds], ".1f"))
    report.notes.append(f"A: {args.flood} /sleep runs of {args.sleep:g} s from 16 clients; "
                        f"B: {args.probes} /echo runs, one every {args.every:g} s; "
                        f"worker concurrency {args.concurrency}; settings {args.set}")
    report.print()
    report.write(args.json)
    return report


if __name__ == "__main__":
    main()

"""Webhook deliveries: events delivered per second to a local receiver with one worker
process, beside the same worker settings' no-op task drain rate; and, at low load, the
time from a run's end (its `completed_at`) to its delivery arriving at the receiver.

    python -m bench.webhooks [--events 2000] [--runs 100] [--interval 0.25] [--repeat 3]
        [--concurrency N] [--quick] [--json PATH]

The receiver is the tests' (tests/fakes/receiver.py): it verifies every delivery with
the `standardwebhooks` library, answers 200, and notes when each arrived. The caller has
one standing webhook to it, so every run's end writes one delivery.

- Throughput: the worker is up and idle; `--events` ended runs are COPYed into `runs` in
  one transaction (the trigger writes their events and deliveries and notifies the
  worker's listener as the commit lands). From the commit to the last delivery at the
  receiver. Beside it, two ceilings measured in the same run: as many no-op tasks
  (bench/noop_app.py, the same worker settings) published at once, from the first
  publish to the last execution; and the receiver's own, as many signed POSTs sent
  straight to it by 8 threads of the sender (`shared.webhooks.sender.send`, no
  database, no queue).
- Latency: `--runs` runs of demo /echo started through the API one every `--interval`
  seconds; for each, its delivery's arrival minus the run's `completedAt` (the event's
  own field, written in the transaction that ended the run): p50 and p99.

Redis database 8, flushed between steps; a scratch database of DATABASE_URL's server.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg
import redis
import requests
from celery import Celery

from bench.common import (
    BENCH_CALLER,
    ECHO_BODY,
    NOOP_COUNT,
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
)
from shared.queue import QUEUE, WEBHOOK_QUEUE, make_publisher
from shared.settings import load_settings
from shared.webhooks import signing
from shared.webhooks.sender import send
from tests.fakes.receiver import Receiver
from tests.helpers import insert_standing_webhook
from tests.processes import Process, start_worker

REDIS_DB = REDIS_DBS["webhooks"]


def _worker(env: dict[str, str], log_dir: Path, concurrency: int,
            app: str = "worker.main") -> Process:
    return start_worker({**env, "LOG_LEVEL": "WARNING"}, log_dir, concurrency=concurrency,
                        app=app, name=app.split(".")[0], ready_timeout=120)


def _wait(count: int, seen: Callable[[], int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while seen() < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {seen()} of {count} arrived within {timeout:.0f} s")
        time.sleep(0.005)


def throughput_round(url: str, env: dict[str, str], log_dir: Path, receiver: Receiver,
                     args: argparse.Namespace) -> dict[str, float]:
    flush(env["REDIS_URL"])
    with receiver.lock:
        receiver.received.clear()
    worker = _worker(env, log_dir, args.concurrency)
    try:
        time.sleep(1.0)  # its listener is up
        started = time.time()
        copy_runs(url, args.events, caller_of=lambda _: BENCH_CALLER, ended=True,
                  endpoint=echo_endpoint(), spread_days=0.001)
        committed = time.time()
        _wait(args.events, lambda: len(receiver.received), args.timeout)
        with receiver.lock:
            last = max(r.time for r in receiver.received)
            verified = sum(r.verified for r in receiver.received)
    finally:
        worker.stop(timeout=30)
    elapsed = last - committed
    return {"rate": args.events / elapsed, "elapsed": elapsed,
            "copy_seconds": committed - started, "verified": verified}


def noop_round(env: dict[str, str], log_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    flush(env["REDIS_URL"])
    client = redis.Redis.from_url(env["REDIS_URL"])
    worker = _worker(env, log_dir, args.concurrency, app="bench.noop_app")
    publisher: Celery = make_publisher(load_settings(env))
    try:
        first = time.time()
        for _ in range(args.events):
            publish_noop(publisher)
        _wait(args.events, lambda: int(client.get(NOOP_COUNT) or 0), args.timeout)
        last = time.time()
    finally:
        worker.stop(timeout=30)
        client.close()
    return {"rate": args.events / (last - first), "elapsed": last - first}


def receiver_round(receiver: Receiver, secret: str, args: argparse.Namespace) -> float:
    """Signed POSTs a second that 8 threads of the bare sender get through to the
    receiver: its own ceiling (and the sender's), with no database and no queue."""
    with receiver.lock:
        receiver.received.clear()
    body = b'{"type":"run.completed","timestamp":"2026-01-01T00:00:00.000Z","data":{}}'
    per_thread = max(1, args.events // 8)

    def post(n: int) -> None:
        for i in range(per_thread):
            msg_id = f"bench{n}x{i}"
            headers = signing.sign_headers([secret], msg_id, int(time.time()), body)
            result = send(receiver.url(), body, headers, timeout=5, allow_insecure=True)
            assert result.delivered, result.error

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 8 * per_thread / (time.time() - started)


def latency_round(url: str, env: dict[str, str], log_dir: Path, receiver: Receiver,
                  args: argparse.Namespace, key: str, base_url: str) -> list[float]:
    flush(env["REDIS_URL"])
    with receiver.lock:
        receiver.received.clear()
    worker = _worker(env, log_dir, args.concurrency)
    session = requests.Session()
    try:
        time.sleep(1.0)
        for _ in range(args.runs):
            answer = session.post(f"{base_url}/v1/run", json=ECHO_BODY, timeout=10,
                                  headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 202, answer.text
            time.sleep(args.interval)
        _wait(args.runs, lambda: len(receiver.received), args.timeout)
        with receiver.lock:
            got = list(receiver.received)
    finally:
        worker.stop(timeout=30)
        session.close()
    delays = []
    for r in got:
        ended = datetime.fromisoformat(r.json["data"]["completedAt"].replace("Z", "+00:00"))
        delays.append((r.time - ended.timestamp()) * 1000)
    return delays


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="WORKER_CONCURRENCY (default: the setting's default)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true",
                        help="300 events and 20 runs, once: a smoke test")
    parser.add_argument("--json", help="write the summary here (for bench.run_all)")
    args = parser.parse_args(argv)
    install_cleanup()
    if args.quick:
        args.events, args.runs, args.repeat = min(args.events, 300), min(args.runs, 20), 1
    broker = redis_url(REDIS_DB)
    log_dir = Path(tempfile.mkdtemp(prefix="monid-bench-webhooks-"))
    print(machine_line())
    rates: list[float] = []
    floors: list[float] = []
    ceilings: list[float] = []
    delays: list[float] = []
    with scratch_database() as url, Receiver() as receiver:
        key, _ = seed_key(url)
        with psycopg.connect(url) as conn:
            _, secret = insert_standing_webhook(conn, BENCH_CALLER, receiver.url())
        receiver.secrets.append(secret)
        env = {"DATABASE_URL": url, "REDIS_URL": broker, "WEBHOOKS_ALLOW_INSECURE": "true",
               "SWEEP_GRACE_SECONDS": "3600"}
        if args.concurrency is None:
            args.concurrency = load_settings(env).worker_concurrency
        print(f"{args.repeat} x {args.events} events, {args.runs} runs one every "
              f"{args.interval} s; one worker process, WORKER_CONCURRENCY={args.concurrency}; "
              f"queues {QUEUE} and {WEBHOOK_QUEUE}; logs in {log_dir}")
        for rep in range(args.repeat):
            found = throughput_round(url, env, log_dir, receiver, args)
            rates.append(found["rate"])
            log(f"rep {rep + 1} deliveries: {found['rate']:7.1f} /s ({args.events} in "
                f"{found['elapsed']:.2f} s after the commit; {found['verified']:.0f} verified)")
            floor = noop_round(env, log_dir, args)
            floors.append(floor["rate"])
            log(f"rep {rep + 1} no-op:      {floor['rate']:7.1f} /s")
            ceilings.append(receiver_round(receiver, secret, args))
            log(f"rep {rep + 1} receiver:   {ceilings[-1]:7.1f} signed POSTs/s (8 threads)")
        web, base_url = start_load_web(url, broker, log_dir)
        try:
            for rep in range(args.repeat):
                found_delays = latency_round(url, env, log_dir, receiver, args, key, base_url)
                delays.extend(found_delays)
                log(f"rep {rep + 1} run end to delivery: p50 "
                    f"{percentile(found_delays, 0.5):.1f} ms, p99 "
                    f"{percentile(found_delays, 0.99):.1f} ms")
        finally:
            web.stop()
        flush(broker)
    report = Report("webhooks")
    paired = [ratio(r, f) for r, f in zip(rates, floors, strict=True)]
    report.add("deliveries/s, 1 worker", spread(rates),
            baseline=f"no-op tasks/s {med(floors):.1f}", ratio=f"{med(paired):.2f}")
    to_receiver = [ratio(r, c) for r, c in zip(rates, ceilings, strict=True)]
    report.add("deliveries/s against the receiver's own ceiling", spread(rates),
               baseline=f"signed POSTs/s, 8 threads {med(ceilings):.1f}",
               ratio=f"{med(to_receiver):.2f}")
    report.add("run end to delivery p50 (low load)", f"{percentile(delays, 0.5):.1f} ms")
    report.add("run end to delivery p99 (low load)", f"{percentile(delays, 0.99):.1f} ms")
    report.notes.append(f"{len(delays)} runs for the latency, one every {args.interval} s")
    report.print()
    report.write(args.json)
    return report


if __name__ == "__main__":
    main()

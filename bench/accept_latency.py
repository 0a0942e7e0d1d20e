"""Latency of `POST /v1/run` from one client, against `GET /healthz` in the same run.

    python -m bench.accept_latency [--requests 2000] [--repeat 5]

Needs DATABASE_URL (an admin URL: a scratch database is made and dropped) and
REDIS_URL. Starts a real gunicorn web process; no worker, so runs only queue.
Prints the median and p99 of each, over several repetitions, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

from bench.common import REDIS_DBS, redis_url, scratch_database, seed_key
from tests.processes import start_web


def _timed(session: requests.Session, method: str, url: str, n: int, **kw: object) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        answer = session.request(method, url, **kw)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - t0) * 1000)
        if answer.status_code >= 300:
            raise SystemExit(f"{method} {url} answered {answer.status_code}: {answer.text}")
    return samples


def _p(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    broker = redis_url(REDIS_DBS["accept_latency"])
    try:
        with scratch_database() as url:
            key, _ = seed_key(url)
            env = {"DATABASE_URL": url, "REDIS_URL": broker, "LOG_LEVEL": "WARNING",
                   # 3 x 1000 runs with no worker: measure the path, not the limits.
                   "RATE_LIMIT_PER_MINUTE": "10000000", "MAX_RUNS_IN_FLIGHT": "0"}
            web, base = start_web(env, Path(tempfile.mkdtemp()))
            try:
                _measure(base, key, broker, args.requests, args.repeat)
            finally:
                web.stop()
    finally:
        redis.Redis.from_url(broker).flushdb()


def _measure(base: str, key: str, broker: str, requests_a_round: int, repeat: int) -> None:
    session = requests.Session()
    body = {"provider": "demo", "endpoint": "/echo",
            "input": {"searchTerms": ["AI"], "maxItems": 10}}
    headers = {"Authorization": f"Bearer {key}"}
    _timed(session, "POST", f"{base}/v1/run", 200, json=body, headers=headers)  # warm up
    accept_p50, accept_p99, health_p50 = [], [], []
    for _ in range(repeat):
        health = _timed(session, "GET", f"{base}/healthz", requests_a_round)
        accept = _timed(session, "POST", f"{base}/v1/run", requests_a_round, json=body,
                        headers=headers)
        accept_p50.append(statistics.median(accept))
        accept_p99.append(_p(accept, 0.99))
        health_p50.append(statistics.median(health))
        redis.Redis.from_url(broker).flushdb()
    med = statistics.median
    print(f"machine: {os.cpu_count()} cores; {repeat} x {requests_a_round} requests, "
          "one client, keep-alive")
    print(f"POST /v1/run  p50 {med(accept_p50):.2f} ms (spread {min(accept_p50):.2f}-"
          f"{max(accept_p50):.2f})  p99 {med(accept_p99):.2f} ms")
    print(f"GET /healthz  p50 {med(health_p50):.2f} ms (spread {min(health_p50):.2f}-"
          f"{max(health_p50):.2f})")
    print(f"ratio accept/healthz p50: {med(accept_p50) / med(health_p50):.2f}x")


if __name__ == "__main__":
    sys.exit(main())

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
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import requests

from bench.common import REDIS_DBS, redis_url
from shared import keys, store
from shared.db import make_pool, migrate, transaction
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
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    broker = redis_url(REDIS_DBS["accept_latency"])
    name = f"monid_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    web = None
    try:
        migrate(url)
        key = keys.generate_key()
        pool = make_pool(url, max_size=1)
        pool.open()
        with transaction(pool) as conn:
            store.insert_api_key(conn, user_id="bench", label=None, mode="live",
                                 key_prefix=keys.display_prefix(key), key_hash=keys.hash_key(key))
        pool.close()
        env = {"DATABASE_URL": url, "REDIS_URL": broker, "LOG_LEVEL": "WARNING",
               # 3 x 1000 runs with no worker: measure the path, not the limits.
               "RATE_LIMIT_PER_MINUTE": "10000000", "MAX_RUNS_IN_FLIGHT": "0"}
        web, base = start_web(env, Path(tempfile.mkdtemp()))
        session = requests.Session()
        body = {"provider": "demo", "endpoint": "/echo",
                "input": {"searchTerms": ["AI"], "maxItems": 10}}
        headers = {"Authorization": f"Bearer {key}"}
        _timed(session, "POST", f"{base}/v1/run", 200, json=body, headers=headers)  # warm up
        accept_p50, accept_p99, health_p50 = [], [], []
        for _ in range(args.repeat):
            health = _timed(session, "GET", f"{base}/healthz", args.requests)
            accept = _timed(session, "POST", f"{base}/v1/run", args.requests, json=body,
                            headers=headers)
            accept_p50.append(statistics.median(accept))
            accept_p99.append(_p(accept, 0.99))
            health_p50.append(statistics.median(health))
            redis.Redis.from_url(broker).flushdb()
        med = statistics.median
        print(f"machine: {os.cpu_count()} cores; {args.repeat} x {args.requests} requests, "
              "one client, keep-alive")
        print(f"POST /v1/run  p50 {med(accept_p50):.2f} ms (spread {min(accept_p50):.2f}-"
              f"{max(accept_p50):.2f})  p99 {med(accept_p99):.2f} ms")
        print(f"GET /healthz  p50 {med(health_p50):.2f} ms (spread {min(health_p50):.2f}-"
              f"{max(health_p50):.2f})")
        print(f"ratio accept/healthz p50: {med(accept_p50) / med(health_p50):.2f}x")
    finally:
        if web:
            web.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        redis.Redis.from_url(broker).flushdb()


if __name__ == "__main__":
    sys.exit(main())

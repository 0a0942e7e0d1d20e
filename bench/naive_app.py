"""The naive reference `bench.system` measures the project against: the same job done
the plain Flask + Celery way, with none of the project's guarantees.

- web: a Flask handler that INSERTs the run and calls `apply_async`, then answers 202
  (gunicorn, the same processes and threads as the project's web);
- worker: a prefork Celery worker (one process per core), acks late, prefetch 1,
  whose task UPDATEs the run to COMPLETED with its input as output.

No key, no validation beyond "a JSON object", no wallet, no lease, no attempts, no
sweeper, no events: what a first version of the job would look like.

    gunicorn --workers 2 --threads 64 -k gthread bench.naive_app:app
    celery --app bench.naive_app:celery worker --pool prefork --concurrency 2
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from psycopg_pool import ConnectionPool
from ulid import ULID

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS naive_runs (
    id text PRIMARY KEY,
    provider text NOT NULL,
    endpoint text NOT NULL,
    input json NOT NULL,
    output json,
    status text NOT NULL DEFAULT 'RUNNING',
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
)
"""

celery = Celery("naive", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
celery.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True,
                   task_default_queue="naive", worker_hijack_root_logger=False,
                   broker_connection_retry_on_startup=True)
_pools: dict[int, ConnectionPool] = {}


def pool() -> ConnectionPool:
    """One pool per process (prefork children get their own)."""
    found = _pools.get(os.getpid())
    if found is None:
        found = ConnectionPool(os.environ["DATABASE_URL"], min_size=1, max_size=10,
                               kwargs={"autocommit": True}, open=True)
        _pools[os.getpid()] = found
    return found


@celery.task(name="naive.run")
def run(run_id: str) -> None:
    with pool().connection() as conn:
        conn.execute("UPDATE naive_runs SET status = 'COMPLETED', output = input,"
                     " completed_at = now() WHERE id = %s AND status = 'RUNNING'", (run_id,))


app = Flask("naive")


@app.post("/v1/run")
def start_run() -> ResponseReturnValue:
    body: Any = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify({"message": "a JSON object"}), 400
    run_id = str(ULID())
    with pool().connection() as conn:
        conn.execute("INSERT INTO naive_runs (id, provider, endpoint, input)"
                     " VALUES (%s, %s, %s, %s)",
                     (run_id, str(body.get("provider")), str(body.get("endpoint")),
                      json.dumps(body.get("input", {}))))
    run.apply_async(args=[run_id])
    return jsonify({"runId": run_id, "status": "RUNNING"}), 202


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})

"""The logs of a full run: one JSON object a line, with request and run IDs, and
never a key, a token or a password."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import transaction
from tests.e2e.test_end_to_end import poll_until_ended
from tests.fakes.apify import FakeApify
from tests.fakes.jsonapi import FakeJsonApi
from tests.helpers import KeyMaker
from tests.processes import start_web, start_worker

APIFY_TOKEN = "apify_api_SECRETtoken1234567890"
EXA_KEY = "exa-SECRET-key-0987654321"

# Lines Celery writes to the terminal itself, outside logging, when it stops.
CELERY_TERMINAL = ("worker: Warm shutdown", "worker: Cold shutdown")


def json_lines(text: str) -> list[dict[str, Any]]:
    parsed = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(CELERY_TERMINAL):
            continue
        parsed.append(json.loads(line))  # every other line is one JSON object
    return parsed


def test_a_full_run_logs_json_with_ids_and_no_secrets(base_env: dict[str, str],
                                                      e2e_key: KeyMaker, pool: ConnectionPool,
                                                      tmp_path: Path) -> None:
    with FakeApify(token=APIFY_TOKEN) as apify, FakeJsonApi() as exa:
        apify.add_actor("apidojo~tweet-scraper", run_seconds=0.2, items=[{"id": "1"}])
        exa.fail_next(1, status=503)  # an error path logs too
        env = {**base_env, "APIFY_TOKEN": APIFY_TOKEN, "APIFY_API_BASE_URL": apify.base_url,
               "EXA_API_KEY": EXA_KEY, "EXA_API_BASE_URL": exa.base_url}
        web, base = start_web(env, tmp_path)
        worker = start_worker(env, tmp_path)
        try:
            key = e2e_key("user_logs")
            with transaction(pool) as conn:
                store.credit_wallet(conn, "USER#user_logs", 1_000_000)
            headers = {"Authorization": f"Bearer {key}", "x-request-id": "trace-logs-1"}
            run_ids = []
            for body in ({"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
                          "input": {"searchTerms": ["AI"]}},
                         {"provider": "exa", "endpoint": "/search", "input": {"query": "AI"}}):
                answer = requests.post(f"{base}/v1/run", json=body, headers=headers, timeout=5)
                assert answer.status_code == 202, answer.text
                run_ids.append(answer.json()["runId"])
            for run_id in run_ids:
                assert poll_until_ended(base, key, run_id)["status"] == "COMPLETED"
            requests.get(f"{base}/v1/runs", headers={"Authorization": "Bearer monid_live_"
                                                     + "x" * 32}, timeout=5)  # a bad key
        finally:
            worker.stop()
            web.stop()
        web_log, worker_log = web.output(), worker.output()
    everything = web_log + worker_log
    for secret in (APIFY_TOKEN, EXA_KEY, key, key.split("_")[-1], "Bearer monid"):
        assert secret not in everything, f"a secret reached the logs: {secret[:12]}..."
    web_entries, worker_entries = json_lines(web_log), json_lines(worker_log)
    accepted = [e for e in web_entries if e["msg"] == "run accepted"]
    assert {e["runId"] for e in accepted} == set(run_ids)
    assert all(e["requestId"] == "trace-logs-1" for e in accepted)
    assert any(e["msg"] == "request" and e["status"] == 401 for e in web_entries)
    for run_id in run_ids:
        own = [e for e in worker_entries if e.get("runId") == run_id]
        assert any(e["msg"] == "run ended" for e in own), run_id
    assert any(e["msg"] == "retry scheduled" for e in worker_entries)
    # One line a run's end, not Celery's two a task (received, succeeded) beside it.
    celery_task_lines = [e for e in worker_entries
                         if e["logger"] in ("celery.worker.strategy", "celery.app.trace")]
    assert celery_task_lines == []
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in web_entries + worker_entries)

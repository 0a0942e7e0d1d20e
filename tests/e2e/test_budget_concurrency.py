"""200 concurrent POST /v1/run against a budget that covers exactly 50 runs (and a
wallet that covers them all), through a real gunicorn web process."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from psycopg_pool import ConnectionPool

from shared import controls, store
from shared.db import transaction
from shared.store import controls as controls_store
from tests.helpers import KeyMaker, monid_cli
from tests.processes import Process

PRICE = 3000  # apify /apidojo/tweet-scraper, 0.003 USD per call


@pytest.fixture(scope="module")
def web_process_env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "WEB_CONCURRENCY": "2", "WEB_THREADS": "16"}


def test_200_concurrent_runs_against_a_budget_for_50(web: tuple[Process, str],
                                                     e2e_key: KeyMaker,
                                                     pool: ConnectionPool) -> None:
    key = e2e_key("user_budget50")
    caller = "USER#user_budget50"
    with transaction(pool) as conn:
        store.credit_wallet(conn, caller, 1000 * PRICE, "more than the budget")
    budget = controls.create_budget(pool, caller, period="DAY", limit_micros=50 * PRICE)
    _, base = web
    most_used: list[int] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            with transaction(pool) as conn:
                seen = controls_store.get_budget_control(conn, budget.id, caller)
            assert seen is not None
            most_used.append(seen.spent_micros + seen.held_micros)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    barrier = threading.Barrier(200)

    def one(_: int) -> str:
        session = requests.Session()
        barrier.wait()
        answer = session.post(f"{base}/v1/run", headers={"Authorization": f"Bearer {key}"},
                              json={"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
                                    "input": {"searchTerms": ["AI"], "maxItems": 10}},
                              timeout=60)
        return f"{answer.status_code} {answer.json().get('status')}"

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=200) as executor:
        answers = list(executor.map(one, range(200)))
    elapsed = time.monotonic() - started
    watching.set()
    watcher.join()
    accepted, blocked = answers.count("202 RUNNING"), answers.count("200 BLOCKED")
    with transaction(pool) as conn:
        seen = controls_store.get_budget_control(conn, budget.id, caller)
        runs = conn.execute("SELECT status, count(*) AS n, sum(hold_micros) AS held FROM runs"
                            " WHERE caller = %s GROUP BY status ORDER BY status",
                            (caller,)).fetchall()
        records = conn.execute("SELECT status, count(*) AS n, sum(hold_micros) AS held"
                               " FROM run_control_records WHERE control_id = %s"
                               " GROUP BY status ORDER BY status", (budget.id,)).fetchall()
        wallet = store.get_wallet(conn, caller)
    print(f"\n200 concurrent POST /v1/run, budget for 50: accepted {accepted}, blocked "
          f"{blocked}, in {elapsed:.2f} s; most of the budget ever used {max(most_used)} of "
          f"{50 * PRICE} micro-USD")
    assert (accepted, blocked) == (50, 150), answers
    assert seen is not None and (seen.held_micros, seen.spent_micros) == (50 * PRICE, 0)
    assert runs == [{"status": "BLOCKED", "n": 150, "held": 0},
                    {"status": "RUNNING", "n": 50, "held": 50 * PRICE}]
    assert records == [{"status": "BLOCKED", "n": 150, "held": 150 * PRICE},
                       {"status": "HELD", "n": 50, "held": 50 * PRICE}]
    assert wallet.held_micros == 50 * PRICE
    assert max(most_used) <= 50 * PRICE


def test_monids_own_cli_stops_waiting_on_a_blocked_run(web: tuple[Process, str],
                                                      e2e_key: KeyMaker, pool: ConnectionPool,
                                                      tmp_path: Path) -> None:
    """`monid run ... -w 10` on a run a control refuses returns at once: BLOCKED is
    terminal for monid's own command-line client."""
    key = e2e_key("user_capped_cli")
    caller = "USER#user_capped_cli"
    with transaction(pool) as conn:
        store.credit_wallet(conn, caller, 1000 * PRICE, "enough for any run")
    controls.create_run_cap(pool, caller, limit_micros=PRICE - 1)
    _, base = web
    monid, env = monid_cli(tmp_path, key, base)
    started = time.monotonic()
    ran = subprocess.run([monid, "run", "-p", "apify", "-e", "/apidojo/tweet-scraper",
                          "-i", json.dumps({"searchTerms": ["AI"], "maxItems": 10}),
                          "-w", "10", "--json"], env=env, capture_output=True, text=True,
                         timeout=60)
    took = time.monotonic() - started
    said = ran.stdout + ran.stderr
    assert "BLOCKED" in said, said
    assert took < 8, f"the client waited {took:.1f} s on a BLOCKED run"
    with transaction(pool) as conn:
        rows = conn.execute("SELECT status, cost_micros, hold_micros FROM runs"
                            " WHERE caller = %s", (caller,)).fetchall()
    assert rows == [{"status": "BLOCKED", "cost_micros": 0, "hold_micros": 0}]

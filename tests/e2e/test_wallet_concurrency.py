"""200 concurrent POST /v1/run against a wallet that covers exactly 50 runs,
through a real gunicorn web process."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import transaction
from tests.helpers import KeyMaker
from tests.processes import Process

PRICE = 3000  # the seed's endpoint: apify /apidojo/tweet-scraper, 0.003 USD per call


@pytest.fixture(scope="module")
def web_process_env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "WEB_CONCURRENCY": "2", "WEB_THREADS": "16"}


def test_200_concurrent_runs_against_a_wallet_for_50(web: tuple[Process, str],
                                                     e2e_key: KeyMaker, pool: ConnectionPool,
                                                     tmp_path: Path) -> None:
    key = e2e_key("user_wallet50")
    caller = "USER#user_wallet50"
    with transaction(pool) as conn:
        store.credit_wallet(conn, caller, 50 * PRICE, "exactly 50 runs")
    _, base = web
    lowest_available: list[int] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            with transaction(pool) as conn:
                lowest_available.append(store.get_wallet(conn, caller).available_micros)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    barrier = threading.Barrier(200)

    def one(_: int) -> int:
        session = requests.Session()
        barrier.wait()
        return session.post(f"{base}/v1/run", headers={"Authorization": f"Bearer {key}"},
                            json={"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
                                  "input": {"searchTerms": ["AI"], "maxItems": 10}},
                            timeout=60).status_code

    with ThreadPoolExecutor(max_workers=200) as executor:
        statuses = list(executor.map(one, range(200)))
    watching.set()
    watcher.join()
    accepted, refused = statuses.count(202), statuses.count(402)
    with transaction(pool) as conn:
        wallet = store.get_wallet(conn, caller)
        runs = conn.execute("SELECT count(*) AS n, sum(hold_micros) AS held FROM runs"
                            " WHERE caller = %s", (caller,)).fetchone()
    print(f"\n200 concurrent POST /v1/run, wallet for 50: accepted {accepted}, refused "
          f"{refused}, lowest available balance seen {min(lowest_available)} micro-USD")
    assert (accepted, refused) == (50, 150), statuses
    assert runs == {"n": 50, "held": 50 * PRICE}
    assert wallet == store.Wallet(caller, 50 * PRICE, 50 * PRICE)
    assert min(lowest_available) >= 0

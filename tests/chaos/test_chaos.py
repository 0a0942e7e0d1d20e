"""Kill, flush and restart real processes with runs in flight; every accepted run
must end exactly once, no attempt may call the provider twice, attempts stay
within their cap, and nothing is charged twice.

Each scenario prints: runs accepted / ended / lost / duplicated, and the longest
time a run needed to recover after the fault.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from shared.queue import enqueue_run, make_publisher
from shared.settings import DEFAULT_CATALOG_DIR, load_settings
from tests.chaos.conftest import LIMITED, LIMITED_CONCURRENCY, World
from tests.fakes.apify import FakeApify, SizedDataset
from tests.fakes.receiver import Answer, Received, Receiver
from tests.helpers import insert_standing_webhook
from worker.app import make_celery


def pool_children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_until_started(world: World, ids: list[str], count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(world.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM runs WHERE id = ANY(%s)"
                               " AND lease_token IS NOT NULL", (ids,)).fetchone()
        if row and row[0] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} runs were started")


def test_sigkill_a_worker_process_mid_run(world: World) -> None:
    base = world.web()
    victim = world.worker("victim", concurrency=8)
    world.worker("survivor", concurrency=8)
    ids = world.submit(base, 30, sleep=[0.5, 2.0, 3.0])
    wait_until_started(world, ids, 6)
    fault = time.time()
    victim.signal_group(signal.SIGKILL)
    world.wait_ended(ids)
    world.check("SIGKILL worker process", ids, fault)


def test_sigkill_a_pool_child_mid_run(world: World) -> None:
    base = world.web()
    worker = world.worker("prefork", concurrency=2, WORKER_POOL="prefork")
    ids = world.submit(base, 6, sleep=2.0)
    wait_until_started(world, ids, 2)
    children = pool_children(worker.pid)
    assert len(children) == 2, children
    fault = time.time()
    os.kill(children[0], signal.SIGKILL)
    world.wait_ended(ids)
    assert worker.alive(), "the worker's main process survives a lost pool child"
    world.check("SIGKILL pool child", ids, fault)


def test_sigterm_then_sigkill_like_heroku(world: World) -> None:
    base = world.web()
    leaving = world.worker("leaving", concurrency=8)
    short = world.submit(base, 4, sleep=0.3)
    long = world.submit(base, 3, sleep=8.0)
    wait_until_started(world, long, 3)
    fault = time.time()
    leaving.signal_group(signal.SIGTERM)
    world.worker("arriving", concurrency=8)  # the dyno that replaces it
    # Heroku sends SIGKILL 30 s after SIGTERM; scaled down here to 6 s, past
    # the 3 s grace of the test settings.
    deadline = time.monotonic() + 6
    while leaving.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    exited_by_itself = not leaving.alive()
    leaving.signal_group(signal.SIGKILL)
    world.wait_ended(short + long)
    report = world.check("SIGTERM, SIGKILL 6 s later", short + long, fault)
    assert exited_by_itself, "the worker did not leave within its grace"
    assert "runs handed back" in leaving.output()
    with psycopg.connect(world.database_url) as conn:
        outcomes = dict(conn.execute(  # type: ignore[arg-type]
            "SELECT run_id, array_agg(outcome ORDER BY number) FROM attempts"
            " WHERE run_id = ANY(%s) GROUP BY run_id", (short + long,)).fetchall())
    assert all(outcomes[i] == ["OK"] for i in short), "short runs finished within the grace"
    assert all(outcomes[i] == ["LOST", "OK"] for i in long), outcomes
    assert report.longest_recovery < 20


def test_redis_flushed_and_restarted_with_runs_queued_and_in_flight(world: World) -> None:
    base = world.web()
    world.worker("worker", concurrency=4)
    ids = world.submit(base, 24, sleep=1.0)
    wait_until_started(world, ids, 4)
    fault = time.time()
    world.redis.flush_and_restart()
    world.wait_ended(ids, timeout=90)
    world.check("Redis FLUSHALL + restart", ids, fault)


def test_postgres_restarted_with_runs_in_flight(world: World) -> None:
    base = world.web()
    world.worker("worker", concurrency=8)
    ids = world.submit(base, 16, sleep=[1.0, 2.0])
    wait_until_started(world, ids, 8)
    fault = time.time()
    world.pg.stop()
    # While the database is down, accepting a run is refused quickly and cleanly.
    started = time.monotonic()
    answer = requests.post(f"{base}/v1/run", headers={"Authorization": f"Bearer {world.key}"},
                           json={"provider": "chaos", "endpoint": "/work", "input": {}},
                           timeout=10)
    refused_in = time.monotonic() - started
    ready = requests.get(f"{base}/readyz", timeout=10)
    world.pg.start()
    assert answer.status_code == 503, answer.text
    assert answer.json()["errorCode"] == "SERVICE_UNAVAILABLE"
    assert refused_in < 5
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unavailable"
    world.wait_ended(ids, timeout=90)
    world.check("PostgreSQL restart", ids, fault)


def test_publishing_fails_at_accept_time(world: World) -> None:
    base = world.web(REDIS_URL="redis://127.0.0.1:1/0")  # the web cannot reach the broker
    world.worker("worker", concurrency=8)
    fault = time.time()
    ids = world.submit(base, 12, sleep=0.2)
    world.wait_ended(ids)
    world.check("publish fails at accept", ids, fault)


def test_duplicate_messages_and_sweepers_racing(world: World) -> None:
    base = world.web()
    world.worker("one", concurrency=8)
    world.worker("two", concurrency=8)
    settings = load_settings(world.env)
    publisher = make_publisher(settings)
    sweepers = [make_celery(settings).sweeper() for _ in range(2)]
    skipped: list[bool] = []
    stopping = threading.Event()

    def sweep_forever(index: int) -> None:
        while not stopping.is_set():
            skipped.append(sweepers[index].sweep().skipped)

    racers = [threading.Thread(target=sweep_forever, args=(i,)) for i in range(2)]
    for racer in racers:
        racer.start()
    fault = time.time()
    ids = world.submit(base, 20, sleep=[0.3, 1.0])
    for run_id in ids:
        enqueue_run(publisher, run_id)
        enqueue_run(publisher, run_id)
    world.wait_ended(ids)
    for run_id in ids:  # and once more after they ended
        enqueue_run(publisher, run_id)
    time.sleep(1.0)
    stopping.set()
    for racer in racers:
        racer.join()
    world.check("duplicate messages + sweepers", ids, fault)
    assert True in skipped, "two sweepers ran at once: the advisory lock did not hold"
    with psycopg.connect(world.database_url) as conn:
        attempts = conn.execute("SELECT max(attempt_count) FROM runs WHERE id = ANY(%s)",
                                (ids,)).fetchone()
    assert attempts == (1,), "a duplicated message started a second attempt"


def test_a_poison_run_is_failed_without_crashing_workers_forever(world: World) -> None:
    base = world.web()
    worker = world.worker("worker", concurrency=4)
    fine = world.submit(base, 5, sleep=0.1)
    world.wait_ended(fine)
    fault = time.time()
    poison = world.submit(base, 1, provider="poison", endpoint="/crash")
    restarts = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with psycopg.connect(world.database_url) as conn:
            row = conn.execute("SELECT completed_at FROM runs WHERE id = %s",
                               (poison[0],)).fetchone()
        if row and row[0] is not None:
            break
        if not worker.alive():  # the platform restarts a crashed dyno
            restarts += 1
            worker = world.worker("worker", concurrency=4)
        time.sleep(0.2)
    after = world.submit(base, 5, sleep=0.1)
    world.wait_ended(after)
    world.check("poison run: workers", fine + after, fault)
    report = world.check("poison run", poison, fault, expect_status="FAILED")
    with psycopg.connect(world.database_url) as conn:
        row = conn.execute("SELECT error->>'code', lost_count FROM runs WHERE id = %s",
                           (poison[0],)).fetchone()
    assert row == ("WORKER_LOST", 3)
    assert restarts == 3, f"the poison run crashed workers {restarts} times"
    assert worker.alive()
    assert report.ended == 1


def _kill_a_worker(world: World, victim: object) -> None:
    victim.signal_group(signal.SIGKILL)  # type: ignore[attr-defined]


def _flush_redis(world: World, victim: object) -> None:
    world.redis.flush_and_restart()


def _restart_postgres(world: World, victim: object) -> None:
    world.pg.stop()
    time.sleep(2)
    world.pg.start()


@pytest.mark.parametrize("fault", [_kill_a_worker, _flush_redis, _restart_postgres],
                         ids=["SIGKILL worker", "Redis flush", "PostgreSQL restart"])
def test_two_callers_waiting_for_a_provider_limit_survive(
        world: World, fault: Callable[[World, object], None]) -> None:
    """Two callers share a fleet and a provider that takes 2 calls at once; each
    caller may have 3 runs worked on at once. Runs wait in PostgreSQL for their
    turn; the fault strikes while some wait and some hold the slots."""
    LIMITED.reset()
    env = {"CALLER_CONCURRENCY": "3"}
    base = world.web(**env)
    victim = world.worker("victim", concurrency=6, **env)
    world.worker("survivor", concurrency=6, **env)
    first = world.submit(base, 10, sleep=[0.4, 0.8], endpoint="/limited")
    second = world.submit(base, 6, sleep=[0.4, 0.8], endpoint="/limited", key=world.other_key)
    second += world.submit(base, 6, sleep=0.3, key=world.other_key)
    ids = first + second
    wait_until_started(world, ids, LIMITED_CONCURRENCY)
    with psycopg.connect(world.database_url) as conn:
        waiting = conn.execute("SELECT count(*) FROM runs WHERE waiting_for IS NOT NULL"
                               ).fetchone()
    fault_at = time.time()
    fault(world, victim)
    world.wait_ended(ids, timeout=120)
    report = world.check(f"2 callers, limit 2, {fault.__name__.strip('_').replace('_', ' ')}",
                         ids, fault_at)
    assert LIMITED.most <= LIMITED_CONCURRENCY, f"{LIMITED.most} calls at once"
    assert report.ended == len(ids)
    assert waiting is not None and waiting[0] > 0, "no run waited for its turn"
    survivors = [p for p in world.processes if p.name == "survivor"]
    assert survivors and survivors[0].alive(), "a worker did not survive the fault"


def in_flight_writes(world: World) -> int:
    """Transactions of other sessions that have written and not yet committed."""
    with psycopg.connect(world.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                           " current_database() AND backend_xid IS NOT NULL"
                           " AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


def test_sigkill_a_worker_mid_write_keeps_one_copy_of_the_items(world: World) -> None:
    with FakeApify(token="chaos-apify-token") as apify:
        apify.add_actor("apidojo~tweet-scraper", run_seconds=0.2,
                        items=SizedDataset(20_000, 1000))  # 20 MB a run
        env = {"CATALOG_DIR": str(DEFAULT_CATALOG_DIR), "APIFY_API_BASE_URL": apify.base_url,
               "APIFY_TOKEN": "chaos-apify-token"}
        base = world.web(**env)
        victim = world.worker("victim", concurrency=4, **env)
        apify.delay = 0.1  # pages come slowly: the kill lands while they are written
        ids = []
        for _ in range(2):
            answer = requests.post(f"{base}/v1/run", timeout=10,
                                   headers={"Authorization": f"Bearer {world.key}"},
                                   json={"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
                                         "input": {"searchTerms": ["AI"]}})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["runId"])
        assert apify.wait_for_count(8, "GET", "/v2/datasets/", timeout=30)
        deadline = time.monotonic() + 10
        while in_flight_writes(world) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_flight_writes(world) >= 1, "no result was being written"
        fault = time.time()
        victim.signal_group(signal.SIGKILL)
        apify.delay = 0.0
        world.worker("survivor", concurrency=4, **env)
        world.wait_ended(ids, timeout=90)
        world.check("SIGKILL worker mid-write", ids, fault)
        assert apify.runs_started() == 2, "an actor run was started twice"
    with psycopg.connect(world.database_url) as conn:
        rows = conn.execute(
            "SELECT r.id, r.result_count, r.lost_count, count(i.seq), count(DISTINCT i.seq),"
            " min(i.seq), max(i.seq), (SELECT count(*) FROM attempts a WHERE a.run_id = r.id)"
            " FROM runs r LEFT JOIN run_items i ON i.run_id = r.id WHERE r.id = ANY(%s)"
            " GROUP BY r.id", (ids,)).fetchall()
    assert sorted(row[1:] for row in rows) == [(20_000, 1, 20_000, 20_000, 0, 19_999, 1)] * 2


# --- webhook deliveries: at least once through kills, flushes and restarts ---------------

WEBHOOK_ENV = {"WEBHOOKS_ALLOW_INSECURE": "true", "WEBHOOK_TIMEOUT_SECONDS": "3",
               "WEBHOOK_RETRY_SCHEDULE": "1,1,2,2,4,4,8,8,8,8"}


def _webhook_receiver(world: World) -> Receiver:
    """A receiver that verifies every delivery, as the chaos caller's standing webhook
    (made in the tables, as POST /v1/webhooks makes one)."""
    receiver = Receiver().start()
    with psycopg.connect(world.database_url) as conn:
        _, secret = insert_standing_webhook(conn, "USER#chaos", receiver.url())
    receiver.secrets.append(secret)
    return receiver


def _in_flight(receiver: Receiver) -> int:
    with receiver.lock:
        return sum(1 for r in receiver.received if r.status is None)


def _wait_in_flight(receiver: Receiver, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _in_flight(receiver) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _in_flight(receiver) >= count, "no delivery was in flight"


def check_deliveries(world: World, receiver: Receiver, scenario: str, ids: list[str],
                     fault_at: float, timeout: float = 120) -> None:
    """Every run's event delivered (DELIVERED, and answered 2xx by the receiver, under
    that event's ID, with a signature it verified); none under two IDs."""
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(world.database_url, connect_timeout=2) as conn:
                rows = conn.execute(
                    "SELECT e.run_id, e.id, d.status, d.attempt_count FROM webhook_events e"
                    " JOIN webhook_deliveries d ON d.event_id = e.id"
                    " WHERE e.run_id = ANY(%s)", (ids,)).fetchall()
        except psycopg.OperationalError:
            rows = []
        if len(rows) == len(ids) and all(r[2] == "DELIVERED" for r in rows):
            break
        time.sleep(0.2)
    event_of = {r[0]: r[1] for r in rows}
    got = receiver.delivered()
    ids_by_run: dict[str, set[str]] = {}
    for r in got:
        ids_by_run.setdefault(r.json["data"]["runId"], set()).add(r.webhook_id)
    late = max((r.time for r in got), default=fault_at) - fault_at
    print(f"\nchaos webhooks {scenario:<22} runs {len(ids)}  delivered "
          f"{sum(r[2] == 'DELIVERED' for r in rows)}  tries {sum(r[3] for r in rows)}  "
          f"answered 2xx {len(got)}  last arrival {late:5.1f} s after the fault")
    assert len(rows) == len(ids), "a run's end wrote no delivery"
    assert all(r[2] == "DELIVERED" for r in rows), f"not delivered: {rows}"
    assert set(ids_by_run) == set(ids), "a delivery never reached the receiver"
    assert all(ids_by_run[run] == {event_of[run]} for run in ids), "an event under two IDs"
    assert all(r.verified for r in receiver.received)


def test_webhooks_a_worker_sigkilled_mid_delivery(world: World) -> None:
    receiver = _webhook_receiver(world)
    first_seen: set[str] = set()

    def hang_first(got: Received) -> Answer:  # each event's first try hangs a while
        with receiver.lock:
            first = got.webhook_id not in first_seen
            first_seen.add(got.webhook_id)
        return Answer(200, delay=2.5) if first else Answer(200)

    receiver.answer = hang_first
    try:
        base = world.web(**WEBHOOK_ENV)
        victim = world.worker("victim", concurrency=4, **WEBHOOK_ENV)
        ids = world.submit(base, 6, sleep=0.1)
        _wait_in_flight(receiver, 2)
        fault = time.time()
        victim.signal_group(signal.SIGKILL)
        world.worker("survivor", concurrency=4, **WEBHOOK_ENV)
        world.wait_ended(ids)
        world.check("webhooks: SIGKILL worker", ids, fault)
        check_deliveries(world, receiver, "SIGKILL mid-delivery", ids, fault)
    finally:
        receiver.release.set()
        receiver.stop()


def test_webhooks_redis_flushed_with_deliveries_pending(world: World) -> None:
    receiver = _webhook_receiver(world)
    receiver.stop()  # down: the deliveries wait for their next try
    try:
        base = world.web(**WEBHOOK_ENV)
        world.worker("worker", concurrency=4, **WEBHOOK_ENV)
        ids = world.submit(base, 10, sleep=0.1)
        world.wait_ended(ids)
        time.sleep(2)  # tried and failed at least once
        fault = time.time()
        world.redis.flush_and_restart()
        receiver.start()
        world.check("webhooks: Redis flush", ids, fault)
        check_deliveries(world, receiver, "Redis flush", ids, fault)
    finally:
        receiver.stop()


def test_webhooks_postgres_restarted_mid_delivery(world: World) -> None:
    receiver = _webhook_receiver(world)
    receiver.answer = lambda _: Answer(200, delay=1.5)
    try:
        base = world.web(**WEBHOOK_ENV)
        world.worker("worker", concurrency=8, **WEBHOOK_ENV)
        ids = world.submit(base, 8, sleep=0.1)
        _wait_in_flight(receiver, 2)
        fault = time.time()
        world.pg.stop()
        time.sleep(2)
        world.pg.start()
        world.wait_ended(ids, timeout=90)
        world.check("webhooks: PostgreSQL restart", ids, fault)
        check_deliveries(world, receiver, "PostgreSQL restart", ids, fault)
    finally:
        receiver.release.set()
        receiver.stop()

"""Fair scheduling on the real database: deadlines from the start, the queue limit,
concurrency slots of callers and providers, runs waiting for them and handed back,
and the exact cap on runs in flight."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import autocommit, make_pool, transaction
from shared.ids import new_run_id
from shared.scheduling import Freed, Limits, RecentStarts, priority_for
from shared.settings import Settings
from tests.helpers import CATALOG, auth
from worker.providers.demo import DemoAdapter
from worker.runner import Runner
from worker.sweeper import Sweeper

A, B, C = "USER#a", "USER#b", "USER#c"


def start(db: ConnectionPool, caller: str, endpoint: str = "/echo",
          input: dict[str, Any] | None = None, *, cap: int = 0,
          queue_timeout: int = 900) -> str:
    found = CATALOG.find("demo", endpoint)
    assert found is not None
    run_id = new_run_id()
    with autocommit(db) as conn:
        store.insert_run(conn, run_id=run_id, caller=caller, api_key_id=None, endpoint=found,
                         input=input or {}, in_flight_cap=cap,
                         queue_timeout_seconds=queue_timeout)
    return run_id


def claim(db: ConnectionPool, run_id: str, limits: Limits, worker: str = "w",
          full: tuple[str, ...] = ()) -> store.Claim | store.Waiting | None:
    """Claim as a worker process does; `full`: the callers it has no thread left for."""
    with autocommit(db) as conn:
        return store.claim_run(conn, run_id, worker=worker, lease_seconds=60, limits=limits,
                               full_callers=full)


def finish(db: ConnectionPool, claimed: store.Claim | store.Waiting | None,
           limits: Limits, caller_freed: bool = False) -> store.Ended:
    assert isinstance(claimed, store.Claim)
    with autocommit(db) as conn:
        ended = store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status="COMPLETED",
                              output={}, result_count=1, cost_micros=0,
                              freed=limits.freed(claimed.provider, claimed.endpoint,
                                                 caller=caller_freed))
    assert ended is not None
    return ended


def row(db: ConnectionPool, run_id: str) -> dict[str, Any]:
    with autocommit(db) as conn:
        found = conn.execute("SELECT status, waiting_for, attempt_count, started_at, deadline_at,"
                             " created_at, error, cost_micros FROM runs WHERE id = %s",
                             (run_id,)).fetchone()
    assert found is not None
    return found


def sweeper(settings: Settings, db: ConnectionPool, limits: Limits,
            published: list[tuple[str, int]] | None = None) -> Sweeper:
    sink = published if published is not None else []
    return Sweeper(settings=settings, pool=db, catalog=CATALOG, adapters={"demo": DemoAdapter()},
                   limits=limits,
                   publish=lambda run_id, priority, _name: sink.append((run_id, priority)))


# --- deadlines and the queue limit ----------------------------------------------------------


def test_the_deadline_starts_when_the_run_starts(db: ConnectionPool) -> None:
    run_id = start(db, A, "/echo", queue_timeout=600)
    queued = row(db, run_id)
    assert queued["started_at"] is None
    # Until it starts, the run's deadline is its queue limit.
    assert abs((queued["deadline_at"] - queued["created_at"]).total_seconds() - 600) < 1
    with transaction(db) as conn:  # it waited 50 s in the queue
        conn.execute("UPDATE runs SET created_at = created_at - interval '50 seconds'"
                     " WHERE id = %s", (run_id,))
    claimed = claim(db, run_id, Limits())
    assert isinstance(claimed, store.Claim)
    started = row(db, run_id)
    # /echo's deadline is 60 s, counted from the start, not from the accept.
    assert abs((started["deadline_at"] - started["started_at"]).total_seconds() - 60) < 1
    assert started["deadline_at"] > datetime.now(UTC) + timedelta(seconds=55)


def test_a_run_that_could_not_start_in_time_ends_queue_timeout(
        db: ConnectionPool, settings: Settings) -> None:
    with transaction(db) as conn:
        store.credit_wallet(conn, A, 1_000_000)
    paid = CATALOG.find("demo", "/echo")
    assert paid is not None
    run_id = new_run_id()
    with autocommit(db) as conn:
        store.insert_run(conn, run_id=run_id, caller=A, api_key_id=None, endpoint=paid,
                         input={}, hold_micros=250_000, queue_timeout_seconds=1)
        conn.execute("UPDATE runs SET deadline_at = now() - interval '1 ms' WHERE id = %s",
                     (run_id,))
    # A worker that gets it now does not start it...
    assert claim(db, run_id, Limits()) is None
    # ...and the sweeper ends it.
    report = sweeper(settings, db, Limits()).sweep()
    assert report.ended == {run_id: "TIMED_OUT"}
    ended = row(db, run_id)
    assert ended["error"]["code"] == "QUEUE_TIMEOUT"
    assert ended["cost_micros"] == 0 and ended["started_at"] is None
    with autocommit(db) as conn:
        assert store.get_wallet(conn, A) == store.Wallet(A, 1_000_000, 0)


# --- a caller's slots ------------------------------------------------------------------------


def test_a_run_with_no_thread_of_its_callers_waits_and_is_handed_back_when_one_frees(
        db: ConnectionPool) -> None:
    limits = Limits(caller=2)
    first, second, third = (start(db, A) for _ in range(3))
    other = start(db, B)
    one, two = claim(db, first, limits), claim(db, second, limits)
    assert isinstance(one, store.Claim) and isinstance(two, store.Claim)
    # The worker process now has no thread left for A.
    waiting = claim(db, third, limits, full=(A,))
    assert waiting == store.Waiting(third, "caller")
    parked = row(db, third)
    # Waiting is not an attempt, and the run has not started.
    assert parked["waiting_for"] == "caller" and parked["attempt_count"] == 0
    assert parked["started_at"] is None and parked["status"] == "RUNNING"
    # Another caller is not held up by A's limit.
    assert isinstance(claim(db, other, limits, full=(A,)), store.Claim)
    # A delivery of the waiting run's message again changes nothing.
    assert claim(db, third, limits, full=(A,)) == store.Waiting(third, "caller")
    # An end that frees none of A's threads hands nothing back...
    assert finish(db, two, limits).woken == ()
    # ...one that does hands back A's oldest waiting run.
    ended = finish(db, one, limits, caller_freed=True)
    assert [w.run_id for w in ended.woken] == [third]
    assert row(db, third)["waiting_for"] is None
    assert isinstance(claim(db, third, limits), store.Claim)


def test_two_ends_at_once_hand_back_two_waiting_runs(db: ConnectionPool) -> None:
    """Two runs of a caller ending together each hand back one of its waiting runs:
    the second wake neither waits for the first nor hands back nothing."""
    limits = Limits(caller=1)
    running = [start(db, A) for _ in range(2)]
    parked = [start(db, A) for _ in range(3)]
    for run_id in running:
        assert isinstance(claim(db, run_id, limits), store.Claim)
    for run_id in parked:
        assert claim(db, run_id, limits, full=(A,)) == store.Waiting(run_id, "caller")
    with transaction(db) as first:
        # The first wake holds the oldest waiting run and has not committed yet.
        woken_first = store.wake_callers_run(first, A)
        assert [w.run_id for w in woken_first] == [parked[0]]
        second: list[tuple[store.Woken, ...]] = []
        wake = threading.Thread(target=lambda: second.append(
            _wake_in_own_transaction(db, A)))
        wake.start()
        wake.join(timeout=5)
        assert not wake.is_alive(), "the second wake waited for the first"
    assert [w.run_id for w in second[0]] == [parked[1]]
    assert [row(db, run_id)["waiting_for"] for run_id in parked] == [None, None, "caller"]


def _wake_in_own_transaction(db: ConnectionPool, caller: str) -> tuple[store.Woken, ...]:
    with transaction(db) as conn:
        return store.wake_callers_run(conn, caller)


def test_a_stop_ends_a_waiting_run_at_once(db: ConnectionPool) -> None:
    limits = Limits(caller=1)
    held, waiting = start(db, A), start(db, A)
    assert isinstance(claim(db, held, limits), store.Claim)
    assert isinstance(claim(db, waiting, limits, full=(A,)), store.Waiting)
    with transaction(db) as conn:
        stop = store.request_stop(conn, waiting, A)
        assert stop is not None and not stop.held and not stop.following
        assert store.end_unheld_run(conn, waiting, status="STOPPED", error=None,
                                    outcome="STOPPED", message="stopped on request")
    stopped = row(db, waiting)
    assert stopped["status"] == "STOPPED" and stopped["waiting_for"] is None


def test_concurrent_claims_never_pass_a_providers_limit(db: ConnectionPool) -> None:
    limits = Limits(by_key={"demo": 5})
    ids = [start(db, caller) for caller in (A, B, C, "USER#d") for _ in range(10)]
    results: list[Any] = []
    lock = threading.Lock()

    def take(run_id: str) -> None:
        got = claim(db, run_id, limits, worker=f"w{run_id[-4:]}")
        with lock:
            results.append(got)

    threads = [threading.Thread(target=take, args=(run_id,)) for run_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(r, store.Claim) for r in results) == 5
    assert sum(isinstance(r, store.Waiting) for r in results) == 35


# --- a provider's slots ----------------------------------------------------------------------


def test_a_provider_limit_holds_across_callers_and_callers_take_turns(
        db: ConnectionPool) -> None:
    limits = Limits(by_key={"demo/sleep": 1})
    a_runs = [start(db, A, "/sleep", {"seconds": 0}) for _ in range(3)]
    b_run = start(db, B, "/sleep", {"seconds": 0})
    c_run = start(db, C, "/sleep", {"seconds": 0})
    holder = claim(db, a_runs[0], limits)
    assert isinstance(holder, store.Claim)
    for run_id in [*a_runs[1:], b_run, c_run]:
        assert claim(db, run_id, limits) == store.Waiting(run_id, "endpoint:demo/sleep")
    # /echo is not under the limit of /sleep.
    assert isinstance(claim(db, start(db, A), limits), store.Claim)
    order = []
    current = holder
    for _ in range(4):
        woken = finish(db, current, limits).woken
        assert len(woken) == 1
        order.append(woken[0].caller)
        current = claim(db, woken[0].run_id, limits)
    # A's run just ended: the next turns go to the callers that have not had one,
    # then back to A: never A's whole backlog first.
    assert order[:2] in ([B, C], [C, B]) and order[2] == A
    assert order[3] in (B, C, A)


def test_the_sweeper_fills_a_slot_freed_by_a_worker_that_died(
        db: ConnectionPool, settings: Settings) -> None:
    limits = Limits(by_key={"demo": 1})
    held, waiting = start(db, A), start(db, B)
    assert isinstance(claim(db, held, limits), store.Claim)
    assert isinstance(claim(db, waiting, limits), store.Waiting)
    published: list[tuple[str, int]] = []
    sweep = sweeper(settings, db, limits, published)
    assert sweep.sweep().woken == []  # the slot is still held
    with transaction(db) as conn:  # its worker died: the lease runs out
        conn.execute("UPDATE runs SET lease_expires_at = now() - interval '1 s' WHERE id = %s",
                     (held,))
    report = sweep.sweep()
    assert report.released == [held]
    assert report.woken == [waiting]
    assert (waiting, priority_for(1)) in published


def test_a_limit_taken_away_lets_every_waiting_run_go(db: ConnectionPool,
                                                      settings: Settings) -> None:
    strict = Limits(by_key={"demo": 1})
    held = start(db, A)
    assert isinstance(claim(db, held, strict), store.Claim)
    waiting = [start(db, A) for _ in range(3)]
    for run_id in waiting:
        assert isinstance(claim(db, run_id, strict), store.Waiting)
    # The deployment drops the limit: the sweeper hands every waiting run back.
    assert sorted(sweeper(settings, db, Limits()).sweep().woken) == sorted(waiting)


def test_a_run_waiting_for_a_thread_is_left_to_its_caller_then_handed_back_by_the_sweeper(
        db: ConnectionPool, settings: Settings) -> None:
    limits = Limits(caller=1)
    held, waiting = start(db, A), start(db, A)
    assert isinstance(claim(db, held, limits), store.Claim)
    assert isinstance(claim(db, waiting, limits, full=(A,)), store.Waiting)
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET created_at = created_at - interval '1 hour'")
    report = sweeper(settings, db, limits).sweep()
    # Just parked: the caller's own runs hand it back as they end.
    assert waiting not in report.published and report.woken == []
    with transaction(db) as conn:  # nothing moved it for longer than the grace
        conn.execute("UPDATE runs SET updated_at = now() - interval '1 hour'"
                     " WHERE id = %s", (waiting,))
    published: list[tuple[str, int]] = []
    assert sweeper(settings, db, limits, published).sweep().woken == [waiting]
    assert [run_id for run_id, _ in published] == [waiting]


def blocking(run_id: str) -> tuple[DemoAdapter, threading.Event, threading.Event]:
    """The demo provider, holding the call of `run_id` (`calling` set) until `release`."""
    calling, release = threading.Event(), threading.Event()

    class Blocks(DemoAdapter):
        def call(self, request: Any) -> Any:
            if request.run_id == run_id:
                calling.set()
                release.wait(10)
            return super().call(request)

    return Blocks(), calling, release


def test_a_worker_process_gives_a_caller_no_more_threads_than_its_limit(
        db: ConnectionPool, settings: Settings) -> None:
    """Per worker process: a caller's second run waits while its first holds the one
    thread it may have; the first's end hands the second back."""
    limits = Limits(caller=1)
    first, second, other = start(db, A), start(db, A), start(db, B)
    published: list[tuple[str, float | None, int]] = []
    blocks, calling, release = blocking(first)
    runner = Runner(settings=settings, pool=db, catalog=CATALOG, adapters={"demo": blocks},
                    limits=limits,
                    publish=lambda run_id, countdown, priority, _name: published.append(
                        (run_id, countdown, priority)))
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run(first)))
    thread.start()
    assert calling.wait(10)
    assert runner.run(second) == "waiting"
    assert runner.run(other) == "completed"  # B has threads of its own
    assert published == []
    release.set()
    thread.join(10)
    assert outcome == ["completed"]
    assert [p[0] for p in published] == [second]
    assert runner.run(second) == "completed"


def test_a_run_over_its_callers_threads_waits_in_the_process_for_one_before_parking(
        db: ConnectionPool, settings: Settings) -> None:
    """A caller's second run waits in the worker process while its first holds the one
    thread it may have, and starts as that thread frees: never parked, nothing handed
    back or published. One run may wait so at once: another of the caller's is parked
    at once, and other callers' runs go on meanwhile."""
    limits = Limits(caller=1, caller_wait=10.0, caller_waiters=1)
    first, second, third, other = start(db, A), start(db, A), start(db, A), start(db, B)
    published: list[str] = []
    blocks, calling, release = blocking(first)
    runner = Runner(settings=settings, pool=db, catalog=CATALOG, adapters={"demo": blocks},
                    limits=limits, publish=lambda run_id, *_: published.append(run_id))
    outcomes: dict[str, str] = {}

    def run(run_id: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: outcomes.__setitem__(run_id,
                                                                      runner.run(run_id)))
        thread.start()
        return thread

    threads = [run(first)]
    assert calling.wait(10)
    threads.append(run(second))
    deadline = time.monotonic() + 10
    while runner._local_waiters < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner._local_waiters == 1 and second not in outcomes
    assert row(db, second)["waiting_for"] is None and row(db, second)["started_at"] is None
    assert runner.run(third) == "waiting"  # the one place to wait is taken: parked
    assert runner.run(other) == "completed"  # B has threads of its own
    release.set()
    for thread in threads:
        thread.join(10)
    assert outcomes == {first: "completed", second: "completed"}
    assert row(db, second)["attempt_count"] == 1
    # The first's end handed the parked third back; the second was never parked.
    assert published == [third]
    assert runner.run(third) == "completed"


def test_a_run_waiting_in_the_process_is_parked_when_no_thread_frees_in_time(
        db: ConnectionPool, settings: Settings) -> None:
    limits = Limits(caller=1, caller_wait=0.3, caller_waiters=4)
    first, second = start(db, A), start(db, A)
    blocks, calling, release = blocking(first)
    runner = Runner(settings=settings, pool=db, catalog=CATALOG, adapters={"demo": blocks},
                    limits=limits, publish=lambda *_: None)
    thread = threading.Thread(target=runner.run, args=(first,))
    thread.start()
    assert calling.wait(10)
    began = time.monotonic()
    assert runner.run(second) == "waiting"
    assert 0.25 <= time.monotonic() - began < 5
    assert row(db, second)["waiting_for"] == "caller"
    assert runner._local_waiters == 0 and runner._thread_freed == {}
    release.set()
    thread.join(10)


def test_every_thread_a_caller_frees_hands_back_one_of_its_waiting_runs(
        db: ConnectionPool, settings: Settings) -> None:
    """Both of a caller's threads free before the run the first handed back is taken:
    the second hands back another, and so on until none waits: none is left parked
    while the caller has threads free."""
    limits = Limits(caller=2)
    running = [start(db, A) for _ in range(2)]
    parked = [start(db, A) for _ in range(3)]
    published: list[str] = []
    calling = {run_id: threading.Event() for run_id in running}
    release = {run_id: threading.Event() for run_id in running}

    class Blocks(DemoAdapter):
        def call(self, request: Any) -> Any:
            if request.run_id in release:
                calling[request.run_id].set()
                release[request.run_id].wait(10)
            return super().call(request)

    runner = Runner(settings=settings, pool=db, catalog=CATALOG, adapters={"demo": Blocks()},
                    limits=limits, publish=lambda run_id, *_: published.append(run_id))
    threads = [threading.Thread(target=runner.run, args=(run_id,)) for run_id in running]
    for thread, run_id in zip(threads, running, strict=True):
        thread.start()
        assert calling[run_id].wait(10)
    assert [runner.run(run_id) for run_id in parked] == ["waiting"] * 3
    for thread, run_id in zip(threads, running, strict=True):
        release[run_id].set()
        thread.join(10)
    # Each end handed one back, although the first one's was not taken yet.
    assert published == parked[:2]
    assert runner.run(parked[0]) == "completed"
    assert published == parked
    assert [runner.run(run_id) for run_id in parked[1:]] == ["completed"] * 2
    assert all(row(db, run_id)["status"] == "COMPLETED" for run_id in running + parked)
    # Nothing waits any more: the caller's ends stop asking.
    assert A not in runner._waiting_callers


# --- the exact cap on runs in flight ----------------------------------------------------------


def test_two_hundred_parallel_starts_never_pass_the_cap(db: ConnectionPool) -> None:
    echo = CATALOG.find("demo", "/echo")
    assert echo is not None
    for _ in range(40):
        start(db, A, cap=100)
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def accept_many() -> None:
        barrier.wait()
        for _ in range(4):
            try:
                with autocommit(db) as conn:
                    store.insert_run(conn, run_id=new_run_id(), caller=A, api_key_id=None,
                                     endpoint=echo, input={}, in_flight_cap=100)
                outcome = "accepted"
            except store.TooManyRunsInFlight:
                outcome = "refused"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=accept_many) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("accepted") == 60 and outcomes.count("refused") == 140
    with autocommit(db) as conn:
        open_runs = conn.execute("SELECT count(*) AS n FROM runs WHERE caller = %s"
                                 " AND completed_at IS NULL", (A,)).fetchone()
    assert open_runs == {"n": 100}


def test_ending_a_run_makes_room_under_the_cap(db: ConnectionPool) -> None:
    limits = Limits()
    first = start(db, A, cap=1)
    with pytest.raises(store.TooManyRunsInFlight):
        start(db, A, cap=1)
    finish(db, claim(db, first, limits), limits)
    start(db, A, cap=1)


def test_a_web_process_counts_the_runs_a_caller_started_lately() -> None:
    now = [0.0]
    recent = RecentStarts(window=10.0, clock=lambda: now[0])
    assert [recent.note(A) for _ in range(4)] == [1, 2, 3, 4]
    assert recent.note(B) == 1
    now[0] = 5.0
    assert recent.note(A) == 5
    now[0] = 10.5  # the first four are past the window
    assert recent.note(A) == 2
    for _ in range(500):  # no more than the priorities need is kept
        recent.note(C)
    assert recent.note(C) == 101 and priority_for(recent.note(C)) == 9
    now[0] = 30.0
    assert recent.note(B) == 1


def test_a_number_taken_by_a_concurrent_accept_is_tried_again(db: ConnectionPool) -> None:
    """Two accepts that pick the same number: the index refuses the second, which
    takes another (here the only other) number, inside the Idempotency-Key's
    transaction too."""
    echo = CATALOG.find("demo", "/echo")
    assert echo is not None
    with transaction(db) as conn:
        store.insert_run(conn, run_id=new_run_id(), caller=A, api_key_id=None, endpoint=echo,
                         input={}, in_flight_cap=2)
        store.insert_run(conn, run_id=new_run_id(), caller=A, api_key_id=None, endpoint=echo,
                         input={}, in_flight_cap=2)
        with pytest.raises(store.TooManyRunsInFlight):
            store.insert_run(conn, run_id=new_run_id(), caller=A, api_key_id=None,
                             endpoint=echo, input={}, in_flight_cap=2)
        slots = conn.execute("SELECT array_agg(inflight_slot ORDER BY inflight_slot) AS s"
                             " FROM runs").fetchone()
    assert slots == {"s": [0, 1]}


@pytest.mark.parametrize(("open_runs", "priority"), [
    (None, 0), (1, 0), (3, 0), (4, 3), (30, 3), (31, 6), (100, 6), (101, 9), (10**6, 9)])
def test_a_callers_backlog_lowers_its_messages_priority(open_runs: int | None,
                                                        priority: int) -> None:
    assert priority_for(open_runs) == priority


def test_what_a_run_frees() -> None:
    limits = Limits(caller=3, by_key={"apify": 5, "apify/x/y": 2})
    assert limits.freed("apify", "/x/y") == Freed(False, 5, 2)
    assert limits.freed("demo", "/echo", caller=True) == Freed(True, 0, 0)
    assert not limits.freed("demo", "/echo").wake
    assert limits.for_slot("caller") == 3
    assert limits.for_slot("provider:apify") == 5
    assert limits.for_slot("endpoint:apify/x/y") == 2
    assert limits.for_slot("endpoint:apify/gone") == 0


def test_stopping_a_run_that_waits_for_its_turn_ends_it_at_once(
        client: FlaskClient, key: str, db: ConnectionPool) -> None:
    limits = Limits(caller=1)
    body = {"provider": "demo", "endpoint": "/echo", "input": {}}
    held, waiting = (client.post("/v1/run", json=body, headers=auth(key)).get_json()["runId"]
                     for _ in range(2))
    assert isinstance(claim(db, held, limits), store.Claim)
    assert isinstance(claim(db, waiting, limits, full=("USER#user_abc123",)), store.Waiting)
    stop = client.post(f"/v1/runs/{waiting}/stop", headers=auth(key))
    assert stop.status_code == 202
    run = client.get(f"/v1/runs/{waiting}", headers=auth(key)).get_json()
    assert run["status"] == "STOPPED" and run["startedAt"] is None
    assert run["cost"] == {"value": 0, "currency": "USD"} and run["attempts"] == []


def test_a_delivered_result_hands_back_the_run_waiting_for_its_slot(
        db: ConnectionPool, settings: Settings) -> None:
    """The delivery path (items written and the run ended in one statement) frees
    slots as end_run does."""
    limits = Limits(caller=1)
    published: list[tuple[str, float | None, int]] = []
    first, waiting = start(db, A), start(db, A)
    parked: list[Any] = []
    runner: Runner

    class ParksAnotherRunMeanwhile(DemoAdapter):
        def call(self, request: Any) -> Any:
            # The process's one thread for A is taken: A's other run waits.
            parked.append(runner.run(waiting))
            return super().call(request)

    runner = Runner(settings=settings, pool=db, catalog=CATALOG,
                    adapters={"demo": ParksAnotherRunMeanwhile()}, limits=limits,
                    publish=lambda run_id, countdown, priority, _name: published.append(
                        (run_id, countdown, priority)))
    assert runner.run(first) == "completed"
    assert parked == ["waiting"]
    assert [p[0] for p in published] == [waiting]
    assert isinstance(claim(db, waiting, limits), store.Claim)


def test_a_run_parked_just_after_a_thread_freed_is_not_left_waiting(
        db: ConnectionPool, settings: Settings) -> None:
    """The end's statement looked for a waiting run before this one was parked, and
    the worker still counted the ending run's thread when it parked it: the end sees
    the park afterwards and hands the run back itself."""
    limits = Limits(caller=1)
    first, second = start(db, A), start(db, A)
    published: list[str] = []
    outcomes: list[str] = []

    class Racing(Runner):
        def _publish_woken(self, woken: tuple[store.Woken, ...]) -> None:
            if not outcomes:  # the first run's end: its statement is done
                outcomes.append(self.run(second))  # parked: the thread is not free yet
            super()._publish_woken(woken)

    runner = Racing(settings=settings, pool=db, catalog=CATALOG,
                    adapters={"demo": DemoAdapter()}, limits=limits,
                    publish=lambda run_id, *_: published.append(run_id))
    assert runner.run(first) == "completed"
    assert outcomes == ["waiting"]
    assert published == [second]
    assert row(db, second)["waiting_for"] is None


def _scans_of_runs(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if node.get("Relation Name") == "runs" and "Scan" in node["Node Type"] \
        else []
    for child in node.get("Plans", []):
        found.extend(_scans_of_runs(child))
    return found


def test_the_probes_of_free_numbers_read_one_row_each_whatever_the_statistics(
        db: ConnectionPool, settings: Settings) -> None:
    """After statistics that saw no open run (a quiet night, or a new database), the
    planner took every open run's index for empty and answered the four probes of free
    numbers by reading all of it once: an accept read every open run of every caller
    until the next ANALYZE. Each probe is a lookup of its own: each reads at most one
    row, prepared or not, however many runs are open."""
    echo = CATALOG.find("demo", "/echo")
    assert echo is not None
    # A pool of the web's connections (prepared from the first execution, generic plans
    # when PostgreSQL finds them no dearer), of its own: the settings below stay on it.
    own = make_pool(settings.database_url, max_size=1, name="probes")
    own.open(wait=True)
    try:
        with autocommit(own) as conn:
            conn.execute("ANALYZE runs")  # the clean slate: no run open
            for caller in (A, B):
                for _ in range(300):
                    store.insert_run(conn, run_id=new_run_id(), caller=caller, api_key_id=None,
                                     endpoint=echo, input={}, in_flight_cap=100_000)
            try:
                conn.execute("LOAD 'auto_explain'")
            except psycopg.Error:
                pytest.skip("this PostgreSQL has no auto_explain")
            for setting in ("log_min_duration = 0", "log_analyze = on", "log_format = json",
                            "log_level = notice"):
                conn.execute(f"SET auto_explain.{setting}")
            plans: list[dict[str, Any]] = []
            conn.add_notice_handler(lambda notice: plans.append(
                json.loads(notice.message_primary.partition("plan:")[2])["Plan"]))
            for mode in ("auto", "force_generic_plan", "force_custom_plan"):
                conn.execute(f"SET plan_cache_mode = {mode}")
                plans.clear()
                for _ in range(3):
                    store.insert_run(conn, run_id=new_run_id(), caller=A, api_key_id=None,
                                     endpoint=echo, input={}, in_flight_cap=100_000)
                tried = [p for plan in plans for p in plan.get("Plans", [])
                         if p.get("Subplan Name") == "CTE tried"]
                assert len(tried) == 3, (mode, plans)
                for probe in tried:
                    scans = _scans_of_runs(probe)
                    assert scans, (mode, probe)
                    assert all(s["Actual Rows"] <= 1 and s["Actual Loops"] <= 4 for s in scans), \
                        (mode, scans)
    finally:
        own.close()

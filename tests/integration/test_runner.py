"""The runner against the real database: claim, call, record; guarded writes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import transaction
from shared.ids import new_run_id
from shared.settings import Settings
from tests.helpers import CATALOG, insert_demo_run
from worker.providers.base import Pending, ProviderCall, ProviderResult
from worker.providers.demo import DemoAdapter
from worker.retry import RetryPolicy
from worker.runner import Runner


class CountingAdapter:
    """A provider that counts its calls, around the demo adapter."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.inner = DemoAdapter()
        self.lock = threading.Lock()

    def call(self, request: ProviderCall) -> ProviderResult | Pending:
        with self.lock:
            self.calls.append((request.run_id, request.attempt))
        return self.inner.call(request)

    def abort(self, request: ProviderCall) -> None:
        pass


@pytest.fixture
def published() -> list[tuple[str, float | None]]:
    return []


@pytest.fixture
def adapter() -> CountingAdapter:
    return CountingAdapter()


@pytest.fixture
def runner(settings: Settings, db: ConnectionPool, adapter: CountingAdapter,
           published: list[tuple[str, float | None]]) -> Runner:
    return Runner(settings=settings, pool=db, catalog=CATALOG, adapters={"demo": adapter},
                  publish=lambda run_id, countdown, *_: published.append((run_id, countdown)),
                  name="test-worker")


def read_run(pool: ConnectionPool, run_id: str) -> store.Run:
    with transaction(pool) as conn:
        run = store.get_run(conn, run_id, "USER#u")
    assert run is not None
    return run


def test_a_run_is_claimed_called_and_recorded(runner: Runner, db: ConnectionPool,
                                              adapter: CountingAdapter) -> None:
    run_id = insert_demo_run(db, "/echo", {"body": {"q": "x"}})
    assert runner.run(run_id) == "completed"
    run = read_run(db, run_id)
    assert run.status == "COMPLETED"
    assert run.output == {"q": "x"}
    assert run.input == {"body": {"q": "x"}}
    assert run.result_count == 1
    assert run.provider_response == {"httpStatus": 200}
    assert run.cost_micros == 0
    assert run.started_at is not None and run.completed_at is not None
    assert [a["outcome"] for a in run.attempts] == ["OK"]
    assert adapter.calls == [(run_id, 1)]


def test_a_second_delivery_finds_nothing_to_claim(runner: Runner, db: ConnectionPool,
                                                  adapter: CountingAdapter) -> None:
    run_id = insert_demo_run(db, "/echo", {"a": 1})
    assert runner.run(run_id) == "completed"
    assert runner.run(run_id) == "skipped"
    assert runner.run(new_run_id()) == "skipped"  # a message for a run that does not exist
    assert len(adapter.calls) == 1


def test_concurrent_deliveries_call_the_provider_once(runner: Runner, db: ConnectionPool,
                                                      adapter: CountingAdapter) -> None:
    run_id = insert_demo_run(db, "/sleep", {"seconds": 0.3})
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(runner.run(run_id)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["completed"] + ["skipped"] * 7
    assert adapter.calls == [(run_id, 1)]


def test_a_transient_error_schedules_a_retry_then_succeeds(
        runner: Runner, db: ConnectionPool, published: list[tuple[str, float | None]]) -> None:
    run_id = insert_demo_run(db, "/fail", {"status": 503, "times": 1})
    assert runner.run(run_id) == "retry"
    run = read_run(db, run_id)
    assert run.status == "RUNNING"
    assert run.attempts[0]["outcome"] == "TRANSIENT_ERROR"
    assert run.attempts[0]["httpStatus"] == 503
    assert run.attempts[0]["nextAttemptAt"] is not None
    assert published and published[0][0] == run_id
    countdown = published[0][1]
    assert countdown is not None and 0 <= countdown <= 1.0
    # A delivery before the retry is due puts the message back instead of running early.
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET next_attempt_at = now() + interval '30 seconds'"
                     " WHERE id = %s", (run_id,))
    assert runner.run(run_id) == "early"
    assert published[-1][0] == run_id and 29 < (published[-1][1] or 0) <= 30
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET next_attempt_at = now() WHERE id = %s", (run_id,))
    assert runner.run(run_id) == "completed"
    run = read_run(db, run_id)
    assert [a["outcome"] for a in run.attempts] == ["TRANSIENT_ERROR", "OK"]
    assert run.attempt_count == 2


def test_the_runner_does_what_its_retry_policy_says(
        settings: Settings, db: ConnectionPool, adapter: CountingAdapter,
        published: list[tuple[str, float | None]]) -> None:
    """A policy that keeps every wait in PostgreSQL: the retry is scheduled there and
    nothing is published (the sweeper publishes it when due); with no backoff, it is
    due at once."""
    runner = Runner(settings=settings, pool=db, catalog=CATALOG, adapters={"demo": adapter},
                    publish=lambda run_id, countdown, *_: published.append((run_id, countdown)),
                    name="test-worker",
                    policy=RetryPolicy(base_seconds=0.0, max_seconds=0.0,
                                       long_wait_seconds=-1.0))
    run_id = insert_demo_run(db, "/fail", {"status": 503, "times": 1})
    assert runner.run(run_id) == "retry"
    assert published == []
    with transaction(db) as conn:
        row = conn.execute("SELECT next_attempt_at <= now() AS due, last_published_at"
                           " FROM runs WHERE id = %s", (run_id,)).fetchone()
    assert row == {"due": True, "last_published_at": None}
    assert runner.run(run_id) == "completed"
    assert [a["outcome"] for a in read_run(db, run_id).attempts] == ["TRANSIENT_ERROR", "OK"]


def _drain(runner: Runner, db: ConnectionPool, run_id: str) -> None:
    for _ in range(10):
        with transaction(db) as conn:
            conn.execute("UPDATE runs SET next_attempt_at = now() WHERE id = %s"
                         " AND next_attempt_at IS NOT NULL", (run_id,))
        if runner.run(run_id) != "retry":
            return


def test_retries_stop_at_the_endpoints_maximum(runner: Runner, db: ConnectionPool,
                                               adapter: CountingAdapter) -> None:
    run_id = insert_demo_run(db, "/fail", {"status": 500})
    _drain(runner, db, run_id)
    run = read_run(db, run_id)
    assert run.status == "FAILED"
    assert run.error["source"] == "provider"
    assert run.attempt_count == 5 == len(adapter.calls)
    assert runner.run(run_id) == "skipped"


def test_a_permanent_error_completes_with_the_providers_answer(
        runner: Runner, db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/fail", {"status": 422})
    assert runner.run(run_id) == "completed"
    run = read_run(db, run_id)
    assert run.status == "COMPLETED"
    assert run.provider_response["httpStatus"] == 422
    assert run.cost_micros == 0
    assert run.output is None


def test_a_run_past_its_deadline_is_timed_out(runner: Runner, db: ConnectionPool,
                                              adapter: CountingAdapter) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    with transaction(db) as conn:  # started earlier, and its deadline has passed since
        conn.execute("UPDATE runs SET started_at = now() - interval '2 seconds',"
                     " deadline_at = now() - interval '1 second' WHERE id = %s", (run_id,))
    assert runner.run(run_id) == "timed_out"
    assert read_run(db, run_id).status == "TIMED_OUT"
    assert adapter.calls == []


def test_a_late_writer_cannot_overwrite_a_newer_state(runner: Runner, db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    with transaction(db) as conn:
        stale = store.claim_run(conn, run_id, worker="old", lease_seconds=60)
    assert stale is not None
    # The lease is taken over (as the sweeper will do for an expired lease).
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET lease_token = NULL WHERE id = %s", (run_id,))
        fresh = store.claim_run(conn, run_id, worker="new", lease_seconds=60)
    assert fresh is not None and fresh.attempt == 2
    with transaction(db) as conn:
        assert not store.end_run(conn, stale, store.AttemptEnd("OK", 200), status="COMPLETED",
                                 output={"stale": True})
        assert store.schedule_retry(conn, stale, store.AttemptEnd("TRANSIENT_ERROR"), 1,
                                    published=True) is None
        assert store.end_run(conn, fresh, store.AttemptEnd("OK", 200), status="COMPLETED",
                             output={"fresh": True})
        assert not store.end_run(conn, fresh, store.AttemptEnd("OK", 200), status="FAILED")
    run = read_run(db, run_id)
    assert run.status == "COMPLETED" and run.output == {"fresh": True}


def test_an_endpoint_gone_from_the_catalog_fails_the_run(
        settings: Settings, db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET endpoint = '/gone' WHERE id = %s", (run_id,))
    runner = Runner(settings=settings, pool=db, catalog=CATALOG, adapters={},
                    publish=lambda *_: None)
    assert runner.run(run_id) == "failed"
    with transaction(db) as conn:
        row = conn.execute("SELECT status, error FROM runs WHERE id = %s", (run_id,)).fetchone()
    assert row is not None
    assert row["status"] == "FAILED" and row["error"]["source"] == "platform"


def test_an_adapter_crash_is_a_platform_failure(settings: Settings, db: ConnectionPool) -> None:
    class Broken:
        def call(self, request: ProviderCall) -> ProviderResult:
            raise RuntimeError("secret detail")

        def abort(self, request: ProviderCall) -> None:
            pass

    run_id = insert_demo_run(db, "/echo", {})
    broken: Callable[..., Any] = Broken  # keep mypy quiet about the protocol
    runner = Runner(settings=settings, pool=db, catalog=CATALOG, adapters={"demo": broken()},
                    publish=lambda *_: None)
    assert runner.run(run_id) == "failed"
    run = read_run(db, run_id)
    assert run.error["source"] == "platform"
    assert "secret detail" not in str(run.error)

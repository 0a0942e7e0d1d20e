"""GET /metrics with the Flask test client: the exposition, what the web counts in
process, what it reads from PostgreSQL and Redis at scrape time, and what it
answers when one of them is down."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import ConnectionPool

from api import metrics
from api.app import create_app
from shared import store
from shared.db import transaction
from shared.ids import new_run_id
from shared.queue import QUEUE, queue_key
from shared.scheduling import Limits
from shared.settings import Settings
from tests.helpers import CATALOG, UNREACHABLE_DATABASE, UNREACHABLE_REDIS, auth, insert_demo_run
from worker.providers.demo import DemoAdapter
from worker.runner import Runner

ECHO = {"provider": "demo", "endpoint": "/echo", "input": {"message": "hi"}}

Labels = dict[str, str]


# --- helpers ----------------------------------------------------------------


def with_metrics(app: Flask) -> Flask:
    """The app with /metrics, whether or not create_app adds it already."""
    if "/metrics" not in {rule.rule for rule in app.url_map.iter_rules()}:
        metrics.init_app(app)
    return app


class Scrape:
    """One exposition, parsed."""

    def __init__(self, client: FlaskClient) -> None:
        resp = client.get("/metrics")
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.mimetype == "text/plain"
        self.text = resp.get_data(as_text=True)
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}

    def value(self, name: str, **labels: str) -> float | None:
        """The sample `name` with exactly these labels (le included), or None."""
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def get(self, name: str, **labels: str) -> float:
        found = self.value(name, **labels)
        assert found is not None, f"no {name}{labels} in:\n{self.text}"
        return found

    def buckets(self, name: str) -> list[tuple[float, float]]:
        found = [(float(s.labels["le"]), float(s.value))
                 for f in self.families.values() for s in f.samples
                 if s.name == f"{name}_bucket"]
        assert found, f"no {name}_bucket in:\n{self.text}"
        return sorted(found)


@pytest.fixture
def make_app(settings: Settings, db: ConnectionPool) -> Iterator[Callable[..., Flask]]:
    """An app with /metrics from the test settings and these changes to them; closed after."""
    made: list[Flask] = []

    def make(**changes: Any) -> Flask:
        changes.setdefault("metrics_cache_seconds", 0.0)
        app = with_metrics(create_app(dataclasses.replace(settings, **changes)))
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["monid"].pool.close()


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


def make_runner(settings: Settings, pool: ConnectionPool, *, with_demo: bool = True) -> Runner:
    return Runner(settings=settings, pool=pool, catalog=CATALOG,
                  adapters={"demo": DemoAdapter()} if with_demo else {},
                  publish=lambda *_: None, name="metrics-test-worker")


def set_duration(pool: ConnectionPool, run_id: str, seconds: float) -> None:
    with transaction(pool) as conn:
        conn.execute("UPDATE runs SET created_at = completed_at - make_interval(secs => %s)"
                     " WHERE id = %s AND completed_at IS NOT NULL", (seconds, run_id))


# --- the exposition ---------------------------------------------------------


def test_metrics_answers_prometheus_text_without_a_key(client: FlaskClient) -> None:
    scrape = Scrape(client)
    assert "version=" in (client.get("/metrics").content_type or "")
    for family, kind in {
        "monid_runs_accepted": "counter",
        "monid_accept_latency_seconds": "histogram",
        "monid_http_requests": "counter",
        "monid_scrape_errors": "counter",
        "monid_metrics_source_up": "gauge",
        "monid_runs_ended": "counter",
        "monid_runs_in_progress": "gauge",
        "monid_attempts": "counter",
        "monid_attempts_in_progress": "gauge",
        "monid_run_duration_seconds": "histogram",
        "monid_queue_depth": "gauge",
        "monid_oldest_unclaimed_run_age_seconds": "gauge",
        "monid_run_start_delay_seconds": "histogram",
        "monid_runs_waiting_to_start": "gauge",
        "monid_runs_waiting_to_start_top_callers": "gauge",
        "monid_runs_waiting_for_slot": "gauge",
    }.items():
        assert family in scrape.families, f"{family} missing:\n{scrape.text}"
        assert scrape.families[family].type == kind, family
    assert scrape.get("monid_metrics_source_up", source="database") == 1
    assert scrape.get("monid_metrics_source_up", source="redis") == 1
    assert scrape.get("monid_scrape_errors_total", source="database") == 0
    assert scrape.get("monid_scrape_errors_total", source="redis") == 0
    # An empty cluster: every series there, at zero.
    for status in ("COMPLETED", "FAILED", "STOPPED", "TIMED_OUT"):
        assert scrape.get("monid_runs_ended_total", status=status) == 0
    assert scrape.get("monid_oldest_unclaimed_run_age_seconds") == 0
    assert scrape.get("monid_run_duration_seconds_count") == 0
    assert scrape.get("monid_run_start_delay_seconds_count") == 0
    assert scrape.get("monid_runs_waiting_to_start") == 0


# --- what the web counts ----------------------------------------------------


def test_accepted_runs_and_accept_latency_are_counted(client: FlaskClient, key: str) -> None:
    before = Scrape(client)
    assert before.value("monid_runs_accepted_total", provider="demo") in (None, 0.0)
    assert before.get("monid_accept_latency_seconds_count") == 0

    for _ in range(3):
        assert client.post("/v1/run", json=ECHO, headers=auth(key)).status_code == 202
    replayed = {**auth(key), "Idempotency-Key": "metrics-once"}
    assert client.post("/v1/run", json=ECHO, headers=replayed).status_code == 202
    again = client.post("/v1/run", json=ECHO, headers=replayed)
    assert again.status_code == 202 and again.headers.get("Idempotent-Replayed") == "true"
    assert client.post("/v1/run", json=ECHO).status_code == 401  # no key: handled, not accepted

    after = Scrape(client)
    # A replay answers the first run again: it accepts nothing new.
    assert after.get("monid_runs_accepted_total", provider="demo") == 4
    # Every POST /v1/run is timed, whatever its answer.
    assert after.get("monid_accept_latency_seconds_count") == 6
    latency_sum = after.get("monid_accept_latency_seconds_sum")
    assert 0 < latency_sum < 30
    buckets = after.buckets("monid_accept_latency_seconds")
    assert [bound for bound, _ in buckets] == [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25, 0.5, 1.0, float("inf")]
    counts = [count for _, count in buckets]
    assert counts == sorted(counts) and counts[-1] == 6


def test_http_requests_are_counted_by_method_route_template_and_status(
        client: FlaskClient, key: str) -> None:
    client.get("/healthz")
    client.get("/healthz")
    run_id = client.post("/v1/run", json=ECHO, headers=auth(key)).get_json()["runId"]
    client.get(f"/v1/runs/{run_id}", headers=auth(key))
    client.get("/no/such/route")
    client.open("/healthz", method="BREW")

    scrape = Scrape(client)
    count = functools.partial(scrape.get, "monid_http_requests_total")
    assert count(method="GET", route="/healthz", status="200") == 2
    assert count(method="POST", route="/v1/run", status="202") == 1
    # The route's template, not the path: one series for every run.
    assert count(method="GET", route="/v1/runs/<run_id>", status="200") == 1
    assert count(method="GET", route="unmatched", status="404") == 1
    assert count(method="OTHER", route="unmatched", status="405") == 1
    assert scrape.value("monid_http_requests_total", method="GET",
                        route=f"/v1/runs/{run_id}", status="200") is None


# --- what the cluster did, read from PostgreSQL and Redis --------------------


def test_ended_runs_attempts_and_durations_come_from_the_database(
        client: FlaskClient, settings: Settings, db: ConnectionPool) -> None:
    runner = make_runner(settings, db)
    echo = insert_demo_run(db, "/echo", {"body": {"a": 1}})
    assert runner.run(echo) == "completed"  # COMPLETED, attempt OK
    refused = insert_demo_run(db, "/fail", {"body": {"status": 404}})
    assert runner.run(refused) == "completed"  # COMPLETED, attempt PERMANENT_ERROR
    retried = insert_demo_run(db, "/fail", {"body": {"status": 503, "times": 1}})
    assert runner.run(retried) == "retry"  # attempt TRANSIENT_ERROR
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET next_attempt_at = now() WHERE id = %s", (retried,))
    assert runner.run(retried) == "completed"  # then OK
    no_adapter = insert_demo_run(db, "/echo", {"body": {}})
    assert make_runner(settings, db, with_demo=False).run(no_adapter) == "failed"
    for run_id, seconds in ((echo, 42.0), (refused, 0.3), (retried, 0.05), (no_adapter, 4000.0)):
        set_duration(db, run_id, seconds)
    # Still going: one never claimed, one claimed (an open attempt) and asked to stop.
    unclaimed = insert_demo_run(db, "/echo", {"body": {}})
    claimed = insert_demo_run(db, "/sleep", {"body": {"seconds": 60}})
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET created_at = now() - interval '30 seconds' WHERE id = %s",
                     (unclaimed,))
        assert store.claim_run(conn, claimed, worker="w", lease_seconds=60) is not None
        conn.execute("UPDATE runs SET status = 'STOPPING' WHERE id = %s", (claimed,))

    scrape = Scrape(client)
    ended = functools.partial(scrape.get, "monid_runs_ended_total")
    assert (ended(status="COMPLETED"), ended(status="FAILED"), ended(status="STOPPED"),
            ended(status="TIMED_OUT")) == (3, 1, 0, 0)
    assert scrape.get("monid_runs_in_progress", status="RUNNING") == 1
    assert scrape.get("monid_runs_in_progress", status="STOPPING") == 1

    attempts = functools.partial(scrape.get, "monid_attempts_total")
    assert attempts(outcome="OK") == 2
    assert attempts(outcome="PERMANENT_ERROR") == 2
    assert attempts(outcome="TRANSIENT_ERROR") == 1
    assert attempts(outcome="TIMEOUT") == attempts(outcome="LOST") == 0
    assert scrape.get("monid_attempts_in_progress") == 1  # the claimed run's, left out above

    assert scrape.get("monid_run_duration_seconds_count") == 4
    assert scrape.get("monid_run_duration_seconds_sum") == pytest.approx(4042.35, abs=0.01)
    assert dict(scrape.buckets("monid_run_duration_seconds")) == {
        0.1: 1, 0.25: 1, 0.5: 2, 1: 2, 2.5: 2, 5: 2, 10: 2, 30: 2, 60: 3, 120: 3, 300: 3,
        600: 3, 1800: 3, 3600: 3, float("inf"): 4,
    }

    # Only the run no worker has started is unclaimed, and it is 30 seconds old.
    age = scrape.get("monid_oldest_unclaimed_run_age_seconds")
    assert 30 <= age < 60


def test_runs_waiting_to_start_and_for_slots_and_the_delay_to_start(
        client: FlaskClient, db: ConnectionPool) -> None:
    def run_of(caller: str, endpoint: str = "/echo") -> str:
        found = CATALOG.find("demo", endpoint)
        assert found is not None
        run_id = new_run_id()
        with transaction(db) as conn:
            store.insert_run(conn, run_id=run_id, caller=caller, api_key_id=None,
                             endpoint=found, input={})
        return run_id

    for n in range(7):  # seven callers with 7, 6, ... 1 runs waiting to start
        for _ in range(7 - n):
            run_of(f"USER#c{n}")
    started = run_of("USER#s")
    parked_by_caller, parked_by_provider = run_of("USER#s"), run_of("USER#p", "/sleep")
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET created_at = now() - interval '2 seconds'"
                     " WHERE id = %s", (started,))
        assert isinstance(store.claim_run(conn, started, worker="w", lease_seconds=60),
                          store.Claim)
        assert store.claim_run(conn, parked_by_caller, worker="w", lease_seconds=60,
                               full_callers=["USER#s"]) == store.Waiting(parked_by_caller,
                                                                         "caller")
        assert store.claim_run(conn, parked_by_provider, worker="w", lease_seconds=60,
                               limits=Limits(by_key={"demo/sleep": 0})) is not None
    scrape = Scrape(client)
    assert scrape.get("monid_runs_waiting_to_start") == 28 + 2
    top = {s.labels["caller"]: s.value for s in
           scrape.families["monid_runs_waiting_to_start_top_callers"].samples}
    assert top == {"USER#c0": 7, "USER#c1": 6, "USER#c2": 5, "USER#c3": 4, "USER#c4": 3}
    assert scrape.get("monid_runs_waiting_for_slot", slot="caller") == 1
    assert scrape.get("monid_runs_waiting_for_slot", slot="endpoint:demo/sleep") == 1
    assert scrape.get("monid_run_start_delay_seconds_count") == 1
    assert dict(scrape.buckets("monid_run_start_delay_seconds"))[1.0] == 0
    assert dict(scrape.buckets("monid_run_start_delay_seconds"))[5.0] == 1


def test_queue_depth_is_the_length_of_the_runs_lists(
        client: FlaskClient, key: str, redis: redis_lib.Redis) -> None:
    assert Scrape(client).get("monid_queue_depth") == 0
    for _ in range(6):
        assert client.post("/v1/run", json=ECHO, headers=auth(key)).status_code == 202
    client.application.extensions["monid"].publisher.flush()
    # The caller's first three runs have the first priority, the next ones the second.
    assert redis.llen(QUEUE) == 3 and redis.llen(queue_key(3)) == 3
    scrape = Scrape(client)
    assert scrape.get("monid_queue_depth") == 6
    # Each of them waits unclaimed, the oldest for more than nothing.
    assert scrape.get("monid_runs_in_progress", status="RUNNING") == 6
    assert scrape.get("monid_oldest_unclaimed_run_age_seconds") > 0


def test_cluster_numbers_are_kept_a_few_seconds(
        make_app: Callable[..., Flask], key: str, redis: redis_lib.Redis) -> None:
    client = make_app(metrics_cache_seconds=60.0).test_client()
    first = Scrape(client)
    assert client.post("/v1/run", json=ECHO, headers=auth(key)).status_code == 202
    second = Scrape(client)
    # The database and Redis were not asked again; what the web counted itself moved.
    assert second.get("monid_runs_in_progress", status="RUNNING") == \
        first.get("monid_runs_in_progress", status="RUNNING") == 0
    assert second.get("monid_queue_depth") == 0 and redis.llen(QUEUE) == 1
    assert second.get("monid_accept_latency_seconds_count") == 1


# --- a source down ----------------------------------------------------------


def test_metrics_answer_200_without_redis(make_app: Callable[..., Flask], key: str) -> None:
    client = make_app(redis_url=UNREACHABLE_REDIS).test_client()
    assert client.post("/v1/run", json=ECHO, headers=auth(key)).status_code == 202

    scrape = Scrape(client)
    assert scrape.get("monid_metrics_source_up", source="redis") == 0
    assert scrape.get("monid_scrape_errors_total", source="redis") == 1
    assert scrape.value("monid_queue_depth") is None
    # The rest is all there.
    assert scrape.get("monid_metrics_source_up", source="database") == 1
    assert scrape.get("monid_runs_in_progress", status="RUNNING") == 1
    assert scrape.get("monid_runs_accepted_total", provider="demo") == 1
    assert scrape.get("monid_accept_latency_seconds_count") == 1
    assert Scrape(client).get("monid_scrape_errors_total", source="redis") == 2


def test_metrics_answer_200_without_the_database(make_app: Callable[..., Flask]) -> None:
    app = make_app(database_url=UNREACHABLE_DATABASE, db_pool_timeout_seconds=0.2,
                   metrics_cache_seconds=60.0)
    client = app.test_client()
    client.get("/healthz")

    scrape = Scrape(client)
    assert scrape.get("monid_metrics_source_up", source="database") == 0
    assert scrape.get("monid_scrape_errors_total", source="database") == 1
    assert scrape.value("monid_runs_ended_total", status="COMPLETED") is None
    assert scrape.value("monid_run_duration_seconds_count") is None
    assert scrape.get("monid_metrics_source_up", source="redis") == 1
    assert scrape.get("monid_queue_depth") == 0
    assert scrape.get("monid_http_requests_total", method="GET", route="/healthz",
                      status="200") == 1
    # A failed read is kept as long as a good one: the next scrape does not wait again.
    assert Scrape(client).get("monid_scrape_errors_total", source="database") == 1


def test_init_app_twice_adds_one_route_and_counts_once(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    metrics.init_app(app)
    client = app.test_client()
    client.get("/healthz")
    assert Scrape(client).get("monid_http_requests_total", method="GET", route="/healthz",
                              status="200") == 1
    assert [r.rule for r in app.url_map.iter_rules()].count("/metrics") == 1

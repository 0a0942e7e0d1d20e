"""What a run keeps of what its provider delivered: no more results than it is charged
for, within the bounds of every result, stored as items with its end (all of them, once,
or none), and its inline output. Runs driven by the runner against loopback fakes of
Apify and of JSON APIs, on the real database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Json
from psycopg_pool import ConnectionPool

from shared import store
from shared.catalog import load_catalog
from shared.db import autocommit, list_migrations, migrate, transaction
from shared.settings import DEFAULT_CATALOG_DIR, load_settings
from tests.fakes.apify import FakeApify, SizedDataset
from tests.fakes.jsonapi import FakeJsonApi
from tests.integration.test_providers import SECRETS, Driver
from worker.providers.base import ProviderResult
from worker.results import BATCH_BYTES, ResultWriter

CALLER = "USER#u"
TWEETS = "/apidojo/tweet-scraper"  # PER_CALL $0.003
PLACES = "/compass/crawler-google-places"  # PER_RESULT $0.004 + $0.001, at most 500, PPE
POSTS = "/apify/instagram-scraper"  # PER_RESULT $0.0023, at most 1000


@pytest.fixture
def apify() -> Iterator[FakeApify]:
    with FakeApify(token=SECRETS["APIFY_TOKEN"]) as fake:
        yield fake


def make_driver(base_env: dict[str, str], pool: ConnectionPool, apify: FakeApify,
                api: FakeJsonApi, **env: str) -> Driver:
    settings = load_settings({**base_env, **SECRETS, "APIFY_API_BASE_URL": apify.base_url,
                              "EXA_API_BASE_URL": api.base_url,
                              "GITHUB_API_BASE_URL": api.base_url, **env})
    return Driver(settings, pool, load_catalog(DEFAULT_CATALOG_DIR))


@pytest.fixture
def driver(base_env: dict[str, str], db: ConnectionPool, apify: FakeApify,
           api: FakeJsonApi) -> Driver:
    return make_driver(base_env, db, apify, api)


def items_of(pool: ConnectionPool, run_id: str) -> list[Any]:
    with autocommit(pool) as conn:
        rows = conn.execute("SELECT seq, item FROM run_items WHERE run_id = %s ORDER BY seq",
                            (run_id,)).fetchall()
    assert [r["seq"] for r in rows] == list(range(len(rows)))
    return [r["item"] for r in rows]


def count_items(pool: ConnectionPool, run_id: str) -> int:
    with autocommit(pool) as conn:
        row = conn.execute("SELECT count(*) AS n FROM run_items WHERE run_id = %s",
                           (run_id,)).fetchone()
    assert row is not None
    return int(row["n"])


def held(pool: ConnectionPool) -> int:
    with autocommit(pool) as conn:
        return store.get_wallet(conn, CALLER).held_micros


def item_reads(apify: FakeApify) -> list[tuple[int, int]]:
    return [(int(str(c.query["offset"])), int(str(c.query["limit"])))
            for c in apify.calls if c.path.endswith("/items")]


# --- never more than was charged ---------------------------------------------------


@pytest.mark.parametrize("ignores", [False, True])
def test_a_per_result_run_holds_exactly_the_results_it_is_charged_for(
        driver: Driver, apify: FakeApify, db: ConnectionPool, ignores: bool) -> None:
    apify.add_actor("compass~crawler-google-places", run_seconds=0.1,
                    items=[{"place": n} for n in range(5000)], ignores_max_items=ignores)
    run_id = driver.start("apify", PLACES, {"searchStringsArray": ["coffee"]})
    assert driver.drive(run_id, pause=0.2)[-1] == "completed"
    run = driver.run(run_id)
    # Apify is asked for no more than the maximum, and no more is read, whatever the actor
    # wrote: the run holds 500 results and is charged for 500.
    start = apify.last_call("POST", "/v2/acts/")
    assert start is not None
    assert start.query["maxItems"] == "500"
    assert start.query["maxTotalChargeUsd"] == "2.001"  # pay-per-event: the run's hold
    assert apify.runs()[0].options["maxItems"] == 500
    assert sum(limit for _, limit in item_reads(apify)) == 500
    assert run.status == "COMPLETED" and run.result_count == 500
    assert items_of(db, run_id) == [{"place": n} for n in range(500)]
    assert run.cost_micros == 1000 + 4000 * 500
    assert held(db) == 0


def test_the_inputs_own_cap_is_what_is_asked_for_and_read(driver: Driver,
                                                          api: FakeJsonApi) -> None:
    api.route("GET", "/search/repositories",
              body={"total_count": 150, "items": [{"repo": n} for n in range(150)]})
    run_id = driver.start("github", "/search/repositories",
                          {"queryParams": {"q": "celery", "per_page": 10}})
    assert driver.drive(run_id) == ["completed"]
    run = driver.run(run_id)
    # The provider sent 150; the run asked for 10 and is charged for 10.
    assert run.result_count == 10
    assert run.output == {"total_count": 150, "items": [{"repo": n} for n in range(10)]}
    assert run.output_truncated is False
    assert items_of(driver.pool, run_id) == [{"repo": n} for n in range(10)]
    assert run.cost_micros == 100 * 10


def test_a_per_call_actor_is_not_asked_for_a_number_of_items(driver: Driver,
                                                            apify: FakeApify) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.1, items=[{"id": "1"}])
    driver.drive(driver.start("apify", TWEETS, {"searchTerms": ["AI"]}), pause=0.2)
    start = apify.last_call("POST", "/v2/acts/")
    assert start is not None
    assert "maxItems" not in start.query and "maxTotalChargeUsd" not in start.query


def test_a_per_result_actor_not_paid_per_event_gets_no_charge_cap(driver: Driver,
                                                                 apify: FakeApify) -> None:
    apify.add_actor("apify~instagram-scraper", run_seconds=0.1, items=[{"post": 1}])
    run_id = driver.start("apify", POSTS, {"search": "cats"})
    driver.drive(run_id, pause=0.2)
    start = apify.last_call("POST", "/v2/acts/")
    assert start is not None
    assert start.query["maxItems"] == "1000" and "maxTotalChargeUsd" not in start.query
    assert driver.run(run_id).cost_micros == 2300


# --- one bound for every result -------------------------------------------------------


@pytest.mark.parametrize(("env", "message"), [
    ({"MAX_RESULT_ITEMS": "1500"}, "the result has more than 1500 items, the most a run may "
                                   "hold"),
    ({"MAX_RESULT_BYTES": "100000"}, "the result is over 100000 bytes, the most a run may "
                                     "hold"),
])
def test_a_dataset_past_the_bound_fails_the_run_and_costs_nothing(
        base_env: dict[str, str], db: ConnectionPool, apify: FakeApify, api: FakeJsonApi,
        env: dict[str, str], message: str) -> None:
    driver = make_driver(base_env, db, apify, api, **env)
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.1, items=SizedDataset(100_000, 200))
    run_id = driver.start("apify", TWEETS, {"searchTerms": ["AI"]})
    assert driver.drive(run_id, pause=0.2)[-1] == "failed"
    run = driver.run(run_id)
    assert run.status == "FAILED"
    assert run.error == {"source": "platform", "code": "RESPONSE_TOO_LARGE", "message": message}
    assert run.cost_micros == 0 and held(db) == 0
    assert run.output is None and run.result_count is None
    assert count_items(db, run_id) == 0
    assert [a["outcome"] for a in run.attempts] == ["PERMANENT_ERROR"]
    # Reading stopped at the bound, far short of the dataset's 100,000 items.
    offset, limit = item_reads(apify)[-1]
    assert offset + limit <= 3000
    assert apify.runs_started() == 1


def test_an_http_answer_past_the_bound_fails_the_run(base_env: dict[str, str],
                                                     db: ConnectionPool, apify: FakeApify,
                                                     api: FakeJsonApi) -> None:
    driver = make_driver(base_env, db, apify, api, MAX_RESULT_ITEMS="100")
    api.route("POST", "/search", body={"results": [{"n": n} for n in range(101)]})
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["failed"]
    run = driver.run(run_id)
    assert run.error is not None and run.error["code"] == "RESPONSE_TOO_LARGE"
    assert run.cost_micros == 0 and held(db) == 0 and count_items(db, run_id) == 0


# --- stored as items -------------------------------------------------------------------


def test_a_large_result_is_stored_whole_and_shown_inline_in_part(driver: Driver,
                                                                 apify: FakeApify,
                                                                 db: ConnectionPool) -> None:
    dataset = SizedDataset(6000, 500)  # 3 MB: several batches
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.1, items=dataset)
    run_id = driver.start("apify", TWEETS, {"searchTerms": ["AI"]})
    assert driver.drive(run_id, pause=0.2)[-1] == "completed"
    run = driver.run(run_id)
    assert run.result_count == 6000
    assert items_of(db, run_id) == dataset[:]
    # The output holds the first items that fit in 256 KiB (each 500 bytes and a comma).
    assert run.output_truncated is True
    assert run.output == dataset[:(256 * 1024 - 2 + 1) // 501]
    assert run.cost_micros == 3000


def test_a_large_http_answer_keeps_its_shape_inline(base_env: dict[str, str],
                                                     db: ConnectionPool, apify: FakeApify,
                                                     api: FakeJsonApi) -> None:
    driver = make_driver(base_env, db, apify, api, MAX_INLINE_OUTPUT_BYTES="1000")
    results_list = [{"url": f"https://example.com/{n}", "n": n} for n in range(100)]
    api.route("POST", "/search", body={"requestId": "r1", "results": results_list})
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["completed"]
    run = driver.run(run_id)
    assert run.result_count == 100 and run.output_truncated is True
    assert run.output["requestId"] == "r1"
    shown = run.output["results"]
    assert 0 < len(shown) < 100 and shown == results_list[:len(shown)]
    assert items_of(db, run_id) == results_list


def test_a_small_result_is_inline_whole_and_one_item(driver: Driver,
                                                      db: ConnectionPool) -> None:
    run_id = driver.start("demo", "/echo", {"hello": "world"})
    assert driver.drive(run_id) == ["completed"]
    run = driver.run(run_id)
    assert run.output == {"hello": "world"} and run.output_truncated is False
    assert run.result_count == 1
    assert items_of(db, run_id) == [{"hello": "world"}]


def test_a_read_that_breaks_off_leaves_nothing_and_is_read_again_once(
        driver: Driver, apify: FakeApify, db: ConnectionPool) -> None:
    dataset = SizedDataset(4000, 1000)  # 4 MB: batches are written before the break
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.1, items=dataset)
    run_id = driver.start("apify", TWEETS, {"searchTerms": ["AI"]})
    assert driver.step(run_id) == "following"
    while apify.runs()[0].status != "SUCCEEDED":
        time.sleep(0.05)
    seen: list[int] = []

    def watch() -> None:
        # Two pages (1,100 items, past a batch) are written when the third is asked for.
        apify.wait_for_count(3, "GET", "/v2/datasets/", timeout=10)
        seen.append(count_items(db, run_id))

    # Three pages, slowly, then Apify fails: the fourth page is not read.
    apify.slow_next(3, seconds=0.3, match=("GET", "/v2/datasets/"))
    apify.fail_next(1, status=503, match=("GET", "/v2/datasets/"))
    watcher = threading.Thread(target=watch)
    watcher.start()
    assert driver.step(run_id) == "following"  # dropped: the actor run is checked again
    watcher.join()
    assert seen == [0]  # nothing visible half way
    assert count_items(db, run_id) == 0
    assert len(item_reads(apify)) == 4
    assert driver.drive(run_id, pause=0.1)[-1] == "completed"
    assert count_items(db, run_id) == 4000  # one copy, though read twice
    assert items_of(db, run_id)[-1] == dataset[3999]
    assert apify.runs_started() == 1
    run = driver.run(run_id)
    assert [a["outcome"] for a in run.attempts] == ["OK"]


def test_a_run_stopped_mid_read_ends_stopped_with_no_items(driver: Driver, apify: FakeApify,
                                                          db: ConnectionPool) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.1, items=SizedDataset(8000, 1000))
    run_id = driver.start("apify", TWEETS, {"searchTerms": ["AI"]})
    assert driver.step(run_id) == "following"
    while apify.runs()[0].status != "SUCCEEDED":
        time.sleep(0.05)
    apify.delay = 0.1

    def stop_once_reading() -> None:
        apify.wait_for_count(3, "GET", "/v2/datasets/", timeout=10)
        with transaction(db) as conn:
            assert store.request_stop(conn, run_id, CALLER) is not None

    stopper = threading.Thread(target=stop_once_reading)
    stopper.start()
    assert driver.step(run_id) == "stopped"
    stopper.join()
    run = driver.run(run_id)
    assert run.status == "STOPPED" and run.cost_micros == 0 and run.output is None
    assert count_items(db, run_id) == 0 and held(db) == 0
    assert len(item_reads(apify)) < 8  # it stopped reading


def test_a_stop_that_wins_over_a_small_result_keeps_none_of_it(driver: Driver,
                                                               db: ConnectionPool) -> None:
    run_id = driver.start("demo", "/echo", {"a": 1})
    with autocommit(db) as conn:
        claim = store.claim_run(conn, run_id, worker="w", lease_seconds=60)
        assert claim is not None
        assert store.request_stop(conn, run_id, CALLER) is not None
    writer = ResultWriter(settings=driver.runner.settings, pool=db)
    ended = writer.write(claim, ProviderResult(output=[{"a": 1}, {"a": 2}]),
                         cost_of=lambda n: 0, deliver=driver.runner._deliver)
    assert ended is not None and ended.status == "STOPPED"
    run = driver.run(run_id)
    assert run.status == "STOPPED" and run.output is None and run.result_count is None
    assert [a["outcome"] for a in run.attempts] == ["STOPPED"]
    assert count_items(db, run_id) == 0


# One statement for a small result; batches in a transaction for one over BATCH_BYTES.
@pytest.mark.parametrize("size", [10, 3 * BATCH_BYTES // 500])
def test_only_the_holder_of_the_lease_writes_items(driver: Driver, db: ConnectionPool,
                                                   size: int) -> None:
    run_id = driver.start("demo", "/echo", {"a": 1})
    with autocommit(db) as conn:
        stale = store.claim_run(conn, run_id, worker="old", lease_seconds=60)
        assert stale is not None
        # Its lease ran out and another worker took the run.
        conn.execute("UPDATE runs SET lease_token = NULL WHERE id = %s", (run_id,))
        current = store.claim_run(conn, run_id, worker="new", lease_seconds=60)
        assert current is not None
    writer = ResultWriter(settings=driver.runner.settings, pool=db)
    items = [{"n": n, "pad": "x" * 500} for n in range(size)]
    assert writer.write(stale, ProviderResult(output=items), cost_of=lambda n: 0,
                        deliver=driver.runner._deliver) is None
    assert count_items(db, run_id) == 0
    ended = writer.write(current, ProviderResult(output=items), cost_of=lambda n: 0,
                         deliver=driver.runner._deliver)
    assert ended is not None and ended.status == "COMPLETED"
    assert count_items(db, run_id) == size


def test_the_runs_that_ended_before_get_their_output_as_items(empty_database: str) -> None:
    before = [m for m in list_migrations() if m.version < 10]
    with psycopg.connect(empty_database) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                     " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for migration in before:
            conn.execute(migration.path.read_text())  # type: ignore[arg-type]
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
        outputs = {"01ARZ3NDEKTSV4RRFFQ69G5FA1": ("COMPLETED", [{"a": 1}, {"a": 2}]),
                   "01ARZ3NDEKTSV4RRFFQ69G5FA2": ("COMPLETED", {"only": "one"}),
                   "01ARZ3NDEKTSV4RRFFQ69G5FA3": ("COMPLETED", None),
                   "01ARZ3NDEKTSV4RRFFQ69G5FA4": ("FAILED", None)}
        for run_id, (status, output) in outputs.items():
            conn.execute(
                "INSERT INTO runs (id, caller, provider, provider_name, endpoint, adapter, input,"
                " status, output, price_type, price_micros, max_attempts, deadline_at,"
                " completed_at) VALUES (%s, 'USER#u', 'demo', 'Demo', '/echo', 'demo', '{}',"
                " %s, %s, 'PER_CALL', 0, 1, now(), now())",
                (run_id, status, Json(output) if output is not None else None))
    migrate(empty_database)
    with psycopg.connect(empty_database) as conn:
        rows = conn.execute("SELECT r.id, r.item_count, r.output_truncated,"
                            " (SELECT json_agg(item ORDER BY seq) FROM run_items i"
                            "  WHERE i.run_id = r.id)::text FROM runs r ORDER BY r.id").fetchall()
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (2, False, '[{"a": 1}, {"a": 2}]'), (1, False, '[{"only": "one"}]'), (0, False, None),
        (None, False, None)]


# --- provider failures are answers, not retries ------------------------------------------


@pytest.mark.parametrize(("apify_status", "status", "code", "outcome"), [
    ("FAILED", "FAILED", "PROVIDER_RUN_FAILED", "PERMANENT_ERROR"),
    ("ABORTED", "FAILED", "PROVIDER_RUN_FAILED", "PERMANENT_ERROR"),  # aborted on Apify
    # Ended by the timeout the run started it with: the run's own deadline.
    ("TIMED-OUT", "TIMED_OUT", "DEADLINE_EXCEEDED", "TIMEOUT"),
])
def test_an_actor_run_ended_without_success_is_not_started_again(
        driver: Driver, apify: FakeApify, db: ConnectionPool, apify_status: str, status: str,
        code: str, outcome: str) -> None:
    apify.add_actor("apify~instagram-scraper", run_seconds=60, items=[{"post": 1}])
    run_id = driver.start("apify", POSTS, {"search": "cats"})
    assert driver.step(run_id) == "following"
    apify.set_status(apify.runs()[0].id, apify_status)
    assert driver.drive(run_id, pause=0.1)[-1] == status.lower()
    run = driver.run(run_id)
    assert run.status == status and run.error is not None and run.error["code"] == code
    assert [a["outcome"] for a in run.attempts] == [outcome]
    assert run.cost_micros == 0 and held(db) == 0 and count_items(db, run_id) == 0
    assert apify.runs_started() == 1
    if status == "FAILED":
        assert run.error["source"] == "provider"
        assert run.provider_response["status"] == apify_status


def test_apify_unreachable_or_busy_stays_transient(driver: Driver, apify: FakeApify) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.1, items=[{"id": "1"}])
    apify.fail_next(1, status=429, match=("POST", "/v2/acts/"))
    apify.disconnect_next(1, match=("POST", "/v2/acts/"))
    run_id = driver.start("apify", TWEETS, {"searchTerms": ["AI"]})
    outcomes = driver.drive(run_id, pause=0.15)
    assert outcomes[:2] == ["retry", "retry"] and outcomes[-1] == "completed"
    run = driver.run(run_id)
    assert [a["outcome"] for a in run.attempts] == ["TRANSIENT_ERROR", "TRANSIENT_ERROR", "OK"]
    assert apify.runs_started() == 1

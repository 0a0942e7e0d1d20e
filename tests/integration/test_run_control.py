"""Stop, wait and Idempotency-Key, on the real database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from api.app import create_app
from shared import store
from shared.catalog import load_catalog
from shared.db import transaction
from shared.settings import Settings, load_settings
from tests.fakes.apify import FakeApify
from tests.fakes.jsonapi import FakeJsonApi
from tests.helpers import auth
from worker.providers import make_adapters
from worker.runner import Runner
from worker.sweeper import Sweeper

CALLER = "USER#user_abc123"


@pytest.fixture
def apify() -> Iterator[FakeApify]:
    with FakeApify(token="t") as fake:
        yield fake


@pytest.fixture
def paid_catalog(tmp_path: Path, api: FakeJsonApi) -> Path:
    directory = tmp_path / "catalog"
    directory.mkdir()
    for name in ("demo.json", "apify.json"):
        source = Path(__file__).resolve().parents[2] / "shared" / "catalog" / name
        (directory / name).write_text(source.read_text())
    (directory / "slow.json").write_text(json.dumps({
        "provider": "slow", "name": "Slow", "adapter": "http",
        "endpoints": [{"path": "/answer", "name": "Slow answer", "description": "Slow.",
                       "inputSchema": {"type": "object"},
                       "price": {"type": "PER_CALL", "amount": 0.25},
                       "call": {"method": "POST", "baseUrl": api.base_url, "path": "/answer"}}]}))
    return directory


@pytest.fixture
def control_settings(base_env: dict[str, str], apify: FakeApify, paid_catalog: Path) -> Settings:
    return load_settings({**base_env, "APIFY_API_BASE_URL": apify.base_url, "APIFY_TOKEN": "t",
                          "CATALOG_DIR": str(paid_catalog)})


@pytest.fixture
def control_app(control_settings: Settings, db: ConnectionPool) -> Iterator[Flask]:
    app = create_app(control_settings)
    yield app
    app.extensions["monid"].close()


@pytest.fixture
def web(control_app: Flask) -> FlaskClient:
    return control_app.test_client()


@pytest.fixture
def runner(control_settings: Settings, db: ConnectionPool) -> Runner:
    return Runner(settings=control_settings, pool=db,
                  catalog=load_catalog(control_settings.catalog_dir),
                  adapters=make_adapters(control_settings), publish=lambda *_: None,
                  name="test")


@pytest.fixture
def funded(key: str, db: ConnectionPool) -> str:
    with transaction(db) as conn:
        store.credit_wallet(conn, CALLER, 10_000_000)
    return key


def start(web: FlaskClient, key: str, provider: str, endpoint: str, input: dict[str, Any],
          **headers: str) -> Any:
    return web.post("/v1/run", headers={**auth(key), **headers},
                    json={"provider": provider, "endpoint": endpoint, "input": input})


def stop(web: FlaskClient, key: str, run_id: str) -> Any:
    return web.post(f"/v1/runs/{run_id}/stop", headers=auth(key))


def read(web: FlaskClient, key: str, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = web.get(f"/v1/runs/{run_id}", headers=auth(key)).get_json()
    return body


def wallet(db: ConnectionPool) -> store.Wallet:
    with transaction(db) as conn:
        return store.get_wallet(conn, CALLER)


def ledger(db: ConnectionPool, run_id: str) -> dict[str, int]:
    with transaction(db) as conn:
        rows = conn.execute("SELECT kind, amount_micros FROM ledger_entries WHERE run_id = %s",
                            (run_id,)).fetchall()
    return {r["kind"]: r["amount_micros"] for r in rows}


# --- stop -------------------------------------------------------------------------------


def test_a_queued_run_stops_at_once_and_never_starts(web: FlaskClient, funded: str,
                                                     runner: Runner, db: ConnectionPool,
                                                     api: FakeJsonApi) -> None:
    run_id = start(web, funded, "slow", "/answer", {}).get_json()["runId"]
    assert wallet(db).held_micros == 250_000
    answer = stop(web, funded, run_id)
    assert answer.status_code == 202
    assert answer.get_json() == {"runId": run_id, "status": "STOPPING",
                                 "message": answer.get_json()["message"]}
    run = read(web, funded, run_id)
    assert run["status"] == "STOPPED" and run["stoppable"] is False
    assert run["cost"] == {"value": 0, "currency": "USD"}
    assert runner.run(run_id) == "skipped"
    assert api.count() == 0, "a stopped queued run must never call the provider"
    assert ledger(db, run_id) == {"HOLD": 250_000, "CHARGE": 0, "RELEASE": 250_000}
    assert wallet(db) == store.Wallet(CALLER, 10_000_000, 0)


def test_stopping_twice_is_harmless_and_an_ended_run_is_409(web: FlaskClient, funded: str,
                                                            db: ConnectionPool) -> None:
    run_id = start(web, funded, "slow", "/answer", {}).get_json()["runId"]
    assert stop(web, funded, run_id).status_code == 202
    again = stop(web, funded, run_id)
    assert again.status_code == 409
    assert again.get_json()["errorCode"] == "RUN_NOT_STOPPABLE"
    assert ledger(db, run_id)["CHARGE"] == 0


def test_stop_while_stopping_is_accepted_again(web: FlaskClient, funded: str,
                                               db: ConnectionPool) -> None:
    run_id = start(web, funded, "slow", "/answer", {}).get_json()["runId"]
    with transaction(db) as conn:  # a worker holds it
        store.claim_run(conn, run_id, worker="w", lease_seconds=60)
    assert stop(web, funded, run_id).status_code == 202
    assert read(web, funded, run_id)["status"] == "STOPPING"
    assert read(web, funded, run_id)["stoppable"] is True
    assert stop(web, funded, run_id).status_code == 202


def test_stop_of_another_callers_run_is_404(web: FlaskClient, funded: str,
                                            make_key: Any) -> None:
    run_id = start(web, funded, "slow", "/answer", {}).get_json()["runId"]
    other = make_key("user_other")
    assert stop(web, other, run_id).status_code == 404
    assert stop(web, funded, "not-a-run").status_code == 404


def test_a_synchronous_call_in_flight_has_its_answer_discarded(
        web: FlaskClient, funded: str, runner: Runner, db: ConnectionPool,
        api: FakeJsonApi) -> None:
    api.slow_next(1, seconds=1.0)
    run_id = start(web, funded, "slow", "/answer", {}).get_json()["runId"]
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(runner.run(run_id)))
    worker.start()
    assert api.wait_for_count(1, timeout=5)
    assert stop(web, funded, run_id).status_code == 202
    worker.join()
    assert outcome == ["stopped"]
    run = read(web, funded, run_id)
    assert run["status"] == "STOPPED" and run["output"] is None
    assert run["cost"] == {"value": 0, "currency": "USD"}
    assert [a["outcome"] for a in run["attempts"]] == ["STOPPED"]  # not the discarded OK
    assert ledger(db, run_id) == {"HOLD": 250_000, "CHARGE": 0, "RELEASE": 250_000}


def test_a_sleeping_demo_run_stops_at_once_and_its_attempt_reads_stopped(
        web: FlaskClient, funded: str, runner: Runner, db: ConnectionPool) -> None:
    run_id = start(web, funded, "demo", "/sleep", {"seconds": 30}).get_json()["runId"]
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(runner.run(run_id)))
    worker.start()
    deadline = time.monotonic() + 5
    while read(web, funded, run_id)["startedAt"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    asked = time.monotonic()
    assert stop(web, funded, run_id).status_code == 202
    worker.join(timeout=10)
    assert outcome == ["stopped"]
    assert time.monotonic() - asked < 2.0  # not the whole 30 s sleep
    run = read(web, funded, run_id)
    assert run["status"] == "STOPPED" and run["output"] is None
    assert [a["outcome"] for a in run["attempts"]] == ["STOPPED"]


def test_a_followed_apify_run_is_aborted(web: FlaskClient, funded: str, runner: Runner,
                                         apify: FakeApify, db: ConnectionPool) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=60)
    run_id = start(web, funded, "apify", "/apidojo/tweet-scraper",
                   {"searchTerms": ["AI"]}).get_json()["runId"]
    assert runner.run(run_id) == "following"
    assert stop(web, funded, run_id).status_code == 202
    assert read(web, funded, run_id)["status"] == "STOPPING"
    assert runner.run(run_id) == "stopped"  # the worker the stop woke up
    assert apify.count("POST", "/v2/actor-runs/") == 1
    assert apify.runs()[0].state()[0] in ("ABORTING", "ABORTED")
    run = read(web, funded, run_id)
    assert run["status"] == "STOPPED" and run["cost"]["value"] == 0
    assert [a["outcome"] for a in run["attempts"]] == ["STOPPED"]


def test_the_sweeper_carries_out_a_stop_nobody_picked_up(
        web: FlaskClient, funded: str, runner: Runner, control_settings: Settings,
        apify: FakeApify, db: ConnectionPool) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=60)
    run_id = start(web, funded, "apify", "/apidojo/tweet-scraper",
                   {"searchTerms": ["AI"]}).get_json()["runId"]
    assert runner.run(run_id) == "following"
    stop(web, funded, run_id)
    sweeper = Sweeper(settings=control_settings, pool=db, catalog=runner.catalog,
                      adapters=runner.adapters, publish=lambda *_: None)
    assert sweeper.sweep().ended == {run_id: "STOPPED"}
    assert apify.count("POST", "/v2/actor-runs/") == 1
    assert read(web, funded, run_id)["status"] == "STOPPED"


def test_a_stop_racing_completion_ends_one_way_and_settles_once(
        web: FlaskClient, funded: str, runner: Runner, db: ConnectionPool,
        api: FakeJsonApi) -> None:
    for _ in range(10):
        run_id = start(web, funded, "slow", "/answer", {}).get_json()["runId"]
        barrier = threading.Barrier(2)
        results: list[Any] = []

        def run_it(run_id: str = run_id, barrier: threading.Barrier = barrier,
                   results: list[Any] = results) -> None:
            barrier.wait()
            results.append(runner.run(run_id))

        def stop_it(run_id: str = run_id, barrier: threading.Barrier = barrier,
                    results: list[Any] = results) -> None:
            barrier.wait()
            results.append(stop(web, funded, run_id).status_code)

        threads = [threading.Thread(target=run_it), threading.Thread(target=stop_it)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        run = read(web, funded, run_id)
        entries = ledger(db, run_id)
        assert run["status"] in ("COMPLETED", "STOPPED"), (run, results)
        assert entries["CHARGE"] == (250_000 if run["status"] == "COMPLETED" else 0)
        assert entries["RELEASE"] == 250_000
    final = wallet(db)
    assert final.held_micros == 0
    with transaction(db) as conn:
        charged = conn.execute("SELECT coalesce(sum(cost_micros), 0) AS s FROM runs").fetchone()
    assert charged is not None and final.balance_micros == 10_000_000 - charged["s"]


# --- wait ---------------------------------------------------------------------------------


def test_wait_returns_as_soon_as_the_run_ends(web: FlaskClient, funded: str, runner: Runner,
                                              control_app: Flask) -> None:
    run_id = start(web, funded, "demo", "/echo", {"x": 1}).get_json()["runId"]
    threading.Timer(0.5, runner.run, args=(run_id,)).start()
    started = time.monotonic()
    run = web.get(f"/v1/runs/{run_id}?wait=10", headers=auth(funded)).get_json()
    took = time.monotonic() - started
    assert run["status"] == "COMPLETED"
    assert 0.4 < took < 3, took


def test_wait_gives_the_run_as_it_is_after_the_time(web: FlaskClient, funded: str) -> None:
    run_id = start(web, funded, "demo", "/echo", {}).get_json()["runId"]
    started = time.monotonic()
    run = web.get(f"/v1/runs/{run_id}?wait=1.5", headers=auth(funded)).get_json()
    assert run["status"] == "RUNNING"
    assert 1.4 < time.monotonic() - started < 3


def test_wait_on_an_ended_run_answers_at_once(web: FlaskClient, funded: str,
                                              runner: Runner) -> None:
    run_id = start(web, funded, "demo", "/echo", {}).get_json()["runId"]
    runner.run(run_id)
    started = time.monotonic()
    assert read(web, funded, run_id)["status"] == "COMPLETED"
    web.get(f"/v1/runs/{run_id}?wait=30", headers=auth(funded))
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("wait", ["-1", "61", "abc", "nan", "inf"])
def test_a_bad_wait_is_400(web: FlaskClient, funded: str, wait: str) -> None:
    run_id = start(web, funded, "demo", "/echo", {}).get_json()["runId"]
    answer = web.get(f"/v1/runs/{run_id}?wait={wait}", headers=auth(funded))
    assert answer.status_code == 400
    assert "wait" in answer.get_json()["errors"]


# --- Idempotency-Key --------------------------------------------------------------------------


def test_the_same_key_and_body_replays_the_original_answer(web: FlaskClient, funded: str,
                                                          db: ConnectionPool) -> None:
    first = start(web, funded, "slow", "/answer", {"q": 1}, **{"Idempotency-Key": "k-1"})
    second = start(web, funded, "slow", "/answer", {"q": 1}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.get_json() == second.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    with transaction(db) as conn:
        assert conn.execute("SELECT count(*) AS n FROM runs").fetchone() == {"n": 1}
    assert wallet(db).held_micros == 250_000, "no second hold"


def test_the_same_key_with_another_body_is_422(web: FlaskClient, funded: str) -> None:
    start(web, funded, "slow", "/answer", {"q": 1}, **{"Idempotency-Key": "k-2"})
    other = start(web, funded, "slow", "/answer", {"q": 2}, **{"Idempotency-Key": "k-2"})
    assert other.status_code == 422
    assert other.get_json()["errorCode"] == "IDEMPOTENCY_KEY_REUSED"


def test_keys_belong_to_their_caller(web: FlaskClient, funded: str, make_key: Any) -> None:
    other = make_key("user_other")
    mine = start(web, funded, "demo", "/echo", {}, **{"Idempotency-Key": "shared"})
    theirs = start(web, other, "demo", "/echo", {}, **{"Idempotency-Key": "shared"})
    assert mine.get_json()["runId"] != theirs.get_json()["runId"]


def test_concurrent_requests_with_one_key_make_one_run(control_app: Flask, funded: str,
                                                       db: ConnectionPool) -> None:
    barrier = threading.Barrier(10)
    answers: list[Any] = []

    def one() -> None:
        client = control_app.test_client()
        barrier.wait()
        answers.append(start(client, funded, "slow", "/answer", {"q": 1},
                             **{"Idempotency-Key": "together"}))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} == {202}
    assert len({a.get_json()["runId"] for a in answers}) == 1
    with transaction(db) as conn:
        assert conn.execute("SELECT count(*) AS n FROM runs").fetchone() == {"n": 1}
    assert wallet(db).held_micros == 250_000


def test_keys_expire_after_24_hours(web: FlaskClient, funded: str, db: ConnectionPool) -> None:
    first = start(web, funded, "demo", "/echo", {}, **{"Idempotency-Key": "old"})
    with transaction(db) as conn:
        conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    second = start(web, funded, "demo", "/echo", {"new": "body"}, **{"Idempotency-Key": "old"})
    assert second.status_code == 202
    assert second.get_json()["runId"] != first.get_json()["runId"]


@pytest.mark.parametrize("idem", ["", " ", "a" * 256, "tab\there", "naïve"])
def test_a_malformed_key_is_400(web: FlaskClient, funded: str, idem: str) -> None:
    answer = start(web, funded, "demo", "/echo", {}, **{"Idempotency-Key": idem})
    assert answer.status_code == 400
    assert "Idempotency-Key" in answer.get_json()["errors"]

"""Wallets on the real database: holds at accept, settlement at the end, exact money."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from api.app import create_app
from shared import store
from shared.catalog import Catalog, hold_for, load_catalog
from shared.db import transaction
from shared.ids import new_run_id
from shared.settings import Settings
from tests.helpers import KeyMaker, auth
from worker.providers.demo import DemoAdapter
from worker.runner import Runner
from worker.sweeper import Sweeper

CALLER = "USER#user_abc123"


@pytest.fixture
def paid_catalog(tmp_path: Path) -> Path:
    """Demo endpoints with prices, so that money moves."""
    directory = tmp_path / "catalog"
    directory.mkdir()
    common = {"inputSchema": {"type": "object"}, "deadlineSeconds": 60, "maxAttempts": 2}
    (directory / "paid.json").write_text(json.dumps({
        "provider": "paid", "name": "Paid", "adapter": "demo",
        "endpoints": [
            {**common, "path": "/echo", "name": "Echo", "description": "Echo, for a price.",
             "price": {"type": "PER_CALL", "amount": 0.5}, "call": {"action": "echo"}},
            {**common, "path": "/fail", "name": "Fail", "description": "Fails, for a price.",
             "price": {"type": "PER_CALL", "amount": 0.5}, "call": {"action": "fail"}},
            {**common, "path": "/items", "name": "Items", "description": "Per result.",
             "price": {"type": "PER_RESULT", "amount": 0.1, "flatFee": 0.05, "maxResults": 10,
                       "maxResultsInput": "body.max"},
             "call": {"action": "echo"}},
        ]}))
    return directory


@pytest.fixture
def paid_app(settings: Settings, db: ConnectionPool, paid_catalog: Path) -> Iterator[Flask]:
    app = create_app(settings, catalog=load_catalog(paid_catalog))
    yield app
    app.extensions["monid"].pool.close()


@pytest.fixture
def paid(paid_app: Flask) -> FlaskClient:
    return paid_app.test_client()


def credit(pool: ConnectionPool, micros: int, caller: str = CALLER) -> None:
    with transaction(pool) as conn:
        store.credit_wallet(conn, caller, micros, "test")


def wallet(pool: ConnectionPool, caller: str = CALLER) -> store.Wallet:
    with transaction(pool) as conn:
        return store.get_wallet(conn, caller)


def ledger_balances(pool: ConnectionPool, caller: str = CALLER) -> None:
    """credits - charges = balance; holds - releases = held = the open runs' holds."""
    with transaction(pool) as conn:
        sums = {r["kind"]: r["s"] for r in conn.execute(
            "SELECT kind, coalesce(sum(amount_micros), 0) AS s FROM ledger_entries"
            " WHERE caller = %s GROUP BY kind", (caller,))}
        open_holds = conn.execute(
            "SELECT coalesce(sum(hold_micros), 0) AS s FROM runs"
            " WHERE caller = %s AND completed_at IS NULL", (caller,)).fetchone()
    found = wallet(pool, caller)
    assert sums.get("CREDIT", 0) - sums.get("CHARGE", 0) == found.balance_micros
    assert sums.get("HOLD", 0) - sums.get("RELEASE", 0) == found.held_micros
    assert open_holds is not None and open_holds["s"] == found.held_micros
    assert found.balance_micros >= found.held_micros >= 0


def start(client: FlaskClient, key: str, endpoint: str, input: dict[str, Any]) -> Any:
    return client.post("/v1/run", headers=auth(key),
                       json={"provider": "paid", "endpoint": endpoint, "input": input})


def test_a_run_holds_its_price_when_accepted(paid: FlaskClient, key: str,
                                             db: ConnectionPool) -> None:
    credit(db, 2_000_000)
    answer = start(paid, key, "/echo", {"a": 1})
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["price"] == {"type": "PER_CALL", "amount": 0.5, "currency": "USD"}
    assert wallet(db) == store.Wallet(CALLER, 2_000_000, 500_000)
    balance = paid.get("/v1/wallet/balance", headers=auth(key)).get_json()
    assert balance == {"balance": {"value": 2, "currency": "USD"},
                       "held": {"value": 0.5, "currency": "USD"},
                       "available": {"value": 1.5, "currency": "USD"}}
    ledger_balances(db)


@pytest.mark.parametrize(("funds", "status"), [(500_000, 202), (499_999, 402)])
def test_402_exactly_at_the_boundary(paid: FlaskClient, key: str, db: ConnectionPool,
                                     funds: int, status: int) -> None:
    credit(db, funds)
    answer = start(paid, key, "/echo", {})
    assert answer.status_code == status
    with transaction(db) as conn:
        runs = conn.execute("SELECT count(*) AS n FROM runs").fetchone()
    if status == 402:
        body = answer.get_json()
        assert body["errorCode"] == "WALLET_INSUFFICIENT_FUNDS" and body["code"] == 402
        assert body["hints"]["add credit"] == {
            "kind": "topup", "command": "monidctl wallet credit --user user_abc123 --amount 10.00"}
        assert runs == {"n": 0}, "a refused run must not be created"
        assert wallet(db).held_micros == 0
    else:
        assert runs == {"n": 1}
    ledger_balances(db)


@pytest.mark.parametrize(("funds", "cap", "refused"), [
    (1_000_000, 1, store.TooManyRunsInFlight),  # the cap is checked first
    (0, 1, store.TooManyRunsInFlight),
    (0, 0, store.InsufficientFunds),
    (0, 5, store.InsufficientFunds),
])
def test_the_one_statement_accept_writes_all_or_nothing(
        db: ConnectionPool, paid_catalog: Path, funds: int, cap: int,
        refused: type[Exception]) -> None:
    """insert_run stores the run, its hold and its ledger entry in one statement, or
    nothing at all; with one run already in flight, a cap of 1 refuses the next."""
    echo = load_catalog(paid_catalog).find("paid", "/echo")
    assert echo is not None
    credit(db, 500_000 + funds)

    def insert(cap: int) -> Any:
        with db.connection() as conn:  # autocommit, as the API's accept runs it
            conn.autocommit = True
            return store.insert_run(conn, run_id=new_run_id(), caller=CALLER, api_key_id=None,
                                    endpoint=echo, input={}, hold_micros=500_000,
                                    in_flight_cap=cap)

    insert(cap)  # one run in flight, holding 0.5 USD
    before = wallet(db)
    with pytest.raises(refused):
        insert(cap)
    assert wallet(db) == before
    with transaction(db) as conn:
        counts = conn.execute("SELECT (SELECT count(*) FROM runs) AS runs,"
                              " (SELECT count(*) FROM ledger_entries"
                              "  WHERE kind = 'HOLD') AS holds").fetchone()
    assert counts == {"runs": 1, "holds": 1}
    ledger_balances(db)


def test_a_caller_with_no_funds_can_still_run_free_endpoints(client: FlaskClient,
                                                             key: str) -> None:
    answer = client.post("/v1/run", headers=auth(key),
                         json={"provider": "demo", "endpoint": "/echo", "input": {}})
    assert answer.status_code == 202


def test_per_result_holds_the_maximum_or_the_inputs_cap(paid: FlaskClient, key: str,
                                                        db: ConnectionPool) -> None:
    credit(db, 10_000_000)
    assert start(paid, key, "/items", {}).status_code == 202
    assert wallet(db).held_micros == 50_000 + 100_000 * 10
    assert start(paid, key, "/items", {"max": 3}).status_code == 202
    assert wallet(db).held_micros == (50_000 + 1_000_000) + (50_000 + 300_000)
    ledger_balances(db)


@pytest.mark.parametrize("input", [{"max": 11}, {"body": {"max": 500}}])
def test_asking_for_more_results_than_the_endpoint_charges_for_is_refused(
        paid: FlaskClient, key: str, db: ConnectionPool, input: dict[str, Any]) -> None:
    credit(db, 10_000_000)
    answer = start(paid, key, "/items", input)
    assert answer.status_code == 400
    field = "input.max" if "max" in input else "input.body.max"
    assert answer.get_json()["errors"] == {
        field: ["must be <= 10: the most results this endpoint delivers and charges for"]}
    assert wallet(db).held_micros == 0
    assert start(paid, key, "/items", {"max": 10}).status_code == 202


def test_concurrent_holds_never_pass_on_the_same_money(paid_app: Flask, key: str,
                                                       db: ConnectionPool) -> None:
    credit(db, 5 * 500_000)
    answers: list[int] = []
    barrier = threading.Barrier(20)

    def one() -> None:
        client = paid_app.test_client()
        barrier.wait()
        answers.append(start(client, key, "/echo", {}).status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202] * 5 + [402] * 15
    assert wallet(db) == store.Wallet(CALLER, 2_500_000, 2_500_000)
    ledger_balances(db)


# --- settlement ---------------------------------------------------------------------


class Money:
    """Runs of the paid catalog, driven by the runner, and the wallet they move."""

    def __init__(self, settings: Settings, pool: ConnectionPool, catalog: Catalog) -> None:
        self.pool = pool
        self.catalog = catalog
        self.runner = Runner(settings=settings, pool=pool, catalog=catalog,
                             adapters={"demo": DemoAdapter()}, publish=lambda *_: None,
                             name="test")
        self.sweeper = Sweeper(settings=settings, pool=pool, catalog=catalog,
                               adapters={"demo": DemoAdapter()}, publish=lambda *_: None)

    def start(self, endpoint: str, input: dict[str, Any]) -> str:
        found = self.catalog.find("paid", endpoint)
        assert found is not None
        hold, cap = hold_for(found, input)
        run_id = new_run_id()
        with transaction(self.pool) as conn:
            store.insert_run(conn, run_id=run_id, caller=CALLER, api_key_id=None,
                             endpoint=found, input=input, hold_micros=hold, max_results=cap)
        return run_id

    def finish(self, run_id: str) -> store.Run:
        for _ in range(5):
            with transaction(self.pool) as conn:
                conn.execute("UPDATE runs SET next_attempt_at = now() WHERE id = %s"
                             " AND next_attempt_at IS NOT NULL", (run_id,))
            if self.runner.run(run_id) not in ("retry", "following"):
                break
        with transaction(self.pool) as conn:
            run = store.get_run(conn, run_id, CALLER)
        assert run is not None
        return run

    def entries(self, run_id: str) -> dict[str, int]:
        with transaction(self.pool) as conn:
            rows = conn.execute("SELECT kind, amount_micros FROM ledger_entries"
                                " WHERE run_id = %s", (run_id,)).fetchall()
        return {r["kind"]: r["amount_micros"] for r in rows}


@pytest.fixture
def money(settings: Settings, db: ConnectionPool, make_key: KeyMaker,
          paid_catalog: Path) -> Money:
    make_key("user_abc123")
    credit(db, 10_000_000)
    return Money(settings, db, load_catalog(paid_catalog))


def test_a_delivered_per_call_run_is_charged_its_price(money: Money, db: ConnectionPool) -> None:
    run = money.finish(money.start("/echo", {"a": 1}))
    assert run.status == "COMPLETED" and run.cost_micros == 500_000
    assert money.entries(run.id) == {"HOLD": 500_000, "CHARGE": 500_000, "RELEASE": 500_000}
    assert wallet(db) == store.Wallet(CALLER, 9_500_000, 0)
    ledger_balances(db)


def test_a_delivered_per_result_run_is_charged_per_result(money: Money,
                                                          db: ConnectionPool) -> None:
    run = money.finish(money.start("/items", {"max": 4}))
    # The echo delivers one result: the flat fee plus one result.
    assert run.result_count == 1 and run.cost_micros == 50_000 + 100_000
    assert money.entries(run.id) == {"HOLD": 450_000, "CHARGE": 150_000, "RELEASE": 450_000}
    assert wallet(db) == store.Wallet(CALLER, 10_000_000 - 150_000, 0)
    ledger_balances(db)


@pytest.mark.parametrize(("input", "status"), [
    ({"status": 404}, "COMPLETED"),  # the provider's final 4xx: not delivered
    ({"status": 503}, "FAILED"),     # transient failures outlasted the retries
])
def test_runs_that_were_not_delivered_cost_nothing(money: Money, db: ConnectionPool,
                                                   input: dict[str, Any], status: str) -> None:
    run = money.finish(money.start("/fail", input))
    assert run.status == status and run.cost_micros == 0
    assert money.entries(run.id) == {"HOLD": 500_000, "CHARGE": 0, "RELEASE": 500_000}
    assert wallet(db) == store.Wallet(CALLER, 10_000_000, 0)
    ledger_balances(db)


def test_a_timed_out_run_costs_nothing(money: Money, db: ConnectionPool) -> None:
    run_id = money.start("/echo", {})
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET deadline_at = now() WHERE id = %s", (run_id,))
    assert money.sweeper.sweep().ended == {run_id: "TIMED_OUT"}
    assert money.entries(run_id) == {"HOLD": 500_000, "CHARGE": 0, "RELEASE": 500_000}
    assert wallet(db) == store.Wallet(CALLER, 10_000_000, 0)
    ledger_balances(db)


def test_a_second_settlement_is_impossible(money: Money, db: ConnectionPool) -> None:
    run = money.finish(money.start("/echo", {}))
    # The settlement end_run made, made again with the same values.
    with pytest.raises(psycopg.errors.UniqueViolation), transaction(db) as conn:
        conn.execute("SELECT monid_settle(caller, id, cost_micros, hold_micros) FROM runs"
                     " WHERE id = %s", (run.id,))
    assert wallet(db) == store.Wallet(CALLER, 9_500_000, 0)
    ledger_balances(db)


def test_a_settlement_replayed_by_a_second_worker_charges_once(money: Money,
                                                               db: ConnectionPool) -> None:
    run_id = money.start("/echo", {})
    with transaction(db) as conn:
        first = store.claim_run(conn, run_id, worker="one", lease_seconds=60)
    assert first is not None
    # The lease is lost and a second worker takes the run over.
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET lease_expires_at = now() - interval '1 second'"
                     " WHERE id = %s", (run_id,))
    money.sweeper.sweep()
    assert money.runner.run(run_id) == "completed"
    # The first worker comes back with its own result: discarded, never charged.
    with transaction(db) as conn:
        assert not store.end_run(conn, first, store.AttemptEnd("OK", 200),
                                 status="COMPLETED", cost_micros=500_000)
    assert money.entries(run_id) == {"HOLD": 500_000, "CHARGE": 500_000, "RELEASE": 500_000}
    assert wallet(db) == store.Wallet(CALLER, 9_500_000, 0)
    ledger_balances(db)


def test_the_cost_of_a_run_equals_what_the_ledger_charged(money: Money, paid: FlaskClient,
                                                          key: str) -> None:
    run_id = money.start("/items", {})
    money.finish(run_id)
    shown = paid.get(f"/v1/runs/{run_id}", headers=auth(key)).get_json()
    assert shown["cost"] == {"value": 0.15, "currency": "USD"}
    assert money.entries(run_id)["CHARGE"] == 150_000


def test_a_free_run_moves_no_money_and_writes_no_ledger_rows(db: ConnectionPool) -> None:
    """Nothing held, nothing charged: settling writes nothing, and the run still ends
    once (its lease guards the end)."""
    from tests.helpers import insert_demo_run

    credit(db, 1_000_000, "USER#u")
    before = wallet(db, "USER#u")
    run_id = insert_demo_run(db, "/echo", {})
    with transaction(db) as conn:
        claimed = store.claim_run(conn, run_id, worker="w", lease_seconds=60)
        assert isinstance(claimed, store.Claim)
        assert store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status="COMPLETED",
                             output={}, result_count=1, cost_micros=0) is not None
        assert store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status="COMPLETED",
                             output={}, result_count=1, cost_micros=0) is None
        entries = conn.execute("SELECT count(*) AS n FROM ledger_entries WHERE run_id = %s",
                               (run_id,)).fetchone()
    assert entries == {"n": 0}
    assert wallet(db, "USER#u") == before
    ledger_balances(db, "USER#u")

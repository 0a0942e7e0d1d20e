"""Spend controls on the real database: budgets and run caps that block runs, exactly,
and their routes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared import controls, store
from shared.db import transaction
from shared.store import controls as controls_store
from tests.helpers import KeyMaker, auth, monidctl

CALLER = "USER#user_abc123"
PRICE = 3000  # apify /apidojo/tweet-scraper: 0.003 USD per call
RUN = {"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
       "input": {"searchTerms": ["AI"], "maxItems": 10}}
BUDGETS = "/v1/controls/workspace/budgets"
RUN_CAPS = "/v1/controls/workspace/run-caps"


@pytest.fixture
def funded(db: ConnectionPool, key: str) -> str:
    with transaction(db) as conn:
        store.credit_wallet(conn, CALLER, 1_000_000, "tests")
    return key


def _start(client: FlaskClient, key: str, **headers: str) -> Any:
    return client.post("/v1/run", json=RUN, headers={**auth(key), **headers})


def _settle(db: ConnectionPool, run_id: str, cost: int) -> None:
    """End the run as a worker would, charging `cost`."""
    with transaction(db) as conn:
        conn.execute("UPDATE runs SET status = 'COMPLETED', completed_at = now(),"
                     " cost_micros = %s WHERE id = %s", (cost, run_id))
        conn.execute("SELECT monid_settle(caller, id, cost_micros, hold_micros) FROM runs"
                     " WHERE id = %s", (run_id,))


def test_a_budget_holds_each_run_and_blocks_the_one_it_cannot_cover(
        client: FlaskClient, funded: str, db: ConnectionPool) -> None:
    budget = controls.create_budget(db, CALLER, period="DAY", limit_micros=7000)
    first, second = _start(client, funded), _start(client, funded)
    assert (first.status_code, second.status_code) == (202, 202)
    third = _start(client, funded)
    assert third.status_code == 200
    blocked = third.get_json()
    assert blocked["status"] == "BLOCKED"
    assert blocked["reason"] == ("the DAY budget of 0.007 USD has 0.001 USD available; this "
                                 "run needs 0.003 USD")
    [control] = blocked["controls"]
    assert control["controlId"] == budget.id and control["controlType"] == "WORKSPACE_BUDGET"
    assert control["requiredAmount"] == 0.003
    assert control["snapshot"]["limitAmount"] == 0.007
    assert control["snapshot"]["heldAmount"] == 0.006
    assert control["snapshot"]["period"] == "DAY"
    assert blocked["hints"]["raise the budget"] == {
        "kind": "command", "command": f"monidctl controls budget set {budget.id} --limit 0.009"}
    assert blocked["completedAt"] == blocked["createdAt"]
    assert third.headers["Location"] == f"/v1/runs/{blocked['runId']}"

    # Ended, at no cost, nothing held on the wallet or the budget.
    started = time.monotonic()
    run = client.get(f"/v1/runs/{blocked['runId']}?wait=10", headers=auth(funded)).get_json()
    assert time.monotonic() - started < 2
    assert (run["status"], run["cost"], run["stoppable"]) == ("BLOCKED", {"value": 0,
                                                                         "currency": "USD"},
                                                              False)
    wallet = client.get("/v1/wallet/balance", headers=auth(funded)).get_json()
    assert wallet["held"]["value"] == 0.006
    got = client.get(f"{BUDGETS}/{budget.id}", headers=auth(funded)).get_json()
    assert (got["limitAmount"], got["heldAmount"], got["spentAmount"],
            got["availableAmount"], got["status"]) == (0.007, 0.006, 0, 0.001, "ACTIVE")
    records = client.get(f"/v1/runs/{blocked['runId']}/controls",
                         headers=auth(funded)).get_json()
    assert [(r["controlId"], r["status"], r["requiredAmount"]) for r in records["items"]] == [
        (budget.id, "BLOCKED", 0.003)]
    blocked_runs = client.get("/v1/runs?status=BLOCKED", headers=auth(funded)).get_json()
    assert [r["runId"] for r in blocked_runs["items"]] == [blocked["runId"]]

    # Settlement moves a hold to spent, or releases it.
    _settle(db, first.get_json()["runId"], PRICE)
    stopped = client.post(f"/v1/runs/{second.get_json()['runId']}/stop", headers=auth(funded))
    assert stopped.status_code == 202
    got = client.get(f"{BUDGETS}/{budget.id}", headers=auth(funded)).get_json()
    assert (got["spentAmount"], got["heldAmount"], got["availableAmount"]) == (0.003, 0, 0.004)
    page = client.get(f"{BUDGETS}/{budget.id}/runs", headers=auth(funded)).get_json()
    assert [(r["runId"], r["status"], r["settledAmount"]) for r in page["items"]] == [
        (blocked["runId"], "BLOCKED", None),
        (second.get_json()["runId"], "RELEASED", 0),
        (first.get_json()["runId"], "SETTLED", 0.003)]


def test_a_run_cap_blocks_a_run_over_it_and_a_change_counts_from_the_next_accept(
        client: FlaskClient, funded: str, db: ConnectionPool) -> None:
    cap = controls.create_run_cap(db, CALLER, limit_micros=2000)
    blocked = _start(client, funded).get_json()
    assert blocked["status"] == "BLOCKED"
    assert blocked["controls"][0]["controlType"] == "WORKSPACE_RUN_CAP"
    assert blocked["reason"] == ("the run cap of 0.002 USD is below what this run holds, "
                                 "0.003 USD")
    changed = client.patch(f"{RUN_CAPS}/{cap.id}", headers=auth(funded),
                           json={"limitAmount": {"value": 1, "unit": "CENT"}})
    assert changed.status_code == 200 and changed.get_json()["limitAmount"] == 0.01
    accepted = _start(client, funded)
    assert accepted.status_code == 202
    page = client.get(f"{RUN_CAPS}/{cap.id}/runs", headers=auth(funded)).get_json()
    assert [(r["status"], r["estimatedCost"]) for r in page["items"]] == [
        ("PASSED", 0.003), ("BLOCKED", 0.003)]
    assert client.get(RUN_CAPS, headers=auth(funded)).get_json()["items"][0][
        "runCapControlId"] == cap.id


def test_lowering_a_budget_keeps_accepted_runs_and_blocks_the_next(
        client: FlaskClient, funded: str, db: ConnectionPool) -> None:
    budget = controls.create_budget(db, CALLER, period="HOUR", limit_micros=1_000_000)
    accepted = _start(client, funded).get_json()
    lowered = client.patch(f"{BUDGETS}/{budget.id}", headers=auth(funded),
                           json={"limitAmount": {"value": 0, "unit": "DOLLAR"}})
    assert lowered.get_json()["availableAmount"] == 0
    assert _start(client, funded).get_json()["status"] == "BLOCKED"
    run = client.get(f"/v1/runs/{accepted['runId']}", headers=auth(funded)).get_json()
    assert run["status"] == "RUNNING"
    paused = client.patch(f"{BUDGETS}/{budget.id}", headers=auth(funded),
                          json={"status": "PAUSED"})
    assert paused.get_json()["status"] == "PAUSED"
    assert _start(client, funded).status_code == 202  # a paused budget judges nothing
    # Settled while paused, the hold still leaves the budget.
    _settle(db, accepted["runId"], PRICE)
    got = client.get(f"{BUDGETS}/{budget.id}", headers=auth(funded)).get_json()
    assert (got["heldAmount"], got["spentAmount"]) == (0, 0.003)


def test_a_key_budget_limits_that_key_alone(client: FlaskClient, funded: str,
                                            make_key: KeyMaker, db: ConnectionPool) -> None:
    other = make_key("user_abc123")
    with transaction(db) as conn:
        key_id = conn.execute("SELECT max(id) AS id FROM api_keys").fetchone()["id"]
    budget = controls.create_budget(db, CALLER, period="MONTH", limit_micros=PRICE,
                                    api_key_id=key_id)
    assert _start(client, other).status_code == 202
    blocked = _start(client, other).get_json()
    assert blocked["controls"][0]["controlType"] == "KEY_BUDGET"
    assert blocked["reason"].startswith("this API key's MONTH budget of 0.003 USD")
    assert _start(client, funded).status_code == 202  # the other key is not limited
    # Listed with the workspace's budgets it is not; read by its ID it is.
    assert client.get(BUDGETS, headers=auth(funded)).get_json()["items"] == []
    assert client.get(f"{BUDGETS}/{budget.id}", headers=auth(funded)).status_code == 200


def test_a_budget_whose_window_has_passed_starts_again(client: FlaskClient, funded: str,
                                                       db: ConnectionPool) -> None:
    budget = controls.create_budget(db, CALLER, period="DAY", limit_micros=PRICE)
    with transaction(db) as conn:
        conn.execute("UPDATE budget_controls SET window_start = window_start - interval '1 day',"
                     " spent_micros = %s", (PRICE,))
    got = client.get(f"{BUDGETS}/{budget.id}", headers=auth(funded)).get_json()
    assert (got["spentAmount"], got["availableAmount"]) == (0, 0.003)
    assert _start(client, funded).status_code == 202
    with transaction(db) as conn:
        found = controls_store.get_budget_control(conn, budget.id, CALLER)
    assert found is not None and (found.spent_micros, found.held_micros) == (0, PRICE)


def test_an_idempotent_repeat_of_a_blocked_run_answers_it_again(
        client: FlaskClient, funded: str, db: ConnectionPool) -> None:
    controls.create_budget(db, CALLER, period="DAY", limit_micros=0)
    first = _start(client, funded, **{"Idempotency-Key": "k1"})
    again = _start(client, funded, **{"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["runId"] == first.get_json()["runId"]
    assert again.get_json()["controls"] == first.get_json()["controls"]


@pytest.mark.parametrize(("body", "field"), [
    ({"limitAmount": {"value": -1, "unit": "DOLLAR"}}, "limitAmount.value"),
    ({"limitAmount": {"value": "five", "unit": "DOLLAR"}}, "limitAmount.value"),
    ({"limitAmount": {"value": 0.0000001, "unit": "DOLLAR"}}, "limitAmount.value"),
    ({"limitAmount": {"value": 10**12, "unit": "DOLLAR"}}, "limitAmount.value"),
    ({"limitAmount": {"value": 1, "unit": "EURO"}}, "limitAmount.unit"),
    ({"limitAmount": {"value": 1, "unit": "DOLLAR", "currency": "EUR"}},
     "limitAmount.currency"),
    ({"status": "OFF"}, "status"),
    ({}, "body"),
    ({"limit": 5}, "limit"),
])
def test_bad_changes_are_400_naming_the_field(client: FlaskClient, funded: str,
                                              db: ConnectionPool, body: dict[str, Any],
                                              field: str) -> None:
    budget = controls.create_budget(db, CALLER, period="DAY", limit_micros=PRICE)
    answer = client.patch(f"{BUDGETS}/{budget.id}", headers=auth(funded), json=body)
    assert answer.status_code == 400, answer.get_json()
    assert field in answer.get_json()["errors"], answer.get_json()
    with transaction(db) as conn:
        unchanged = controls_store.get_budget_control(conn, budget.id, CALLER)
    assert unchanged is not None and unchanged.limit_micros == PRICE


def test_another_workspaces_controls_are_not_found(client: FlaskClient, funded: str,
                                                   db: ConnectionPool) -> None:
    budget = controls.create_budget(db, "USER#someone_else", period="DAY", limit_micros=PRICE)
    cap = controls.create_run_cap(db, "USER#someone_else", limit_micros=PRICE)
    for path in (f"{BUDGETS}/{budget.id}", f"{BUDGETS}/{budget.id}/runs",
                 f"{RUN_CAPS}/{cap.id}", f"{RUN_CAPS}/{cap.id}/runs", f"{BUDGETS}/nope"):
        answer = client.get(path, headers=auth(funded))
        assert (answer.status_code, answer.get_json()["errorCode"]) == (404, "NOT_FOUND"), path
    patched = client.patch(f"{BUDGETS}/{budget.id}", headers=auth(funded),
                           json={"status": "PAUSED"})
    assert patched.status_code == 404
    assert client.get(BUDGETS, headers=auth(funded)).get_json() == {"items": [], "cursor": None}
    run = _start(client, funded).get_json()  # its budget does not judge this workspace's runs
    assert client.get(f"/v1/runs/{run['runId']}/controls",
                      headers=auth(funded)).get_json()["items"] == []


def test_budgets_are_paged_newest_first(client: FlaskClient, funded: str,
                                        db: ConnectionPool) -> None:
    made = [controls.create_budget(db, CALLER, period="DAY", limit_micros=PRICE * i).id
            for i in range(1, 4)]
    first = client.get(f"{BUDGETS}?limit=2", headers=auth(funded)).get_json()
    assert [b["budgetControlId"] for b in first["items"]] == made[:0:-1]
    rest = client.get(f"{BUDGETS}?limit=2&cursor={first['cursor']}",
                      headers=auth(funded)).get_json()
    assert ([b["budgetControlId"] for b in rest["items"]], rest["cursor"]) == ([made[0]], None)
    assert client.get(f"{BUDGETS}?cursor=junk", headers=auth(funded)).status_code == 400


def test_monidctl_makes_budgets_run_caps_and_key_budgets(base_env: dict[str, str],
                                                         funded: str, db: ConnectionPool
                                                         ) -> None:
    made = monidctl("controls", "budget", "create", "--user", "user_abc123", "--period", "DAY",
                    "--limit", "5.00", env=base_env)
    assert made.returncode == 0, made.stderr
    budget_id = made.stdout.splitlines()[-1]
    with transaction(db) as conn:
        budget = controls_store.get_budget_control(conn, budget_id, CALLER)
    assert budget is not None and (budget.period, budget.limit_micros) == ("DAY", 5_000_000)
    cap = monidctl("controls", "run-cap", "create", "--user", "user_abc123", "--limit", "1.00",
                   env=base_env)
    assert cap.returncode == 0, cap.stderr
    with transaction(db) as conn:
        found = controls_store.get_run_cap_control(conn, cap.stdout.splitlines()[-1], CALLER)
    assert found is not None and found.limit_micros == 1_000_000
    raised = monidctl("controls", "budget", "set", budget_id, "--limit", "7.5", env=base_env)
    assert raised.returncode == 0 and raised.stdout.splitlines()[-1] == budget_id
    keyed = monidctl("keys", "create", "--user", "user_abc123", "--budget", "0.50", "--period",
                     "DAY", env=base_env)
    assert keyed.returncode == 0, keyed.stderr
    assert keyed.stdout.splitlines()[-1].startswith("monid_live_")
    with transaction(db) as conn:
        row = conn.execute("SELECT limit_micros, api_key_id IS NOT NULL AS keyed FROM"
                           " budget_controls WHERE api_key_id IS NOT NULL").fetchone()
    assert row == {"limit_micros": 500_000, "keyed": True}
    for bad in ("-1", "five", "1.0000001", "99999999999"):
        refused = monidctl("controls", "budget", "create", "--user", "user_abc123", "--period",
                           "DAY", "--limit", bad, env=base_env)
        assert refused.returncode == 2 and "--limit" in refused.stderr, bad
    unknown = monidctl("controls", "run-cap", "create", "--user", "nobody", "--limit", "1",
                       env=base_env)
    assert unknown.returncode == 1 and "no user nobody" in unknown.stderr
    half = monidctl("keys", "create", "--user", "user_abc123", "--budget", "1", env=base_env)
    assert half.returncode == 1 and "--period" in half.stderr

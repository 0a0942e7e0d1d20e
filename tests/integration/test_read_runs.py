"""GET /v1/runs/<id> and GET /v1/runs against a real PostgreSQL: the run's shape, who may
see it, and paging that neither skips nor repeats while runs arrive."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import transaction
from tests.helpers import auth

ISO_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FULL_FIELDS = {"runId", "caller", "provider", "providerName", "endpoint", "status", "stoppable",
               "input", "output", "outputTruncated", "itemsUrl", "resultCount",
               "providerResponse", "error", "price", "cost", "attempts", "hints", "createdAt",
               "startedAt", "completedAt"}
ITEM_FIELDS = FULL_FIELDS - {"input", "output", "outputTruncated", "itemsUrl", "attempts",
                             "hints"}
DEMO_PRICE = {"type": "PER_CALL", "amount": 0, "currency": "USD"}
MISSING_ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def start(client: FlaskClient, key: str, input: dict[str, Any] | None = None,
          endpoint: str = "/echo") -> str:
    resp = client.post("/v1/run", json={"provider": "demo", "endpoint": endpoint,
                                        "input": {} if input is None else input},
                       headers=auth(key))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    run_id: str = resp.get_json()["runId"]
    return run_id


def start_many(client: FlaskClient, key: str, count: int) -> list[str]:
    return [start(client, key, {"n": n}) for n in range(count)]


def get_run(client: FlaskClient, key: str, run_id: str) -> dict[str, Any]:
    resp = client.get(f"/v1/runs/{run_id}", headers=auth(key))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    return body


def list_page(client: FlaskClient, key: str, **params: Any) -> dict[str, Any]:
    resp = client.get("/v1/runs", query_string=params, headers=auth(key))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    assert set(body) == {"items", "cursor"}
    return body


def list_all(client: FlaskClient, key: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        page = list_page(client, key, **query)
        items.extend(page["items"])
        cursor = page["cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging never ended")


def assert_error(resp: Any, status: int, error_code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    assert {"code", "message", "errorCode"} <= set(body) <= {"code", "message", "errorCode",
                                                             "errors"}
    assert body["code"] == status
    assert body["errorCode"] == error_code
    assert resp.headers.get("x-request-id")
    return body


def parse_iso(value: str) -> datetime:
    assert ISO_MS_UTC.match(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def claim(pool: ConnectionPool, run_id: str) -> store.Claim:
    """What a worker does when it picks a run up."""
    with transaction(pool) as conn:
        claimed = store.claim_run(conn, run_id, worker="test-worker", lease_seconds=60)
    assert claimed is not None
    return claimed


def complete(pool: ConnectionPool, run_id: str, output: Any) -> None:
    """What a worker does when the provider delivered."""
    claimed = claim(pool, run_id)
    with transaction(pool) as conn:
        ended = store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status="COMPLETED",
                              output=output, result_count=len(output),
                              provider_response={"httpStatus": 200}, cost_micros=0)
    assert ended


# --- GET /v1/runs/<id> ---------------------------------------------------------------


def test_a_new_run_has_the_full_shape(client: FlaskClient, key: str) -> None:
    sent = {"searchTerms": ["AI"], "maxItems": 10}
    accepted = client.post("/v1/run", json={"provider": "demo", "endpoint": "/echo",
                                            "input": sent}, headers=auth(key)).get_json()
    run = get_run(client, key, accepted["runId"])

    assert set(run) == FULL_FIELDS
    assert run["runId"] == accepted["runId"]
    assert run["caller"] == "USER#user_abc123"
    assert run["provider"] == "demo"
    assert run["providerName"] == "Demo"
    assert run["endpoint"] == "/echo"
    assert run["status"] == "RUNNING"
    assert run["stoppable"] is True
    assert run["input"] == sent
    assert run["output"] is None
    assert run["outputTruncated"] is False
    assert run["itemsUrl"] == f"/v1/runs/{run['runId']}/items"
    assert run["resultCount"] is None
    assert run["providerResponse"] is None
    assert run["error"] is None
    assert run["price"] == DEMO_PRICE
    assert run["cost"] is None
    assert run["attempts"] == []
    assert run["createdAt"] == accepted["createdAt"]
    assert abs(parse_iso(run["createdAt"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert run["startedAt"] is None
    assert run["completedAt"] is None


def test_a_picked_up_run_has_started_but_not_ended(client: FlaskClient, key: str,
                                                   pool: ConnectionPool) -> None:
    run_id = start(client, key, {"a": 1})
    claim(pool, run_id)
    run = get_run(client, key, run_id)

    assert set(run) == FULL_FIELDS
    assert run["status"] == "RUNNING" and run["stoppable"] is True
    assert parse_iso(run["startedAt"]) >= parse_iso(run["createdAt"])
    assert run["completedAt"] is None
    assert run["output"] is None and run["cost"] is None
    assert len(run["attempts"]) == 1
    attempt = run["attempts"][0]
    assert attempt["number"] == 1
    assert ISO_MS_UTC.match(attempt["startedAt"])
    assert attempt["endedAt"] is None
    assert attempt["outcome"] is None


def test_an_ended_run_has_output_cost_and_attempts(client: FlaskClient, key: str,
                                                   pool: ConnectionPool) -> None:
    run_id = start(client, key, {"a": 1})
    complete(pool, run_id, [{"id": "1", "text": "hello"}])
    run = get_run(client, key, run_id)

    assert set(run) == FULL_FIELDS
    assert run["status"] == "COMPLETED"
    assert run["stoppable"] is False
    assert run["input"] == {"a": 1}
    assert run["output"] == [{"id": "1", "text": "hello"}]
    assert run["resultCount"] == 1
    assert run["providerResponse"] == {"httpStatus": 200}
    assert run["error"] is None
    assert run["cost"] == {"value": 0, "currency": "USD"}
    created, started = parse_iso(run["createdAt"]), parse_iso(run["startedAt"])
    completed = parse_iso(run["completedAt"])
    assert created <= started <= completed
    assert len(run["attempts"]) == 1
    attempt = run["attempts"][0]
    assert attempt["number"] == 1
    assert attempt["outcome"] == "OK"
    assert attempt["httpStatus"] == 200
    assert parse_iso(attempt["startedAt"]) <= parse_iso(attempt["endedAt"])


def _same_404(a: Any, a_id: str, b: Any, b_id: str) -> None:
    assert a.status_code == b.status_code == 404
    body_a, body_b = a.get_json(), b.get_json()
    assert set(body_a) == set(body_b)
    assert body_a["errorCode"] == body_b["errorCode"] == "NOT_FOUND"
    assert body_a["code"] == body_b["code"] == 404
    assert body_a["message"].replace(a_id, "<id>") == body_b["message"].replace(b_id, "<id>")
    assert body_a.get("errors") == body_b.get("errors")
    skip = {"x-request-id", "content-length"}
    assert ({name.lower() for name, _ in a.headers.items()} - skip
            == {name.lower() for name, _ in b.headers.items()} - skip)


@pytest.mark.parametrize("malformed", ["not-a-run", "01arz3ndektsv4rrffq69g5fav",
                                       "01ARZ3NDEKTSV4RRFFQ69G5FA", "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
                                       "01ARZ3NDEKTSV4RRFFQ69G5FAU", "1"])
def test_another_callers_run_is_404_exactly_like_a_missing_or_malformed_one(
        client: FlaskClient, key: str, make_key: Any, malformed: str) -> None:
    theirs = start(client, make_key("user_other"))
    other = client.get(f"/v1/runs/{theirs}", headers=auth(key))
    missing = client.get(f"/v1/runs/{MISSING_ULID}", headers=auth(key))
    bad = client.get(f"/v1/runs/{malformed}", headers=auth(key))

    assert_error(other, 404, "NOT_FOUND")
    assert_error(missing, 404, "NOT_FOUND")
    assert_error(bad, 404, "NOT_FOUND")
    _same_404(other, theirs, missing, MISSING_ULID)
    _same_404(other, theirs, bad, malformed)


def test_another_key_of_the_same_caller_sees_the_run(client: FlaskClient, key: str,
                                                     make_key: Any) -> None:
    run_id = start(client, key)
    second = make_key("user_abc123")
    assert get_run(client, second, run_id)["runId"] == run_id
    assert [i["runId"] for i in list_page(client, second)["items"]] == [run_id]


def test_run_ids_are_case_sensitive_not_found_when_lowercased(client: FlaskClient,
                                                              key: str) -> None:
    run_id = start(client, key)
    assert_error(client.get(f"/v1/runs/{run_id.lower()}", headers=auth(key)), 404, "NOT_FOUND")


# --- GET /v1/runs --------------------------------------------------------------------


def test_list_is_empty_for_a_new_caller(client: FlaskClient, key: str) -> None:
    assert list_page(client, key) == {"items": [], "cursor": None}


def test_list_is_newest_first_with_items_without_input_output_attempts(
        client: FlaskClient, key: str) -> None:
    ids = start_many(client, key, 3)
    page = list_page(client, key)
    assert page["cursor"] is None
    assert [i["runId"] for i in page["items"]] == ids[::-1]
    for item in page["items"]:
        assert set(item) == ITEM_FIELDS
        assert item["caller"] == "USER#user_abc123"
        assert item["provider"] == "demo" and item["providerName"] == "Demo"
        assert item["endpoint"] == "/echo"
        assert item["status"] == "RUNNING" and item["stoppable"] is True
        assert item["price"] == DEMO_PRICE
        assert item["cost"] is None
        assert item["startedAt"] is None and item["completedAt"] is None
        assert ISO_MS_UTC.match(item["createdAt"])
    created = [parse_iso(i["createdAt"]) for i in page["items"]]
    assert created == sorted(created, reverse=True)


def test_list_items_match_the_run(client: FlaskClient, key: str, pool: ConnectionPool) -> None:
    run_id = start(client, key, {"x": 1})
    complete(pool, run_id, [{"k": "v"}, {"k": "w"}])
    full = get_run(client, key, run_id)
    (item,) = list_page(client, key)["items"]
    assert item == {k: v for k, v in full.items() if k in ITEM_FIELDS}


def test_limit_defaults_to_10(client: FlaskClient, key: str) -> None:
    ids = start_many(client, key, 12)
    page = list_page(client, key)
    assert [i["runId"] for i in page["items"]] == ids[::-1][:10]
    assert isinstance(page["cursor"], str) and page["cursor"]


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_limit_within_range_is_honoured(client: FlaskClient, key: str, limit: int) -> None:
    ids = start_many(client, key, 8)
    page = list_page(client, key, limit=limit)
    assert [i["runId"] for i in page["items"]] == ids[::-1][:limit]
    assert (page["cursor"] is None) == (limit >= len(ids))


def test_limit_equal_to_the_count_ends_with_a_null_cursor(client: FlaskClient,
                                                          key: str) -> None:
    ids = start_many(client, key, 10)
    page = list_page(client, key, limit=10)
    assert [i["runId"] for i in page["items"]] == ids[::-1]
    assert page["cursor"] is None


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1", "1.5", "", "1e2"])
def test_limit_out_of_range_or_not_an_integer_is_400(client: FlaskClient, key: str,
                                                     limit: str) -> None:
    start(client, key)
    resp = client.get("/v1/runs", query_string={"limit": limit}, headers=auth(key))
    body = assert_error(resp, 400, "VALIDATION_FAILED")
    assert "limit" in body["errors"]


@pytest.mark.parametrize("status", ["BOGUS", "running", "", "DONE"])
def test_invalid_status_filter_is_400(client: FlaskClient, key: str, status: str) -> None:
    resp = client.get("/v1/runs", query_string={"status": status}, headers=auth(key))
    body = assert_error(resp, 400, "VALIDATION_FAILED")
    assert "status" in body["errors"]


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "garbage!!", "abc", "x" * 300, "", _b64({"before": 5}), _b64({"after": MISSING_ULID}),
    _b64(["01ARZ3NDEKTSV4RRFFQ69G5FAV"]), _b64({"before": "short"}), "%%%", "é",
    pytest.param(_b64({"before": "x" * 26}), id="before-not-a-ulid-lowercase"),
    pytest.param(_b64({"before": "!" * 26}), id="before-not-a-ulid-punctuation"),
])
def test_invalid_cursor_is_400(client: FlaskClient, key: str, cursor: str) -> None:
    start(client, key)
    resp = client.get("/v1/runs", query_string={"cursor": cursor}, headers=auth(key))
    body = assert_error(resp, 400, "VALIDATION_FAILED")
    assert "cursor" in body["errors"]


def test_status_filter(client: FlaskClient, key: str, pool: ConnectionPool) -> None:
    ids = start_many(client, key, 5)
    done = {ids[1], ids[3]}
    for run_id in sorted(done):
        complete(pool, run_id, [])

    completed = list_all(client, key, status="COMPLETED")
    assert [i["runId"] for i in completed] == [ids[3], ids[1]]
    assert all(i["status"] == "COMPLETED" and i["stoppable"] is False for i in completed)
    running = list_all(client, key, status="RUNNING")
    assert [i["runId"] for i in running] == [ids[4], ids[2], ids[0]]
    for status in ("FAILED", "STOPPED", "TIMED_OUT", "STOPPING"):
        assert list_page(client, key, status=status) == {"items": [], "cursor": None}

    first = list_page(client, key, status="RUNNING", limit=2)
    assert [i["runId"] for i in first["items"]] == [ids[4], ids[2]]
    assert first["cursor"]
    rest = list_page(client, key, status="RUNNING", limit=2, cursor=first["cursor"])
    assert [i["runId"] for i in rest["items"]] == [ids[0]]
    assert rest["cursor"] is None


def test_paging_neither_skips_nor_repeats_while_runs_arrive(client: FlaskClient,
                                                            key: str) -> None:
    original = start_many(client, key, 25)
    newest_first = original[::-1]

    pages = []
    cursor = None
    arrived = []
    while True:
        page = list_page(client, key, **({"cursor": cursor} if cursor else {}))
        pages.append([i["runId"] for i in page["items"]])
        cursor = page["cursor"]
        if cursor is None:
            break
        arrived.append(start(client, key, {"late": len(arrived)}))
        assert len(pages) < 10, "paging never ended"

    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [run_id for page in pages for run_id in page]
    assert seen == newest_first
    assert not set(seen) & set(arrived)
    assert len(arrived) == 2

    latest = list_page(client, key, limit=3)
    assert [i["runId"] for i in latest["items"]] == [arrived[1], arrived[0], newest_first[0]]


def test_paging_with_limit_covers_everything_once(client: FlaskClient, key: str) -> None:
    ids = start_many(client, key, 7)
    assert [i["runId"] for i in list_all(client, key, limit=3)] == ids[::-1]
    assert [i["runId"] for i in list_all(client, key, limit=1)] == ids[::-1]


def test_a_caller_never_sees_another_callers_runs(client: FlaskClient, key: str,
                                                  make_key: Any) -> None:
    other_key = make_key("user_other")
    mine, theirs = [], []
    for n in range(6):
        mine.append(start(client, key, {"n": n}))
        theirs.append(start(client, other_key, {"n": n}))

    my_items = list_all(client, key, limit=4)
    their_items = list_all(client, other_key, limit=4)
    assert [i["runId"] for i in my_items] == mine[::-1]
    assert [i["runId"] for i in their_items] == theirs[::-1]
    assert {i["caller"] for i in my_items} == {"USER#user_abc123"}
    assert {i["caller"] for i in their_items} == {"USER#user_other"}
    assert [i["runId"] for i in list_all(client, key, status="RUNNING")] == mine[::-1]

    # A cursor made from the other caller's page still only shows one's own runs.
    their_cursor = list_page(client, other_key, limit=2)["cursor"]
    assert their_cursor
    leaked = list_page(client, key, cursor=their_cursor, limit=100)["items"]
    assert {i["caller"] for i in leaked} <= {"USER#user_abc123"}
    assert not {i["runId"] for i in leaked} & set(theirs)

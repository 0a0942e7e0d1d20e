"""The JSON form of runs and prices (the answer schemas), and marshmallow's messages as
field errors."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from api.schemas import AcceptedRunSchema, PriceSchema, RunSchema, RunSummarySchema
from shared.catalog import Price
from shared.errors import InvalidRequest
from shared.requests import ListRunsSchema, StartRunSchema, _flatten, _tidy, load
from shared.runs import AcceptedRun
from shared.store import END_STATUSES, Run


def run_json(run: Run, *, full: bool) -> dict[str, Any]:
    dumped: dict[str, Any] = (RunSchema() if full else RunSummarySchema()).dump(run)
    return dumped


def price_json(price_type: str, amount_micros: int,
               flat_fee_micros: int | None) -> dict[str, Any]:
    dumped: dict[str, Any] = PriceSchema().dump(Price(price_type, amount_micros,
                                                      flat_fee_micros))
    return dumped


CREATED = datetime(2026, 3, 28, 10, 30, 0, tzinfo=UTC)
STARTED = datetime(2026, 3, 28, 10, 30, 0, 20_000, tzinfo=UTC)
COMPLETED = datetime(2026, 3, 28, 10, 30, 7, 310_000, tzinfo=UTC)
RUN_ID = "01JGXYZABCDEFGHJKMNPQRSTVW"


def make_run(**overrides: Any) -> Run:
    fields: dict[str, Any] = {
        "id": RUN_ID,
        "caller": "USER#user_abc123",
        "provider": "apify",
        "provider_name": "Apify",
        "endpoint": "/apidojo/tweet-scraper",
        "status": "RUNNING",
        "result_count": None,
        "provider_response": None,
        "error": None,
        "price_type": "PER_CALL",
        "price_micros": 3000,
        "flat_fee_micros": None,
        "cost_micros": None,
        "attempt_count": 0,
        "max_attempts": 5,
        "next_attempt_at": None,
        "deadline_at": CREATED + timedelta(minutes=15),
        "created_at": CREATED,
        "started_at": None,
        "completed_at": None,
        "input": {"searchTerms": ["AI"], "maxItems": 10},
        "output": None,
        "attempts": (),
    }
    fields.update(overrides)
    return Run(**fields)


def completed_run(**overrides: Any) -> Run:
    fields: dict[str, Any] = {
        "status": "COMPLETED",
        "result_count": 1,
        "provider_response": {"httpStatus": 200},
        "cost_micros": 3000,
        "attempt_count": 1,
        "started_at": STARTED,
        "completed_at": COMPLETED,
        "output": [{"id": "1", "text": "..."}],
        "attempts": ({"number": 1, "startedAt": "2026-03-28T10:30:00.020Z",
                      "endedAt": "2026-03-28T10:30:07.300Z", "outcome": "OK",
                      "httpStatus": 200, "nextAttemptAt": None},),
    }
    fields.update(overrides)
    return make_run(**fields)


PRICE = {"type": "PER_CALL", "amount": 0.003, "currency": "USD"}


# --- run_json -------------------------------------------------------------------------


def test_a_completed_run_as_in_the_contract() -> None:
    assert run_json(completed_run(), full=True) == {
        "runId": RUN_ID,
        "caller": "USER#user_abc123",
        "provider": "apify",
        "providerName": "Apify",
        "endpoint": "/apidojo/tweet-scraper",
        "status": "COMPLETED",
        "stoppable": False,
        "input": {"searchTerms": ["AI"], "maxItems": 10},
        "output": [{"id": "1", "text": "..."}],
        "outputTruncated": False,
        "itemsUrl": f"/v1/runs/{RUN_ID}/items",
        "resultCount": 1,
        "providerResponse": {"httpStatus": 200},
        "error": None,
        "price": PRICE,
        "cost": {"value": 0.003, "currency": "USD"},
        "attempts": [{"number": 1, "startedAt": "2026-03-28T10:30:00.020Z",
                      "endedAt": "2026-03-28T10:30:07.300Z", "outcome": "OK",
                      "httpStatus": 200, "nextAttemptAt": None}],
        "hints": {},
        "createdAt": "2026-03-28T10:30:00.000Z",
        "startedAt": "2026-03-28T10:30:00.020Z",
        "completedAt": "2026-03-28T10:30:07.310Z",
    }


def test_a_fresh_running_run() -> None:
    body = run_json(make_run(), full=True)
    assert body["status"] == "RUNNING"
    assert body["stoppable"] is True
    assert body["output"] is None
    assert body["cost"] is None
    assert body["resultCount"] is None
    assert body["attempts"] == []
    assert body["createdAt"] == "2026-03-28T10:30:00.000Z"
    assert body["startedAt"] is None
    assert body["completedAt"] is None
    assert body["price"] == PRICE


def test_a_truncated_output_says_so_and_where_the_items_are() -> None:
    body = run_json(completed_run(output_truncated=True), full=True)
    assert body["outputTruncated"] is True
    assert body["itemsUrl"] == f"/v1/runs/{RUN_ID}/items"
    assert "outputTruncated" not in run_json(completed_run(), full=False)


def test_output_and_cost_stay_null_until_the_run_ends() -> None:
    running = make_run(output=[{"partial": True}], cost_micros=3000, started_at=STARTED)
    body = run_json(running, full=True)
    assert body["output"] is None
    assert body["cost"] is None
    assert body["startedAt"] == "2026-03-28T10:30:00.020Z"


@pytest.mark.parametrize("status", sorted(END_STATUSES))
def test_ended_runs_are_not_stoppable_and_show_their_cost(status: str) -> None:
    body = run_json(completed_run(status=status, cost_micros=0), full=True)
    assert body["stoppable"] is False
    assert body["cost"] == {"value": 0, "currency": "USD"}
    assert type(body["cost"]["value"]) is int


@pytest.mark.parametrize("status", ["RUNNING", "STOPPING"])
def test_unended_runs_are_stoppable(status: str) -> None:
    body = run_json(make_run(status=status, cost_micros=3000), full=True)
    assert body["stoppable"] is True
    assert body["cost"] is None


def test_an_ended_run_without_a_cost_shows_null() -> None:
    assert run_json(completed_run(status="FAILED", cost_micros=None), full=True)["cost"] is None


def test_a_failed_run_shows_its_error() -> None:
    error = {"source": "provider", "message": "provider answered 503", "code": "PROVIDER_ERROR"}
    body = run_json(completed_run(status="FAILED", error=error, cost_micros=0,
                                  provider_response=None, result_count=None), full=True)
    assert body["error"] == error
    assert body["providerResponse"] is None


def test_the_short_form_leaves_out_input_output_and_attempts() -> None:
    full = run_json(completed_run(), full=True)
    short = run_json(completed_run(), full=False)
    assert set(full) - set(short) == {"input", "output", "outputTruncated", "itemsUrl",
                                      "attempts", "hints"}
    assert {k: v for k, v in full.items() if k in short} == short
    assert list(short) == [
        "runId", "caller", "provider", "providerName", "endpoint", "status", "stoppable",
        "resultCount", "providerResponse", "error", "price", "cost",
        "createdAt", "startedAt", "completedAt",
    ]


def test_timestamps_are_utc_with_milliseconds_and_z() -> None:
    paris = timezone(timedelta(hours=2))
    run = completed_run(
        created_at=datetime(2026, 3, 28, 12, 30, 0, 999_999, tzinfo=paris),
        started_at=datetime(2026, 3, 28, 10, 30, 1, 5_000, tzinfo=UTC),
        completed_at=datetime(2026, 12, 31, 23, 59, 59, 123_456, tzinfo=UTC),
    )
    body = run_json(run, full=False)
    assert body["createdAt"] == "2026-03-28T10:30:00.999Z"  # converted, truncated to ms
    assert body["startedAt"] == "2026-03-28T10:30:01.005Z"
    assert body["completedAt"] == "2026-12-31T23:59:59.123Z"


def test_the_next_attempt_time_shows_only_on_a_pending_last_attempt() -> None:
    attempts = (
        {"number": 1, "outcome": "TRANSIENT_ERROR", "httpStatus": 503,
         "nextAttemptAt": "2026-03-28T10:30:01.000Z"},
        {"number": 2, "outcome": "TRANSIENT_ERROR", "httpStatus": 503,
         "nextAttemptAt": "2026-03-28T10:30:03.000Z"},
    )
    original = copy.deepcopy(attempts)
    running = run_json(make_run(attempts=attempts, attempt_count=2), full=True)
    assert [a["nextAttemptAt"] for a in running["attempts"]] == [
        None, "2026-03-28T10:30:03.000Z",
    ]
    ended = run_json(completed_run(status="FAILED", attempts=attempts), full=True)
    assert [a["nextAttemptAt"] for a in ended["attempts"]] == [None, None]
    assert attempts == original  # the run itself is left alone
    assert [a["httpStatus"] for a in ended["attempts"]] == [503, 503]


def test_run_json_is_json() -> None:
    body = run_json(completed_run(), full=True)
    assert json.loads(json.dumps(body)) == body
    assert '"amount": 0.003' in json.dumps(body)


def test_per_result_run_price_and_cost() -> None:
    run = completed_run(price_type="PER_RESULT", price_micros=1000, flat_fee_micros=10_000,
                        result_count=25, cost_micros=35_000)
    body = run_json(run, full=True)
    assert body["price"] == {"type": "PER_RESULT", "amount": 0.001, "currency": "USD",
                             "flatFee": 0.01}
    assert body["cost"] == {"value": 0.035, "currency": "USD"}
    assert body["resultCount"] == 25


# --- price_json and accepted_json ----------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("PER_CALL", 3000, None), {"type": "PER_CALL", "amount": 0.003, "currency": "USD"}),
    (("PER_CALL", 0, None), {"type": "PER_CALL", "amount": 0, "currency": "USD"}),
    (("PER_CALL", 2_000_000, None), {"type": "PER_CALL", "amount": 2, "currency": "USD"}),
    (("PER_RESULT", 1500, 0),
     {"type": "PER_RESULT", "amount": 0.0015, "flatFee": 0, "currency": "USD"}),
    (("PER_RESULT", 1, 1_000_000),
     {"type": "PER_RESULT", "amount": 0.000001, "flatFee": 1, "currency": "USD"}),
])
def test_price_json(args: tuple[str, int, int | None], expected: dict[str, Any]) -> None:
    price = price_json(*args)
    assert price == expected
    assert json.loads(json.dumps(price)) == expected
    for key in ("amount", "flatFee"):
        if key in expected:
            assert type(price[key]) is type(expected[key])


def test_price_json_leaves_out_a_missing_flat_fee() -> None:
    assert "flatFee" not in price_json("PER_RESULT", 1000, None)


def test_accepted_json_as_in_the_contract() -> None:
    accepted = AcceptedRun(RUN_ID, "USER#user_abc123", "apify", "Apify",
                           "/apidojo/tweet-scraper", Price("PER_CALL", 3000), CREATED)
    assert AcceptedRunSchema().dump(accepted) == {
        "runId": RUN_ID,
        "caller": "USER#user_abc123",
        "provider": "apify",
        "providerName": "Apify",
        "endpoint": "/apidojo/tweet-scraper",
        "status": "RUNNING",
        "price": PRICE,
        "hints": {},
        "createdAt": "2026-03-28T10:30:00.000Z",
    }


# --- _flatten / _tidy and load ----------------------------------------------------------------


@pytest.mark.parametrize(("message", "tidy"), [
    ("Missing data for required field.", "is required"),
    ("Unknown field.", "is not a known field"),
    ("Field may not be null.", "must not be null"),
    ("Not a valid string.", "Not a valid string"),
    ("must be a string", "must be a string"),
])
def test_tidy(message: str, tidy: str) -> None:
    assert _tidy(message) == tidy


def test_flatten_nested_messages_into_field_paths() -> None:
    messages = {
        "provider": ["Missing data for required field."],
        "input": {"body": {"maxItems": ["Not a valid integer."]}, 0: ["Unknown field."]},
    }
    assert _flatten(messages) == {
        "provider": ["is required"],
        "input.body.maxItems": ["Not a valid integer"],
        "input.0": ["is not a known field"],
    }


def test_flatten_top_level_messages_belong_to_the_body() -> None:
    assert _flatten(["Invalid input type."]) == {"body": ["Invalid input type"]}
    assert _flatten("Invalid input type.") == {"body": ["Invalid input type"]}
    assert _flatten({"x": "Field may not be null."}) == {"x": ["must not be null"]}


def test_load_start_run_lists_every_failing_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        load(StartRunSchema(), {"provider": 5, "input": [], "extra": 1})
    error = caught.value
    assert error.errors == {
        "provider": ["must be a string"],
        "endpoint": ["is required"],
        "input": ["must be an object"],
        "extra": ["is not a known field"],
    }
    assert error.message.endswith("(and 3 more)")


def test_load_start_run_accepts_a_valid_body() -> None:
    body = {"provider": "demo", "endpoint": "/echo", "input": {"a": 1}}
    assert load(StartRunSchema(), body) == body


def test_load_list_runs_defaults_and_limits() -> None:
    assert load(ListRunsSchema(), {}) == {"limit": 10, "cursor": None, "status": None}
    with pytest.raises(InvalidRequest) as caught:
        load(ListRunsSchema(), {"limit": "101", "status": "DONE"})
    assert set(caught.value.errors or {}) == {"limit", "status"}

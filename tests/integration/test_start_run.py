"""POST /v1/run against a real PostgreSQL and a real Redis: the 202, what is stored,
what is published, what is refused, and what happens when a backend is down."""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool
from ulid import ULID

from api.services import Services
from shared.db import transaction
from tests.helpers import auth

ISO_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
ACCEPTED_FIELDS = {"runId", "caller", "provider", "providerName", "endpoint", "status",
                   "price", "hints", "createdAt"}


def start(client: FlaskClient, key: str, body: Any) -> Any:
    return client.post("/v1/run", json=body, headers=auth(key))


def assert_error(resp: Any, status: int, error_code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) <= {"code", "message", "errorCode", "errors"}
    assert body["code"] == status
    assert body["errorCode"] == error_code
    assert isinstance(body["message"], str) and body["message"]
    assert resp.headers.get("x-request-id")
    return body


def parse_iso(value: str) -> datetime:
    assert ISO_MS_UTC.match(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def count_runs(pool: ConnectionPool) -> int:
    with transaction(pool) as conn:
        row = conn.execute("SELECT count(*) AS n FROM runs").fetchone()
    assert row is not None
    return int(row["n"])


def stored_run(pool: ConnectionPool, run_id: str) -> dict[str, Any] | None:
    with transaction(pool) as conn:
        return conn.execute(
            "SELECT id, caller, api_key_id, provider, provider_name, endpoint, adapter, input,"
            " status, price_type, price_micros, attempt_count, started_at, completed_at,"
            " created_at, output, cost_micros FROM runs WHERE id = %s", (run_id,)
        ).fetchone()


def message_args(message: dict[str, Any]) -> list[Any]:
    assert message["properties"]["body_encoding"] == "base64"
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert kwargs == {}
    return list(args)


class BrokerTap:
    """Every message pushed onto the "runs" list of the test Redis db, seen through MONITOR.

    The test Redis db is shared with whatever else runs the suite on this machine (a
    worker of another session may pop a message at once), so the list itself is not a
    reliable witness; the LPUSH that put the message on it is."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.client = redis_lib.Redis.from_url(redis_url, socket_timeout=10)
        self.db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.monitor = self.client.monitor()
        self.monitor.__enter__()

    def close(self) -> None:
        self.monitor.__exit__(None, None, None)
        self.client.close()

    def messages(self) -> list[dict[str, Any]]:
        """The messages pushed onto "runs" since the tap opened (or last call)."""
        sentinel = f"tap-{uuid.uuid4().hex}"
        with redis_lib.Redis.from_url(self.redis_url) as other:
            other.echo(sentinel)
        found = []
        while True:
            try:
                command = self.monitor.next_command()
            except AttributeError:  # a line MONITOR's parser cannot split: not ours
                continue
            text = command["command"]
            if sentinel in text:
                return found
            if command["db"] != self.db or not text.startswith("LPUSH runs "):
                continue
            found.extend(_json_values(text.split(" ", 2)[2]))

    def messages_for(self, run_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if run_id in json.dumps(m["headers"])
                or run_id in str(base64.b64decode(m["body"]))]


def services_of(client: FlaskClient) -> Services:
    return cast(Services, client.application.extensions["monid"])


def _json_values(text: str) -> list[dict[str, Any]]:
    """The messages of one LPUSH, which may carry several, separated by spaces."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError:
            return values
        values.append(value)
        while at < len(text) and text[at] == " ":
            at += 1
    return values


@pytest.fixture
def broker_tap(redis_url: str, db: ConnectionPool) -> Iterator[BrokerTap]:
    tap = BrokerTap(redis_url)
    yield tap
    tap.close()


# --- the 202 ----------------------------------------------------------------


def test_start_run_answers_202_with_exactly_the_accepted_shape(
        client: FlaskClient, key: str) -> None:
    before = datetime.now(UTC)
    resp = start(client, key, {"provider": "demo", "endpoint": "/echo", "input": {"q": "AI"}})
    after = datetime.now(UTC)

    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == ACCEPTED_FIELDS
    assert ULID_RE.match(body["runId"])
    assert body["caller"] == "USER#user_abc123"
    assert body["provider"] == "demo"
    assert body["providerName"] == "Demo"
    assert body["endpoint"] == "/echo"
    assert body["status"] == "RUNNING"
    assert body["price"] == {"type": "PER_CALL", "amount": 0, "currency": "USD"}
    assert ISO_MS_UTC.match(body["createdAt"]), body["createdAt"]
    created = parse_iso(body["createdAt"])
    slack = timedelta(seconds=2)
    assert before - slack <= created <= after + slack
    assert resp.headers["Location"] == f"/v1/runs/{body['runId']}"
    assert resp.headers.get("x-request-id")


def test_run_id_is_a_ulid_of_now_and_ids_sort_by_time(client: FlaskClient, key: str) -> None:
    ids = []
    for n in range(5):
        resp = start(client, key, {"provider": "demo", "endpoint": "/echo", "input": {"n": n}})
        assert resp.status_code == 202
        ids.append(resp.get_json()["runId"])
    for run_id in ids:
        assert len(run_id) == 26 and ULID_RE.match(run_id)
        moment = ULID.from_str(run_id).datetime
        assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_run_row_is_committed_with_the_input_as_sent(
        client: FlaskClient, key: str, pool: ConnectionPool) -> None:
    sent = {"zeta": [1, 2, {"deep": None}], "alpha": "ü ✓", "n": 1.5}
    resp = start(client, key, {"provider": "demo", "endpoint": "/echo", "input": sent})
    assert resp.status_code == 202
    body = resp.get_json()

    row = stored_run(pool, body["runId"])  # another connection: the row is committed
    assert row is not None
    assert row["caller"] == "USER#user_abc123"
    assert row["api_key_id"] is not None
    assert row["provider"] == "demo"
    assert row["provider_name"] == "Demo"
    assert row["endpoint"] == "/echo"
    assert row["adapter"] == "demo"
    assert row["input"] == sent
    assert row["status"] == "RUNNING"
    assert row["price_type"] == "PER_CALL"
    assert row["price_micros"] == 0 and isinstance(row["price_micros"], int)
    assert row["attempt_count"] == 0
    assert row["started_at"] is None
    assert row["completed_at"] is None
    assert row["output"] is None and row["cost_micros"] is None
    stored = row["created_at"].astimezone(UTC)
    stored_ms = stored.replace(microsecond=stored.microsecond // 1000 * 1000)
    assert parse_iso(body["createdAt"]) == stored_ms


@pytest.mark.parametrize("sent", [
    pytest.param({"searchTerms": ["AI"], "maxItems": 10}, id="flat"),
    pytest.param({}, id="flat-empty"),
    pytest.param({"body": {"searchTerms": ["AI"], "maxItems": 10}}, id="composite-body"),
    pytest.param({"body": {"b": 1}, "queryParams": {}, "pathParams": {}},
                 id="composite-empty-parts"),
    pytest.param({"body": "not an object", "other": 1}, id="flat-with-body-key"),
])
def test_both_input_forms_are_accepted_and_returned_unchanged(
        client: FlaskClient, key: str, pool: ConnectionPool, sent: dict[str, Any]) -> None:
    resp = start(client, key, {"provider": "demo", "endpoint": "/echo", "input": sent})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    run_id = resp.get_json()["runId"]

    row = stored_run(pool, run_id)
    assert row is not None and row["input"] == sent

    polled = client.get(f"/v1/runs/{run_id}", headers=auth(key))
    assert polled.status_code == 200
    got = polled.get_json()["input"]
    assert got == sent


def test_a_message_carrying_only_the_run_id_is_published(
        client: FlaskClient, key: str, broker_tap: BrokerTap) -> None:
    resp = start(client, key, {"provider": "demo", "endpoint": "/echo",
                               "input": {"secret-ish": "not in the message"}})
    assert resp.status_code == 202
    run_id = resp.get_json()["runId"]
    assert services_of(client).publisher.flush()

    messages = broker_tap.messages_for(run_id)
    assert len(messages) == 1
    message = messages[0]
    assert message["content-type"] == "application/json"
    assert message["headers"]["task"] == "monid.run"
    assert run_id in message["headers"]["argsrepr"]
    assert message_args(message) == [run_id]
    assert message["properties"]["delivery_info"]["routing_key"] == "runs"
    assert "not in the message" not in json.dumps(message)
    assert "not in the message" not in base64.b64decode(message["body"]).decode()


def test_each_run_publishes_one_message(
        client: FlaskClient, key: str, broker_tap: BrokerTap) -> None:
    ids = [start(client, key, {"provider": "demo", "endpoint": "/echo", "input": {"n": n}})
           .get_json()["runId"] for n in range(3)]
    assert services_of(client).publisher.flush()
    messages = broker_tap.messages()
    for run_id in ids:
        mine = [m for m in messages if message_args(m) == [run_id]]
        assert len(mine) == 1, run_id


# --- refused before anything is stored ----------------------------------------


def assert_nothing_stored(pool: ConnectionPool) -> None:
    assert count_runs(pool) == 0


def test_flat_input_failing_the_schema_lists_every_failing_field(
        client: FlaskClient, key: str, pool: ConnectionPool) -> None:
    resp = start(client, key, {"provider": "demo", "endpoint": "/fail",
                               "input": {"status": "x", "times": -1, "extra": 1}})
    body = assert_error(resp, 400, "VALIDATION_FAILED")
    errors = body["errors"]
    assert set(errors) == {"input.status", "input.times", "input.extra"}
    for messages in errors.values():
        assert isinstance(messages, list) and messages
        assert all(isinstance(m, str) and m for m in messages)
    assert body["message"].startswith(tuple(errors))
    assert_nothing_stored(pool)


def test_composite_input_errors_are_under_input_body(
        client: FlaskClient, key: str, pool: ConnectionPool) -> None:
    resp = start(client, key, {"provider": "demo", "endpoint": "/fail",
                               "input": {"body": {"status": "x", "times": -1, "extra": 1}}})
    body = assert_error(resp, 400, "VALIDATION_FAILED")
    assert set(body["errors"]) == {"input.body.status", "input.body.times", "input.body.extra"}
    assert_nothing_stored(pool)


def test_missing_required_input_field_is_named(
        client: FlaskClient, key: str, pool: ConnectionPool) -> None:
    resp = start(client, key, {"provider": "demo", "endpoint": "/sleep", "input": {}})
    body = assert_error(resp, 400, "VALIDATION_FAILED")
    assert set(body["errors"]) == {"input.seconds"}
    assert_nothing_stored(pool)


def test_valid_input_of_a_strict_endpoint_is_accepted(client: FlaskClient, key: str) -> None:
    for sent in ({"status": 503, "times": 2}, {"body": {"status": 500}}):
        resp = start(client, key, {"provider": "demo", "endpoint": "/fail", "input": sent})
        assert resp.status_code == 202, resp.get_data(as_text=True)


@pytest.mark.parametrize(("provider", "endpoint"), [
    ("nope", "/echo"),
    ("demo", "/nope"),
    ("Demo", "/echo"),
    ("demo", "/echo/"),
])
def test_unknown_provider_or_endpoint_is_404(
        client: FlaskClient, key: str, pool: ConnectionPool, provider: str, endpoint: str) -> None:
    resp = start(client, key, {"provider": provider, "endpoint": endpoint, "input": {}})
    assert_error(resp, 404, "ENDPOINT_NOT_FOUND")
    assert_nothing_stored(pool)


@pytest.mark.parametrize(("body", "fields"), [
    pytest.param({"endpoint": "/echo", "input": {}}, {"provider"}, id="no-provider"),
    pytest.param({"provider": "demo", "input": {}}, {"endpoint"}, id="no-endpoint"),
    pytest.param({"provider": "demo", "endpoint": "/echo"}, {"input"}, id="no-input"),
    pytest.param({}, {"provider", "endpoint", "input"}, id="empty-object"),
    pytest.param({"provider": 1, "endpoint": "/echo", "input": {}}, {"provider"},
                 id="provider-number"),
    pytest.param({"provider": "demo", "endpoint": ["/echo"], "input": {}}, {"endpoint"},
                 id="endpoint-list"),
    pytest.param({"provider": "demo", "endpoint": "/echo", "input": [1]}, {"input"},
                 id="input-list"),
    pytest.param({"provider": "demo", "endpoint": "/echo", "input": "x"}, {"input"},
                 id="input-string"),
    pytest.param({"provider": "demo", "endpoint": "/echo", "input": None}, {"input"},
                 id="input-null"),
    pytest.param({"provider": "", "endpoint": "/echo", "input": {}}, {"provider"},
                 id="provider-empty"),
    pytest.param({"provider": "demo", "endpoint": "/echo", "input": {}, "extra": 1}, {"extra"},
                 id="unknown-field"),
])
def test_malformed_request_fields_are_400_naming_the_field(
        client: FlaskClient, key: str, pool: ConnectionPool, body: dict[str, Any],
        fields: set[str]) -> None:
    resp = start(client, key, body)
    answer = assert_error(resp, 400, "VALIDATION_FAILED")
    assert set(answer["errors"]) == fields
    assert_nothing_stored(pool)


# --- a backend is down -----------------------------------------------------------


class ThreadsUsing:
    """A Redis client that notes which thread uses it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.threads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.threads.append(threading.current_thread().name)
        return getattr(self.inner, name)


def test_broker_unreachable_still_answers_202_and_stores_the_run(
        app_without_broker: Flask, key: str, pool: ConnectionPool,
        broker_tap: BrokerTap) -> None:
    client = app_without_broker.test_client()
    publisher = services_of(client).publisher
    tapped = ThreadsUsing(publisher.client)
    publisher.client = tapped  # type: ignore[assignment]
    resp = start(client, key, {"provider": "demo", "endpoint": "/echo", "input": {"k": "v"}})

    assert resp.status_code == 202, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == ACCEPTED_FIELDS
    assert resp.headers["Location"] == f"/v1/runs/{body['runId']}"
    row = stored_run(pool, body["runId"])
    assert row is not None
    assert row["status"] == "RUNNING" and row["input"] == {"k": "v"}
    assert publisher.flush()
    assert broker_tap.messages_for(body["runId"]) == []  # nothing reached the test broker
    # The answer never waited on the broker: only the publisher's own thread tried it.
    assert tapped.threads and set(tapped.threads) == {"monid-publisher"}

    polled = client.get(f"/v1/runs/{body['runId']}", headers=auth(key))
    assert polled.status_code == 200
    assert polled.get_json()["status"] == "RUNNING"


def test_database_unreachable_answers_503_in_the_envelope(
        app_without_database: Flask, key: str) -> None:
    client = app_without_database.test_client()
    resp = start(client, key, {"provider": "demo", "endpoint": "/echo", "input": {}})
    assert_error(resp, 503, "SERVICE_UNAVAILABLE")


@pytest.mark.parametrize(("provider", "endpoint", "message"), [
    ("dmeo", "/echo", "unknown provider 'dmeo' (asked for endpoint '/echo'); did you mean "
                      "'demo'? See GET /v1/endpoints for every provider and endpoint."),
    ("Demo", "/echo", "unknown provider 'Demo' (asked for endpoint '/echo'); did you mean "
                      "'demo'? See GET /v1/endpoints for every provider and endpoint."),
    ("zzzzzz", "/echo", "unknown provider 'zzzzzz' (asked for endpoint '/echo'). "
                        "See GET /v1/endpoints for every provider and endpoint."),
    ("demo", "/ecoh", "provider 'demo' has no endpoint '/ecoh'; did you mean '/echo'? "
                      "See GET /v1/endpoints for every provider and endpoint."),
    ("demo", "/qqqqqqqq", "provider 'demo' has no endpoint '/qqqqqqqq'. "
                          "See GET /v1/endpoints for every provider and endpoint."),
])
def test_not_found_says_which_part_is_unknown_and_what_is_close(
        client: FlaskClient, key: str, provider: str, endpoint: str, message: str) -> None:
    for path in ("/v1/run", "/v1/inspect"):
        body: dict[str, Any] = {"provider": provider, "endpoint": endpoint}
        if path == "/v1/run":
            body["input"] = {}
        resp = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
        assert_error(resp, 404, "ENDPOINT_NOT_FOUND")
        assert resp.get_json()["message"] == message

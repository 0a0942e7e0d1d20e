"""The error envelope, request IDs and the operational routes, against a real PostgreSQL
and a real Redis."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from api.app import create_app
from shared import keys, store
from shared.db import transaction
from shared.settings import Settings
from tests.helpers import auth

ENVELOPE_KEYS = {"code", "message", "errorCode", "errors"}
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
ERROR_WORD = re.compile(r"^[A-Z][A-Z_]*[A-Z]$")
KEY_CACHE_SECONDS = 0.35  # a little over API_KEY_CACHE_SECONDS in the tests' base_env
RUN_BODY = {"provider": "demo", "endpoint": "/echo", "input": {"q": "AI"}}
SOME_ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def assert_envelope(resp: Any, status: int, error_code: str | None = None) -> dict[str, Any]:
    """The contract's error body and an x-request-id header; returns the body."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert isinstance(body, dict)
    assert {"code", "message", "errorCode"} <= set(body) <= ENVELOPE_KEYS
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errorCode"], str) and ERROR_WORD.match(body["errorCode"])
    if error_code is not None:
        assert body["errorCode"] == error_code
    # Every VALIDATION_FAILED answer names its failing fields; no other has `errors`.
    assert ("errors" in body) == (body["errorCode"] == "VALIDATION_FAILED"), body
    if "errors" in body:
        assert isinstance(body["errors"], dict) and body["errors"]
        for path, messages in body["errors"].items():
            assert isinstance(path, str) and path
            assert isinstance(messages, list) and messages
            assert all(isinstance(m, str) and m for m in messages)
    request_id = resp.headers.get("x-request-id")
    assert request_id and SANE_REQUEST_ID.match(request_id)
    return body


def count_runs(pool: ConnectionPool) -> int:
    with transaction(pool) as conn:
        row = conn.execute("SELECT count(*) AS n FROM runs").fetchone()
    assert row is not None
    return int(row["n"])


# --- 400 ------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["{", '{"provider": "demo",', "nope", "{'a': 1}", ""])
def test_malformed_json_is_400(client: FlaskClient, key: str, pool: ConnectionPool,
                               raw: str) -> None:
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert_envelope(resp, 400, "VALIDATION_FAILED")
    assert count_runs(pool) == 0


@pytest.mark.parametrize("raw", ["[]", json.dumps([RUN_BODY]), '"text"', "42", "true"])
def test_body_that_is_not_an_object_is_400(client: FlaskClient, key: str, pool: ConnectionPool,
                                           raw: str) -> None:
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert_envelope(resp, 400, "VALIDATION_FAILED")
    assert count_runs(pool) == 0


@pytest.mark.parametrize("raw", [
    pytest.param('{"provider":"demo","endpoint":"/echo","input":{"a":NaN}}', id="NaN"),
    pytest.param('{"provider":"demo","endpoint":"/echo","input":{"a":Infinity}}', id="Infinity"),
    pytest.param('{"provider":"demo","endpoint":"/echo","input":{"a":-Infinity}}',
                 id="-Infinity"),
    pytest.param('{"provider":"demo","endpoint":"/echo","input":{"a":1e400}}', id="1e400"),
])
def test_non_json_numbers_are_400_not_500(client: FlaskClient, key: str, pool: ConnectionPool,
                                          raw: str) -> None:
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert_envelope(resp, 400, "VALIDATION_FAILED")
    assert count_runs(pool) == 0


def test_lone_surrogate_is_400_not_500(client: FlaskClient, key: str,
                                       pool: ConnectionPool) -> None:
    raw = '{"provider":"demo","endpoint":"/echo","input":{"a":"\\ud800"}}'
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert_envelope(resp, 400, "VALIDATION_FAILED")
    assert count_runs(pool) == 0


@pytest.mark.parametrize("raw", [
    pytest.param("[" * 50_000 + "]" * 50_000, id="top-level"),
    pytest.param('{"provider":"demo","endpoint":"/echo","input":{"a":'
                 + "[" * 50_000 + "]" * 50_000 + "}}", id="in-input"),
])
def test_deeply_nested_body_is_400_not_500(client: FlaskClient, key: str, pool: ConnectionPool,
                                           raw: str) -> None:
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert_envelope(resp, 400, "VALIDATION_FAILED")
    assert count_runs(pool) == 0


def test_nul_characters_in_input_are_stored_and_returned(client: FlaskClient,
                                                         key: str) -> None:
    raw = '{"provider":"demo","endpoint":"/echo","input":{"a":"x\\u0000y","\\u0000":1}}'
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    run = client.get(f"/v1/runs/{resp.get_json()['runId']}", headers=auth(key)).get_json()
    assert run["input"] == {"a": "x\x00y", "\x00": 1}


def test_invalid_utf8_body_is_400(client: FlaskClient, key: str, pool: ConnectionPool) -> None:
    raw = b'{"provider":"demo","endpoint":"/echo","input":{"a":"\xff"}}'
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert_envelope(resp, 400, "VALIDATION_FAILED")
    assert count_runs(pool) == 0


def test_validation_error_envelope_names_fields(client: FlaskClient, key: str) -> None:
    resp = client.post("/v1/run", json={"provider": "demo", "endpoint": "/fail",
                                        "input": {"times": -1}}, headers=auth(key))
    body = assert_envelope(resp, 400, "VALIDATION_FAILED")
    assert set(body["errors"]) == {"input.times"}
    assert "input.times" in body["message"]


# --- 401 ------------------------------------------------------------------------

V1_ROUTES = [("POST", "/v1/run"), ("GET", "/v1/runs"), ("GET", f"/v1/runs/{SOME_ULID}")]


def _call(client: FlaskClient, method: str, path: str, headers: dict[str, str]) -> Any:
    if method == "POST":
        return client.post(path, json=RUN_BODY, headers=headers)
    return client.get(path, headers=headers)


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
@pytest.mark.parametrize("header", [
    pytest.param(None, id="no-header"),
    pytest.param("", id="empty-header"),
    pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
    pytest.param("Token monid_live_abcdefghijklmnopqrstuvwxyz012345", id="token-scheme"),
    pytest.param("Bearer", id="bearer-nothing"),
    pytest.param("Bearer ", id="bearer-blank"),
    pytest.param("Bearer not-a-key", id="malformed-key"),
    pytest.param("Bearer monid_prod_abcdefghijklmnopqrstuvwxyz012345", id="bad-mode"),
    pytest.param("Bearer monid_live_short", id="short-secret"),
    pytest.param("Bearer monid_live_abcdefghijklmnopqrstuvwxyz012345",
                 id="unknown-well-formed-key"),
])
def test_bad_credentials_are_401(client: FlaskClient, db: ConnectionPool, method: str,
                                 path: str, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = _call(client, method, path, headers)
    assert_envelope(resp, 401, "UNAUTHORIZED")
    assert count_runs(db) == 0


def test_unknown_generated_key_is_401(client: FlaskClient, key: str) -> None:
    stranger = keys.generate_key()
    assert keys.key_mode(stranger) == "live"
    assert_envelope(client.get("/v1/runs", headers=auth(stranger)), 401, "UNAUTHORIZED")


def test_key_of_another_mode_with_the_same_secret_is_401(client: FlaskClient, key: str) -> None:
    twin = key.replace("monid_live_", "monid_test_", 1)
    assert_envelope(client.get("/v1/runs", headers=auth(twin)), 401, "UNAUTHORIZED")


def test_test_keys_are_accepted(client: FlaskClient, make_key: Any) -> None:
    test_key = make_key("user_tester", test=True)
    assert test_key.startswith("monid_test_")
    assert client.get("/v1/runs", headers=auth(test_key)).status_code == 200


def test_revoked_key_is_401(client: FlaskClient, key: str, pool: ConnectionPool) -> None:
    assert client.get("/v1/runs", headers=auth(key)).status_code == 200
    with transaction(pool) as conn:
        found = store.find_api_key(conn, keys.hash_key(key))
        assert found is not None
        revoked = store.revoke_api_key(conn, found.id)
        assert revoked is not None and revoked.revoked_at is not None

    time.sleep(KEY_CACHE_SECONDS)  # the web reuses a key it read for this long
    for method, path in V1_ROUTES:
        assert_envelope(_call(client, method, path, auth(key)), 401, "UNAUTHORIZED")
    assert count_runs(pool) == 0


@pytest.mark.parametrize("cache_seconds", [1.0])
def test_a_revoked_key_is_refused_once_the_cache_lets_it_go(
        settings: Settings, key: str, pool: ConnectionPool, cache_seconds: float) -> None:
    app = create_app(dataclasses.replace(settings, api_key_cache_seconds=cache_seconds))
    client = app.test_client()
    try:
        assert client.get("/v1/runs", headers=auth(key)).status_code == 200
        looked_up = time.monotonic()
        with transaction(pool) as conn:
            found = store.find_api_key(conn, keys.hash_key(key))
            assert found is not None
            store.revoke_api_key(conn, found.id)
        # Served from the cache: the revocation is not seen yet.
        if time.monotonic() - looked_up < cache_seconds / 2:
            assert client.get("/v1/runs", headers=auth(key)).status_code == 200
        while client.get("/v1/runs", headers=auth(key)).status_code == 200:
            assert time.monotonic() - looked_up < cache_seconds + 1
            time.sleep(0.02)
        assert_envelope(client.get("/v1/runs", headers=auth(key)), 401, "UNAUTHORIZED")
    finally:
        app.extensions["monid"].close()


def test_unknown_keys_are_not_cached(client: FlaskClient, make_key: Any) -> None:
    from api.services import Services
    app_services: Services = client.application.extensions["monid"]
    for n in range(50):
        bad = f"monid_live_{'x' * 30}{n:02d}"
        assert client.get("/v1/runs", headers=auth(bad)).status_code == 401
    assert not app_services.keys._entries


def test_revoking_one_key_leaves_the_others(client: FlaskClient, make_key: Any,
                                            pool: ConnectionPool) -> None:
    first, second = make_key("user_abc123"), make_key("user_abc123")
    with transaction(pool) as conn:
        found = store.find_api_key(conn, keys.hash_key(first))
        assert found is not None
        store.revoke_api_key(conn, found.id)
    time.sleep(KEY_CACHE_SECONDS)
    assert_envelope(client.get("/v1/runs", headers=auth(first)), 401, "UNAUTHORIZED")
    assert client.get("/v1/runs", headers=auth(second)).status_code == 200


# --- 404, 405 ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/v1", "/v1/", "/v1/nope", "/v2/run",
                                  "/v1/runs/x/y/z"])
def test_unknown_route_is_404_in_the_envelope(client: FlaskClient, key: str, path: str) -> None:
    for headers in ({}, auth(key)):
        assert_envelope(client.get(path, headers=headers), 404, "NOT_FOUND")
    assert_envelope(client.post(path, json={}, headers=auth(key)), 404, "NOT_FOUND")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/v1/run", "POST"),
    ("PUT", "/v1/run", "POST"),
    ("DELETE", "/v1/run", "POST"),
    ("POST", "/v1/runs", "GET"),
    ("DELETE", f"/v1/runs/{SOME_ULID}", "GET"),
    ("PATCH", f"/v1/runs/{SOME_ULID}", "GET"),
    ("POST", "/healthz", "GET"),
    ("DELETE", "/readyz", "GET"),
])
def test_wrong_method_is_405_with_allow(client: FlaskClient, key: str, method: str, path: str,
                                        allowed: str) -> None:
    resp = client.open(path, method=method, headers=auth(key))
    body = assert_envelope(resp, 405)
    assert body["errorCode"] != "INTERNAL"
    allow = {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}
    assert allowed in allow
    assert method not in allow


# --- 413, 415 ---------------------------------------------------------------------


def _padded_body(size: int) -> bytes:
    """A valid start-run body of exactly `size` bytes."""
    empty = json.dumps({"provider": "demo", "endpoint": "/echo", "input": {"pad": ""}})
    pad = size - len(empty.encode())
    assert pad >= 0
    raw = json.dumps({"provider": "demo", "endpoint": "/echo", "input": {"pad": "x" * pad}})
    assert len(raw.encode()) == size
    return raw.encode()


def test_body_over_the_limit_is_413(client: FlaskClient, key: str, settings: Settings,
                                    pool: ConnectionPool) -> None:
    assert settings.max_body_bytes == 256 * 1024
    raw = _padded_body(settings.max_body_bytes + 1)
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert_envelope(resp, 413, "PAYLOAD_TOO_LARGE")
    assert count_runs(pool) == 0

    huge = _padded_body(4 * settings.max_body_bytes)
    resp = client.post("/v1/run", data=huge, content_type="application/json", headers=auth(key))
    assert_envelope(resp, 413, "PAYLOAD_TOO_LARGE")
    assert count_runs(pool) == 0


def test_body_at_the_limit_is_accepted(client: FlaskClient, key: str,
                                       settings: Settings) -> None:
    raw = _padded_body(settings.max_body_bytes)
    resp = client.post("/v1/run", data=raw, content_type="application/json", headers=auth(key))
    assert resp.status_code == 202, resp.get_data(as_text=True)[:300]


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/xml",
])
def test_non_json_content_type_is_415(client: FlaskClient, key: str, pool: ConnectionPool,
                                      content_type: str | None) -> None:
    kwargs: dict[str, Any] = {"data": json.dumps(RUN_BODY), "headers": auth(key)}
    if content_type is not None:
        kwargs["content_type"] = content_type
    resp = client.post("/v1/run", **kwargs)
    body = assert_envelope(resp, 415)
    assert body["errorCode"] != "INTERNAL"
    assert count_runs(pool) == 0


def test_json_with_charset_is_accepted(client: FlaskClient, key: str) -> None:
    resp = client.post("/v1/run", data=json.dumps(RUN_BODY).encode(),
                       content_type="application/json; charset=utf-8", headers=auth(key))
    assert resp.status_code == 202


# --- 500 --------------------------------------------------------------------------

SECRET_TEXT = "kaboom-detail password=hunter2 token=monid_live_SECRETSECRETSECRETSECRET"


@pytest.fixture
def exploding_app(settings: Settings, db: ConnectionPool) -> Iterator[Flask]:
    app = create_app(settings)

    @app.get("/explode")
    def explode() -> Any:
        raise RuntimeError(SECRET_TEXT)

    @app.post("/v1/explode")
    def explode_post() -> Any:
        raise KeyError(SECRET_TEXT)

    yield app
    app.extensions["monid"].pool.close()


def test_unhandled_error_is_500_without_a_trace(exploding_app: Flask) -> None:
    client = exploding_app.test_client()
    for resp in (client.get("/explode", headers={"x-request-id": "req-500"}),
                 client.post("/v1/explode", json={})):
        body = assert_envelope(resp, 500, "INTERNAL")
        assert "errors" not in body
        text = resp.get_data(as_text=True)
        for leak in ("kaboom", "hunter2", "SECRET", "Traceback", "RuntimeError", "KeyError",
                     'File "', "explode"):
            assert leak not in text
        for name, value in resp.headers.items():
            assert "kaboom" not in value and "hunter2" not in value, name
    assert client.get("/explode", headers={"x-request-id": "req-500"}) \
        .headers["x-request-id"] == "req-500"


# --- x-request-id -----------------------------------------------------------------


@pytest.mark.parametrize("sent", ["abc123", "req-1.2:3_4", "a" * 128,
                                  "4f2b7d0e-9c1a-4b53-8e57-3a0d3c2f1b6e"])
def test_sane_request_id_is_echoed(client: FlaskClient, key: str, sent: str) -> None:
    header = {"x-request-id": sent}
    assert client.get("/healthz", headers=header).headers["x-request-id"] == sent
    assert client.get("/v1/runs", headers={**header, **auth(key)}) \
        .headers["x-request-id"] == sent
    created = client.post("/v1/run", json=RUN_BODY, headers={**header, **auth(key)})
    assert created.status_code == 202
    assert created.headers["x-request-id"] == sent
    assert client.get("/v1/nope", headers=header).headers["x-request-id"] == sent
    assert client.get("/v1/runs", headers=header).headers["x-request-id"] == sent  # 401


@pytest.mark.parametrize("sent", ["a" * 129, "has space", "semi;colon", "<script>",
                                  "new\tline", "é-accent", "x" * 5000])
def test_insane_request_id_is_replaced(client: FlaskClient, key: str, sent: str) -> None:
    for resp in (client.get("/healthz", headers={"x-request-id": sent}),
                 client.get("/v1/nope", headers={"x-request-id": sent}),
                 client.get("/v1/runs", headers={"x-request-id": sent, **auth(key)})):
        got = resp.headers.get("x-request-id")
        assert got and got != sent
        assert SANE_REQUEST_ID.match(got)


def test_generated_request_ids_differ(client: FlaskClient) -> None:
    seen = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(seen) == 5
    for request_id in seen:
        assert SANE_REQUEST_ID.match(request_id)


def test_every_answer_carries_a_request_id(client: FlaskClient, key: str) -> None:
    answers = [
        client.get("/healthz"),
        client.get("/readyz"),
        client.post("/v1/run", json=RUN_BODY, headers=auth(key)),
        client.get("/v1/runs", headers=auth(key)),
        client.get(f"/v1/runs/{SOME_ULID}", headers=auth(key)),
        client.get("/v1/runs"),
        client.put("/v1/run"),
        client.post("/v1/run", data="x", content_type="text/plain", headers=auth(key)),
    ]
    assert [r.status_code for r in answers] == [200, 200, 202, 200, 404, 401, 405, 415]
    for resp in answers:
        assert SANE_REQUEST_ID.match(resp.headers.get("x-request-id", ""))


# --- /healthz and /readyz -----------------------------------------------------------


def test_healthz_is_200_without_a_key(client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.get_json()["status"] == "ok"


def test_readyz_is_200_when_database_and_broker_answer(client: FlaskClient) -> None:
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def _readyz_not_ready(app: Flask) -> dict[str, Any]:
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["code"] == 503
    assert body["errorCode"] == "SERVICE_UNAVAILABLE"
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) == {"code", "message", "errorCode", "checks"}
    assert SANE_REQUEST_ID.match(resp.headers.get("x-request-id", ""))
    return body


def test_readyz_is_503_when_the_database_is_unreachable(app_without_database: Flask) -> None:
    body = _readyz_not_ready(app_without_database)
    assert body["message"] == "not ready: database unavailable"
    assert body["checks"] == {"database": "unavailable", "broker": "ok"}
    assert app_without_database.test_client().get("/healthz").status_code == 200


def test_readyz_is_503_when_the_broker_is_unreachable(app_without_broker: Flask) -> None:
    body = _readyz_not_ready(app_without_broker)
    assert body["message"] == "not ready: broker unavailable"
    assert body["checks"] == {"database": "ok", "broker": "unavailable"}
    assert app_without_broker.test_client().get("/healthz").status_code == 200





def test_database_unreachable_is_503_on_v1_routes(app_without_database: Flask,
                                                  key: str) -> None:
    client = app_without_database.test_client()
    resp = client.get("/v1/runs", headers={**auth(key), "x-request-id": "db-down-1"})
    assert_envelope(resp, 503, "SERVICE_UNAVAILABLE")
    assert resp.headers["x-request-id"] == "db-down-1"
    assert "postgres" not in resp.get_data(as_text=True).lower()


def test_the_root_links_to_the_docs(client: FlaskClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["docs"] == "/docs" and body["openapi"] == "/openapi.json"
    assert '</docs>; rel="service-doc"' in answer.headers["Link"]
    assert client.get(body["docs"]).status_code == 200
    assert client.get(body["openapi"]).status_code == 200

"""Fuzzing every operation of the OpenAPI document against the app, in-process.

Schemathesis reads /openapi.json from the app itself, makes requests from it
(valid and invalid ones), sends them through the WSGI app and checks every
answer: no 5xx, a documented status, a documented media type, documented
headers, a body matching the documented schema. Once with a valid key (and a
funded wallet and a synced catalog, so the routes can do real work), once
without one. Bounded and derandomized, so a run takes the same path every time.

Random requests seldom reach the answers that need state (a run that exists,
has ended, was stopped; an empty wallet; a rate limit; a database that is
down), so the last tests walk through those on purpose and check each answer
against the document in the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from psycopg_pool import ConnectionPool
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from api import openapi
from api.app import create_app
from shared import store
from shared.catalog import load_catalog
from shared.db import transaction
from shared.settings import Settings
from shared.store.catalog import sync_catalog
from tests.helpers import KeyMaker, auth
from worker.providers import make_adapters
from worker.runner import Runner

MAX_EXAMPLES = 30
FUZZ_USER = "user_schemathesis"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          # A method the path does not have: 405 with an Allow header (OPTIONS aside).
          unsupported_method]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass(frozen=True)
class FuzzedApi:
    app: Flask
    key: str
    settings: Settings
    pool: ConnectionPool


def with_openapi(app: Flask) -> Flask:
    # create_app may already call openapi.init_app itself.
    if "/openapi.json" not in {rule.rule for rule in app.url_map.iter_rules()}:
        openapi.init_app(app)
    return app


@pytest.fixture(scope="module")
def fuzzed_api(settings: Settings, pool: ConnectionPool) -> Iterator[FuzzedApi]:
    """The app over the test database: the catalog synced, a key with a funded wallet."""
    with transaction(pool) as conn:
        sync_catalog(conn, load_catalog(settings.catalog_dir))
    key = KeyMaker(pool)(FUZZ_USER)
    with transaction(pool) as conn:
        store.credit_wallet(conn, f"USER#{FUZZ_USER}", 1_000 * 1_000_000, "fuzzing funds")
    # A limit the fuzzer cannot reach, so that its requests are not all 429s; the
    # quota headers are still sent, and checked.
    fuzz_settings = dataclasses.replace(settings, rate_limit_per_minute=1_000_000,
                                        public_rate_limit_per_minute=1_000_000)
    app = with_openapi(create_app(fuzz_settings))
    yield FuzzedApi(app=app, key=key, settings=fuzz_settings, pool=pool)
    app.extensions["monid"].pool.close()


@pytest.fixture(scope="module")
def api_schema(fuzzed_api: FuzzedApi) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_api.app)


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis (4.32) reads and rewrites `item._nodeid` to name each operation's
    # subtest; pytest 9.2 items no longer have that attribute.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ_SETTINGS
def test_with_a_valid_key(case: schemathesis.Case, fuzzed_api: FuzzedApi) -> None:
    case.call_and_validate(headers=auth(fuzzed_api.key), checks=CHECKS)


@schema.parametrize()
@FUZZ_SETTINGS
def test_without_a_key(case: schemathesis.Case) -> None:
    response = case.call_and_validate(checks=CHECKS)
    own_method = case.method.upper() == case.operation.method.upper()
    if case.operation.path.startswith("/v1/") and own_method:
        # Whatever else is wrong with the request, the missing key is said first,
        # unless the URL itself matches no route.
        assert response.status_code in (401, 404), (response.status_code, response.request.url)


# --- answers that need state -------------------------------------------------------


class Caller:
    """Sends one request of an operation of the document and checks its answer."""

    def __init__(self, api_schema: Any, key: str | None, app: Flask | None = None,
                 checks: list[Any] = CHECKS) -> None:
        self.api_schema = api_schema
        self.key = key
        self.app = app
        self.checks = checks

    def __call__(self, method: str, path: str, status: int, **request: Any) -> Any:
        case = self.api_schema[path][method].Case(**request)
        extra: dict[str, Any] = {} if self.app is None else {"app": self.app}
        response = case.call_and_validate(headers=auth(self.key) if self.key else None,
                                          checks=self.checks, **extra)
        assert response.status_code == status, (method, path, response.text)
        return response


@pytest.fixture(scope="module")
def runner(fuzzed_api: FuzzedApi) -> Runner:
    """Runs demo runs to their end in this process, as a worker would."""
    return Runner(settings=fuzzed_api.settings, pool=fuzzed_api.pool,
                  catalog=load_catalog(fuzzed_api.settings.catalog_dir),
                  adapters={"demo": make_adapters(fuzzed_api.settings)["demo"]},
                  publish=lambda *_: None, name="schemathesis-worker")


def test_a_run_through_its_life(api_schema: Any, fuzzed_api: FuzzedApi,
                                runner: Runner) -> None:
    call = Caller(api_schema, fuzzed_api.key)
    echo = {"provider": "demo", "endpoint": "/echo", "input": {"message": "life"}}

    started = call("POST", "/v1/run", 202, body=echo, headers={"Idempotency-Key": "life-1"})
    run_id = started.json()["runId"]
    replayed = call("POST", "/v1/run", 202, body=echo, headers={"Idempotency-Key": "life-1"})
    assert replayed.json()["runId"] == run_id
    call("POST", "/v1/run", 422, body={**echo, "input": {"message": "other"}},
         headers={"Idempotency-Key": "life-1"})

    # No `wait` on a run that has not ended: the app would start its listener thread,
    # which outlives this module's app.
    running = call("GET", "/v1/runs/{runId}", 200, path_parameters={"runId": run_id})
    assert running.json()["status"] == "RUNNING"
    call("GET", "/v1/runs", 200, query={"status": "RUNNING", "limit": 1})

    assert runner.run(run_id) == "completed"
    ended = call("GET", "/v1/runs/{runId}", 200, path_parameters={"runId": run_id},
                 query={"wait": 5})
    assert ended.json()["status"] == "COMPLETED"
    assert ended.json()["attempts"] and ended.json()["cost"] is not None
    call("POST", "/v1/runs/{runId}/stop", 409, path_parameters={"runId": run_id})
    events = call("GET", "/v1/runs/{runId}/events", 200, path_parameters={"runId": run_id})
    assert events.text.count("event: end\n") == 1 and "id: 4.1.1\n" in events.text
    call("GET", "/v1/runs/{runId}/events", 204, path_parameters={"runId": run_id},
         headers={"Last-Event-ID": "4.1.1"})
    items = call("GET", "/v1/runs/{runId}/items", 200, path_parameters={"runId": run_id},
                 query={"limit": 1})
    assert items.json() == {"items": [{"message": "life"}], "cursor": None, "total": 1}
    for download in ("jsonl", "csv"):
        call("GET", "/v1/runs/{runId}/items", 200, path_parameters={"runId": run_id},
             query={"format": download, "fields": "message"})
    call("GET", "/v1/runs/{runId}/items", 400, path_parameters={"runId": run_id},
         query={"format": "jsonl", "limit": 5})

    sleeping = call("POST", "/v1/run", 202, body={
        "provider": "demo", "endpoint": "/sleep", "input": {"seconds": 60}}).json()["runId"]
    call("POST", "/v1/runs/{runId}/stop", 202, path_parameters={"runId": sleeping})
    stopped = call("GET", "/v1/runs/{runId}", 200, path_parameters={"runId": sleeping})
    assert stopped.json()["status"] == "STOPPED"

    failing = call("POST", "/v1/run", 202, body={
        "provider": "demo", "endpoint": "/fail", "input": {"status": 503, "times": 1},
    }).json()["runId"]
    assert runner.run(failing) == "retry"
    retrying = call("GET", "/v1/runs/{runId}", 200, path_parameters={"runId": failing})
    assert retrying.json()["attempts"][-1]["nextAttemptAt"] is not None

    first = call("GET", "/v1/runs", 200, query={"limit": 1}).json()
    assert first["cursor"] is not None
    call("GET", "/v1/runs", 200, query={"limit": 1, "cursor": first["cursor"]})
    call("GET", "/v1/wallet/balance", 200)


def test_the_catalog_answers_as_documented(api_schema: Any, fuzzed_api: FuzzedApi) -> None:
    call = Caller(api_schema, fuzzed_api.key)
    assert call("POST", "/v1/discover", 200, body={"query": "twitter posts"}).json()["count"]
    for provider, endpoint in [("demo", "/echo"), ("github", "/search/repositories"),
                               ("github", "/repos/get"),
                               ("apify", "/compass/crawler-google-places")]:
        call("POST", "/v1/inspect", 200, body={"provider": provider, "endpoint": endpoint})
    call("POST", "/v1/inspect", 404, body={"provider": "demo", "endpoint": "/nope"})
    first = call("GET", "/v1/endpoints", 200, query={"limit": 2}).json()
    call("GET", "/v1/endpoints", 200, query={"limit": 100, "cursor": first["cursor"]})
    call("GET", "/v1/endpoints", 400, query={"cursor": "not-a-cursor"})
    call("POST", "/v1/discover", 413, body={"query": "x" * 300_000})
    # schemathesis leaves out the document's own operation; it is checked here.
    call("GET", "/openapi.json", 200)


def test_the_public_catalog_answers_as_documented(api_schema: Any,
                                                  fuzzed_api: FuzzedApi) -> None:
    call = Caller(api_schema, None)
    call("GET", "/public/v1/stats", 200)
    call("GET", "/public/v1/providers", 200)
    endpoints = "/public/v1/providers/{provider}/endpoints"
    call("GET", endpoints, 200, path_parameters={"provider": "github"})
    call("GET", endpoints, 404, path_parameters={"provider": "nope"})
    card = f"{endpoints}/{{endpoint}}"
    etag = call("GET", card, 200, path_parameters={"provider": "demo", "endpoint": "echo"}
                ).headers["etag"][0]
    call("GET", card, 304, path_parameters={"provider": "demo", "endpoint": "echo"},
         headers={"If-None-Match": etag})
    call("GET", card, 404, path_parameters={"provider": "demo", "endpoint": "nope"})
    first = call("GET", "/public/v1/search", 200, query={"q": "data", "limit": 1}).json()
    call("GET", "/public/v1/search", 200, query={"q": "data", "cursor": first["cursor"]})
    call("GET", "/public/v1/search", 400, query={"q": "data", "limit": 21})
    limited_app = with_openapi(create_app(dataclasses.replace(
        fuzzed_api.settings, public_rate_limit_per_minute=1)))
    try:
        # The window counts per client address: the test client's own.
        limited = Caller(api_schema, None, app=limited_app)
        redis = fuzzed_api.app.extensions["monid"].redis
        for window in redis.scan_iter("monid:ratelimit*addr:*"):  # the fuzzing's counts
            redis.delete(window)
        limited("GET", "/public/v1/stats", 200)
        limited("GET", "/public/v1/stats", 429)
    finally:
        limited_app.extensions["monid"].pool.close()


def test_keys_answer_as_documented(api_schema: Any, fuzzed_api: FuzzedApi) -> None:
    call = Caller(api_schema, KeyMaker(fuzzed_api.pool)("user_schemathesis_keys"))
    label = call("GET", "/v1/api-keys", 200).json()["items"][0]["label"]
    one = "/v1/api-keys/{label}"
    call("PATCH", one, 200, path_parameters={"label": label}, body={"label": "renamed"})
    call("PATCH", one, 400, path_parameters={"label": "renamed"}, body={"label": "no spaces"})
    call("PATCH", one, 404, path_parameters={"label": label}, body={"label": "again"})
    call("GET", "/v1/api-keys", 400, query={"cursor": "not-a-cursor"})
    call("DELETE", one, 404, path_parameters={"label": "nope"})
    call("DELETE", one, 200, path_parameters={"label": "renamed"})


def test_refusals_answer_as_documented(api_schema: Any, fuzzed_api: FuzzedApi) -> None:
    broke = Caller(api_schema, KeyMaker(fuzzed_api.pool)("user_schemathesis_broke"))
    priced = {"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
              "input": {"searchTerms": ["AI"], "maxItems": 10}}
    broke("POST", "/v1/run", 402, body=priced)

    limited_app = with_openapi(create_app(dataclasses.replace(fuzzed_api.settings,
                                                              rate_limit_per_minute=1)))
    try:
        # A key of its own: the window counts per key, in Redis, whichever app asks.
        limited = Caller(api_schema, KeyMaker(fuzzed_api.pool)("user_schemathesis_limited"),
                         app=limited_app)
        limited("GET", "/v1/wallet/balance", 200)
        limited("GET", "/v1/wallet/balance", 429)
    finally:
        limited_app.extensions["monid"].pool.close()


def test_a_database_that_is_down_answers_as_documented(api_schema: Any,
                                                        fuzzed_api: FuzzedApi) -> None:
    nowhere = dataclasses.replace(fuzzed_api.settings,
                                  database_url="postgresql://postgres@127.0.0.1:1/nowhere",
                                  db_pool_timeout_seconds=0.2)
    down_app = with_openapi(create_app(nowhere))
    try:
        # Every check but "no 5xx": a 503 is the answer wanted here.
        down = Caller(api_schema, fuzzed_api.key, app=down_app,
                      checks=[c for c in CHECKS if c is not not_a_server_error])
        down("GET", "/v1/wallet/balance", 503)
        down("POST", "/v1/run", 503, body={"provider": "demo", "endpoint": "/echo",
                                           "input": {}})
        assert down("GET", "/readyz", 503).json()["checks"]["database"] == "unavailable"
        down("GET", "/healthz", 200)
    finally:
        down_app.extensions["monid"].pool.close()


def test_webhooks_answer_as_documented(api_schema: Any, fuzzed_api: FuzzedApi,
                                       runner: Runner) -> None:
    call = Caller(api_schema, KeyMaker(fuzzed_api.pool)("user_schemathesis_webhooks"))
    with transaction(fuzzed_api.pool) as conn:
        store.credit_wallet(conn, "USER#user_schemathesis_webhooks", 1_000_000, "fuzzing funds")
    made = call("POST", "/v1/webhooks", 201, body={
        "url": "https://example.com/hooks/monid", "events": ["run.completed"],
        "description": "documented"}).json()
    one = {"webhookId": made["webhookId"]}
    call("POST", "/v1/webhooks", 400, body={"url": "http://10.0.0.1/hook"})
    call("GET", "/v1/webhooks", 200, query={"limit": 1})
    call("GET", "/v1/webhooks", 400, query={"cursor": "not-a-cursor"})
    call("GET", "/v1/webhooks/{webhookId}", 200, path_parameters=one)
    call("PATCH", "/v1/webhooks/{webhookId}", 200, path_parameters=one,
         body={"enabled": False, "description": None})
    call("PATCH", "/v1/webhooks/{webhookId}", 400, path_parameters=one, body={})
    tested = call("POST", "/v1/webhooks/{webhookId}/test", 202, path_parameters=one).json()
    call("GET", "/v1/webhooks/{webhookId}/deliveries", 200, path_parameters=one)
    call("POST", "/v1/deliveries/{deliveryId}/redeliver", 409,
         path_parameters={"deliveryId": tested["deliveryId"]})
    call("POST", "/v1/webhooks/{webhookId}/secret/rotate", 200, path_parameters=one)
    call("GET", "/v1/webhooks/default/secret", 200)
    call("POST", "/v1/webhooks/default/secret/rotate", 200)

    run_id = call("POST", "/v1/run", 202, body={
        "provider": "demo", "endpoint": "/echo", "input": {"message": "told"},
        "webhook": {"url": "https://example.com/hooks/run"}}).json()["runId"]
    assert runner.run(run_id) == "completed"
    deliveries = call("GET", "/v1/runs/{runId}/deliveries", 200,
                      path_parameters={"runId": run_id}).json()["items"]
    assert [d["webhookId"] for d in deliveries] == [None]
    with transaction(fuzzed_api.pool) as conn:  # as a sender that gave up would leave it
        conn.execute("INSERT INTO webhook_delivery_attempts (delivery_id, status_code,"
                     " duration_ms, response_head) VALUES (%s, 500, 3, 'no')",
                     (deliveries[0]["deliveryId"],))
        conn.execute("UPDATE webhook_deliveries SET status = 'FAILED', next_attempt_at = NULL,"
                     " attempt_count = 1 WHERE id = %s", (deliveries[0]["deliveryId"],))
    call("GET", "/v1/runs/{runId}/deliveries", 200, path_parameters={"runId": run_id})
    call("POST", "/v1/deliveries/{deliveryId}/redeliver", 202,
         path_parameters={"deliveryId": deliveries[0]["deliveryId"]})
    call("DELETE", "/v1/webhooks/{webhookId}", 200, path_parameters=one)
    call("GET", "/v1/webhooks/{webhookId}", 404, path_parameters=one)
    call("DELETE", "/v1/webhooks/{webhookId}", 404, path_parameters=one)

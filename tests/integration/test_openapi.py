"""The OpenAPI document (GET /openapi.json) and its page (GET /docs)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from api import openapi
from shared.requests import (
    CreateWebhookSchema,
    DiscoverSchema,
    InspectSchema,
    ListDeliveriesSchema,
    ListEndpointsSchema,
    ListItemsSchema,
    ListRunsSchema,
    ListWebhooksSchema,
    StartRunSchema,
    UpdateWebhookSchema,
)

AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # Flask answers these on its own for every route
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ENVELOPE_FIELDS = {"code", "message", "errorCode"}


@pytest.fixture
def docs_app(app: Flask) -> Flask:
    # create_app may already call openapi.init_app itself.
    if "/openapi.json" not in {rule.rule for rule in app.url_map.iter_rules()}:
        openapi.init_app(app)
    return app


@pytest.fixture
def docs_client(docs_app: Flask) -> FlaskClient:
    return docs_app.test_client()


@pytest.fixture
def document(docs_client: FlaskClient) -> dict[str, Any]:
    resp = docs_client.get("/openapi.json")
    assert resp.status_code == 200
    body: dict[str, Any] = resp.get_json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation)
            for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def path_shape(path: str) -> str:
    """A Flask rule or an OpenAPI path with its parameters unnamed: `/v1/runs/{}`.
    (The document names them as the contract does, `runId`; Flask's are `run_id`.)"""
    return re.sub(r"<[^<>]+>|\{[^{}]+\}", "{}", path)


# --- the document ------------------------------------------------------------------


def test_the_document_is_valid_openapi_3(docs_client: FlaskClient) -> None:
    resp = docs_client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.headers["x-request-id"]
    document = resp.get_json()
    assert document["openapi"].startswith("3.")
    validate(document)


def test_the_document_is_built_once_per_app(docs_app: Flask, docs_client: FlaskClient,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    first = docs_client.get("/openapi.json").get_data()

    def build_again(*_: Any) -> dict[str, Any]:
        raise AssertionError("the document was built a second time")

    monkeypatch.setattr(openapi, "build_document", build_again)
    assert docs_client.get("/openapi.json").get_data() == first


def test_every_route_is_documented_with_its_methods(docs_app: Flask,
                                                    document: dict[str, Any]) -> None:
    routes: dict[str, set[str]] = {}
    for rule in docs_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = {m.lower() for m in (rule.methods or set()) - AUTOMATIC_METHODS}
        routes.setdefault(path_shape(rule.rule), set()).update(methods)
    documented = {path_shape(path): {m for m in item if m in METHODS}
                  for path, item in document["paths"].items()}
    assert len(documented) == len(document["paths"])
    assert documented == routes


def test_every_contract_route_is_there(document: dict[str, Any]) -> None:
    expected = {
        ("/v1/run", "post"), ("/v1/runs/{runId}", "get"), ("/v1/runs", "get"),
        ("/v1/runs/{runId}/stop", "post"), ("/v1/runs/{runId}/items", "get"),
        ("/v1/wallet/balance", "get"),
        ("/v1/discover", "post"), ("/v1/inspect", "post"), ("/v1/endpoints", "get"),
        ("/healthz", "get"), ("/readyz", "get"), ("/openapi.json", "get"), ("/docs", "get"),
    }
    assert expected <= {(path, method) for path, method, _ in operations(document)}


def test_v1_routes_need_a_bearer_key_and_say_401(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    for path, method, operation in operations(document):
        if path.startswith("/v1/"):
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
            headers = operation["responses"]["401"]["headers"]
            assert resolve(document, headers["WWW-Authenticate"])["required"] is True
        else:
            assert operation["security"] == [], (method, path)
            assert "401" not in operation["responses"], (method, path)


def test_every_error_answer_is_the_envelope(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = resolve(document, response["content"]["application/json"]["schema"])
            assert set(schema["properties"]) >= ENVELOPE_FIELDS, (method, path, status)
            assert set(schema["required"]) >= ENVELOPE_FIELDS, (method, path, status)
            assert set(schema["properties"]) - ENVELOPE_FIELDS <= {"errors", "checks", "hints"}


def test_every_answer_has_the_request_id_header(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            header = resolve(document, response["headers"]["x-request-id"])
            assert header["required"] is True, (method, path, status)


@pytest.mark.parametrize(("path", "method", "statuses"), [
    # 200: a BLOCKED run.
    ("/v1/run", "post", {200, 202, 400, 401, 402, 404, 405, 409, 413, 415, 422, 429, 500, 503}),
    ("/v1/runs/{runId}", "get", {200, 400, 401, 404, 405, 429, 500, 503}),
    ("/v1/runs", "get", {200, 400, 401, 405, 429, 500, 503}),
    ("/v1/runs/{runId}/stop", "post", {202, 401, 404, 405, 409, 429, 500, 503}),
    ("/v1/runs/{runId}/items", "get", {200, 400, 401, 404, 405, 429, 500, 503}),
    ("/v1/wallet/balance", "get", {200, 401, 405, 429, 500, 503}),
    ("/v1/discover", "post", {200, 400, 401, 405, 413, 415, 429, 500, 503}),
    ("/v1/inspect", "post", {200, 400, 401, 404, 405, 413, 415, 429, 500, 503}),
    ("/v1/endpoints", "get", {200, 400, 401, 405, 429, 500, 503}),
    ("/v1/controls/workspace/budgets", "get", {200, 400, 401, 405, 429, 500, 503}),
    ("/v1/controls/workspace/budgets/{controlId}", "get", {200, 401, 404, 405, 429, 500, 503}),
    ("/v1/controls/workspace/budgets/{controlId}", "patch",
     {200, 400, 401, 404, 405, 413, 415, 429, 500, 503}),
    ("/v1/controls/workspace/budgets/{controlId}/runs", "get",
     {200, 400, 401, 404, 405, 429, 500, 503}),
    ("/v1/controls/workspace/run-caps/{controlId}", "patch",
     {200, 400, 401, 404, 405, 413, 415, 429, 500, 503}),
    ("/v1/runs/{runId}/controls", "get", {200, 400, 401, 404, 405, 429, 500, 503}),
    ("/v1/webhooks", "post", {201, 400, 401, 405, 409, 413, 415, 429, 500, 503}),
    ("/v1/webhooks", "get", {200, 400, 401, 405, 429, 500, 503}),
    ("/v1/webhooks/{webhookId}", "get", {200, 401, 404, 405, 429, 500, 503}),
    ("/v1/webhooks/{webhookId}", "patch", {200, 400, 401, 404, 405, 413, 415, 429, 500, 503}),
    ("/v1/webhooks/{webhookId}", "delete", {200, 401, 404, 405, 429, 500, 503}),
    ("/v1/webhooks/{webhookId}/test", "post", {202, 401, 404, 405, 429, 500, 503}),
    ("/v1/webhooks/{webhookId}/secret/rotate", "post", {200, 401, 404, 405, 429, 500, 503}),
    ("/v1/webhooks/{webhookId}/deliveries", "get", {200, 400, 401, 404, 405, 429, 500, 503}),
    ("/v1/webhooks/default/secret", "get", {200, 401, 405, 429, 500, 503}),
    ("/v1/webhooks/default/secret/rotate", "post", {200, 401, 405, 429, 500, 503}),
    ("/v1/runs/{runId}/deliveries", "get", {200, 400, 401, 404, 405, 429, 500, 503}),
    ("/v1/deliveries/{deliveryId}/redeliver", "post", {202, 401, 404, 405, 409, 429, 500, 503}),
    ("/healthz", "get", {200, 405, 500}),
    ("/readyz", "get", {200, 405, 500, 503}),
])
def test_each_route_lists_every_status_it_can_answer(document: dict[str, Any], path: str,
                                                     method: str, statuses: set[int]) -> None:
    assert {int(s) for s in document["paths"][path][method]["responses"]} == statuses


def test_429_says_when_to_come_back(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if "429" not in operation["responses"]:
            continue
        headers = operation["responses"]["429"]["headers"]
        for name in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                     "RateLimit-Reset"):
            assert resolve(document, headers[name])["required"] is True, (method, path, name)


def test_start_run_documents_its_headers(document: dict[str, Any]) -> None:
    operation = document["paths"]["/v1/run"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in operation["parameters"]
                                 if p["in"] == "header"}
    assert "Location" in operation["responses"]["202"]["headers"]


def test_requests_are_described_by_the_validating_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for path, method, schema in [
            ("/v1/run", "post", StartRunSchema), ("/v1/discover", "post", DiscoverSchema),
            ("/v1/inspect", "post", InspectSchema), ("/v1/webhooks", "post", CreateWebhookSchema),
            ("/v1/webhooks/{webhookId}", "patch", UpdateWebhookSchema)]:
        body = document["paths"][path][method]["requestBody"]
        described = resolve(document, body["content"]["application/json"]["schema"])
        assert set(described["properties"]) == set(schema().fields), path
        assert described["additionalProperties"] is False, path  # unknown=RAISE: a 400
    assert schemas["StartRun"]["required"] == ["endpoint", "input", "provider"]
    assert schemas["RunWebhook"]["additionalProperties"] is False
    assert schemas["RunWebhook"]["properties"]["url"]["maxLength"] == 2048
    assert schemas["CreateWebhook"]["required"] == ["url"]
    for path, schema in [("/v1/runs", ListRunsSchema), ("/v1/endpoints", ListEndpointsSchema),
                         ("/v1/runs/{runId}/items", ListItemsSchema),
                         ("/v1/webhooks", ListWebhooksSchema),
                         ("/v1/runs/{runId}/deliveries", ListDeliveriesSchema),
                         ("/v1/webhooks/{webhookId}/deliveries", ListDeliveriesSchema)]:
        parameters = document["paths"][path]["get"]["parameters"]
        query = {p["name"]: p["schema"] for p in parameters if p["in"] == "query"}
        assert set(query) == {f.data_key or name for name, f in schema().fields.items()}, path
        for name, param_schema in query.items():
            assert "nullable" not in param_schema and param_schema.get("default", 0) is not None
            assert None not in param_schema.get("enum", []), (path, name)


def test_results_are_described(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    run = schemas["Run"]
    assert {"outputTruncated", "itemsUrl"} <= set(run["required"])
    assert "MAX_INLINE_OUTPUT_BYTES" in run["properties"]["output"]["description"]
    assert "RESPONSE_TOO_LARGE" in schemas["RunError"]["properties"]["code"]["description"]
    assert "PROVIDER_RUN_FAILED" in schemas["RunError"]["properties"]["code"]["description"]
    assert "message" in schemas["Attempt"]["required"]
    items = document["paths"]["/v1/runs/{runId}/items"]["get"]
    assert set(items["responses"]["200"]["content"]) == {
        "application/json", "application/x-ndjson", "text/csv"}
    assert set(schemas["RunItemsPage"]["required"]) == {"items", "cursor", "total"}
    parameters = {p["name"]: p["schema"] for p in items["parameters"] if p["in"] == "query"}
    assert parameters["limit"]["minimum"] == 1 and parameters["limit"]["maximum"] == 1000
    assert parameters["format"]["enum"] == ["json", "jsonl", "csv"]


def test_the_document_is_served_without_a_key(docs_client: FlaskClient) -> None:
    resp = docs_client.get("/openapi.json", headers={"x-request-id": "docs-check-1"})
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == "docs-check-1"


def test_init_app_twice_is_harmless(docs_app: Flask) -> None:
    rules = len(list(docs_app.url_map.iter_rules()))
    openapi.init_app(docs_app)
    assert len(list(docs_app.url_map.iter_rules())) == rules


# --- the page ----------------------------------------------------------------------


class _Links(HTMLParser):
    """Every URL the page loads: scripts, styles and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append(value)


def test_the_page_loads_only_local_files_and_each_answers(docs_client: FlaskClient) -> None:
    resp = docs_client.get("/docs")
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "http://" not in page and "https://" not in page
    assert '"/openapi.json"' in page  # what Swagger UI renders
    links = _Links()
    links.feed(page)
    assert any(url.endswith(".js") for url in links.urls)
    assert any(url.endswith(".css") for url in links.urls)
    for url in links.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = docs_client.get(url)
        assert asset.status_code == 200, url
        assert asset.get_data(), url
        assert asset.headers["x-request-id"]


def test_the_assets_have_their_media_types(docs_client: FlaskClient) -> None:
    for filename, media_type in openapi.ASSETS.items():
        resp = docs_client.get(f"/docs/assets/{filename}")
        assert resp.status_code == 200, filename
        assert resp.mimetype == media_type, filename


@pytest.mark.parametrize("path", [
    "/docs/assets/index.html",  # ships with the package, but points at the petstore
    "/docs/assets/swagger-initializer.js",
    "/docs/assets/nope.js",
    "/docs/assets/../__init__.py",
    "/docs/assets/%2e%2e/__init__.py",
])
def test_other_files_are_not_served(docs_client: FlaskClient, path: str) -> None:
    resp = docs_client.get(path)
    assert resp.status_code == 404
    assert resp.get_json()["errorCode"] == "NOT_FOUND"


def test_an_undocumented_route_stops_the_document(app: Flask) -> None:
    app.add_url_rule("/undocumented", "undocumented", lambda: "")
    with pytest.raises(LookupError, match="/undocumented"):
        openapi.build_document(app)


def test_every_error_code_of_the_table_is_in_the_envelope(document: dict[str, Any]) -> None:
    from api.errors import ERRORS

    error_code = document["components"]["schemas"]["Error"]["properties"]["errorCode"]
    assert error_code["enum"] == list(dict.fromkeys(e.code for e in ERRORS))

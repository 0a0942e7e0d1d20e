"""The catalog in PostgreSQL: syncing the files there, and POST /v1/discover,
POST /v1/inspect and GET /v1/endpoints reading it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from psycopg_pool import ConnectionPool

from api import catalog as catalog_api
from shared.catalog import Catalog, load_catalog
from shared.db import transaction
from shared.settings import Settings
from shared.store.catalog import (
    NoSearchableWords,
    SyncReport,
    get_endpoint,
    list_endpoints,
    search_endpoints,
    sync_catalog,
)
from tests.helpers import auth, monidctl

ROOT = Path(__file__).resolve().parents[2]
CARD_FIELDS = ["provider", "providerName", "endpoint", "name", "description", "tags",
               "inputSchema", "price", "deadlineSeconds", "maxAttempts", "exampleInput",
               "metrics", "hints"]
ITEM_FIELDS = ["provider", "providerName", "endpoint", "name", "description", "tags", "price"]
RESULT_FIELDS = ["provider", "providerName", "endpoint", "description", "price", "score", "tags",
                 "metrics"]


@pytest.fixture
def catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog_dir)


@pytest.fixture
def synced(db: ConnectionPool, catalog: Catalog) -> ConnectionPool:
    """The test database's catalog table, matching the catalog files."""
    with transaction(db) as conn:
        sync_catalog(conn, catalog)
    return db


@pytest.fixture
def client(app: Flask, synced: ConnectionPool) -> FlaskClient:
    # Until api/app.py registers the catalog routes itself.
    if catalog_api.blueprint.name not in app.blueprints:
        app.register_blueprint(catalog_api.blueprint)
    return app.test_client()


def sync(pool: ConnectionPool, catalog: Catalog) -> SyncReport:
    with transaction(pool) as conn:
        return sync_catalog(conn, catalog)


def without(catalog: Catalog, *keys: tuple[str, str]) -> Catalog:
    endpoints = {k: e for k, e in catalog.endpoints.items() if k not in keys}
    names = {e.provider: e.provider_name for e in endpoints.values()}
    return Catalog(endpoints=endpoints, provider_names=names)


def changed(catalog: Catalog, key: tuple[str, str], **fields: Any) -> Catalog:
    endpoints = dict(catalog.endpoints)
    endpoints[key] = dataclasses.replace(endpoints[key], **fields)
    return Catalog(endpoints=endpoints, provider_names=catalog.provider_names)


def discover(client: FlaskClient, key: str, query: Any, **extra: Any) -> Any:
    resp = client.post("/v1/discover", json={"query": query, **extra}, headers=auth(key))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def error_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    assert body["code"] == status and body["errorCode"] == code
    return body


# --- sync --------------------------------------------------------------------------


def test_sync_is_idempotent(synced: ConnectionPool, catalog: Catalog) -> None:
    total = len(catalog.endpoints)
    assert sync(synced, catalog) == SyncReport(added=0, updated=0, unchanged=total, removed=0)
    assert sync(synced, catalog) == SyncReport(added=0, updated=0, unchanged=total, removed=0)
    with transaction(synced) as conn:
        conn.execute("DELETE FROM catalog_endpoints")
    assert sync(synced, catalog) == SyncReport(added=total, updated=0, unchanged=0, removed=0)
    assert str(sync(synced, catalog)) == (f"{total} endpoint(s): 0 added, 0 updated, "
                                          f"{total} unchanged, 0 removed")


def test_sync_removes_endpoints_no_longer_in_the_files(synced: ConnectionPool,
                                                       catalog: Catalog) -> None:
    gone = [("github", "/repos/get"), ("github", "/search/repositories"), ("demo", "/fail")]
    report = sync(synced, without(catalog, *gone))
    assert report == SyncReport(added=0, updated=0, unchanged=len(catalog.endpoints) - 3,
                                removed=3)
    with transaction(synced) as conn:
        assert all(get_endpoint(conn, *key) is None for key in gone)
        assert get_endpoint(conn, "demo", "/echo") is not None
        entries, more = list_endpoints(conn, 100)
    assert not more
    assert [(e.provider, e.path) for e in entries] == sorted(
        k for k in catalog.endpoints if k not in gone)
    assert sync(synced, catalog) == SyncReport(added=3, updated=0,
                                               unchanged=len(catalog.endpoints) - 3, removed=0)


def test_sync_updates_a_changed_endpoint_and_what_search_finds(synced: ConnectionPool,
                                                               catalog: Catalog) -> None:
    key = ("demo", "/sleep")
    with transaction(synced) as conn:
        with pytest.raises(NoSearchableWords):
            search_endpoints(conn, "the", 5)
        assert search_endpoints(conn, "zanzibar", 5) == []
    edited = changed(catalog, key, description="Waits, then answers, like a ferry to Zanzibar.",
                     tags=("demo", "ferry"), deadline_seconds=61)
    report = sync(synced, edited)
    assert (report.added, report.updated, report.removed) == (0, 1, 0)
    with transaction(synced) as conn:
        found = search_endpoints(conn, "zanzibar ferries", 5)
        entry = get_endpoint(conn, *key)
    assert [(m.entry.provider, m.entry.path) for m in found] == [key]
    assert entry is not None
    assert entry.tags == ("demo", "ferry") and entry.deadline_seconds == 61
    assert sync(synced, catalog).updated == 1  # and back


def test_sync_stores_the_whole_card(synced: ConnectionPool, catalog: Catalog) -> None:
    with transaction(synced) as conn:
        for endpoint in catalog.all():
            entry = get_endpoint(conn, endpoint.provider, endpoint.path)
            # The endpoint itself, but for what the table does not keep.
            assert entry == dataclasses.replace(
                endpoint, call={}, max_concurrent=None,
                price=dataclasses.replace(endpoint.price, max_results_input=None))


# --- monidctl ------------------------------------------------------------------------



def test_monidctl_migrate_syncs_the_catalog(empty_database: str, redis_url: str,
                                            catalog: Catalog) -> None:
    env = {"DATABASE_URL": empty_database, "REDIS_URL": redis_url}
    total = len(catalog.endpoints)
    first = monidctl("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0005_catalog" in first.stdout
    assert f"synced: {total} endpoint(s): {total} added, 0 updated" in first.stdout
    second = monidctl("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert f"{total} endpoint(s): 0 added, 0 updated, {total} unchanged, 0 removed" \
        in second.stdout
    with psycopg.connect(empty_database) as conn:
        row = conn.execute("SELECT count(*) FROM catalog_endpoints").fetchone()
    assert row is not None and row[0] == total


def test_monidctl_catalog_sync(empty_database: str, redis_url: str, catalog: Catalog,
                               tmp_path: Path) -> None:
    env = {"DATABASE_URL": empty_database, "REDIS_URL": redis_url}
    assert monidctl("migrate", env=env).returncode == 0
    demo_only = tmp_path / "catalog"
    demo_only.mkdir()
    (demo_only / "demo.json").write_text((ROOT / "shared/catalog/demo.json").read_text())
    fewer = monidctl("catalog", "sync", "--dir", str(demo_only), env=env)
    assert fewer.returncode == 0, fewer.stderr
    removed = len(catalog.endpoints) - 3
    assert f"3 endpoint(s): 0 added, 0 updated, 3 unchanged, {removed} removed" in fewer.stdout
    back = monidctl("catalog", "sync", env=env)
    assert back.returncode == 0, back.stderr
    assert "0 updated, 3 unchanged, 0 removed" in back.stdout
    assert f"{removed} added" in back.stdout
    (demo_only / "demo.json").write_text("{not json")
    bad = monidctl("catalog", "sync", "--dir", str(demo_only), env=env)
    assert bad.returncode == 1
    assert "not valid JSON" in bad.stderr


# --- POST /v1/discover ---------------------------------------------------------------


@pytest.mark.parametrize(("query", "provider", "endpoint"), [
    ("twitter posts about AI", "apify", "/apidojo/tweet-scraper"),
    ("google maps places", "apify", "/compass/crawler-google-places"),
    ("coffee shops in Berlin", "apify", "/compass/crawler-google-places"),
    ("instagram hashtag posts", "apify", "/apify/instagram-scraper"),
    ("find a person's email and job title", "peopledatalabs", "/v5/person/enrich"),
    ("company firmographics", "peopledatalabs", "/v5/company/enrich"),
    ("search the web for news articles", "exa", "/search"),
    ("github repositories about celery", "github", "/search/repositories"),
])
def test_discover_ranks_the_obvious_endpoint_first(client: FlaskClient, key: str, query: str,
                                                   provider: str, endpoint: str) -> None:
    body = discover(client, key, query)
    first = body["results"][0]
    assert (first["provider"], first["endpoint"]) == (provider, endpoint), body["results"]
    if len(body["results"]) > 1:
        assert first["score"] > body["results"][1]["score"]


def test_discover_answer_shape(client: FlaskClient, key: str) -> None:
    body = discover(client, key, "twitter posts about AI")
    assert list(body) == ["results", "query", "count", "hints"]
    assert body["query"] == "twitter posts about AI"
    assert body["count"] == len(body["results"]) >= 1
    first = body["results"][0]
    assert list(first) == RESULT_FIELDS
    assert first["providerName"] == "Apify"
    assert first["price"] == {"type": "PER_CALL", "amount": 0.003, "currency": "USD"}
    assert "twitter" in first["tags"]
    assert first["description"].startswith("Search X (Twitter)")

    places = discover(client, key, "google maps places")["results"][0]
    assert places["price"] == {"type": "PER_RESULT", "amount": 0.004, "currency": "USD",
                               "flatFee": 0.001}


@pytest.mark.parametrize("query", [
    "twitter posts about AI", "search scraper people company github demo data",
    "social media posts", "test",
])
def test_discover_scores_are_within_0_and_1_best_first(client: FlaskClient, key: str,
                                                       query: str) -> None:
    results = discover(client, key, query, limit=50)["results"]
    assert results
    scores = [r["score"] for r in results]
    assert all(isinstance(s, float | int) and 0 <= s <= 1 for s in scores)
    assert all(round(s, 4) == s for s in scores)
    order = [(-r["score"], r["provider"], r["endpoint"]) for r in results]
    assert order == sorted(order)  # ties broken by provider, then endpoint
    assert len({(r["provider"], r["endpoint"]) for r in results}) == len(results)


def test_discover_honours_the_limit(client: FlaskClient, key: str) -> None:
    broad = "search scraper people company github demo data posts"
    everything = discover(client, key, broad, limit=50)
    assert everything["count"] > 5
    assert discover(client, key, broad)["count"] == 5  # the default
    for limit in (1, 2, 5):
        body = discover(client, key, broad, limit=limit)
        assert body["count"] == len(body["results"]) == limit
        assert body["results"] == everything["results"][:limit]


def test_discover_finds_nothing_for_words_no_endpoint_has(client: FlaskClient, key: str) -> None:
    assert discover(client, key, "zanzibar xylophone") == {
        "results": [], "query": "zanzibar xylophone", "count": 0,
        "hints": {"try other words": {"kind": "discover", "query": "zanzibar xylophone"},
                  "or list every endpoint": "GET /v1/endpoints"}}


def test_discover_takes_any_text(client: FlaskClient, key: str) -> None:
    for query in ["tweets & (posts) | !ai", "-twitter", "\"instagram\" <-> posts:*",
                  "twitter' OR 1=1 --", "café Zürich 東京 twitter"]:
        body = discover(client, key, query)
        assert body["query"] == query


def test_discover_reads_the_synced_catalog(client: FlaskClient, key: str, synced: ConnectionPool,
                                           catalog: Catalog) -> None:
    sync(synced, without(catalog, ("exa", "/search")))
    results = discover(client, key, "search the web for news articles")["results"]
    assert ("exa", "/search") not in {(r["provider"], r["endpoint"]) for r in results}
    resp = client.post("/v1/inspect", json={"provider": "exa", "endpoint": "/search"},
                       headers=auth(key))
    error_of(resp, 404, "ENDPOINT_NOT_FOUND")


@pytest.mark.parametrize(("body", "field", "message"), [
    ({}, "query", "is required"),
    ({"query": ""}, "query", "must not be empty"),
    ({"query": "   \t\n "}, "query", "must not be empty"),
    ({"query": "x" * 501}, "query", "must be at most 500 characters long"),
    ({"query": "the and of a"}, "query", "has no words to search for"),
    ({"query": "?! ... --"}, "query", "has no words to search for"),
    ({"query": 42}, "query", "must be a string"),
    ({"query": None}, "query", "must not be null"),
    ({"query": ["twitter"]}, "query", "must be a string"),
    ({"query": "twitter", "limit": 0}, "limit", "Must be greater than or equal to 1"),
    ({"query": "twitter", "limit": 51}, "limit", "Must be greater than or equal to 1"),
    ({"query": "twitter", "limit": "5"}, "limit", "must be an integer"),
    ({"query": "twitter", "limit": 2.5}, "limit", "must be an integer"),
    ({"query": "twitter", "limit": True}, "limit", "must be an integer"),
    ({"query": "twitter", "limit": None}, "limit", "must not be null"),
    ({"query": "twitter", "top": 3}, "top", "is not a known field"),
])
def test_discover_refuses_bad_bodies(client: FlaskClient, key: str, body: dict[str, Any],
                                     field: str, message: str) -> None:
    resp = client.post("/v1/discover", json=body, headers=auth(key))
    error = error_of(resp, 400, "VALIDATION_FAILED")
    assert field in error["errors"], error
    assert any(m.startswith(message[:20]) for m in error["errors"][field]), error


def test_discover_query_of_500_characters_is_fine(client: FlaskClient, key: str) -> None:
    query = ("twitter " * 70)[:500]
    assert len(query) == 500
    assert discover(client, key, query)["results"][0]["endpoint"] == "/apidojo/tweet-scraper"


def test_discover_limit_bounds_are_inclusive(client: FlaskClient, key: str) -> None:
    assert discover(client, key, "twitter", limit=1)["count"] == 1
    assert discover(client, key, "twitter", limit=50)["count"] >= 1


def test_discover_refuses_a_body_that_is_not_a_json_object(client: FlaskClient,
                                                           key: str) -> None:
    for data in ["not json", "[1, 2]", ""]:
        resp = client.post("/v1/discover", data=data, content_type="application/json",
                           headers=auth(key))
        error_of(resp, 400, "VALIDATION_FAILED")


# --- POST /v1/inspect --------------------------------------------------------------------


def inspect(client: FlaskClient, key: str, provider: str, endpoint: str) -> Any:
    resp = client.post("/v1/inspect", json={"provider": provider, "endpoint": endpoint},
                       headers=auth(key))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def test_inspect_answers_the_whole_card(client: FlaskClient, key: str,
                                        catalog: Catalog) -> None:
    card = inspect(client, key, "apify", "/apidojo/tweet-scraper")
    endpoint = catalog.find("apify", "/apidojo/tweet-scraper")
    assert endpoint is not None
    assert list(card) == CARD_FIELDS
    assert card["provider"] == "apify" and card["providerName"] == "Apify"
    assert card["endpoint"] == "/apidojo/tweet-scraper"
    assert card["name"] == endpoint.name and card["description"] == endpoint.description
    assert card["tags"] == list(endpoint.tags)
    assert card["inputSchema"] == endpoint.input_schema
    assert card["price"] == {"type": "PER_CALL", "amount": 0.003, "currency": "USD"}
    assert card["deadlineSeconds"] == 900 and card["maxAttempts"] == 3
    assert card["exampleInput"] == endpoint.example_input


def test_inspect_shows_the_schemas_of_a_composite_endpoint(client: FlaskClient,
                                                           key: str) -> None:
    repo = inspect(client, key, "github", "/repos/get")
    assert "pathParamsSchema" in repo and "queryParamsSchema" not in repo
    assert repo["pathParamsSchema"]["required"] == ["owner", "repo"]
    assert list(repo["exampleInput"]) == ["pathParams"]
    search = inspect(client, key, "github", "/search/repositories")
    assert "queryParamsSchema" in search and "pathParamsSchema" not in search
    assert search["price"] == {"type": "PER_RESULT", "amount": 0.0001, "currency": "USD"}


def test_every_card_has_an_example_its_own_schemas_accept(client: FlaskClient, key: str,
                                                          catalog: Catalog) -> None:
    parts = {"body": "inputSchema", "queryParams": "queryParamsSchema",
             "pathParams": "pathParamsSchema"}
    for endpoint in catalog.all():
        card = inspect(client, key, endpoint.provider, endpoint.path)
        example = card["exampleInput"]
        assert isinstance(example, dict) and example
        composite = set(example) <= set(parts) and all(isinstance(v, dict)
                                                        for v in example.values())
        given = example if composite else {"body": example}
        for part, schema_field in parts.items():
            if schema_field in card:
                errors = list(Draft202012Validator(card[schema_field]).iter_errors(
                    given.get(part, {})))
                assert errors == [], (endpoint.provider, endpoint.path, part)
            else:
                assert not given.get(part)
        # and the run API takes it as it is
        resp = client.post("/v1/run", json={"provider": endpoint.provider,
                                            "endpoint": endpoint.path, "input": example},
                           headers=auth(key))
        assert resp.status_code != 400, resp.get_data(as_text=True)


@pytest.mark.parametrize(("provider", "endpoint"), [
    ("apify", "/nope"),
    ("nope", "/apidojo/tweet-scraper"),
    ("exa", "/search/"),
    ("Exa", "/search"),
    ("exa", "search"),
])
def test_inspect_of_an_unknown_endpoint_is_404(client: FlaskClient, key: str, provider: str,
                                               endpoint: str) -> None:
    resp = client.post("/v1/inspect", json={"provider": provider, "endpoint": endpoint},
                       headers=auth(key))
    error = error_of(resp, 404, "ENDPOINT_NOT_FOUND")
    assert endpoint in error["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "provider"),
    ({"provider": "exa"}, "endpoint"),
    ({"endpoint": "/search"}, "provider"),
    ({"provider": "", "endpoint": "/search"}, "provider"),
    ({"provider": "exa", "endpoint": 7}, "endpoint"),
    ({"provider": "exa", "endpoint": "/search", "input": {}}, "input"),
])
def test_inspect_refuses_bad_bodies(client: FlaskClient, key: str, body: dict[str, Any],
                                    field: str) -> None:
    resp = client.post("/v1/inspect", json=body, headers=auth(key))
    assert field in error_of(resp, 400, "VALIDATION_FAILED")["errors"]


# --- GET /v1/endpoints ----------------------------------------------------------------


def page_through(client: FlaskClient, key: str, limit: int) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        url = f"/v1/endpoints?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        resp = client.get(url, headers=auth(key))
        assert resp.status_code == 200, resp.get_data(as_text=True)
        body = resp.get_json()
        assert list(body) == ["items", "cursor"]
        pages.append(body["items"])
        cursor = body["cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 10, 11, 100])
def test_endpoints_paging_neither_skips_nor_repeats(client: FlaskClient, key: str,
                                                    catalog: Catalog, limit: int) -> None:
    pages = page_through(client, key, limit)
    seen = [(i["provider"], i["endpoint"]) for page in pages for i in page]
    assert seen == sorted(catalog.endpoints)
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit


def test_endpoints_default_page_and_item_shape(client: FlaskClient, key: str,
                                               catalog: Catalog) -> None:
    resp = client.get("/v1/endpoints", headers=auth(key))
    assert resp.status_code == 200
    body = resp.get_json()
    assert len(body["items"]) == min(10, len(catalog.endpoints))
    assert (body["cursor"] is None) == (len(catalog.endpoints) <= 10)
    first = body["items"][0]
    assert list(first) == ITEM_FIELDS
    endpoint = catalog.all()[0]
    assert (first["provider"], first["endpoint"]) == (endpoint.provider, endpoint.path)
    assert first["tags"] == list(endpoint.tags)
    assert "inputSchema" not in first and "exampleInput" not in first


def test_endpoints_paging_is_stable_while_the_catalog_changes(
        client: FlaskClient, key: str, synced: ConnectionPool, catalog: Catalog) -> None:
    ordered = sorted(catalog.endpoints)
    resp = client.get("/v1/endpoints?limit=4", headers=auth(key))
    first_page = [(i["provider"], i["endpoint"]) for i in resp.get_json()["items"]]
    assert first_page == ordered[:4]
    # An endpoint of the page already read goes away; the rest is neither skipped nor repeated.
    sync(synced, without(catalog, ordered[1]))
    cursor = resp.get_json()["cursor"]
    rest: list[tuple[str, str]] = []
    while cursor:
        body = client.get(f"/v1/endpoints?limit=4&cursor={cursor}", headers=auth(key)).get_json()
        rest += [(i["provider"], i["endpoint"]) for i in body["items"]]
        cursor = body["cursor"]
    assert rest == ordered[4:]


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=abc", "limit"),
    ("cursor=garbage", "cursor"),
    ("cursor=eyJiZWZvcmUiOiIwMUpHWFlaQUJDREVGR0hKS01OUFFSU1RWVyJ9", "cursor"),  # a runs cursor
    ("page=2", "page"),
])
def test_endpoints_refuses_bad_parameters(client: FlaskClient, key: str, query: str,
                                          field: str) -> None:
    resp = client.get(f"/v1/endpoints?{query}", headers=auth(key))
    assert field in error_of(resp, 400, "VALIDATION_FAILED")["errors"]


# --- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url", "body"), [
    ("POST", "/v1/discover", {"query": "twitter"}),
    ("POST", "/v1/inspect", {"provider": "exa", "endpoint": "/search"}),
    ("GET", "/v1/endpoints", None),
])
def test_every_catalog_route_needs_a_key(client: FlaskClient, make_key: Any, method: str,
                                         url: str, body: Any) -> None:
    for headers in [{}, auth("monid_live_notarealkeyatallnotarealkey"),
                    {"Authorization": "Basic abc"}]:
        resp = client.open(url, method=method, json=body, headers=headers)
        error_of(resp, 401, "UNAUTHORIZED")
    assert client.open(url, method=method, json=body,
                       headers=auth(make_key("user_other"))).status_code == 200


def test_a_bad_body_without_a_key_is_401_not_400(client: FlaskClient) -> None:
    resp = client.post("/v1/discover", json={"query": ""})
    error_of(resp, 401, "UNAUTHORIZED")

"""The public catalog without a key (`/public/v1`): its answers, search in pages,
the cache headers and 304, and the limit per client address."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from api.app import create_app
from shared.catalog import Catalog, load_catalog
from shared.db import transaction
from shared.settings import Settings
from shared.store.catalog import sync_catalog
from tests.helpers import auth

RESULT_FIELDS = {"provider", "providerName", "endpoint", "description", "price", "score",
                 "tags"}


@pytest.fixture
def catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog_dir)


@pytest.fixture(autouse=True)
def synced(db: ConnectionPool, catalog: Catalog) -> ConnectionPool:
    with transaction(db) as conn:
        sync_catalog(conn, catalog)
    return db


def test_stats_and_providers_match_the_catalog(client: FlaskClient, catalog: Catalog) -> None:
    every = catalog.all()
    stats = client.get("/public/v1/stats")
    assert stats.status_code == 200, stats.json
    assert stats.json == {"providerCount": len({e.provider for e in every}),
                          "endpointCount": len(every)}
    providers = client.get("/public/v1/providers").json["items"]
    assert [p["provider"] for p in providers] == sorted({e.provider for e in every})
    demo = next(p for p in providers if p["provider"] == "demo")
    assert demo["endpointCount"] == sum(1 for e in every if e.provider == "demo")
    assert demo["providerName"]


def test_a_providers_endpoints_and_an_endpoints_card(client: FlaskClient,
                                                     catalog: Catalog, key: str) -> None:
    listed = client.get("/public/v1/providers/demo/endpoints")
    assert listed.status_code == 200
    paths = [i["endpoint"] for i in listed.json["items"]]
    assert paths == sorted(e.path for e in catalog.all() if e.provider == "demo")
    assert "inputSchema" not in listed.json["items"][0]
    card = client.get("/public/v1/providers/demo/endpoints/echo")
    assert card.status_code == 200
    # The same card as POST /v1/inspect's.
    assert card.json == client.post("/v1/inspect", headers=auth(key), json={
        "provider": "demo", "endpoint": "/echo"}).json
    # With its health (no runs yet: unknown).
    assert card.json["metrics"]["health"] == "unknown"
    nested = next(e for e in catalog.all() if e.path.count("/") > 1)
    deep = client.get(f"/public/v1/providers/{nested.provider}/endpoints{nested.path}")
    assert deep.status_code == 200 and deep.json["endpoint"] == nested.path
    for path in ("/public/v1/providers/nope/endpoints",
                 "/public/v1/providers/nope/endpoints/echo",
                 "/public/v1/providers/demo/endpoints/nope",
                 "/public/v1/providers/demo/endpoints/a%00b"):
        missing = client.get(path)
        assert missing.status_code == 404, path
        assert missing.json["errorCode"] == "ENDPOINT_NOT_FOUND"
        assert "Cache-Control" not in missing.headers


def test_search_in_pages_is_discover_in_pages(client: FlaskClient, key: str) -> None:
    whole = client.post("/v1/discover", headers=auth(key),
                        json={"query": "search data web", "limit": 50}).json["results"]
    assert len(whole) > 3
    seen, cursor = [], None
    while True:
        query = {"q": "search data web", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/public/v1/search", query_string=query)
        assert page.status_code == 200, page.json
        body = page.json
        assert body["query"] == "search data web" and body["count"] == len(body["items"])
        assert body["total"] == len(whole) and body["totalIsCapped"] is False
        assert all(set(i) >= RESULT_FIELDS for i in body["items"])
        seen += body["items"]
        cursor = body.get("cursor")
        if cursor is None:
            break
    assert [(i["provider"], i["endpoint"]) for i in seen] == \
        [(i["provider"], i["endpoint"]) for i in whole]


@pytest.mark.parametrize(("query", "field"), [
    ({}, "q"), ({"q": ""}, "q"), ({"q": "   "}, "q"), ({"q": "x" * 201}, "q"),
    ({"q": "the"}, "query"), ({"q": "data", "limit": 21}, "limit"),
    ({"q": "data", "limit": 0}, "limit"), ({"q": "data", "limit": "x"}, "limit"),
    ({"q": "data", "cursor": "nope"}, "cursor"), ({"q": "data", "other": "1"}, "other"),
])
def test_bad_searches_say_which_field(client: FlaskClient, query: dict[str, object],
                                      field: str) -> None:
    refused = client.get("/public/v1/search", query_string=query)
    assert refused.status_code == 400
    assert refused.json["errorCode"] == "VALIDATION_FAILED"
    assert field in refused.json["errors"]


def test_a_cursor_is_only_good_for_its_own_query(client: FlaskClient) -> None:
    cursor = client.get("/public/v1/search", query_string={"q": "data", "limit": 1}).json["cursor"]
    other = client.get("/public/v1/search", query_string={"q": "web", "cursor": cursor})
    assert other.status_code == 400 and "cursor" in other.json["errors"]


def test_answers_are_cacheable_with_etags(client: FlaskClient) -> None:
    for path in ("/public/v1/stats", "/public/v1/providers",
                 "/public/v1/providers/demo/endpoints", "/public/v1/providers/demo/endpoints/echo",
                 "/public/v1/search?q=data"):
        first = client.get(path)
        assert first.status_code == 200
        assert first.headers["Cache-Control"].startswith("public, max-age=")
        etag = first.headers["ETag"]
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.get_data() == b""
        assert again.headers["ETag"] == etag
        assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.fixture
def limited(settings: Settings, db: ConnectionPool) -> Iterator[Flask]:
    app = create_app(dataclasses.replace(settings, public_rate_limit_per_minute=3))
    yield app
    app.extensions["monid"].close()


def test_the_public_catalog_is_limited_per_address(limited: Flask, clock: list[float]) -> None:
    client = limited.test_client()
    mine = {"REMOTE_ADDR": "203.0.113.7"}
    for _ in range(3):
        answer = client.get("/public/v1/stats", environ_base=mine)
        assert answer.status_code == 200
        assert answer.headers["RateLimit-Limit"] == "3"
    over = client.get("/public/v1/providers", environ_base=mine)
    assert over.status_code == 429 and over.json["errorCode"] == "RATE_LIMITED"
    assert "address" in over.json["message"] and int(over.headers["Retry-After"]) >= 1
    # Another address has its own window.
    assert client.get("/public/v1/stats",
                      environ_base={"REMOTE_ADDR": "203.0.113.8"}).status_code == 200

"""A NUL character (`\\u0000`) in the strings of the catalog routes is not a 500.

Found by the schemathesis fuzzing test: `POST /v1/inspect {"provider": "C@8",
"endpoint": "\\u0000\\u00f8"}` answered 500, PostgreSQL refusing a NUL in a text
parameter (psycopg.DataError). No endpoint is named with a NUL: 404, as
`POST /v1/run` answers for the same provider and endpoint. (NULs inside a run's
input are stored and returned: tests/integration/test_errors.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared.catalog import load_catalog
from shared.db import transaction
from shared.settings import Settings
from shared.store.catalog import sync_catalog
from tests.helpers import auth


@pytest.fixture
def synced(db: ConnectionPool, settings: Settings) -> ConnectionPool:
    with transaction(db) as conn:
        sync_catalog(conn, load_catalog(settings.catalog_dir))
    return db


@pytest.mark.parametrize("body", [
    {"provider": "demo", "endpoint": "/echo\u0000"},
    {"provider": "de\u0000mo", "endpoint": "/echo"},
    {"provider": "C@8", "endpoint": "\u0000\u00f8"},
])
def test_inspect_with_a_nul_is_not_found(client: FlaskClient, key: str, synced: ConnectionPool,
                                         body: dict[str, Any]) -> None:
    resp = client.post("/v1/inspect", json=body, headers=auth(key))
    assert resp.status_code == 404, resp.get_data(as_text=True)
    assert resp.get_json()["errorCode"] == "ENDPOINT_NOT_FOUND"
    run = client.post("/v1/run", json={**body, "input": {}}, headers=auth(key))
    assert run.get_json()["errorCode"] == "ENDPOINT_NOT_FOUND"


def test_inspect_still_finds_endpoints(client: FlaskClient, key: str,
                                       synced: ConnectionPool) -> None:
    resp = client.post("/v1/inspect", json={"provider": "demo", "endpoint": "/echo"},
                       headers=auth(key))
    assert resp.status_code == 200


@pytest.mark.parametrize("query", ["twitter\u0000posts", "\u0000"])
def test_discover_with_a_nul_is_not_a_500(client: FlaskClient, key: str,
                                          synced: ConnectionPool, query: str) -> None:
    resp = client.post("/v1/discover", json={"query": query}, headers=auth(key))
    assert resp.status_code in (200, 400), resp.get_data(as_text=True)

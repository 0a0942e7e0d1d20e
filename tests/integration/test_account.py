"""Who a key belongs to: `GET /v1/auth/whoami` and `GET /v1/auth/workspaces`, and
`monidctl users` naming them."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared import accounts
from shared.db import transaction
from tests.helpers import KeyMaker, auth

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_whoami_names_the_user_and_its_workspace(client: FlaskClient, key: str) -> None:
    answer = client.get("/v1/auth/whoami", headers=auth(key))
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert set(body) == {"user", "workspace"}
    user, workspace = body["user"], body["workspace"]
    assert user["userId"] == "user_abc123" and user["username"] == "user_abc123"
    assert user["metadata"] == {} and "email" not in user
    assert ISO.match(user["createdAt"]) and ISO.match(user["updatedAt"])
    assert set(workspace) == {"workspaceId", "name", "slug", "metadata", "createdAt",
                              "updatedAt"}
    assert workspace["workspaceId"].startswith("ws_") and workspace["slug"] == "user-abc123"
    # The same rows every time: made once.
    assert client.get("/v1/auth/whoami", headers=auth(key)).json == body
    workspaces = client.get("/v1/auth/workspaces", headers=auth(key))
    assert workspaces.status_code == 200
    assert workspaces.json == {"workspaces": [{"workspaceId": workspace["workspaceId"],
                                               "slug": "user-abc123"}]}


def test_each_user_has_its_own_workspace_and_slugs_never_clash(
        client: FlaskClient, make_key: KeyMaker) -> None:
    first = client.get("/v1/auth/whoami", headers=auth(make_key("Ada.L"))).json
    second = client.get("/v1/auth/whoami", headers=auth(make_key("ada-l"))).json
    assert first["workspace"]["slug"] == "ada-l"
    assert second["workspace"]["slug"].startswith("ada-l-")
    assert first["workspace"]["workspaceId"] != second["workspace"]["workspaceId"]


def test_account_routes_need_a_key(client: FlaskClient) -> None:
    for path in ("/v1/auth/whoami", "/v1/auth/workspaces"):
        answer = client.get(path)
        assert answer.status_code == 401
        assert answer.json["errorCode"] == "UNAUTHORIZED"
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_named_user_and_workspace_are_shown(client: FlaskClient, key: str,
                                            db: ConnectionPool) -> None:
    with transaction(db) as conn:
        accounts.update_account(conn, "user_abc123", username="ada", email="ada@example.com",
                                metadata={"team": "data"}, workspace_name="Ada's data",
                                workspace_slug="ada")
    body = client.get("/v1/auth/whoami", headers=auth(key)).json
    assert body["user"]["username"] == "ada" and body["user"]["email"] == "ada@example.com"
    assert body["user"]["metadata"] == {"team": "data"}
    assert body["workspace"]["name"] == "Ada's data" and body["workspace"]["slug"] == "ada"

"""Who the key belongs to: its user and workspace (`shared.accounts` reads them)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.auth import authenticate
from api.openapi import documented
from api.schemas import WhoamiSchema, WorkspaceListSchema
from api.services import services
from shared import accounts

blueprint = Blueprint("account", __name__, url_prefix="/v1/auth")
_whoami_schema = WhoamiSchema()
_workspaces_schema = WorkspaceListSchema()


@blueprint.get("/whoami")
@documented(operation_id="whoami", summary="Who the key belongs to", tag="account",
            description="The key's user and the workspace it acts in (a workspace is its "
                        "user's account: one per user).",
            answer="The user and the workspace.", schema=WhoamiSchema)
def whoami() -> Response:
    caller = authenticate()
    return jsonify(_whoami_schema.dump(accounts.get_account(services(), caller.caller)))


@blueprint.get("/workspaces")
@documented(operation_id="listWorkspaces", summary="The workspaces the key may act in",
            tag="account", answer="The workspaces, each by its ID and slug.",
            schema=WorkspaceListSchema)
def workspaces() -> Response:
    caller = authenticate()
    found = accounts.list_workspaces(services(), caller.caller)
    return jsonify(_workspaces_schema.dump({"workspaces": found}))

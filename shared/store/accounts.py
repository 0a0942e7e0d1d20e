"""Users and workspaces: a user's rows, made when first needed, and named."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Conn, jsonb_param, query
from shared.ids import new_run_id

WORKSPACE_PREFIX = "ws_"


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    email: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Workspace:
    workspace_id: str
    owner_user_id: str
    name: str
    slug: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Account:
    user: User
    workspace: Workspace


def _user(row: dict[str, Any]) -> User:
    return User(row["user_id"], row["username"], row["email"], row["metadata"],
                row["created_at"], row["updated_at"])


def _workspace(row: dict[str, Any]) -> Workspace:
    return Workspace(row["workspace_id"], row["owner_user_id"], row["name"], row["slug"],
                     row["metadata"], row["created_at"], row["updated_at"])


def ensure_account(conn: Conn, user_id: str, slug: str) -> Account:
    """The user's rows, made when it has none yet (the caller owns the transaction)."""
    user_row = conn.execute(query("ensure_user"), {"user_id": user_id}).fetchone()
    assert user_row is not None
    workspace_row = conn.execute(query("ensure_workspace"), {
        "user_id": user_id, "workspace_id": WORKSPACE_PREFIX + new_run_id(),
        "name": user_id, "slug": slug}).fetchone()
    assert workspace_row is not None
    return Account(_user(user_row), _workspace(workspace_row))


def update_account(conn: Conn, user_id: str, *, username: str | None = None,
                   email: str | None = None, clear_email: bool = False,
                   metadata: dict[str, Any] | None = None, workspace_name: str | None = None,
                   workspace_slug: str | None = None,
                   workspace_metadata: dict[str, Any] | None = None) -> Account:
    """Name a user and its workspace (`monidctl users set`); what is not given is kept."""
    user_row = conn.execute(query("update_user"), {
        "user_id": user_id, "username": username, "email": email, "clear_email": clear_email,
        "metadata": jsonb_param(metadata)}).fetchone()
    workspace_row = conn.execute(query("update_workspace"), {
        "user_id": user_id, "name": workspace_name, "slug": workspace_slug,
        "metadata": jsonb_param(workspace_metadata),
    }).fetchone()
    assert user_row is not None and workspace_row is not None
    return Account(_user(user_row), _workspace(workspace_row))


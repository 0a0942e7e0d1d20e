"""Who a caller is: its user and its workspace.

A workspace is its owner's account: one per user, holding the user's keys, runs
and wallet (all keyed by the caller, `USER#<userId>`). A user first seen without
rows (a key made before users were kept, or by other means) gets them when it first
asks who it is, named after its ID; `monidctl users set` names them otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from shared.db import query, transaction
from shared.ids import new_run_id
from shared.services import Services
from shared.store import Conn

CALLER_PREFIX = "USER#"
WORKSPACE_PREFIX = "ws_"
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


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


def user_id_of(caller: str) -> str:
    return caller[len(CALLER_PREFIX):] if caller.startswith(CALLER_PREFIX) else caller


def slug_for(user_id: str) -> str:
    """A workspace slug made from a user ID: lower case, letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", user_id.lower()).strip("-")[:63].rstrip("-")
    return slug if SLUG_PATTERN.fullmatch(slug) else "workspace"


def _user(row: dict[str, Any]) -> User:
    return User(row["user_id"], row["username"], row["email"], row["metadata"],
                row["created_at"], row["updated_at"])


def _workspace(row: dict[str, Any]) -> Workspace:
    return Workspace(row["workspace_id"], row["owner_user_id"], row["name"], row["slug"],
                     row["metadata"], row["created_at"], row["updated_at"])


def ensure_account(conn: Conn, user_id: str) -> Account:
    """The user's rows, made when it has none yet (the caller owns the transaction)."""
    user_row = conn.execute(query("ensure_user"), {"user_id": user_id}).fetchone()
    assert user_row is not None
    workspace_row = conn.execute(query("ensure_workspace"), {
        "user_id": user_id, "workspace_id": WORKSPACE_PREFIX + new_run_id(),
        "name": user_id, "slug": slug_for(user_id)}).fetchone()
    assert workspace_row is not None
    return Account(_user(user_row), _workspace(workspace_row))


def get_account(svc: Services, caller: str) -> Account:
    """The caller's user and workspace (`GET /v1/auth/whoami`)."""
    with transaction(svc.pool) as conn:
        return ensure_account(conn, user_id_of(caller))


def list_workspaces(svc: Services, caller: str) -> list[Workspace]:
    """The workspaces the caller may use: its own."""
    return [get_account(svc, caller).workspace]


def update_account(conn: Conn, user_id: str, *, username: str | None = None,
                   email: str | None = None, clear_email: bool = False,
                   metadata: dict[str, Any] | None = None, workspace_name: str | None = None,
                   workspace_slug: str | None = None,
                   workspace_metadata: dict[str, Any] | None = None) -> Account:
    """Name a user and its workspace (`monidctl users set`); what is not given is kept."""
    ensure_account(conn, user_id)
    user_row = conn.execute(query("update_user"), {
        "user_id": user_id, "username": username, "email": email, "clear_email": clear_email,
        "metadata": Jsonb(metadata) if metadata is not None else None}).fetchone()
    workspace_row = conn.execute(query("update_workspace"), {
        "user_id": user_id, "name": workspace_name, "slug": workspace_slug,
        "metadata": Jsonb(workspace_metadata) if workspace_metadata is not None else None,
    }).fetchone()
    assert user_row is not None and workspace_row is not None
    return Account(_user(user_row), _workspace(workspace_row))


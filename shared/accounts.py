"""Who a caller is: its user and its workspace.

A workspace is its owner's account: one per user, holding the user's keys, runs
and wallet (all keyed by the caller, `USER#<userId>`). A user first seen without
rows (a key made before users were kept, or by other means) gets them when it first
asks who it is, named after its ID; `monidctl users set` names them otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from shared.db import Conn, transaction
from shared.services import Services
from shared.store import accounts as account_store
from shared.store.accounts import Account, User, Workspace

__all__ = ["Account", "User", "Workspace"]

CALLER_PREFIX = "USER#"
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def user_id_of(caller: str) -> str:
    return caller[len(CALLER_PREFIX):] if caller.startswith(CALLER_PREFIX) else caller


def slug_for(user_id: str) -> str:
    """A workspace slug made from a user ID: lower case, letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", user_id.lower()).strip("-")[:63].rstrip("-")
    return slug if SLUG_PATTERN.fullmatch(slug) else "workspace"


def ensure_account(conn: Conn, user_id: str) -> Account:
    """The user's rows, made when it has none yet (the caller owns the transaction)."""
    return account_store.ensure_account(conn, user_id, slug_for(user_id))


def get_account(svc: Services, caller: str) -> Account:
    """The caller's user and workspace (`GET /v1/auth/whoami`)."""
    with transaction(svc.pool) as conn:
        return ensure_account(conn, user_id_of(caller))


def list_workspaces(svc: Services, caller: str) -> list[Workspace]:
    """The workspaces the caller may use: its own."""
    return [get_account(svc, caller).workspace]


def update_account(conn: Conn, user_id: str, **names: Any) -> Account:
    """Name a user and its workspace (`monidctl users set`); what is not given is kept:
    `username`, `email` (`clear_email` drops it), `metadata`, `workspace_name`,
    `workspace_slug`, `workspace_metadata`."""
    ensure_account(conn, user_id)
    return account_store.update_account(conn, user_id, **names)

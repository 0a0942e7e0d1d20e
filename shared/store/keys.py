"""API keys: made, found by their hash, listed, revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.db import Conn, query
from shared.store.wallets import ensure_wallet


@dataclass(frozen=True)
class ApiKey:
    id: int
    user_id: str
    label: str | None
    mode: str
    key_prefix: str
    key_hash: bytes
    created_at: datetime
    revoked_at: datetime | None

    @property
    def caller(self) -> str:
        return f"USER#{self.user_id}"


def insert_api_key(conn: Conn, *, user_id: str, label: str | None, mode: str,
                   key_prefix: str, key_hash: bytes) -> ApiKey:
    row = conn.execute(query("insert_api_key"), {
        "user_id": user_id, "label": label, "mode": mode,
        "key_prefix": key_prefix, "key_hash": key_hash,
    }).fetchone()
    assert row is not None
    key = ApiKey(**row)
    ensure_wallet(conn, key.caller)
    return key


def find_api_key(conn: Conn, key_hash: bytes) -> ApiKey | None:
    row = conn.execute(query("find_api_key_by_hash"), {"key_hash": key_hash}).fetchone()
    return ApiKey(**row) if row else None


def list_api_keys(conn: Conn, user_id: str) -> list[ApiKey]:
    return [ApiKey(**r) for r in conn.execute(query("list_api_keys"), {"user_id": user_id})]


def revoke_api_key(conn: Conn, key_id: int, user_id: str | None = None) -> ApiKey | None:
    row = conn.execute(query("revoke_api_key"), {"id": key_id, "user_id": user_id}).fetchone()
    return ApiKey(**row) if row else None


def user_known(conn: Conn, user_id: str) -> bool:
    """Whether the user has a key or a wallet."""
    row = conn.execute(query("user_known"), {"user_id": user_id,
                                             "caller": f"USER#{user_id}"}).fetchone()
    return bool(row and row["known"])

"""API keys: made, found by their hash or label, listed, renamed, revoked, their last
use recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.db import Conn, query
from shared.store.wallets import ensure_wallet


@dataclass(frozen=True)
class ApiKey:
    id: int
    user_id: str
    label: str
    mode: str
    key_prefix: str
    key_hash: bytes
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def caller(self) -> str:
        return f"USER#{self.user_id}"


def insert_api_key(conn: Conn, *, user_id: str, label: str | None, mode: str,
                   key_prefix: str, key_hash: bytes) -> ApiKey | None:
    """The new key; None when the user has a live key with this label. Without a label
    the key is called `key-<id>`."""
    row = conn.execute(query("insert_api_key"), {
        "user_id": user_id, "label": label, "mode": mode,
        "key_prefix": key_prefix, "key_hash": key_hash,
    }).fetchone()
    if row is None:
        return None
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


def list_live_api_keys(conn: Conn, user_id: str, limit: int, after: int = 0
                       ) -> tuple[list[ApiKey], bool]:
    """Up to `limit` of the user's live keys after the key `after`, oldest first, and
    whether more follow."""
    rows = conn.execute(query("list_live_api_keys_page"),
                        {"user_id": user_id, "after": after, "limit": limit + 1}).fetchall()
    return [ApiKey(**r) for r in rows[:limit]], len(rows) > limit


def find_live_api_key(conn: Conn, user_id: str, label: str) -> ApiKey | None:
    row = conn.execute(query("find_live_api_key_by_label"),
                       {"user_id": user_id, "label": label}).fetchone()
    return ApiKey(**row) if row else None


def rename_api_key(conn: Conn, user_id: str, label: str, new_label: str) -> ApiKey | None:
    """The key renamed; None when there is no such live key or another has `new_label`."""
    row = conn.execute(query("rename_api_key"), {"user_id": user_id, "label": label,
                                                 "new_label": new_label}).fetchone()
    return ApiKey(**row) if row else None


def revoke_api_key_by_label(conn: Conn, user_id: str, label: str) -> ApiKey | None:
    row = conn.execute(query("revoke_api_key_by_label"),
                       {"user_id": user_id, "label": label}).fetchone()
    return ApiKey(**row) if row else None


def record_api_keys_used(conn: Conn, used: dict[int, datetime]) -> None:
    """Record when each key was last used (never moving a time backwards)."""
    ids = sorted(used)
    conn.execute(query("record_api_keys_used"),
                 {"ids": ids, "used_at": [used[i] for i in ids]})


def user_known(conn: Conn, user_id: str) -> bool:
    """Whether the user has a key or a wallet."""
    row = conn.execute(query("user_known"), {"user_id": user_id,
                                             "caller": f"USER#{user_id}"}).fetchone()
    return bool(row and row["known"])

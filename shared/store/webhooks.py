"""Webhook events in PostgreSQL: the outbox a run's end writes in its own transaction
(a trigger of migration 0018, for runs that asked for a webhook), read to deliver
them. `verb_noun(conn, ...)`; the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Conn, query
from shared.webhooks import signing


@dataclass(frozen=True)
class WebhookEvent:
    id: str  # a ULID: the deliveries' `webhook-id`, the same on every try
    run_id: str
    caller: str
    type: str  # run.completed, run.failed, run.stopped, run.timed_out, run.blocked
    payload: dict[str, Any]  # the run's summary, the body's `data`
    created_at: datetime


def _event(row: Any) -> WebhookEvent:
    return WebhookEvent(id=row["id"], run_id=row["run_id"], caller=row["caller"],
                        type=row["type"], payload=row["payload"],
                        created_at=row["created_at"])


def list_run_webhook_events(conn: Conn, run_id: str) -> list[WebhookEvent]:
    rows = conn.execute(query("list_run_webhook_events"), {"run_id": run_id}).fetchall()
    return [_event(r) for r in rows]


def list_webhook_events_after(conn: Conn, after_id: str = "", *,
                              limit: int = 100) -> list[WebhookEvent]:
    """The events written after `after_id` (a ULID), oldest first."""
    rows = conn.execute(query("list_webhook_events_after"),
                        {"after_id": after_id, "limit": limit}).fetchall()
    return [_event(r) for r in rows]


def signing_secrets(conn: Conn, caller: str, endpoint_id: str | None) -> list[str]:
    """The secrets that sign a delivery now, newest first: a standing webhook's own
    (`endpoint_id`), or the workspace's default (None); rotated ones sign beside the
    current one until their grace runs out."""
    rows = conn.execute(query("signing_secrets"),
                        {"caller": caller, "endpoint_id": endpoint_id}).fetchall()
    return [r["secret"] for r in rows]


def ensure_default_secret(conn: Conn, caller: str) -> str:
    """The workspace's current default secret, made (with a new random key) if none."""
    row = conn.execute(query("ensure_default_secret"),
                       {"caller": caller, "secret": signing.new_secret()}).fetchone()
    if row is None:  # made by a transaction not yet visible to ours: read it again
        row = conn.execute(query("ensure_default_secret"),
                           {"caller": caller, "secret": signing.new_secret()}).fetchone()
    assert row is not None
    return str(row["secret"])

"""Webhooks in PostgreSQL (migrations 0018, 0019): the outbox of events a run's end
writes in its own transaction (by trigger), a workspace's standing webhooks and their
signing secrets, and the deliveries with their log of tries. `verb_noun(conn, ...)`;
the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Conn, jsonb_param, query
from shared.webhooks import signing


@dataclass(frozen=True)
class WebhookEvent:
    id: str  # a ULID: the deliveries' `webhook-id`, the same on every try
    run_id: str | None  # None: a test event (`webhook.test`)
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


# The run events a webhook may ask for (a test event, `webhook.test`, goes to one
# webhook on request).
RUN_EVENTS = ("run.completed", "run.failed", "run.stopped", "run.timed_out", "run.blocked")
DELIVERY_STATUSES = ("PENDING", "DELIVERED", "FAILED")
_NEWEST = "Z" * 26  # sorts after every ULID
# Secrets rotated out before the current one's predecessor that still sign beside it.
KEEP_OLDER_SECRETS = 2


@dataclass(frozen=True)
class WebhookEndpoint:
    """A standing webhook of a workspace."""

    id: str
    caller: str
    url: str
    events: list[str] | None  # None: every run event
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DeliveryAttempt:
    attempted_at: str  # ISO 8601 UTC, as the API shows it
    status_code: int | None
    duration_ms: int
    response_head: str | None
    error: str | None
    next_retry_at: str | None


@dataclass(frozen=True)
class WebhookDelivery:
    """One event to one destination, with its tries (oldest first)."""

    id: str
    event_id: str
    event_type: str
    run_id: str | None
    endpoint_id: str | None  # None: the run's own webhook (or a webhook since deleted)
    url: str
    status: str  # PENDING, DELIVERED, FAILED
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    attempts: tuple[DeliveryAttempt, ...]


def _endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(**row)


def _delivery(row: Any) -> WebhookDelivery:
    attempts = tuple(DeliveryAttempt(
        attempted_at=a["attemptedAt"], status_code=a["statusCode"], duration_ms=a["durationMs"],
        response_head=a["responseHead"], error=a["error"], next_retry_at=a["nextRetryAt"])
        for a in row.pop("attempts"))
    return WebhookDelivery(**row, attempts=attempts)


def lock_webhooks_of_caller(conn: Conn, caller: str) -> None:
    """Take turns, until the transaction ends, with other changes that count the
    caller's webhooks or rotate its secrets."""
    conn.execute(query("lock_webhooks_of_caller"), {"caller": caller})


def count_webhook_endpoints(conn: Conn, caller: str) -> int:
    row = conn.execute(query("count_webhook_endpoints"), {"caller": caller}).fetchone()
    assert row is not None
    return int(row["n"])


def insert_webhook_endpoint(conn: Conn, *, caller: str, url: str, events: list[str] | None,
                            description: str | None, enabled: bool,
                            secret: str) -> WebhookEndpoint:
    """A new standing webhook and its signing secret."""
    row = conn.execute(query("insert_webhook_endpoint"), {
        "caller": caller, "url": url, "events": events, "description": description,
        "enabled": enabled}).fetchone()
    assert row is not None
    conn.execute(query("insert_webhook_secret"),
                 {"caller": caller, "endpoint_id": row["id"], "secret": secret})
    return _endpoint(row)


def get_webhook_endpoint(conn: Conn, endpoint_id: str, caller: str) -> WebhookEndpoint | None:
    row = conn.execute(query("get_webhook_endpoint"),
                       {"id": endpoint_id, "caller": caller}).fetchone()
    return _endpoint(row) if row else None


def list_webhook_endpoints(conn: Conn, caller: str, *, limit: int,
                           before: str | None = None) -> tuple[list[WebhookEndpoint], bool]:
    """Up to `limit` of the caller's webhooks made before `before`, newest first, and
    whether older ones follow."""
    rows = conn.execute(query("list_webhook_endpoints"), {
        "caller": caller, "before": before or _NEWEST, "limit": limit + 1}).fetchall()
    return [_endpoint(r) for r in rows[:limit]], len(rows) > limit


def update_webhook_endpoint(conn: Conn, endpoint_id: str, caller: str,
                            changes: dict[str, Any]) -> WebhookEndpoint | None:
    """Change the fields named in `changes` (url, events, description, enabled)."""
    params: dict[str, Any] = {"id": endpoint_id, "caller": caller}
    for name in ("url", "events", "description", "enabled"):
        params[f"set_{name}"] = name in changes
        params[name] = changes.get(name)
    row = conn.execute(query("update_webhook_endpoint"), params).fetchone()
    return _endpoint(row) if row else None


def delete_webhook_endpoint(conn: Conn, endpoint_id: str,
                            caller: str) -> WebhookEndpoint | None:
    """Delete a webhook with its secrets and its deliveries."""
    conn.execute(query("delete_deliveries_of_webhook"), {"id": endpoint_id, "caller": caller})
    row = conn.execute(query("delete_webhook_endpoint"),
                       {"id": endpoint_id, "caller": caller}).fetchone()
    return _endpoint(row) if row else None


def lock_webhook_endpoint(conn: Conn, endpoint_id: str, caller: str) -> bool:
    """Lock the caller's webhook until the transaction ends; False when there is none."""
    return conn.execute(query("lock_webhook_endpoint"),
                        {"id": endpoint_id, "caller": caller}).fetchone() is not None


def rotate_secret(conn: Conn, caller: str, endpoint_id: str | None, *,
                  grace_seconds: int) -> str:
    """A new current secret for a standing webhook (`endpoint_id`) or the workspace's
    default (None). The one it replaces keeps signing for `grace_seconds`; of those
    rotated out before it, the newest KEEP_OLDER_SECRETS go on signing until their own
    grace ends. Call under `lock_webhooks_of_caller`: two rotations at once would
    otherwise both try to make the current secret."""
    params = {"caller": caller, "endpoint_id": endpoint_id}
    conn.execute(query("delete_expired_webhook_secrets"), params)
    conn.execute(query("expire_current_webhook_secret"),
                 {**params, "grace_seconds": grace_seconds, "keep": KEEP_OLDER_SECRETS})
    secret = signing.new_secret()
    conn.execute(query("insert_webhook_secret"), {**params, "secret": secret})
    return secret


def insert_webhook_test_event(conn: Conn, endpoint_id: str, caller: str,
                              payload: dict[str, Any]) -> str | None:
    """A `webhook.test` event and one PENDING delivery of it to the caller's webhook,
    the senders told (at commit): the delivery's ID, or None for no such webhook."""
    row = conn.execute(query("insert_webhook_test_event"), {
        "endpoint_id": endpoint_id, "caller": caller,
        "payload": jsonb_param(payload)}).fetchone()
    return str(row["id"]) if row else None


def get_webhook_delivery(conn: Conn, delivery_id: str, caller: str, *,
                         attempt_limit: int) -> WebhookDelivery | None:
    row = conn.execute(query("get_webhook_delivery"), {
        "id": delivery_id, "caller": caller, "attempt_limit": attempt_limit}).fetchone()
    return _delivery(row) if row else None


def list_deliveries_of_run(conn: Conn, run_id: str, caller: str, *, limit: int,
                           before: str | None = None, attempt_limit: int
                           ) -> tuple[list[WebhookDelivery], bool]:
    """Up to `limit` deliveries of the caller's run's events, newest first, and whether
    more follow."""
    rows = conn.execute(query("list_deliveries_of_run"), {
        "run_id": run_id, "caller": caller, "before": before or _NEWEST, "limit": limit + 1,
        "attempt_limit": attempt_limit}).fetchall()
    return [_delivery(r) for r in rows[:limit]], len(rows) > limit


def list_deliveries_of_webhook(conn: Conn, endpoint_id: str, caller: str, *, limit: int,
                               before: str | None = None, attempt_limit: int
                               ) -> tuple[list[WebhookDelivery], bool]:
    """Up to `limit` deliveries to the caller's webhook, newest first, and whether more
    follow."""
    rows = conn.execute(query("list_deliveries_of_webhook"), {
        "endpoint_id": endpoint_id, "caller": caller, "before": before or _NEWEST,
        "limit": limit + 1, "attempt_limit": attempt_limit}).fetchall()
    return [_delivery(r) for r in rows[:limit]], len(rows) > limit


def redeliver_webhook_delivery(conn: Conn, delivery_id: str, caller: str) -> bool:
    """Make the caller's delivery that has ended PENDING again, due now, and tell the
    senders (at commit); False when it is not the caller's, or is still PENDING."""
    return conn.execute(query("redeliver_webhook_delivery"),
                        {"id": delivery_id, "caller": caller}).fetchone() is not None

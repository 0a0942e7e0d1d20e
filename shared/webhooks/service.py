"""Webhooks, the operations a caller can ask for: standing webhooks of a workspace
(made, listed, read, changed, deleted, tested), the signing secrets (the workspace's
default, which signs runs' own webhooks, and each webhook's own; rotated with a grace
period), and the delivery log (a run's deliveries, a webhook's, redelivery).

Each operation takes the services first and the caller (`USER#<userId>`, the
workspace) second; another workspace's webhook or delivery is not found, exactly as
one that does not exist. The REST routes, MCP tools and `monidctl` call these, never
the store. Deliveries themselves are sent by the workers (they take PENDING rows of
`webhook_deliveries`; a word on `monid_webhook_deliveries` wakes them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared import cursors, errors, store
from shared.db import autocommit, transaction
from shared.ids import is_run_id
from shared.services import Page, Services, page_start
from shared.settings import Settings
from shared.store import webhooks as webhooks_store
from shared.store.webhooks import (
    DELIVERY_STATUSES,
    RUN_EVENTS,
    DeliveryAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from shared.webhooks import signing
from shared.webhooks.urls import UrlRefused, check_url

__all__ = ["ATTEMPTS_SHOWN", "DELIVERY_STATUSES", "RUN_EVENTS", "CreatedWebhook",
           "DeliveryAttempt", "NewSecret", "WebhookDelivery", "WebhookEndpoint",
           "create_webhook", "default_secret", "delete_webhook", "get_webhook",
           "list_run_deliveries", "list_webhook_deliveries", "list_webhooks", "redeliver",
           "rotate_default_secret", "rotate_webhook_secret", "run_webhook", "test_webhook",
           "update_webhook"]

# A delivery shows at most its last this many tries (a delivery redelivered again and
# again keeps every try in the log, but an answer stays small).
ATTEMPTS_SHOWN = 50
TEST_EVENT_MESSAGE = "a test event from monid: this webhook receives signed deliveries"
# What a run event's `data` looks like, for a test event to show.
SAMPLE_RUN = {"runId": "01JGXYZABCDEFGHJKMNPQRSTVW", "status": "COMPLETED",
              "provider": "demo", "endpoint": "/echo",
              "cost": {"value": 0.003, "currency": "USD"}, "resultCount": 1, "error": None,
              "createdAt": "2026-03-28T10:30:00.000Z",
              "completedAt": "2026-03-28T10:30:02.000Z",
              "itemsUrl": "/v1/runs/01JGXYZABCDEFGHJKMNPQRSTVW/items"}


@dataclass(frozen=True)
class CreatedWebhook:
    """A webhook just made, and its signing secret: shown this once."""

    webhook: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class NewSecret:
    """A secret just made by a rotation: shown this once. The one it replaced signs
    beside it until `grace_seconds` have passed."""

    key: str
    grace_seconds: int


# --- checking what callers send ---------------------------------------------------


def _url(settings: Settings, url: str, field: str) -> str:
    try:
        return check_url(url, allow_insecure=settings.webhooks_allow_insecure).url
    except UrlRefused as refused:
        raise errors.InvalidRequest({field: [str(refused)]}) from None


def _events(events: Iterable[str] | None) -> list[str] | None:
    """The event types asked for, once each, in their usual order (None: every one)."""
    if events is None:
        return None
    wanted = set(events)
    return [e for e in RUN_EVENTS if e in wanted]


def run_webhook(settings: Settings, webhook: Mapping[str, Any] | None
                ) -> dict[str, Any] | None:
    """What a run asked to be told of its end, checked and as it is stored:
    `{"url"}` (every end) or `{"url", "events"}`. InvalidRequest naming `webhook.url`."""
    if webhook is None:
        return None
    checked: dict[str, Any] = {"url": _url(settings, webhook["url"], "webhook.url")}
    events = _events(webhook.get("events"))
    if events is not None:
        checked["events"] = events
    return checked


def _webhook_id(webhook_id: str) -> str:
    if not is_run_id(webhook_id):  # a ULID: anything else names no webhook
        raise errors.WebhookNotFound(webhook_id)
    return webhook_id


# --- standing webhooks ------------------------------------------------------------


def create_webhook(svc: Services, caller: str, *, url: str, events: Iterable[str] | None = None,
                   description: str | None = None, enabled: bool = True) -> CreatedWebhook:
    """A new standing webhook with its own signing secret (shown this once);
    TooManyWebhooks when the workspace has `MAX_WEBHOOKS_PER_WORKSPACE` already."""
    checked_url = _url(svc.settings, url, "url")
    cap = svc.settings.max_webhooks_per_workspace
    secret = signing.new_secret()
    with transaction(svc.pool) as conn:
        webhooks_store.lock_webhooks_of_caller(conn, caller)  # two at once count in turn
        if webhooks_store.count_webhook_endpoints(conn, caller) >= cap:
            raise errors.TooManyWebhooks(
                f"this workspace already has {cap} webhooks, the most it may have; delete "
                "one first")
        made = webhooks_store.insert_webhook_endpoint(
            conn, caller=caller, url=checked_url, events=_events(events),
            description=description, enabled=enabled, secret=secret)
    return CreatedWebhook(made, secret)


def list_webhooks(svc: Services, caller: str, *, limit: int, cursor: str | None = None
                  ) -> Page[WebhookEndpoint]:
    """A page of the workspace's webhooks, newest first (without their secrets)."""
    before = page_start(cursors.decode_runs_cursor, cursor)  # ULID-keyed, newest first
    with autocommit(svc.pool) as conn:
        found, more = webhooks_store.list_webhook_endpoints(conn, caller, limit=limit,
                                                            before=before)
    return Page(found, cursors.encode_runs_cursor(found[-1].id) if more else None)


def get_webhook(svc: Services, caller: str, webhook_id: str) -> WebhookEndpoint:
    _webhook_id(webhook_id)
    with autocommit(svc.pool) as conn:
        found = webhooks_store.get_webhook_endpoint(conn, webhook_id, caller)
    if found is None:
        raise errors.WebhookNotFound(webhook_id)
    return found


def update_webhook(svc: Services, caller: str, webhook_id: str,
                   changes: Mapping[str, Any]) -> WebhookEndpoint:
    """Change the fields of `changes` (url, events, description, enabled; at least
    one). Switching a webhook on forgets why it was switched off; deliveries already
    made keep the URL they were made with."""
    _webhook_id(webhook_id)
    known = {"url", "events", "description", "enabled"}
    wanted = {k: v for k, v in changes.items() if k in known}
    if not wanted:
        raise errors.InvalidRequest({"body": [
            "name at least one of url, events, description, enabled"]})
    if "url" in wanted:
        wanted["url"] = _url(svc.settings, wanted["url"], "url")
    if "events" in wanted:
        wanted["events"] = _events(wanted["events"])
    with transaction(svc.pool) as conn:
        changed = webhooks_store.update_webhook_endpoint(conn, webhook_id, caller, wanted)
    if changed is None:
        raise errors.WebhookNotFound(webhook_id)
    return changed


def delete_webhook(svc: Services, caller: str, webhook_id: str) -> WebhookEndpoint:
    """Delete the webhook, its secrets and its deliveries (those not yet sent are not
    sent); the webhook as it was."""
    _webhook_id(webhook_id)
    with transaction(svc.pool) as conn:
        deleted = webhooks_store.delete_webhook_endpoint(conn, webhook_id, caller)
    if deleted is None:
        raise errors.WebhookNotFound(webhook_id)
    return deleted


def test_webhook(svc: Services, caller: str, webhook_id: str) -> WebhookDelivery:
    """A `webhook.test` event and one delivery of it to the webhook (enabled or not),
    sent by the workers as any other: the delivery, PENDING."""
    _webhook_id(webhook_id)
    payload = {"webhookId": webhook_id, "message": TEST_EVENT_MESSAGE, "sample": SAMPLE_RUN}
    with transaction(svc.pool) as conn:
        delivery_id = webhooks_store.insert_webhook_test_event(conn, webhook_id, caller,
                                                               payload)
        if delivery_id is None:
            raise errors.WebhookNotFound(webhook_id)
        made = webhooks_store.get_webhook_delivery(conn, delivery_id, caller,
                                                   attempt_limit=ATTEMPTS_SHOWN)
    assert made is not None
    return made


# --- signing secrets -----------------------------------------------------------------


def default_secret(svc: Services, caller: str) -> str:
    """The workspace's default secret (it signs runs' own webhooks), made on first use."""
    with transaction(svc.pool) as conn:
        return webhooks_store.ensure_default_secret(conn, caller)


def rotate_default_secret(svc: Services, caller: str) -> NewSecret:
    """A new default secret; the one it replaces keeps signing beside it for
    `WEBHOOK_SECRET_GRACE_SECONDS`."""
    grace = svc.settings.webhook_secret_grace_seconds
    with transaction(svc.pool) as conn:
        webhooks_store.lock_webhooks_of_caller(conn, caller)  # one rotation at a time
        key = webhooks_store.rotate_secret(conn, caller, None, grace_seconds=grace)
    return NewSecret(key, grace)


def rotate_webhook_secret(svc: Services, caller: str, webhook_id: str) -> NewSecret:
    """A new secret for the webhook; the one it replaces keeps signing beside it for
    `WEBHOOK_SECRET_GRACE_SECONDS`."""
    _webhook_id(webhook_id)
    grace = svc.settings.webhook_secret_grace_seconds
    with transaction(svc.pool) as conn:
        webhooks_store.lock_webhooks_of_caller(conn, caller)  # one rotation at a time
        if not webhooks_store.lock_webhook_endpoint(conn, webhook_id, caller):
            raise errors.WebhookNotFound(webhook_id)
        key = webhooks_store.rotate_secret(conn, caller, webhook_id, grace_seconds=grace)
    return NewSecret(key, grace)


# --- the delivery log ----------------------------------------------------------------


def list_run_deliveries(svc: Services, caller: str, run_id: str, *, limit: int,
                        cursor: str | None = None) -> Page[WebhookDelivery]:
    """A page of the deliveries of the run's end (to its own webhook and to standing
    ones), newest first, each with its last tries."""
    if not is_run_id(run_id):
        raise errors.RunNotFound(run_id)
    before = page_start(cursors.decode_runs_cursor, cursor)
    with autocommit(svc.pool) as conn:
        if store.run_status(conn, run_id, caller) is None:
            raise errors.RunNotFound(run_id)
        found, more = webhooks_store.list_deliveries_of_run(
            conn, run_id, caller, limit=limit, before=before, attempt_limit=ATTEMPTS_SHOWN)
    return Page(found, cursors.encode_runs_cursor(found[-1].id) if more else None)


def list_webhook_deliveries(svc: Services, caller: str, webhook_id: str, *, limit: int,
                            cursor: str | None = None) -> Page[WebhookDelivery]:
    """A page of the deliveries to the webhook, newest first, each with its last tries."""
    _webhook_id(webhook_id)
    before = page_start(cursors.decode_runs_cursor, cursor)
    with autocommit(svc.pool) as conn:
        if webhooks_store.get_webhook_endpoint(conn, webhook_id, caller) is None:
            raise errors.WebhookNotFound(webhook_id)
        found, more = webhooks_store.list_deliveries_of_webhook(
            conn, webhook_id, caller, limit=limit, before=before, attempt_limit=ATTEMPTS_SHOWN)
    return Page(found, cursors.encode_runs_cursor(found[-1].id) if more else None)


def redeliver(svc: Services, caller: str, delivery_id: str) -> WebhookDelivery:
    """Send a delivery that has ended (DELIVERED or FAILED) again: PENDING, due now,
    the same event (so the same `webhook-id`). DeliveryPending for one still being
    delivered."""
    if not is_run_id(delivery_id):
        raise errors.DeliveryNotFound(delivery_id)
    with transaction(svc.pool) as conn:
        redelivered = webhooks_store.redeliver_webhook_delivery(conn, delivery_id, caller)
        found = webhooks_store.get_webhook_delivery(conn, delivery_id, caller,
                                                    attempt_limit=ATTEMPTS_SHOWN)
    if found is None:
        raise errors.DeliveryNotFound(delivery_id)
    if not redelivered:
        raise errors.DeliveryPending(
            "the delivery is still PENDING: it will be tried again on its own (see "
            "nextAttemptAt); only a DELIVERED or FAILED one can be redelivered")
    return found

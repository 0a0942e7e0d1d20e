"""Sending webhook deliveries from a worker: the `monid.deliver_webhook` task's work,
and the listener that publishes deliveries as soon as a run's end writes them.

A delivery is taken with a lease in a short transaction of its own; the try is sent
outside any transaction, with no database connection held; the try is then recorded,
and the delivery moved, in one transaction, only while the lease is still this
sender's. A duplicate message finds the delivery held, done, or not due: it does
nothing. Nothing here waits on a broker countdown: a retry is due in PostgreSQL, and
the sweeper publishes it when it is (`worker.sweeper`).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg_pool import ConnectionPool

from shared.db import DatabaseUnavailable, autocommit, connect, listen, notify, transaction
from shared.settings import Settings
from shared.store import deliveries, webhooks
from shared.webhooks import signing
from shared.webhooks.delivery import event_body, next_state
from shared.webhooks.sender import TryResult, send
from shared.webhooks.urls import Resolver, system_resolver

log = logging.getLogger("monid.webhooks")

CHANNEL = "monid_webhook_deliveries"
# However quiet the channel, the listener looks for due deliveries this often (the
# sweeper does too, less often): a notification lost while it reconnects waits no more.
RECHECK_SECONDS = 5.0
BATCH = 500


def lease_seconds(settings: Settings) -> float:
    """How long a sender holds a delivery: the try's whole time, twice, and a margin
    for the database; a sender that dies lets it go after this long."""
    return 2 * settings.webhook_timeout_seconds + 10


@dataclass(frozen=True)
class Outcome:
    """What one task did: `skipped` (not due, held elsewhere, or done), or the try's
    result and the delivery's new status (None: the try could not be recorded)."""

    delivery_id: str
    skipped: bool = False
    status: str | None = None
    result: TryResult | None = None
    busy: bool = False  # skipped: WEBHOOK_MAX_IN_FLIGHT tries were in flight already


class Deliverer:
    """Takes, sends and records deliveries with a pool of its process."""

    def __init__(self, settings: Settings, pool: ConnectionPool, *, name: str,
                 resolver: Resolver = system_resolver,
                 ssl_context: ssl.SSLContext | None = None,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.name = name
        self.resolver = resolver
        self.ssl_context = ssl_context
        self.rng = rng or random.Random()
        self.slots = threading.BoundedSemaphore(settings.webhook_max_in_flight)
        # Set when a delivery was handed back for want of a slot: this process's listener
        # publishes due deliveries again within a second (as many as it has slots).
        self.handed_back = threading.Event()

    def deliver(self, delivery_id: str) -> Outcome:
        """Take, send and record one try; a delivery this process has no room for now
        (WEBHOOK_MAX_IN_FLIGHT) is left, untaken, for the next sweep to publish again:
        no thread waits on a slot, so threads stay free for runs."""
        if not self.slots.acquire(blocking=False):
            with transaction(self.pool) as conn:
                deliveries.hand_back_delivery(conn, delivery_id)
            self.handed_back.set()
            return Outcome(delivery_id, skipped=True, busy=True)
        try:
            return self._deliver(delivery_id)
        finally:
            self.slots.release()

    def _deliver(self, delivery_id: str) -> Outcome:
        token = f"{self.name}:{uuid.uuid4().hex}"
        with transaction(self.pool) as conn:
            taken = deliveries.take_delivery(conn, delivery_id, token=token,
                                             lease_seconds=lease_seconds(self.settings))
            if taken is None:
                return Outcome(delivery_id, skipped=True)
            if taken.endpoint_id is not None and taken.endpoint_enabled is False:
                secrets: list[str] = []
            elif taken.endpoint_id is not None:
                secrets = webhooks.signing_secrets(conn, taken.caller, taken.endpoint_id)
            else:
                webhooks.ensure_default_secret(conn, taken.caller)
                secrets = webhooks.signing_secrets(conn, taken.caller, None)
        attempted_at = datetime.now(UTC)
        if taken.endpoint_id is not None and taken.endpoint_enabled is False:
            result = TryResult(None, 0, None, "not sent: the webhook is disabled")
            state = "FAILED"
            return self._record(taken, token, attempted_at, result, state, None, False)
        if not secrets:
            result = TryResult(None, 0, None, "not sent: the webhook has no signing secret")
        else:
            body = event_body(taken.event_type, taken.event_created_at, taken.payload)
            headers = signing.sign_headers(secrets, taken.event_id, int(time.time()), body)
            result = send(taken.url, body, headers,
                          timeout=self.settings.webhook_timeout_seconds,
                          allow_insecure=self.settings.webhooks_allow_insecure,
                          resolver=self.resolver,
                          ssl_context=self.ssl_context)
        after = next_state(result, taken.attempt_count + 1,
                           self.settings.webhook_retry_schedule, self.rng)
        return self._record(taken, token, attempted_at, result, after.status, after.retry_in,
                            after.disable_endpoint)

    def _record(self, taken: deliveries.TakenDelivery, token: str, attempted_at: datetime,
                result: TryResult, status: str, retry_in: float | None,
                disable: bool) -> Outcome:
        """Record the try; a database that is down is asked again while the lease lasts
        (after that, another sender tries again: at least once)."""
        give_up_at = time.monotonic() + lease_seconds(self.settings) / 2
        while True:
            try:
                with transaction(self.pool) as conn:
                    recorded = deliveries.record_delivery_try(
                        conn, taken.id, token=token, status=status, retry_in=retry_in,
                        attempted_at=attempted_at, status_code=result.status_code,
                        duration_ms=result.duration_ms, head=result.head, error=result.error)
                    if recorded is not None and disable and taken.endpoint_id is not None:
                        deliveries.disable_webhook_endpoint(
                            conn, taken.endpoint_id,
                            "the receiver answered 410 Gone: it wants no more deliveries")
                break
            except DatabaseUnavailable as exc:
                if time.monotonic() > give_up_at:
                    log.warning("a webhook try could not be recorded; it will be sent again",
                                extra={"deliveryId": taken.id, "error": str(exc)})
                    return Outcome(taken.id, status=None, result=result)
                time.sleep(0.5)
        if recorded is None:
            log.warning("a webhook delivery's lease was lost before its try was recorded",
                        extra={"deliveryId": taken.id})
            return Outcome(taken.id, status=None, result=result)
        log.info("webhook try", extra={"deliveryId": taken.id, "eventId": taken.event_id,
                                       "statusCode": result.status_code, "status": status,
                                       "durationMs": result.duration_ms,
                                       "error": result.error})
        return Outcome(taken.id, status=status, result=result)


class DeliveryListener:
    """A thread that LISTENs on `monid_webhook_deliveries` (a run's end notifies it with
    its event's ID; a redelivery with the delivery's) and publishes the deliveries due.
    Every worker process runs one; a delivery is marked published by one of them only.

    When its process's deliverer handed deliveries back for want of a slot
    (`handed_back`), it publishes due ones again within a second, at most as many as the
    process has slots, instead of leaving them to the next sweep."""

    def __init__(self, settings: Settings, pool: ConnectionPool,
                 publish: Callable[[str], None],
                 handed_back: threading.Event | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.publish = publish
        self.handed_back = handed_back
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.published = 0  # deliveries this listener published, for tests and logs

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="monid-webhook-listener",
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop listening, at once: an empty notification wakes the listener (and, once,
        every other on the channel, which find nothing in it to publish)."""
        self.stopping.set()
        if self.thread is None or not self.thread.is_alive():
            return
        try:
            with autocommit(self.pool) as conn:
                notify(conn, CHANNEL)
        except Exception as exc:  # it wakes within its slice anyway
            log.debug("webhook listener not woken", extra={"error": str(exc)})
        self.thread.join(timeout=RECHECK_SECONDS + 1)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                with connect(self.settings.database_url, autocommit=True) as conn:
                    listen(conn, CHANNEL)
                    self.publish_due(None)  # whatever came while not listening
                    while not self.stopping.is_set():
                        if self.handed_back is not None and self.handed_back.is_set():
                            self.handed_back.clear()
                            self.publish_due(None, limit=self.settings.webhook_max_in_flight)
                        wait = RECHECK_SECONDS if self.handed_back is None else 1.0
                        keys = [n.payload for n in conn.notifies(timeout=wait, stop_after=1)]
                        while keys and len(keys) < BATCH:  # the rest already here
                            more = [n.payload for n in conn.notifies(timeout=0)]
                            if not more:
                                break
                            keys += more
                        keys = [key for key in keys if key]  # empty: a listener's wake-up
                        if keys and not self.stopping.is_set():
                            self.publish_due(keys)
            except Exception as exc:  # the database went away: listen again shortly
                log.warning("webhook listener lost its connection", extra={"error": str(exc)})
                self.stopping.wait(1.0)

    def publish_due(self, keys: list[str] | None, limit: int = BATCH) -> list[str]:
        """Mark and publish the due deliveries of these events or deliveries (None: any
        due, as the sweeper does, at most `limit`)."""
        if self.stopping.is_set():  # what is due is the sweeper's or another listener's
            return []
        hold = self.settings.sweep_grace_seconds
        with transaction(self.pool) as conn:
            if keys is None:
                ids = deliveries.publish_due_deliveries(conn, hold_seconds=hold, limit=limit)
            else:
                ids = deliveries.publish_deliveries_of(conn, keys, hold_seconds=hold,
                                                       limit=BATCH * 10)
        for n, delivery_id in enumerate(ids):
            try:
                self.publish(delivery_id)
            except Exception as exc:  # the sweeper publishes them once the mark passes
                log.warning("webhook publish failed; the sweeper will publish them",
                            extra={"deliveries": len(ids) - n, "error": str(exc)})
                break
            self.published += 1
        return ids

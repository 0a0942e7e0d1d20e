"""Webhook deliveries sent by a worker's deliverer against the real PostgreSQL and a
receiver of our own that verifies each with the `standardwebhooks` library: the lease
(one sender at a time, duplicates do nothing), the retry schedule to FAILED, 410
switching a standing webhook off, redirects logged and not followed, addresses checked
at send time; publishing by notification and by the sweeper, in turns among callers;
/metrics."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import notify, transaction
from shared.settings import Settings
from shared.store import deliveries, webhooks
from shared.webhooks import signing
from shared.webhooks.sender import MAX_HEAD_BYTES
from tests.fakes.receiver import Answer, Receiver
from tests.helpers import insert_demo_run
from worker.webhooks import CHANNEL, Deliverer, DeliveryListener

CALLER = "USER#u"  # insert_demo_run's


@pytest.fixture
def wh_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, webhooks_allow_insecure=True,
                               webhook_retry_schedule=(0.05, 0.05, 0.05),
                               webhook_timeout_seconds=2.0, sweep_grace_seconds=30.0)


@pytest.fixture
def deliverer(wh_settings: Settings, db: ConnectionPool) -> Deliverer:
    return Deliverer(wh_settings, db, name="test-sender")


@pytest.fixture
def receiver(db: ConnectionPool) -> Iterator[Receiver]:
    with transaction(db) as conn:
        secret = webhooks.ensure_default_secret(conn, CALLER)
    with Receiver([secret]) as running:
        yield running


def end_run_with_webhook(pool: ConnectionPool, url: str | None,
                         status: str = "COMPLETED") -> str:
    """A run that asked for a webhook at `url` (None: none), ended: its event's ID.
    The run's `webhook` column is set directly, as the accept will store it, until the
    tests go through `POST /v1/run`'s `webhook` field."""
    run_id = insert_demo_run(pool, "/echo", {"q": "x"})
    with transaction(pool) as conn:
        if url is not None:
            conn.execute("UPDATE runs SET webhook = %s WHERE id = %s",
                         (Jsonb({"url": url}), run_id))
        claimed = store.claim_run(conn, run_id, worker="test-worker", lease_seconds=60)
    assert isinstance(claimed, store.Claim)
    with transaction(pool) as conn:
        assert store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status=status,
                             output=[{"n": 1}], result_count=1, cost_micros=0)
        [event] = webhooks.list_run_webhook_events(conn, run_id)
    return event.id


def deliveries_of(pool: ConnectionPool, event_id: str) -> list[dict[str, Any]]:
    with transaction(pool) as conn:
        return conn.execute("SELECT * FROM webhook_deliveries WHERE event_id = %s"
                            " ORDER BY endpoint_id NULLS FIRST", (event_id,)).fetchall()


def the_delivery(pool: ConnectionPool, event_id: str) -> dict[str, Any]:
    [row] = deliveries_of(pool, event_id)
    return row


def reread(pool: ConnectionPool, delivery_id: str) -> dict[str, Any]:
    with transaction(pool) as conn:
        row = conn.execute("SELECT * FROM webhook_deliveries WHERE id = %s",
                           (delivery_id,)).fetchone()
    assert row is not None
    return row


def tries(pool: ConnectionPool, delivery_id: str) -> list[dict[str, Any]]:
    with transaction(pool) as conn:
        return conn.execute("SELECT * FROM webhook_delivery_attempts WHERE delivery_id = %s"
                            " ORDER BY id", (delivery_id,)).fetchall()


def standing_webhook(pool: ConnectionPool, url: str) -> tuple[str, str]:
    """A standing webhook of the caller and its secret, made directly in the tables
    (the API makes them through POST /v1/webhooks)."""
    secret = signing.new_secret()
    with transaction(pool) as conn:
        row = conn.execute("INSERT INTO webhook_endpoints (caller, url) VALUES (%s, %s)"
                           " RETURNING id", (CALLER, url)).fetchone()
        assert row is not None
        conn.execute("INSERT INTO webhook_secrets (caller, endpoint_id, secret)"
                     " VALUES (%s, %s, %s)", (CALLER, row["id"], secret))
    return row["id"], secret


def wait_until_due(pool: ConnectionPool, delivery_id: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with transaction(pool) as conn:
            row = conn.execute("SELECT next_attempt_at <= now() AS due FROM webhook_deliveries"
                               " WHERE id = %s", (delivery_id,)).fetchone()
        if row and row["due"]:
            return
        time.sleep(0.02)
    raise AssertionError("the delivery never came due")


def test_a_run_with_a_webhook_is_delivered_once_signed_and_logged(
        db: ConnectionPool, deliverer: Deliverer, receiver: Receiver) -> None:
    event_id = end_run_with_webhook(db, receiver.url())
    delivery = the_delivery(db, event_id)
    outcome = deliverer.deliver(delivery["id"])
    assert outcome.status == "DELIVERED" and not outcome.skipped

    [got] = receiver.received
    assert got.verified, "the standardwebhooks library verifies the signature"
    assert got.webhook_id == event_id
    with transaction(db) as conn:
        [event] = webhooks.list_webhook_events_after(conn, "", limit=10)
    assert got.json == {"type": "run.completed",
                        "timestamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S.")
                        + f"{event.created_at.microsecond // 1000:03d}Z",
                        "data": event.payload}
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("monid-runs")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10

    after = reread(db, delivery["id"])
    assert (after["status"], after["attempt_count"], after["last_status_code"]) == (
        "DELIVERED", 1, 200)
    assert after["next_attempt_at"] is None and after["lease_until"] is None
    assert after["lease_token"] is None and after["last_error"] is None
    [logged] = tries(db, delivery["id"])
    assert (logged["status_code"], logged["response_head"], logged["error"],
            logged["next_retry_at"]) == (200, '{"ok":true}', None, None)
    assert 0 <= logged["duration_ms"] < 2000

    # A duplicate message for it does nothing.
    assert deliverer.deliver(delivery["id"]).skipped
    assert len(receiver.received) == 1 and len(tries(db, delivery["id"])) == 1


def test_a_standing_webhook_is_signed_with_its_own_secret(
        db: ConnectionPool, deliverer: Deliverer, receiver: Receiver) -> None:
    endpoint_id, secret = standing_webhook(db, receiver.url("/standing"))
    event_id = end_run_with_webhook(db, receiver.url("/own"))
    own, standing = deliveries_of(db, event_id)
    assert standing["endpoint_id"] == endpoint_id
    default_secrets = list(receiver.secrets)
    receiver.secrets = [secret]
    assert deliverer.deliver(standing["id"]).status == "DELIVERED"
    assert deliverer.deliver(own["id"]).status == "DELIVERED"  # the receiver answers 200
    receiver.secrets = default_secrets
    by_path = {r.path: r for r in receiver.received}
    assert by_path["/standing"].verified and not by_path["/own"].verified
    assert receiver.verify(by_path["/own"].body, by_path["/own"].headers)
    assert by_path["/standing"].webhook_id == by_path["/own"].webhook_id == event_id


def test_two_takers_one_lease(db: ConnectionPool, receiver: Receiver) -> None:
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    with transaction(db) as conn:
        first = deliveries.take_delivery(conn, delivery_id, token="a", lease_seconds=30)
    with transaction(db) as conn:
        second = deliveries.take_delivery(conn, delivery_id, token="b", lease_seconds=30)
    assert first is not None and first.event_id == event_id
    assert second is None


def test_many_duplicate_messages_at_once_send_one_try(
        db: ConnectionPool, deliverer: Deliverer, receiver: Receiver) -> None:
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    receiver.answer = lambda _: Answer(200, delay=0.3)
    outcomes: list[Any] = []
    threads = [threading.Thread(target=lambda: outcomes.append(deliverer.deliver(delivery_id)))
               for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.skipped for o in outcomes) == [False] + [True] * 11
    assert len(receiver.received) == 1
    assert len(tries(db, delivery_id)) == 1


def test_only_the_holder_of_the_lease_records_a_try(db: ConnectionPool,
                                                    receiver: Receiver) -> None:
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    with transaction(db) as conn:
        assert deliveries.take_delivery(conn, delivery_id, token="old", lease_seconds=30)
        # Its sender stalled past the lease: another takes it.
        conn.execute("UPDATE webhook_deliveries SET lease_until = now() - interval '1 second'"
                     " WHERE id = %s", (delivery_id,))
        assert deliveries.take_delivery(conn, delivery_id, token="new", lease_seconds=30)
    record = dict(status="PENDING", retry_in=5.0, attempted_at=db_now(db), status_code=500,
                  duration_ms=3, head="", error="the receiver answered 500")
    with transaction(db) as conn:
        assert deliveries.record_delivery_try(conn, delivery_id, token="old", **record) is None
    assert tries(db, delivery_id) == []
    assert reread(db, delivery_id)["attempt_count"] == 0
    with transaction(db) as conn:
        recorded = deliveries.record_delivery_try(conn, delivery_id, token="new", **record)
    assert recorded is not None and recorded.next_retry_at is not None
    assert reread(db, delivery_id)["attempt_count"] == 1


def db_now(pool: ConnectionPool) -> Any:
    with transaction(pool) as conn:
        row = conn.execute("SELECT now() AS now").fetchone()
    assert row is not None
    return row["now"]


def test_the_schedule_is_walked_to_failed_with_one_id_and_one_body(
        db: ConnectionPool, deliverer: Deliverer, receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(500, b"down for maintenance")
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    statuses = []
    for _ in range(4):
        wait_until_due(db, delivery_id)
        statuses.append(deliverer.deliver(delivery_id).status)
    assert statuses == ["PENDING", "PENDING", "PENDING", "FAILED"]
    logged = tries(db, delivery_id)
    assert [t["status_code"] for t in logged] == [500] * 4
    assert [t["next_retry_at"] is None for t in logged] == [False, False, False, True]
    assert all(t["error"] == "the receiver answered 500" for t in logged)
    assert all(t["response_head"] == "down for maintenance" for t in logged)
    for t in logged[:3]:
        wait = (t["next_retry_at"] - t["attempted_at"]).total_seconds()
        assert 0 < wait < 1.5
    after = reread(db, delivery_id)
    assert (after["status"], after["attempt_count"], after["next_attempt_at"]) == (
        "FAILED", 4, None)
    assert {r.webhook_id for r in receiver.received} == {event_id}
    assert len({r.body for r in receiver.received}) == 1
    assert all(r.verified for r in receiver.received)
    # Failed for good: nothing more is sent.
    assert deliverer.deliver(delivery_id).skipped
    assert len(receiver.received) == 4


def test_a_retry_is_not_sent_before_it_is_due(db: ConnectionPool, wh_settings: Settings,
                                              receiver: Receiver) -> None:
    slow = Deliverer(dataclasses.replace(wh_settings, webhook_retry_schedule=(3600,)), db,
                     name="slow")
    receiver.answer = lambda _: Answer(503)
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    assert slow.deliver(delivery_id).status == "PENDING"
    assert slow.deliver(delivery_id).skipped
    assert len(receiver.received) == 1
    [logged] = tries(db, delivery_id)
    wait = (logged["next_retry_at"] - logged["attempted_at"]).total_seconds()
    assert 0.8 * 3600 - 5 <= wait <= 1.2 * 3600 + 5


def test_500_then_200_is_delivered_on_the_second_try(
        db: ConnectionPool, deliverer: Deliverer, receiver: Receiver) -> None:
    answers = iter([Answer(500), Answer(200)])
    receiver.answer = lambda _: next(answers)
    event_id = end_run_with_webhook(db, receiver.url(), status="FAILED")
    delivery_id = the_delivery(db, event_id)["id"]
    assert deliverer.deliver(delivery_id).status == "PENDING"
    wait_until_due(db, delivery_id)
    assert deliverer.deliver(delivery_id).status == "DELIVERED"
    assert [r.status for r in receiver.received] == [500, 200]
    assert receiver.received[0].json["type"] == "run.failed"
    assert receiver.received[0].body == receiver.received[1].body


def test_410_fails_the_delivery_and_switches_a_standing_webhook_off(
        db: ConnectionPool, deliverer: Deliverer, receiver: Receiver) -> None:
    endpoint_id, secret = standing_webhook(db, receiver.url("/gone"))
    receiver.secrets.append(secret)
    receiver.answer = lambda got: Answer(410) if got.path == "/gone" else Answer(200)
    first = end_run_with_webhook(db, None)
    second = end_run_with_webhook(db, None)
    first_id = the_delivery(db, first)["id"]
    second_id = the_delivery(db, second)["id"]
    assert deliverer.deliver(first_id).status == "FAILED"
    with transaction(db) as conn:
        endpoint = conn.execute("SELECT enabled, disabled_reason FROM webhook_endpoints"
                                " WHERE id = %s", (endpoint_id,)).fetchone()
    assert endpoint is not None and endpoint["enabled"] is False
    assert "410" in endpoint["disabled_reason"]
    [logged] = tries(db, first_id)
    assert (logged["status_code"], logged["next_retry_at"]) == (410, None)
    # A delivery of the switched-off webhook written before is not sent.
    assert deliverer.deliver(second_id).status == "FAILED"
    assert len(receiver.received) == 1
    assert tries(db, second_id)[0]["error"] == "not sent: the webhook is disabled"
    # A run's end after that writes no delivery for it.
    third = end_run_with_webhook(db, receiver.url("/own"))
    assert [d["endpoint_id"] for d in deliveries_of(db, third)] == [None]


def test_410_to_a_runs_own_webhook_fails_only_that_delivery(
        db: ConnectionPool, deliverer: Deliverer, receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(410)
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    assert deliverer.deliver(delivery_id).status == "FAILED"
    assert len(tries(db, delivery_id)) == 1


def test_a_redirect_is_logged_and_not_followed(
        db: ConnectionPool, deliverer: Deliverer, receiver: Receiver) -> None:
    elsewhere = receiver.url("/elsewhere")
    receiver.answer = lambda got: (Answer(302, b"", {"Location": elsewhere})
                                   if got.path == "/hook" else Answer(200))
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    assert deliverer.deliver(delivery_id).status == "PENDING"
    assert [r.path for r in receiver.received] == ["/hook"]
    [logged] = tries(db, delivery_id)
    assert logged["status_code"] == 302
    assert logged["error"] == f"redirect not followed (Location: {elsewhere})"
    assert reread(db, delivery_id)["last_error"] == logged["error"]


def test_the_answer_logged_is_capped(db: ConnectionPool, deliverer: Deliverer,
                                     receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(200, ("é" * 3_000_000).encode())
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    assert deliverer.deliver(delivery_id).status == "DELIVERED"
    [logged] = tries(db, delivery_id)
    assert 0 < len(logged["response_head"]) <= MAX_HEAD_BYTES
    assert set(logged["response_head"]) <= {"é", "\ufffd"}


def test_a_receiver_that_hangs_times_out_and_is_tried_again(
        db: ConnectionPool, wh_settings: Settings, receiver: Receiver) -> None:
    quick = Deliverer(dataclasses.replace(wh_settings, webhook_timeout_seconds=0.5), db,
                      name="quick")
    receiver.answer = lambda got: Answer(200, delay=10) if len(receiver.received) == 1 \
        else Answer(200)
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    assert quick.deliver(delivery_id).status == "PENDING"
    wait_until_due(db, delivery_id)
    assert quick.deliver(delivery_id).status == "DELIVERED"
    first, second = tries(db, delivery_id)
    assert (first["status_code"], first["error"]) == (None, "timed out after 0.5 s")
    assert 400 <= first["duration_ms"] < 2000
    assert second["status_code"] == 200


def test_an_address_that_is_not_allowed_is_refused_at_send_time(
        db: ConnectionPool, wh_settings: Settings, receiver: Receiver) -> None:
    # The URL passed the check when it was given (a public name); at send time the name
    # resolves to loopback: refused, nothing sent.
    def rebinding(host: str, port: int) -> list[str]:
        assert host == "hooks.example.com"
        return ["127.0.0.1"]

    strict = Deliverer(dataclasses.replace(wh_settings, webhooks_allow_insecure=False), db,
                       name="strict", resolver=rebinding)
    event_id = end_run_with_webhook(db, f"https://hooks.example.com:{receiver.port}/hook")
    delivery_id = the_delivery(db, event_id)["id"]
    assert strict.deliver(delivery_id).status == "PENDING"
    [logged] = tries(db, delivery_id)
    assert logged["status_code"] is None
    assert logged["error"] == ("not sent: hooks.example.com resolves to an address that is "
                               "not public")
    assert receiver.received == []


def test_a_notification_publishes_the_deliveries_of_the_event_once(
        db: ConnectionPool, wh_settings: Settings, receiver: Receiver) -> None:
    published: list[tuple[str, str]] = []
    # As a worker process makes them (with the event its deliverer sets when it hands
    # deliveries back), so that they listen in slices of a second and stop at once.
    listeners = [DeliveryListener(wh_settings, db,
                                  lambda d, n=n: published.append((n, d)),  # type: ignore[misc]
                                  handed_back=threading.Event())
                 for n in ("one", "two")]
    for listener in listeners:
        listener.start()
    try:
        time.sleep(0.5)  # both listening
        standing_webhook(db, receiver.url("/standing"))
        event_ids = [end_run_with_webhook(db, receiver.url()) for _ in range(5)]
        expected = {d["id"] for e in event_ids for d in deliveries_of(db, e)}
        assert len(expected) == 10
        deadline = time.monotonic() + 5
        while len(published) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        for listener in listeners:
            listener.stop()
    assert sorted(d for _, d in published) == sorted(expected)  # each once, by either
    # Marked: neither the sweeper nor a listener publishes them again within the grace.
    with transaction(db) as conn:
        assert deliveries.publish_due_deliveries(conn, hold_seconds=30, limit=100) == []


def test_the_sweeper_query_publishes_what_is_due_and_unheld_once_per_grace(
        db: ConnectionPool, receiver: Receiver) -> None:
    event_ids = [end_run_with_webhook(db, receiver.url()) for _ in range(3)]
    ids = [the_delivery(db, e)["id"] for e in event_ids]
    with transaction(db) as conn:
        assert deliveries.take_delivery(conn, ids[0], token="busy", lease_seconds=60)
        conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour'"
                     " WHERE id = %s", (ids[1],))
    with transaction(db) as conn:
        assert deliveries.publish_due_deliveries(conn, hold_seconds=0.2, limit=100) == [ids[2]]
        assert deliveries.publish_due_deliveries(conn, hold_seconds=0.2, limit=100) == []
    # A published delivery may still be taken at once (the mark is no hold).
    with transaction(db) as conn:
        taken = deliveries.take_delivery(conn, ids[2], token="t", lease_seconds=60)
        assert taken is not None
        conn.execute("UPDATE webhook_deliveries SET lease_until = NULL, lease_token = NULL"
                     " WHERE id = %s", (ids[2],))
        # Its sender died: once the lease passes, published again.
        conn.execute("UPDATE webhook_deliveries SET lease_until = now() - interval '1 second'"
                     " WHERE id = %s", (ids[0],))
    with transaction(db) as conn:
        again = deliveries.publish_due_deliveries(conn, hold_seconds=0.2, limit=100)
    assert sorted(again) == sorted([ids[0], ids[2]])
    time.sleep(0.3)  # the marks pass: a lost message is published again
    with transaction(db) as conn:
        assert sorted(deliveries.publish_due_deliveries(conn, hold_seconds=0.2,
                                                        limit=1)) in ([ids[0]], [ids[2]])


def test_the_sweeper_publishes_due_deliveries(db: ConnectionPool, wh_settings: Settings,
                                              receiver: Receiver) -> None:
    from shared.catalog import load_catalog
    from worker.sweeper import Sweeper

    event_ids = [end_run_with_webhook(db, receiver.url()) for _ in range(3)]
    published: list[str] = []
    sweeper = Sweeper(settings=wh_settings, pool=db,
                      catalog=load_catalog(wh_settings.catalog_dir), adapters={},
                      publish=lambda *_: None, publish_delivery=published.append)
    report = sweeper.sweep()
    assert sorted(report.deliveries_published) == sorted(published)
    assert sorted(published) == sorted(the_delivery(db, e)["id"] for e in event_ids)
    assert sweeper.sweep().deliveries_published == []


def test_metrics_count_deliveries(db: ConnectionPool, deliverer: Deliverer,
                                  receiver: Receiver, client: FlaskClient) -> None:
    answers = iter([Answer(200), Answer(410), Answer(500)])
    receiver.answer = lambda _: next(answers)
    ids = [the_delivery(db, end_run_with_webhook(db, receiver.url()))["id"] for _ in range(4)]
    for delivery_id in ids[:3]:
        deliverer.deliver(delivery_id)
    with transaction(db) as conn:
        conn.execute("UPDATE webhook_deliveries SET created_at = now() - interval '90 seconds'"
                     " WHERE id = %s", (ids[3],))
    text = client.get("/metrics").get_data(as_text=True)
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("monid_webhook")}
    assert values['monid_webhook_deliveries{status="DELIVERED"}'] == 1
    assert values['monid_webhook_deliveries{status="FAILED"}'] == 1
    assert values['monid_webhook_deliveries{status="PENDING"}'] == 2
    assert values["monid_webhook_deliveries_due"] == 1  # the 500's retry is not due yet
    assert 89 < values["monid_webhook_oldest_pending_delivery_age_seconds"] < 150


def test_a_test_event_is_delivered_the_same_way(db: ConnectionPool, deliverer: Deliverer,
                                                receiver: Receiver) -> None:
    endpoint_id, secret = standing_webhook(db, receiver.url("/standing"))
    receiver.secrets = [secret]
    # What POST /v1/webhooks/:id/test writes: an event of no run, one delivery.
    with transaction(db) as conn:
        event = conn.execute(
            "INSERT INTO webhook_events (run_id, caller, type, payload)"
            " VALUES (NULL, %s, 'webhook.test', %s) RETURNING id",
            (CALLER, Jsonb({"webhookId": endpoint_id, "message": "a test"}))).fetchone()
        assert event is not None
        delivery = conn.execute(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, caller, url)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (event["id"], endpoint_id, CALLER, receiver.url("/standing"))).fetchone()
        assert delivery is not None
    assert deliverer.deliver(delivery["id"]).status == "DELIVERED"
    [got] = receiver.received
    assert got.verified and got.webhook_id == event["id"]
    assert got.json["type"] == "webhook.test"
    assert got.json["data"] == {"webhookId": endpoint_id, "message": "a test"}


def test_a_redelivery_is_published_by_its_notification_and_sent_under_the_same_id(
        db: ConnectionPool, wh_settings: Settings, deliverer: Deliverer,
        receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(500)
    event_id = end_run_with_webhook(db, receiver.url())
    delivery_id = the_delivery(db, event_id)["id"]
    for _ in range(4):
        wait_until_due(db, delivery_id)
        deliverer.deliver(delivery_id)
    assert reread(db, delivery_id)["status"] == "FAILED"
    receiver.answer = lambda _: Answer(200)
    published: list[str] = []
    listener = DeliveryListener(wh_settings, db, published.append,
                                handed_back=threading.Event())
    listener.start()
    try:
        time.sleep(0.5)
        # What POST /v1/deliveries/:id/redeliver does.
        with transaction(db) as conn:
            conn.execute("UPDATE webhook_deliveries SET status = 'PENDING',"
                         " next_attempt_at = now() WHERE id = %s", (delivery_id,))
            notify(conn, CHANNEL, delivery_id)
        deadline = time.monotonic() + 5
        while not published and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.stop()
    assert published == [delivery_id]
    assert deliverer.deliver(delivery_id).status == "DELIVERED"
    assert {r.webhook_id for r in receiver.received} == {event_id}
    assert len({r.body for r in receiver.received}) == 1
    assert [t["status_code"] for t in tries(db, delivery_id)] == [500] * 4 + [200]


def test_a_process_sends_at_most_its_tries_in_flight_and_hands_back_the_rest(
        db: ConnectionPool, wh_settings: Settings, receiver: Receiver) -> None:
    narrow = Deliverer(dataclasses.replace(wh_settings, webhook_max_in_flight=2), db,
                       name="narrow")
    receiver.answer = lambda _: Answer(200, delay=1.0)
    ids = [the_delivery(db, end_run_with_webhook(db, receiver.url()))["id"] for _ in range(5)]
    with transaction(db) as conn:  # published: marked for the grace
        assert sorted(deliveries.publish_due_deliveries(conn, hold_seconds=30,
                                                        limit=10)) == sorted(ids)
    outcomes: dict[str, Any] = {}
    threads = [threading.Thread(target=lambda d=d: outcomes.update({d: narrow.deliver(d)}))
               for d in ids]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # in order: the first two take the slots
    for thread in threads:
        thread.join()
    assert [outcomes[d].status for d in ids[:2]] == ["DELIVERED", "DELIVERED"]
    assert all(outcomes[d].skipped and outcomes[d].busy for d in ids[2:])
    assert len(receiver.received) == 2
    # Not taken, and no longer marked: the next sweep publishes them again at once.
    with transaction(db) as conn:
        again = deliveries.publish_due_deliveries(conn, hold_seconds=30, limit=10)
    assert sorted(again) == sorted(ids[2:])
    for delivery_id in ids[2:]:
        assert narrow.deliver(delivery_id).status == "DELIVERED"
    assert len(receiver.delivered()) == 5


def test_deliveries_handed_back_for_want_of_a_slot_are_published_again_within_a_second(
        db: ConnectionPool, wh_settings: Settings, receiver: Receiver) -> None:
    one = Deliverer(dataclasses.replace(wh_settings, webhook_max_in_flight=1), db, name="one")
    receiver.answer = lambda _: Answer(200, delay=0.5)
    ids = [the_delivery(db, end_run_with_webhook(db, receiver.url()))["id"] for _ in range(2)]
    published: list[str] = []
    listener = DeliveryListener(one.settings, db, published.append,
                                handed_back=one.handed_back)
    with transaction(db) as conn:
        deliveries.publish_due_deliveries(conn, hold_seconds=30, limit=10)
    listener.start()
    try:
        time.sleep(0.5)
        sending = threading.Thread(target=one.deliver, args=(ids[0],))
        sending.start()
        time.sleep(0.1)
        assert one.deliver(ids[1]).busy
        deadline = time.monotonic() + 3
        while ids[1] not in published and time.monotonic() < deadline:
            time.sleep(0.05)
        sending.join()
    finally:
        listener.stop()
    assert published == [ids[1]]
    assert one.deliver(ids[1]).status == "DELIVERED"


def due_as(pool: ConnectionPool, delivery_id: str, caller: str, seconds_ago: float) -> None:
    """The delivery made another caller's, due `seconds_ago` (a retry come due)."""
    with transaction(pool) as conn:
        conn.execute("UPDATE webhook_deliveries SET caller = %s,"
                     " next_attempt_at = now() - make_interval(secs => %s) WHERE id = %s",
                     (caller, seconds_ago, delivery_id))


def test_due_deliveries_are_published_in_turns_among_callers(
        db: ConnectionPool, receiver: Receiver) -> None:
    ids = [the_delivery(db, end_run_with_webhook(db, receiver.url()))["id"] for _ in range(8)]
    a = ids[:6]  # a backlog of one caller's retries, due long before the others'
    for n, delivery_id in enumerate(a):
        due_as(db, delivery_id, CALLER, 600 - n)
    b, c = ids[6], ids[7]
    due_as(db, b, "USER#b", 1)
    due_as(db, c, "USER#c", 2)
    with transaction(db) as conn:  # a share of ceil(4 / 3) = 2 each; each one's first first
        assert deliveries.publish_due_deliveries(conn, hold_seconds=30, limit=4) == [
            a[0], c, b, a[1]]
    with transaction(db) as conn:  # the others have none left due: the backlog goes on
        assert deliveries.publish_due_deliveries(conn, hold_seconds=30, limit=10) == a[2:]
    with transaction(db) as conn:
        assert deliveries.publish_due_deliveries(conn, hold_seconds=30, limit=10) == []


def test_publishers_at_once_publish_each_due_delivery_once(
        db: ConnectionPool, receiver: Receiver) -> None:
    """The sweepers and listeners of many processes publish at the same moment: every
    due delivery of every caller is published by one of them, once."""
    ids = [the_delivery(db, end_run_with_webhook(db, receiver.url()))["id"] for _ in range(60)]
    for n, delivery_id in enumerate(ids):
        due_as(db, delivery_id, f"USER#{n % 5}", n)
    published: list[str] = []
    start = threading.Barrier(6)

    def publish() -> None:
        start.wait()
        for _ in range(4):
            with transaction(db) as conn:
                published.extend(deliveries.publish_due_deliveries(conn, hold_seconds=30,
                                                                   limit=7))

    threads = [threading.Thread(target=publish) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with transaction(db) as conn:  # what 24 batches of 7 left, if any
        published.extend(deliveries.publish_due_deliveries(conn, hold_seconds=30, limit=100))
    assert sorted(published) == sorted(ids)


def test_a_callers_backlog_of_retries_to_a_receiver_that_hangs_holds_back_no_other_caller(
        db: ConnectionPool, wh_settings: Settings, receiver: Receiver) -> None:
    """30 retries of one caller, due for a minute, to a receiver that takes a second to
    answer; then one of another caller's. A process sending 2 tries at once, fed by the
    listener: published oldest due first, the other caller's waited for the whole
    backlog (15 s); in turns, it goes out with the first tries."""
    settings = dataclasses.replace(wh_settings, webhook_max_in_flight=2)
    sender = Deliverer(settings, db, name="narrow")
    receiver.answer = lambda got: Answer(200, delay=1.0) if got.path == "/slow" else Answer()
    backlog = [the_delivery(db, end_run_with_webhook(db, receiver.url("/slow")))["id"]
               for _ in range(30)]
    for delivery_id in backlog:
        due_as(db, delivery_id, CALLER, 60)
    other = the_delivery(db, end_run_with_webhook(db, receiver.url("/quick")))["id"]
    due_as(db, other, "USER#b", 1)
    messages: queue.Queue[str | None] = queue.Queue()  # the broker, in publishing order

    def consume() -> None:  # a worker's threads taking messages as they come
        while (delivery_id := messages.get()) is not None:
            sender.deliver(delivery_id)

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    listener = DeliveryListener(settings, db, messages.put, handed_back=sender.handed_back)
    started = time.monotonic()
    for consumer in consumers:
        consumer.start()
    listener.start()
    try:
        deadline = started + 10
        while reread(db, other)["status"] != "DELIVERED" and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - started
        assert reread(db, other)["status"] == "DELIVERED", "held back behind the backlog"
        slow_sent = sum(1 for r in receiver.received if r.path == "/slow")
    finally:
        listener.stop()
        receiver.release.set()  # the tries under way answer at once
        for _ in consumers:
            messages.put(None)
        for consumer in consumers:
            consumer.join(timeout=10)
    assert took < 4, f"the other caller's retry went out after {took:.1f} s"
    assert slow_sent < 10  # most of the backlog was still to go when it did

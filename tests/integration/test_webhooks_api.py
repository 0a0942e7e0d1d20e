"""The webhooks API on the real database: standing webhooks, signing secrets and their
rotation, a run's own webhook, the delivery log and redelivery; and what careless or
hostile callers send."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from api.app import create_app
from api.mcp_server import McpTools
from api.mcp_tools import BY_NAME
from shared import controls, store
from shared.callers import Caller
from shared.db import connect, listen, transaction
from shared.runs import request_hash
from shared.settings import Settings
from shared.store import webhooks as webhooks_store
from tests.helpers import KeyMaker, auth

CALLER = "USER#user_abc123"
OTHER = "user_other"
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
ISO_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$")
HOOK = "https://example.com/hooks/monid"
RUN = {"provider": "apify", "endpoint": "/apidojo/tweet-scraper",
       "input": {"searchTerms": ["AI"], "maxItems": 10}}
ECHO = {"provider": "demo", "endpoint": "/echo", "input": {"message": "hi"}}
CHANNEL = "monid_webhook_deliveries"


@pytest.fixture
def funded(db: ConnectionPool, key: str) -> str:
    with transaction(db) as conn:
        store.credit_wallet(conn, CALLER, 1_000_000, "tests")
    return key


@pytest.fixture
def other_key(make_key: KeyMaker) -> str:
    return make_key(OTHER)


def app_with(settings: Settings, **changes: Any) -> Flask:
    return create_app(dataclasses.replace(settings, **changes))


@pytest.fixture
def insecure_client(settings: Settings, db: ConnectionPool) -> Iterator[FlaskClient]:
    app = app_with(settings, webhooks_allow_insecure=True)
    yield app.test_client()
    app.extensions["monid"].close()


def create(client: FlaskClient, key: str, **body: Any) -> Any:
    answer = client.post("/v1/webhooks", json={"url": HOOK, **body}, headers=auth(key))
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def sql(pool: ConnectionPool, statement: str, *params: Any) -> list[dict[str, Any]]:
    with transaction(pool) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def secrets_of(pool: ConnectionPool, caller: str, endpoint_id: str | None) -> list[str]:
    with transaction(pool) as conn:
        return webhooks_store.signing_secrets(conn, caller, endpoint_id)


def assert_refused(answer: Any, field: str, status: int = 400) -> dict[str, Any]:
    body = answer.get_json()
    assert answer.status_code == status, body
    assert body["code"] == status and body["errorCode"] == "VALIDATION_FAILED"
    assert field in body["errors"], body
    return dict(body)


def end_run(pool: ConnectionPool, run_id: str, status: str = "COMPLETED") -> None:
    """End the run as a worker would (the trigger writes its event and deliveries)."""
    sql(pool, "UPDATE runs SET status = %s, completed_at = now(), cost_micros = 0,"
              " inflight_slot = NULL WHERE id = %s", status, run_id)


# --- standing webhooks -------------------------------------------------------------


def test_a_webhook_is_made_with_a_secret_shown_once(client: FlaskClient, key: str,
                                                    db: ConnectionPool) -> None:
    made = create(client, key, events=["run.failed", "run.completed", "run.failed"],
                  description="orders")
    assert ULID.match(made["webhookId"])
    assert SECRET.match(made["secret"])
    assert made["url"] == HOOK
    assert made["events"] == ["run.completed", "run.failed"]  # once each, in order
    assert (made["description"], made["enabled"], made["disabledReason"]) == (
        "orders", True, None)
    assert ISO_MS_UTC.match(made["createdAt"]) and ISO_MS_UTC.match(made["updatedAt"])
    # The engine signs with it; no read answers it again.
    assert secrets_of(db, CALLER, made["webhookId"]) == [made["secret"]]
    got = client.get(f"/v1/webhooks/{made['webhookId']}", headers=auth(key)).get_json()
    assert got == {k: v for k, v in made.items() if k != "secret"}
    listed = client.get("/v1/webhooks", headers=auth(key)).get_json()
    assert listed == {"items": [got], "cursor": None}
    for answer in (got, listed):
        assert made["secret"] not in str(answer)


def test_a_url_is_normalised_and_events_default_to_every_one(client: FlaskClient,
                                                             key: str) -> None:
    made = create(client, key, url="HTTPS://Example.COM:443", events=None)
    assert (made["url"], made["events"], made["description"]) == (
        "https://example.com/", None, None)
    off = create(client, key, enabled=False)
    assert off["enabled"] is False


def test_webhooks_are_listed_newest_first_in_pages(client: FlaskClient, key: str) -> None:
    made = [create(client, key, description=str(n))["webhookId"] for n in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/webhooks", query_string=query, headers=auth(key)).get_json()
        seen += [w["webhookId"] for w in page["items"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    for query in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "nope"},
                  {"other": 1}):
        answer = client.get("/v1/webhooks", query_string=query, headers=auth(key))
        assert answer.status_code == 400, query


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "h" * 3000}, "url"),
    ({"url": "https://example.com/" + "a" * 2048}, "url"),
    ({"url": "http://example.com/hook"}, "url"),
    ({"url": "ftp://example.com/hook"}, "url"),
    ({"url": "https://10.0.0.1/hook"}, "url"),
    ({"url": "https://127.0.0.1/hook"}, "url"),
    ({"url": "https://[::1]/hook"}, "url"),
    ({"url": "https://169.254.169.254/latest/meta-data"}, "url"),
    ({"url": "https://localhost/hook"}, "url"),
    ({"url": "https://2130706433/hook"}, "url"),
    ({"url": "https://[::ffff:10.0.0.1]/hook"}, "url"),
    ({"url": "https://user:pass@example.com/hook"}, "url"),
    ({"url": "https://exa mple.com/hook"}, "url"),
    ({"url": "https://example.com/hook#frag"}, "url"),
    ({"url": ""}, "url"),
    ({"url": 123}, "url"),
    ({"url": None}, "url"),
    ({"url": ["https://example.com"]}, "url"),
    ({}, "url"),
    ({"url": HOOK, "events": []}, "events"),
    ({"url": HOOK, "events": ["run.exploded"]}, "events.0"),
    ({"url": HOOK, "events": ["webhook.test"]}, "events.0"),
    ({"url": HOOK, "events": "run.completed"}, "events"),
    ({"url": HOOK, "events": [1]}, "events.0"),
    ({"url": HOOK, "events": ["run.completed"] * 50}, "events"),
    ({"url": HOOK, "enabled": "true"}, "enabled"),
    ({"url": HOOK, "enabled": 1}, "enabled"),
    ({"url": HOOK, "enabled": None}, "enabled"),
    ({"url": HOOK, "description": 5}, "description"),
    ({"url": HOOK, "description": "d" * 501}, "description"),
    ({"url": HOOK, "secret": "whsec_mine"}, "secret"),
    ({"url": HOOK, "caller": "USER#someone_else"}, "caller"),
])
def test_a_bad_webhook_is_refused_naming_the_field(client: FlaskClient, key: str,
                                                   db: ConnectionPool, body: dict[str, Any],
                                                   field: str) -> None:
    assert_refused(client.post("/v1/webhooks", json=body, headers=auth(key)), field)
    assert sql(db, "SELECT count(*) AS n FROM webhook_endpoints") == [{"n": 0}]


def test_a_body_that_is_not_a_json_object_is_refused(client: FlaskClient, key: str) -> None:
    for data, status in ((b"[]", 400), (b"{", 400), (b"", 400), (b'"x"', 400)):
        answer = client.post("/v1/webhooks", data=data, content_type="application/json",
                             headers=auth(key))
        assert answer.status_code == status and answer.get_json()["code"] == status
    form = client.post("/v1/webhooks", data={"url": HOOK}, headers=auth(key))
    assert form.status_code == 415
    assert client.post("/v1/webhooks", json={"url": HOOK}).status_code == 401


def test_insecure_urls_are_let_in_only_when_allowed(insecure_client: FlaskClient,
                                                    key: str) -> None:
    for url in ("http://127.0.0.1:9/hook", "https://10.0.0.1/x", "http://localhost:8080/"):
        assert create(insecure_client, key, url=url)["url"] == url
    # Still never a multicast group or the unspecified address, nor another scheme.
    for url in ("http://0.0.0.0/", "http://224.0.0.1/", "file:///etc/passwd"):
        assert_refused(insecure_client.post("/v1/webhooks", json={"url": url},
                                            headers=auth(key)), "url")


def test_a_workspace_has_at_most_its_cap_of_webhooks(client: FlaskClient, key: str,
                                                     other_key: str) -> None:
    for _ in range(20):
        create(client, key)
    refused = client.post("/v1/webhooks", json={"url": HOOK}, headers=auth(key))
    assert refused.status_code == 409
    assert refused.get_json()["errorCode"] == "WEBHOOK_LIMIT_REACHED"
    assert "20" in refused.get_json()["message"]
    create(client, other_key)  # the cap is per workspace
    first = client.get("/v1/webhooks?limit=1", headers=auth(key)).get_json()["items"][0]
    assert client.delete(f"/v1/webhooks/{first['webhookId']}",
                         headers=auth(key)).status_code == 200
    create(client, key)  # room again


def test_concurrent_makers_never_pass_the_cap(settings: Settings, db: ConnectionPool,
                                              key: str) -> None:
    app = app_with(settings, max_webhooks_per_workspace=5)
    statuses: list[int] = []
    barrier = threading.Barrier(12)

    def make() -> None:
        barrier.wait()
        answer = app.test_client().post("/v1/webhooks", json={"url": HOOK},
                                        headers=auth(key))
        statuses.append(answer.status_code)

    try:
        threads = [threading.Thread(target=make) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        app.extensions["monid"].close()
    assert sorted(statuses) == [201] * 5 + [409] * 7
    assert sql(db, "SELECT count(*) AS n FROM webhook_endpoints") == [{"n": 5}]


def test_a_webhook_is_changed_field_by_field(client: FlaskClient, key: str,
                                             db: ConnectionPool) -> None:
    made = create(client, key, events=["run.failed"], description="first")
    url = f"/v1/webhooks/{made['webhookId']}"
    changed = client.patch(url, json={"description": None}, headers=auth(key)).get_json()
    assert (changed["description"], changed["events"], changed["url"]) == (
        None, ["run.failed"], HOOK)
    assert changed["updatedAt"] >= made["updatedAt"]
    changed = client.patch(url, json={"events": None, "url": "https://example.org/h?a=1"},
                           headers=auth(key)).get_json()
    assert (changed["events"], changed["url"]) == (None, "https://example.org/h?a=1")
    # A webhook the engine switched off (a 410) says why; switching it on forgets it.
    sql(db, "UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'the receiver"
            " answered 410 Gone' WHERE id = %s", made["webhookId"])
    off = client.get(url, headers=auth(key)).get_json()
    assert (off["enabled"], off["disabledReason"]) == (False, "the receiver answered 410 Gone")
    on = client.patch(url, json={"enabled": True}, headers=auth(key)).get_json()
    assert (on["enabled"], on["disabledReason"]) == (True, None)
    # The secret is untouched by changes.
    assert secrets_of(db, CALLER, made["webhookId"]) == [made["secret"]]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "body"), ({"url": "http://example.com"}, "url"), ({"url": None}, "url"),
    ({"events": []}, "events"), ({"events": ["nope"]}, "events.0"),
    ({"enabled": "yes"}, "enabled"), ({"enabled": None}, "enabled"),
    ({"secret": "whsec_x"}, "secret"), ({"webhookId": "01JH0WEBH00K0000000000000A"}, "webhookId"),
])
def test_a_bad_change_is_refused_and_changes_nothing(client: FlaskClient, key: str,
                                                     body: dict[str, Any], field: str) -> None:
    made = create(client, key)
    url = f"/v1/webhooks/{made['webhookId']}"
    assert_refused(client.patch(url, json=body, headers=auth(key)), field)
    got = client.get(url, headers=auth(key)).get_json()
    assert got == {k: v for k, v in made.items() if k != "secret"}


def test_deleting_a_webhook_takes_its_secrets_and_deliveries(client: FlaskClient, key: str,
                                                             db: ConnectionPool) -> None:
    made = create(client, key)
    url = f"/v1/webhooks/{made['webhookId']}"
    tested = client.post(f"{url}/test", headers=auth(key)).get_json()
    deleted = client.delete(url, headers=auth(key))
    assert deleted.status_code == 200
    assert deleted.get_json()["webhookId"] == made["webhookId"]
    assert client.get(url, headers=auth(key)).status_code == 404
    assert client.delete(url, headers=auth(key)).status_code == 404
    assert secrets_of(db, CALLER, made["webhookId"]) == []
    assert sql(db, "SELECT id FROM webhook_deliveries WHERE id = %s",
               tested["deliveryId"]) == []
    assert client.post(f"/v1/deliveries/{tested['deliveryId']}/redeliver",
                       headers=auth(key)).status_code == 404


WEBHOOK_ROUTES = [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"),
                  ("POST", "/secret/rotate"), ("GET", "/deliveries")]


@pytest.mark.parametrize(("method", "tail"), WEBHOOK_ROUTES)
def test_another_workspaces_webhook_is_not_found(client: FlaskClient, key: str,
                                                 other_key: str, db: ConnectionPool,
                                                 method: str, tail: str) -> None:
    theirs = create(client, other_key)
    answer = client.open(f"/v1/webhooks/{theirs['webhookId']}{tail}", method=method,
                         json={"enabled": False} if method == "PATCH" else None,
                         headers=auth(key))
    assert answer.status_code == 404
    assert answer.get_json() == {"code": 404, "errorCode": "NOT_FOUND",
                                 "message": f"no webhook {theirs['webhookId']!r}"}
    # Nothing of theirs changed.
    assert secrets_of(db, f"USER#{OTHER}", theirs["webhookId"]) == [theirs["secret"]]
    assert sql(db, "SELECT enabled FROM webhook_endpoints") == [{"enabled": True}]
    assert sql(db, "SELECT count(*) AS n FROM webhook_deliveries") == [{"n": 0}]


@pytest.mark.parametrize("webhook_id", [
    "nope", "01JH0WEBH00K0000000000000a", "0" * 27, "I" * 26, "x" * 3000, "%00", "a%2Fb",
    "01JH0WEBH00K0000000000000A'--", "01JH0WEBH00K0000000000000A",
])
@pytest.mark.parametrize(("method", "tail"), WEBHOOK_ROUTES)
def test_a_malformed_or_unknown_webhook_id_is_not_found(client: FlaskClient, key: str,
                                                        webhook_id: str, method: str,
                                                        tail: str) -> None:
    answer = client.open(f"/v1/webhooks/{webhook_id}{tail}", method=method,
                         json={"enabled": False} if method == "PATCH" else None,
                         headers=auth(key))
    assert answer.status_code == 404, answer.get_json()
    assert answer.get_json()["errorCode"] == "NOT_FOUND"


# --- test events ----------------------------------------------------------------------


def test_a_test_event_is_one_pending_delivery_and_wakes_the_senders(
        client: FlaskClient, key: str, db: ConnectionPool, settings: Settings) -> None:
    made = create(client, key, enabled=False)  # a webhook switched off may be tested too
    with connect(settings.database_url, autocommit=True) as listener:
        listen(listener, CHANNEL)
        answer = client.post(f"/v1/webhooks/{made['webhookId']}/test", headers=auth(key))
        notified = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert answer.status_code == 202
    delivery = answer.get_json()
    assert ULID.match(delivery["deliveryId"]) and ULID.match(delivery["eventId"])
    assert notified == [delivery["eventId"]]
    assert (delivery["eventType"], delivery["runId"], delivery["webhookId"], delivery["url"],
            delivery["status"], delivery["attemptCount"], delivery["attempts"]) == (
        "webhook.test", None, made["webhookId"], HOOK, "PENDING", 0, [])
    assert ISO_MS_UTC.match(delivery["nextAttemptAt"])
    [event] = sql(db, "SELECT run_id, caller, type, payload FROM webhook_events")
    assert (event["run_id"], event["caller"], event["type"]) == (None, CALLER, "webhook.test")
    assert event["payload"]["webhookId"] == made["webhookId"]
    assert event["payload"]["sample"]["status"] == "COMPLETED"
    assert len(str(event["payload"])) < 2000
    listed = client.get(f"/v1/webhooks/{made['webhookId']}/deliveries",
                        headers=auth(key)).get_json()
    assert listed == {"items": [delivery], "cursor": None}


# --- secrets --------------------------------------------------------------------------


def test_the_default_secret_is_made_once_and_signs_runs_webhooks(
        client: FlaskClient, key: str, other_key: str, db: ConnectionPool) -> None:
    first = client.get("/v1/webhooks/default/secret", headers=auth(key))
    assert first.status_code == 200
    secret = first.get_json()["key"]
    assert SECRET.match(secret) and first.get_json() == {"key": secret}
    assert client.get("/v1/webhooks/default/secret", headers=auth(key)).get_json() == {
        "key": secret}
    assert secrets_of(db, CALLER, None) == [secret]
    theirs = client.get("/v1/webhooks/default/secret", headers=auth(other_key)).get_json()
    assert theirs["key"] != secret


def test_rotating_the_default_secret_keeps_the_old_one_signing_for_the_grace(
        client: FlaskClient, key: str, db: ConnectionPool) -> None:
    old = client.get("/v1/webhooks/default/secret", headers=auth(key)).get_json()["key"]
    rotated = client.post("/v1/webhooks/default/secret/rotate", headers=auth(key))
    assert rotated.status_code == 200
    new = rotated.get_json()
    assert SECRET.match(new["key"]) and new["key"] != old and new["graceSeconds"] == 86400
    assert client.get("/v1/webhooks/default/secret", headers=auth(key)).get_json() == {
        "key": new["key"]}
    assert secrets_of(db, CALLER, None) == [new["key"], old]
    [expiring] = sql(db, "SELECT expires_at - now() AS left FROM webhook_secrets"
                         " WHERE secret = %s", old)
    assert timedelta(hours=23, minutes=59) < expiring["left"] <= timedelta(days=1)
    # Once the grace has passed, the old one signs no more.
    sql(db, "UPDATE webhook_secrets SET expires_at = now() - interval '1 second'"
            " WHERE secret = %s", old)
    assert secrets_of(db, CALLER, None) == [new["key"]]


def test_a_rotation_before_any_default_secret_makes_one(client: FlaskClient, key: str,
                                                        db: ConnectionPool) -> None:
    new = client.post("/v1/webhooks/default/secret/rotate", headers=auth(key)).get_json()
    assert secrets_of(db, CALLER, None) == [new["key"]]


def test_a_webhooks_own_secret_rotates_on_its_own(client: FlaskClient, key: str,
                                                  db: ConnectionPool) -> None:
    made = create(client, key)
    other = create(client, key)
    default = client.get("/v1/webhooks/default/secret", headers=auth(key)).get_json()["key"]
    rotated = client.post(f"/v1/webhooks/{made['webhookId']}/secret/rotate",
                          headers=auth(key)).get_json()
    assert secrets_of(db, CALLER, made["webhookId"]) == [rotated["key"], made["secret"]]
    assert secrets_of(db, CALLER, other["webhookId"]) == [other["secret"]]
    assert secrets_of(db, CALLER, None) == [default]


def test_rotations_in_a_loop_keep_a_few_old_secrets_signing(client: FlaskClient, key: str,
                                                            db: ConnectionPool) -> None:
    made = create(client, key)
    keys = [client.post(f"/v1/webhooks/{made['webhookId']}/secret/rotate",
                        headers=auth(key)).get_json()["key"] for _ in range(10)]
    signing = secrets_of(db, CALLER, made["webhookId"])
    assert signing == [keys[-1], keys[-2], keys[-3], keys[-4]]


def test_concurrent_rotations_leave_one_current_secret(settings: Settings, key: str,
                                                       db: ConnectionPool) -> None:
    app = app_with(settings)
    client = app.test_client()
    made = create(client, key)
    answers: list[Any] = []
    barrier = threading.Barrier(16)

    def rotate(path: str) -> None:
        barrier.wait()
        answers.append(app.test_client().post(path, headers=auth(key)))

    paths = ["/v1/webhooks/default/secret/rotate",
             f"/v1/webhooks/{made['webhookId']}/secret/rotate"] * 8
    try:
        threads = [threading.Thread(target=rotate, args=(path,)) for path in paths]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.status_code for a in answers] == [200] * 16
        current = sql(db, "SELECT endpoint_id, secret FROM webhook_secrets"
                          " WHERE expires_at IS NULL ORDER BY endpoint_id NULLS FIRST")
        assert [c["endpoint_id"] for c in current] == [None, made["webhookId"]]
        new_keys = {a.get_json()["key"] for a in answers}
        assert len(new_keys) == 16
        assert {c["secret"] for c in current} <= new_keys
        for endpoint_id in (None, made["webhookId"]):
            signing = secrets_of(db, CALLER, endpoint_id)
            assert 1 < len(signing) <= 4 and len(set(signing)) == len(signing)
        assert client.get("/v1/webhooks/default/secret", headers=auth(key)).get_json()[
            "key"] == current[0]["secret"]
    finally:
        app.extensions["monid"].close()


# --- a run's own webhook -------------------------------------------------------------


def test_a_run_asks_for_a_webhook_and_it_is_stored_with_the_run(
        client: FlaskClient, funded: str, db: ConnectionPool) -> None:
    accepted = client.post("/v1/run", json={**RUN, "webhook": {
        "url": "HTTPS://Example.com/Hook", "events": ["run.failed", "run.completed"]}},
        headers=auth(funded))
    assert accepted.status_code == 202
    run_id = accepted.get_json()["runId"]
    plain = client.post("/v1/run", json=RUN, headers=auth(funded)).get_json()["runId"]
    every = client.post("/v1/run", json={**RUN, "webhook": {"url": HOOK, "events": None}},
                        headers=auth(funded)).get_json()["runId"]
    stored = {r["id"]: r["webhook"] for r in sql(db, "SELECT id, webhook FROM runs")}
    assert stored == {
        run_id: {"url": "https://example.com/Hook", "events": ["run.completed", "run.failed"]},
        plain: None,
        every: {"url": HOOK},
    }
    # Its end writes one delivery to it, which the run's log shows.
    end_run(db, run_id)
    page = client.get(f"/v1/runs/{run_id}/deliveries", headers=auth(funded)).get_json()
    [delivery] = page["items"]
    assert page["cursor"] is None
    assert (delivery["eventType"], delivery["runId"], delivery["webhookId"], delivery["url"],
            delivery["status"]) == ("run.completed", run_id, None, "https://example.com/Hook",
                                    "PENDING")
    assert client.get(f"/v1/runs/{plain}/deliveries", headers=auth(funded)).get_json() == {
        "items": [], "cursor": None}


@pytest.mark.parametrize(("webhook", "field"), [
    ({"url": "http://example.com/hook"}, "webhook.url"),
    ({"url": "https://192.168.1.1/hook"}, "webhook.url"),
    ({"url": "https://[fe80::1]/hook"}, "webhook.url"),
    ({"url": "x" * 5000}, "webhook.url"),
    ({"url": 5}, "webhook.url"),
    ({}, "webhook.url"),
    ({"url": HOOK, "events": []}, "webhook.events"),
    ({"url": HOOK, "events": ["run.started"]}, "webhook.events.0"),
    ({"url": HOOK, "events": "run.completed"}, "webhook.events"),
    ({"url": HOOK, "secret": "whsec_x"}, "webhook.secret"),
    ("https://example.com/hook", "webhook"),
    ([HOOK], "webhook"),
    (None, "webhook"),
])
def test_a_bad_run_webhook_is_refused_and_nothing_is_held(
        client: FlaskClient, funded: str, db: ConnectionPool, webhook: Any,
        field: str) -> None:
    assert_refused(client.post("/v1/run", json={**RUN, "webhook": webhook},
                               headers=auth(funded)), field)
    assert sql(db, "SELECT count(*) AS n FROM runs") == [{"n": 0}]
    assert client.get("/v1/wallet/balance", headers=auth(funded)).get_json()["held"][
        "value"] == 0


def test_an_idempotent_start_counts_the_webhook_as_part_of_the_body(
        client: FlaskClient, funded: str) -> None:
    body = {**RUN, "webhook": {"url": HOOK}}
    first = client.post("/v1/run", json=body, headers={**auth(funded), "Idempotency-Key": "k1"})
    again = client.post("/v1/run", json=body, headers={**auth(funded), "Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["runId"] == first.get_json()["runId"]
    # The same URL written another way is the same request.
    same = client.post("/v1/run", json={**RUN, "webhook": {"url": "https://EXAMPLE.com/hooks/monid"}},
                       headers={**auth(funded), "Idempotency-Key": "k1"})
    assert same.status_code == 202 and same.get_json()["runId"] == first.get_json()["runId"]
    for other in ({**RUN, "webhook": {"url": HOOK + "2"}},
                  {**RUN, "webhook": {"url": HOOK, "events": ["run.failed"]}}, RUN):
        reused = client.post("/v1/run", json=other,
                             headers={**auth(funded), "Idempotency-Key": "k1"})
        assert reused.status_code == 422, other
    # Without a webhook, a key's request is kept as it always was.
    assert request_hash("demo", "/echo", {"a": 1}) == request_hash("demo", "/echo", {"a": 1},
                                                                   None)


def test_a_blocked_run_with_a_webhook_is_delivered_at_once(
        client: FlaskClient, funded: str, db: ConnectionPool, settings: Settings) -> None:
    controls.create_run_cap(db, CALLER, limit_micros=1000)  # below the run's 3000
    standing = create(client, funded, events=["run.blocked"])
    create(client, funded, events=["run.completed"])  # does not want it
    with connect(settings.database_url, autocommit=True) as listener:
        listen(listener, CHANNEL)
        blocked = client.post("/v1/run", json={**RUN, "webhook": {"url": HOOK + "/own"}},
                              headers=auth(funded))
        notified = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert blocked.status_code == 200 and blocked.get_json()["status"] == "BLOCKED"
    run_id = blocked.get_json()["runId"]
    page = client.get(f"/v1/runs/{run_id}/deliveries", headers=auth(funded)).get_json()
    assert sorted((d["webhookId"] or "", d["url"], d["eventType"], d["status"])
                  for d in page["items"]) == [
        ("", HOOK + "/own", "run.blocked", "PENDING"),
        (standing["webhookId"], HOOK, "run.blocked", "PENDING")]
    assert notified == [page["items"][0]["eventId"]]
    with transaction(db) as conn:
        [event] = webhooks_store.list_run_webhook_events(conn, run_id)
    assert event.payload["status"] == "BLOCKED"


def test_the_mcp_tool_passes_a_webhook_on(app: Flask, funded: str, db: ConnectionPool) -> None:
    with transaction(db) as conn:
        [row] = conn.execute("SELECT id FROM api_keys").fetchall()
    tools = McpTools(app, app.extensions["monid"])
    caller = Caller(caller=CALLER, api_key_id=row["id"])
    made = tools._call(BY_NAME["monid_run"], caller, {**RUN, "webhook": {"url": HOOK}},
                       "test-request")
    assert not made.is_error, made.content
    refused = tools._call(BY_NAME["monid_run"], caller,
                          {**RUN, "webhook": {"url": "http://example.com"}}, "test-request")
    assert refused.is_error
    assert refused.structured_content["errors"] == {"webhook.url": ["a webhook URL is https"]}
    assert sql(db, "SELECT webhook FROM runs") == [{"webhook": {"url": HOOK}}]
    app.extensions["monid.mcp"].close()


# --- the delivery log and redelivery -----------------------------------------------


def _try(pool: ConnectionPool, delivery_id: str, *, status_code: int | None, error: str | None,
         final: str | None = None) -> None:
    """One try written as a sender writes it (the engine is not under test here)."""
    sql(pool, "INSERT INTO webhook_delivery_attempts (delivery_id, status_code, duration_ms,"
              " response_head, error, next_retry_at) VALUES (%s, %s, 12, %s, %s,"
              " CASE WHEN %s::text IS NULL THEN now() + interval '5 seconds' END)",
        delivery_id, status_code, "<html>oops</html>" if status_code else None, error, final)
    sql(pool, "UPDATE webhook_deliveries SET attempt_count = attempt_count + 1,"
              " last_status_code = %s, last_error = %s,"
              " status = coalesce(%s, status),"
              " next_attempt_at = CASE WHEN %s::text IS NULL THEN now() + interval '5 seconds'"
              " END, lease_until = now() + interval '1 minute' WHERE id = %s",
        status_code, error, final, final, delivery_id)


def _run_with_a_delivery(client: FlaskClient, key: str, db: ConnectionPool) -> tuple[str, str]:
    run_id = client.post("/v1/run", json={**RUN, "webhook": {"url": HOOK}},
                         headers=auth(key)).get_json()["runId"]
    end_run(db, run_id, "FAILED")
    [delivery] = sql(db, "SELECT id FROM webhook_deliveries")
    return run_id, delivery["id"]


def test_the_log_shows_every_try_and_a_failed_delivery_is_sent_again(
        client: FlaskClient, funded: str, db: ConnectionPool, settings: Settings) -> None:
    run_id, delivery_id = _run_with_a_delivery(client, funded, db)
    _try(db, delivery_id, status_code=500, error=None)
    _try(db, delivery_id, status_code=None, error="timed out after 10 s", final="FAILED")
    page = client.get(f"/v1/runs/{run_id}/deliveries", headers=auth(funded)).get_json()
    [delivery] = page["items"]
    assert (delivery["deliveryId"], delivery["status"], delivery["attemptCount"],
            delivery["nextAttemptAt"], delivery["eventType"]) == (
        delivery_id, "FAILED", 2, None, "run.failed")
    first, second = delivery["attempts"]
    assert set(first) == {"attemptedAt", "statusCode", "durationMs", "responseHead", "error",
                          "nextRetryAt"}
    assert (first["statusCode"], first["durationMs"], first["responseHead"],
            first["error"]) == (500, 12, "<html>oops</html>", None)
    assert ISO_MS_UTC.match(first["attemptedAt"]) and ISO_MS_UTC.match(first["nextRetryAt"])
    assert (second["statusCode"], second["error"], second["nextRetryAt"]) == (
        None, "timed out after 10 s", None)

    with connect(settings.database_url, autocommit=True) as listener:
        listen(listener, CHANNEL)
        answer = client.post(f"/v1/deliveries/{delivery_id}/redeliver", headers=auth(funded))
        notified = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert answer.status_code == 202
    again = answer.get_json()
    assert (again["deliveryId"], again["eventId"], again["status"], again["attemptCount"]) == (
        delivery_id, delivery["eventId"], "PENDING", 2)  # the same event: the same webhook-id
    assert notified == [delivery["eventId"]]
    [row] = sql(db, "SELECT next_attempt_at <= now() AS due, lease_until FROM"
                    " webhook_deliveries")
    assert row == {"due": True, "lease_until": None}
    assert len(again["attempts"]) == 2  # the log is kept

    pending = client.post(f"/v1/deliveries/{delivery_id}/redeliver", headers=auth(funded))
    assert pending.status_code == 409
    assert pending.get_json()["errorCode"] == "DELIVERY_PENDING"


def test_a_delivered_delivery_can_be_sent_again(client: FlaskClient, funded: str,
                                                db: ConnectionPool) -> None:
    _, delivery_id = _run_with_a_delivery(client, funded, db)
    _try(db, delivery_id, status_code=204, error=None, final="DELIVERED")
    answer = client.post(f"/v1/deliveries/{delivery_id}/redeliver", headers=auth(funded))
    assert answer.status_code == 202 and answer.get_json()["status"] == "PENDING"


@pytest.mark.parametrize("delivery_id", ["nope", "x" * 3000, "01JH0DE1VERY00000000000000",
                                         "%00"])
def test_an_unknown_delivery_is_not_found(client: FlaskClient, key: str,
                                          delivery_id: str) -> None:
    answer = client.post(f"/v1/deliveries/{delivery_id}/redeliver", headers=auth(key))
    assert answer.status_code == 404 and answer.get_json()["errorCode"] == "NOT_FOUND"


def test_another_workspaces_deliveries_are_not_found(client: FlaskClient, funded: str,
                                                     other_key: str,
                                                     db: ConnectionPool) -> None:
    run_id, delivery_id = _run_with_a_delivery(client, funded, db)
    _try(db, delivery_id, status_code=500, error=None, final="FAILED")
    answer = client.post(f"/v1/deliveries/{delivery_id}/redeliver", headers=auth(other_key))
    assert answer.status_code == 404
    assert answer.get_json()["message"] == f"no delivery {delivery_id!r}"
    assert sql(db, "SELECT status FROM webhook_deliveries") == [{"status": "FAILED"}]
    theirs = client.get(f"/v1/runs/{run_id}/deliveries", headers=auth(other_key))
    assert theirs.status_code == 404 and theirs.get_json()["errorCode"] == "NOT_FOUND"
    for run in ("nope", "0" * 26, "x" * 3000):
        assert client.get(f"/v1/runs/{run}/deliveries",
                          headers=auth(funded)).status_code == 404


def test_a_webhooks_deliveries_come_in_pages_newest_first(client: FlaskClient, key: str,
                                                          other_key: str) -> None:
    made = create(client, key)
    url = f"/v1/webhooks/{made['webhookId']}"
    made_ids = [client.post(f"{url}/test", headers=auth(key)).get_json()["deliveryId"]
                for _ in range(5)]
    # Another workspace's deliveries never show.
    theirs = create(client, other_key)
    client.post(f"/v1/webhooks/{theirs['webhookId']}/test", headers=auth(other_key))
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{url}/deliveries", query_string=query, headers=auth(key)).get_json()
        seen += [d["deliveryId"] for d in page["items"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == made_ids[::-1]
    for query in ({"limit": 0}, {"limit": 101}, {"cursor": "%%%"}, {"status": "FAILED"}):
        assert client.get(f"{url}/deliveries", query_string=query,
                          headers=auth(key)).status_code == 400, query


def test_a_delivery_shows_only_its_last_tries(client: FlaskClient, funded: str,
                                              db: ConnectionPool) -> None:
    run_id, delivery_id = _run_with_a_delivery(client, funded, db)
    sql(db, "INSERT INTO webhook_delivery_attempts (delivery_id, status_code, duration_ms)"
            " SELECT %s, 500 + n %% 2, n FROM generate_series(1, 120) n", delivery_id)
    [delivery] = client.get(f"/v1/runs/{run_id}/deliveries",
                            headers=auth(funded)).get_json()["items"]
    assert [a["durationMs"] for a in delivery["attempts"]] == list(range(71, 121))


def test_a_long_log_is_read_a_page_at_a_time(client: FlaskClient, key: str,
                                             db: ConnectionPool) -> None:
    made = create(client, key)
    url = f"/v1/webhooks/{made['webhookId']}"
    sql(db, "WITH e AS (INSERT INTO webhook_events (caller, type, payload)"
            " SELECT %s, 'webhook.test', '{}'::jsonb FROM generate_series(1, 2000)"
            " RETURNING id)"
            " INSERT INTO webhook_deliveries (event_id, endpoint_id, caller, url)"
            " SELECT id, %s, %s, %s FROM e", CALLER, made["webhookId"], CALLER, HOOK)
    page = client.get(f"{url}/deliveries?limit=100", headers=auth(key)).get_json()
    assert len(page["items"]) == 100 and page["cursor"]
    rest = client.get(f"{url}/deliveries?limit=100&cursor={page['cursor']}",
                      headers=auth(key)).get_json()
    assert len(rest["items"]) == 100 and rest["items"][0]["deliveryId"] < page["items"][-1][
        "deliveryId"]
    assert datetime.now(UTC) - datetime.fromisoformat(
        page["items"][0]["createdAt"].replace("Z", "+00:00")) < timedelta(minutes=5)

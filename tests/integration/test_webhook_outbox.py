"""The webhook outbox: a run that asked for a webhook writes its end's event in the
same transaction as the end (a trigger on runs), exactly once; a run that did not
writes none; an end rolled back leaves none."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import transaction
from shared.store import webhooks
from tests.helpers import insert_demo_run

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
ISO_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ask_for_webhook(pool: ConnectionPool, run_id: str, webhook: dict[str, Any]) -> None:
    """What the accept will store (nothing sets the column yet)."""
    with transaction(pool) as conn:
        conn.execute("UPDATE runs SET webhook = %s WHERE id = %s", (Jsonb(webhook), run_id))


def claim(pool: ConnectionPool, run_id: str) -> store.Claim:
    with transaction(pool) as conn:
        claimed = store.claim_run(conn, run_id, worker="test-worker", lease_seconds=60)
    assert claimed is not None
    return claimed


def end(pool: ConnectionPool, run_id: str, status: str = "COMPLETED", **fields: Any) -> None:
    claimed = claim(pool, run_id)
    with transaction(pool) as conn:
        ended = store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status=status,
                              **fields)
    assert ended is not None


def events(pool: ConnectionPool, run_id: str) -> list[webhooks.WebhookEvent]:
    with transaction(pool) as conn:
        return webhooks.list_run_webhook_events(conn, run_id)


def ulid_millis(ulid: str) -> int:
    value = 0
    for char in ulid[:10]:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_a_run_with_a_webhook_writes_one_event_with_its_summary(db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {"q": "x" * 50_000})
    ask_for_webhook(db, run_id, {"url": "https://example.com/hook"})
    end(db, run_id, output=[{"big": "y" * 50_000}, {"n": 2}], result_count=2,
        provider_response={"httpStatus": 200}, cost_micros=3000)

    [event] = events(db, run_id)
    assert ULID.match(event.id)
    assert abs(ulid_millis(event.id) - datetime.now(UTC).timestamp() * 1000) < 60_000
    assert (event.run_id, event.caller, event.type) == (run_id, "USER#u", "run.completed")
    payload = event.payload
    assert set(payload) == {"runId", "status", "provider", "endpoint", "cost", "resultCount",
                            "error", "createdAt", "completedAt", "itemsUrl"}
    assert payload["runId"] == run_id
    assert payload["status"] == "COMPLETED"
    assert (payload["provider"], payload["endpoint"]) == ("demo", "/echo")
    assert payload["cost"] == {"value": 0.003, "currency": "USD"}
    assert payload["resultCount"] == 2
    assert payload["error"] is None
    assert payload["itemsUrl"] == f"/v1/runs/{run_id}/items"
    assert ISO_MS_UTC.match(payload["createdAt"]) and ISO_MS_UTC.match(payload["completedAt"])
    # never the input or the output
    assert len(str(payload)) < 1000


def test_the_event_is_named_from_the_status_and_carries_the_error_code(
        db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    ask_for_webhook(db, run_id, {"url": "https://example.com/hook"})
    end(db, run_id, status="FAILED", cost_micros=0,
        error={"source": "provider", "code": "BAD_INPUT", "message": "m" * 20_000})
    [event] = events(db, run_id)
    assert event.type == "run.failed"
    assert event.payload["error"] == {"source": "provider", "code": "BAD_INPUT"}
    assert event.payload["cost"] == {"value": 0, "currency": "USD"}


def test_a_run_without_a_webhook_writes_no_event(db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    end(db, run_id, output=[], result_count=0, cost_micros=0)
    assert events(db, run_id) == []


@pytest.mark.parametrize(("wanted", "written"), [
    (["run.failed"], 0), (["run.completed", "run.failed"], 1), ([], 0),
])
def test_only_the_events_the_webhook_asked_for_are_written(
        db: ConnectionPool, wanted: list[str], written: int) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    ask_for_webhook(db, run_id, {"url": "https://example.com/hook", "events": wanted})
    end(db, run_id, output=[], result_count=0, cost_micros=0)
    assert len(events(db, run_id)) == written


def test_an_end_rolled_back_writes_no_event(db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    ask_for_webhook(db, run_id, {"url": "https://example.com/hook"})
    claimed = claim(db, run_id)

    class Crash(Exception):
        pass

    with pytest.raises(Crash), transaction(db) as conn:
        assert store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status="COMPLETED",
                             output=[], result_count=0, cost_micros=0)
        assert len(webhooks.list_run_webhook_events(conn, run_id)) == 1  # seen inside
        raise Crash
    assert events(db, run_id) == []
    with transaction(db) as conn:
        assert store.run_status(conn, run_id, "USER#u") == "RUNNING"

    # The end written again, for real, writes its event once.
    with transaction(db) as conn:
        assert store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status="COMPLETED",
                             output=[], result_count=0, cost_micros=0)
    assert len(events(db, run_id)) == 1


def test_a_second_end_writes_nothing_more(db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    ask_for_webhook(db, run_id, {"url": "https://example.com/hook"})
    claimed = claim(db, run_id)
    for _ in range(2):
        with transaction(db) as conn:
            store.end_run(conn, claimed, store.AttemptEnd("OK", 200), status="COMPLETED",
                          output=[], result_count=0, cost_micros=0)
    assert len(events(db, run_id)) == 1


def test_events_are_listed_in_the_order_they_were_written(db: ConnectionPool) -> None:
    run_ids = [insert_demo_run(db, "/echo", {"n": n}) for n in range(3)]
    for run_id in run_ids:
        ask_for_webhook(db, run_id, {"url": "https://example.com/hook"})
        end(db, run_id, output=[], result_count=0, cost_micros=0)
    with transaction(db) as conn:
        listed = webhooks.list_webhook_events_after(conn)
        assert [e.run_id for e in listed] == run_ids
        assert [e.run_id for e in webhooks.list_webhook_events_after(
            conn, listed[0].id, limit=1)] == run_ids[1:2]


def deliveries(pool: ConnectionPool, run_id: str) -> list[tuple[Any, ...]]:
    with transaction(pool) as conn:
        rows = conn.execute(
            "SELECT d.endpoint_id, d.url, d.status, d.attempt_count FROM webhook_deliveries d"
            " JOIN webhook_events e ON e.id = d.event_id WHERE e.run_id = %s"
            " ORDER BY d.endpoint_id NULLS FIRST", (run_id,)).fetchall()
    return [tuple(r.values()) for r in rows]


def standing(pool: ConnectionPool, caller: str, url: str, events: list[str] | None = None,
             enabled: bool = True) -> str:
    with transaction(pool) as conn:
        row = conn.execute(
            "INSERT INTO webhook_endpoints (caller, url, events, enabled) VALUES (%s, %s, %s,"
            " %s) RETURNING id", (caller, url, events, enabled)).fetchone()
    assert row is not None
    return str(row["id"])


def test_the_end_writes_one_pending_delivery_for_the_runs_own_webhook(
        db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    ask_for_webhook(db, run_id, {"url": "https://example.com/own"})
    end(db, run_id)
    assert deliveries(db, run_id) == [(None, "https://example.com/own", "PENDING", 0)]


def test_standing_webhooks_of_the_caller_get_a_delivery_of_the_same_event(
        db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    with transaction(db) as conn:
        caller = conn.execute("SELECT caller FROM runs WHERE id = %s", (run_id,)).fetchone()
    assert caller is not None
    every = standing(db, caller["caller"], "https://example.com/every")
    failed_only = standing(db, caller["caller"], "https://example.com/failed", ["run.failed"])
    standing(db, caller["caller"], "https://example.com/off", enabled=False)
    standing(db, "USER#someone-else", "https://example.com/other")
    ask_for_webhook(db, run_id, {"url": "https://example.com/own"})
    end(db, run_id)
    assert deliveries(db, run_id) == [(None, "https://example.com/own", "PENDING", 0),
                                      (every, "https://example.com/every", "PENDING", 0)]
    assert len(events(db, run_id)) == 1
    assert failed_only


def test_a_standing_webhook_alone_makes_the_event(db: ConnectionPool) -> None:
    run_id = insert_demo_run(db, "/echo", {})
    with transaction(db) as conn:
        caller = conn.execute("SELECT caller FROM runs WHERE id = %s", (run_id,)).fetchone()
    assert caller is not None
    hook = standing(db, caller["caller"], "https://example.com/alone")
    end(db, run_id)
    assert deliveries(db, run_id) == [(hook, "https://example.com/alone", "PENDING", 0)]


def test_the_default_secret_is_made_once_and_signs(db: ConnectionPool) -> None:
    with transaction(db) as conn:
        first = webhooks.ensure_default_secret(conn, "USER#u")
        again = webhooks.ensure_default_secret(conn, "USER#u")
        other = webhooks.ensure_default_secret(conn, "USER#v")
        assert webhooks.signing_secrets(conn, "USER#u", None) == [first]
    assert first == again and first.startswith("whsec_") and other != first

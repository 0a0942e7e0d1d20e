"""What a delivery sends and what a try leads to: the body's bytes, the retry
schedule's jitter, and the next state after each kind of answer."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.webhooks.delivery import JITTER, event_body, next_state, retry_wait
from shared.webhooks.sender import TryResult

CREATED = datetime(2026, 12, 1, 21, 35, 15, 123456, tzinfo=UTC)
PAYLOAD = {"runId": "01JGXYZABCDEFGHJKMNPQRSTVW", "status": "COMPLETED",
           "cost": {"value": 0.003, "currency": "USD"}, "resultCount": 2, "error": None,
           "endpoint": "/échö", "itemsUrl": "/v1/runs/01JGXYZABCDEFGHJKMNPQRSTVW/items"}


def test_the_body_is_type_timestamp_and_data_in_compact_json() -> None:
    body = event_body("run.completed", CREATED, PAYLOAD)
    assert body.startswith(b'{"type":"run.completed","timestamp":"2026-12-01T21:35:15.123Z",'
                           b'"data":{"runId":')
    assert b": " not in body and b", " not in body
    assert json.loads(body) == {"type": "run.completed",
                                "timestamp": "2026-12-01T21:35:15.123Z", "data": PAYLOAD}
    assert "/échö".encode() in body  # UTF-8 as it is


def test_the_body_is_the_same_bytes_every_time() -> None:
    first = event_body("run.failed", CREATED, PAYLOAD)
    same_moment_elsewhere = CREATED.astimezone(timezone(timedelta(hours=-5)))
    again = event_body("run.failed", same_moment_elsewhere, json.loads(json.dumps(PAYLOAD)))
    assert first == again
    assert all(event_body("run.failed", CREATED, dict(PAYLOAD)) == first for _ in range(50))


@pytest.mark.parametrize("tries", [1, 2, 3, 8])
def test_each_wait_is_jittered_within_a_fifth_of_the_schedule(tries: int) -> None:
    schedule = (5, 30, 120, 600, 1800, 7200, 21600, 43200)
    rng = random.Random(tries)
    waits = [retry_wait(schedule, tries, rng) for _ in range(2000)]
    base = schedule[tries - 1]
    assert all(w is not None and base * (1 - JITTER) <= w <= base * (1 + JITTER)
               for w in waits)
    numbers = [w for w in waits if w is not None]
    # spread over the band, not stuck at one value
    assert min(numbers) < base * 0.85 and max(numbers) > base * 1.15
    assert abs(sum(numbers) / len(numbers) - base) < base * 0.02


def test_no_wait_once_the_schedule_is_spent() -> None:
    assert retry_wait((1, 2), 3) is None
    assert retry_wait((1, 2), 0) is None
    assert retry_wait((), 1) is None


def result(status: int | None, error: str | None = "x") -> TryResult:
    return TryResult(status, 12, None, error)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_is_delivered(status: int) -> None:
    assert next_state(result(status, None), 1, (5,)).status == "DELIVERED"
    assert next_state(result(status, None), 9, (5,)).status == "DELIVERED"


def test_a_410_fails_at_once_and_disables_the_webhook() -> None:
    after = next_state(result(410), 1, (5, 30))
    assert (after.status, after.retry_in, after.disable_endpoint) == ("FAILED", None, True)


@pytest.mark.parametrize("status", [None, 301, 302, 307, 400, 404, 429, 500, 503, 199, 600])
def test_anything_else_is_tried_again_on_the_schedule_then_failed(status: int | None) -> None:
    schedule = (10, 100)
    first = next_state(result(status), 1, schedule, random.Random(1))
    assert first.status == "PENDING" and first.retry_in is not None
    assert 8 <= first.retry_in <= 12 and not first.disable_endpoint
    second = next_state(result(status), 2, schedule, random.Random(1))
    assert second.status == "PENDING" and second.retry_in is not None
    assert 80 <= second.retry_in <= 120
    last = next_state(result(status), 3, schedule)
    assert (last.status, last.retry_in, last.disable_endpoint) == ("FAILED", None, False)

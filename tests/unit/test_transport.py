"""Retry-After parsing, status classification, answers over the size read, and the
items of an answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from worker.providers.base import MalformedAnswer, PermanentError, TransientError
from worker.providers.http import items_path
from worker.providers.transport import (
    RETRY_AFTER_CAP_SECONDS,
    Answer,
    parse_retry_after,
    raise_for_status,
)
from worker.results import result_items

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("header", "seconds"), [
    ("7", 7.0), ("0", 0.0), ("2.5", 2.5), (" 12 ", 12.0), ("-3", 0.0),
    ("999999", RETRY_AFTER_CAP_SECONDS),
    (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
    (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
])
def test_retry_after_in_seconds_or_as_an_http_date(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "Mon, 99 Foo 2026"])
def test_unreadable_retry_after_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def answer(status: int, body: bytes = b"{}", **headers: str) -> Answer:
    return Answer(status, httpx.Headers(headers), body)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_transient_statuses(status: int) -> None:
    with pytest.raises(TransientError) as caught:
        raise_for_status(answer(status, b'{"e": 1}', **{"retry-after": "3"}))
    assert caught.value.http_status == status
    assert caught.value.body == {"e": 1}
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 409, 422])
def test_other_non_2xx_statuses_are_permanent(status: int) -> None:
    with pytest.raises(PermanentError) as caught:
        raise_for_status(answer(status, b"not json"))
    assert caught.value.http_status == status
    assert caught.value.body == "not json"


def test_2xx_passes_and_garbage_is_a_malformed_answer() -> None:
    raise_for_status(answer(204, b""))
    with pytest.raises(MalformedAnswer):
        answer(200, b"<html>").json()


@pytest.mark.parametrize(("output", "path", "items"), [
    ({"results": [1, 2, 3]}, "results", [1, 2, 3]),
    ({"data": {"items": [1]}}, "data.items", [1]),
    ({"data": {}}, "data.items", []),
    ({"data": {"items": {"id": 1}}}, "data.items", [{"data": {"items": {"id": 1}}}]),
    ({"id": 1}, None, [{"id": 1}]),
    ([1, 2], None, [1, 2]),
    ([], "", []),
    (None, None, []),
    ("text", "results", []),
])
def test_the_items_of_an_answer(output: object, path: str | None, items: list[object]) -> None:
    assert result_items(output, items_path(path)) == items

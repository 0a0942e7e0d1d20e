"""What a followed provider job says of its progress, as the worker keeps it with the
provider state (`shared.progress`): counted once per different message, bounded,
cleaned, and never carried into another attempt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import progress
from shared.progress import MAX_COUNT, MAX_MESSAGE, Progress, clean_message, read, record

T0 = datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=UTC)
STATE = {"actorRunId": "abc", "gap": 2.0}


def checks(*messages: Any, attempt: int = 1) -> list[dict[str, Any]]:
    """The states kept after each check that reported these messages, in turn."""
    kept: list[dict[str, Any]] = []
    previous: Any = None
    for i, message in enumerate(messages):
        previous = record(previous, {**STATE, "gap": float(i)}, message, attempt=attempt,
                          now=T0 + timedelta(seconds=i))
        kept.append(previous)
    return kept


def test_a_message_is_counted_once_when_it_changes_and_kept_while_it_does_not() -> None:
    states = checks("Starting", "Starting", None, "Crawled 1 of 2", "Crawled 1 of 2",
                    "Starting")
    said = [read(s) for s in states]
    assert [(p.n, p.message) if p else None for p in said] == [
        (1, "Starting"), (1, "Starting"), (1, "Starting"), (2, "Crawled 1 of 2"),
        (2, "Crawled 1 of 2"), (3, "Starting")]
    # `at` is when the message was first seen, not the last check.
    assert [p.at for p in said if p] == [
        "2026-12-01T12:00:00.250Z", "2026-12-01T12:00:00.250Z", "2026-12-01T12:00:00.250Z",
        "2026-12-01T12:00:03.250Z", "2026-12-01T12:00:03.250Z", "2026-12-01T12:00:05.250Z"]
    # The adapter's own state is kept as it handed it back.
    assert {k: v for k, v in states[-1].items() if k != progress.KEY} == {**STATE,
                                                                         "gap": 5.0}


def test_a_job_that_says_nothing_keeps_no_progress() -> None:
    assert checks(None, "", "   ", 42, {"text": "x"}, ["x"]) == [
        {**STATE, "gap": float(i)} for i in range(6)]


def test_the_adapter_cannot_forge_the_progress_it_hands_back_in_its_state() -> None:
    forged = {**STATE, progress.KEY: {"attempt": 1, "n": 999, "message": "x", "at": "t"}}
    kept = record(None, forged, "real", attempt=1, now=T0)
    assert read(kept) == Progress(1, 1, "real", "2026-12-01T12:00:00.250Z")
    assert progress.KEY not in record(None, forged, None, attempt=1, now=T0)


def test_another_attempts_progress_is_not_carried_on() -> None:
    old = record(None, STATE, "attempt one", attempt=1, now=T0)
    assert read(record(old, STATE, None, attempt=2, now=T0)) is None
    assert read(record(old, STATE, "attempt one", attempt=2, now=T0)) == Progress(
        2, 1, "attempt one", "2026-12-01T12:00:00.250Z")


@pytest.mark.parametrize(("text", "kept"), [
    ("  Crawled 45 of 100 pages \n", "Crawled 45 of 100 pages"),
    ("line one\nline two\r\n\ttabbed", "line one\nline two\r\n\ttabbed"),
    ("nul\x00bell\x07esc\x1b[31mdel\x7f", "nul bell esc [31mdel"),
    ("lone \ud800 half", "lone   half"),
    ("émoji 🚀 and ünïcode", "émoji 🚀 and ünïcode"),
    ("\x00\x01", None),
])
def test_a_message_is_cleaned(text: str, kept: str | None) -> None:
    assert clean_message(text) == kept
    if kept is not None:
        kept.encode("utf-8")  # storable and sendable as UTF-8


def test_a_huge_message_is_cut_and_the_state_stays_small() -> None:
    huge = "x" * 10_000_000
    message = clean_message(huge)
    assert message is not None and len(message) == MAX_MESSAGE and message.endswith("…")
    kept = record(None, STATE, huge, attempt=1, now=T0)
    assert len(json.dumps(kept)) < MAX_MESSAGE + 200
    assert read(kept) is not None  # what is kept is read back
    # Two huge messages that differ only past the cut are one message.
    again = record(kept, STATE, huge + "y", attempt=1, now=T0)
    assert read(again) == read(kept)


def test_the_count_stops_at_what_an_event_id_can_hold() -> None:
    full = {**STATE, progress.KEY: {"attempt": 1, "n": MAX_COUNT, "message": "last",
                                    "at": "2026-12-01T12:00:00.250Z"}}
    kept = read(record(full, STATE, "one more", attempt=1, now=T0))
    assert kept is not None and (kept.n, kept.message) == (MAX_COUNT, "last")


@pytest.mark.parametrize("state", [
    None, "x", 3, [], {progress.KEY: None}, {progress.KEY: "text"},
    {progress.KEY: {"attempt": 1, "n": 1, "message": "m"}},
    {progress.KEY: {"attempt": 1, "n": 1.0, "message": "m", "at": "t"}},
    {progress.KEY: {"attempt": 0, "n": 1, "message": "m", "at": "t"}},
    {progress.KEY: {"attempt": 1, "n": 1, "message": "m", "at": "t" * 41}},
])
def test_a_state_without_progress_this_module_wrote_reads_as_none(state: Any) -> None:
    assert read(state) is None
    # ... and a new message starts the count again.
    assert read(record(state, STATE, "new", attempt=1, now=T0)) == Progress(
        1, 1, "new", "2026-12-01T12:00:00.250Z")

"""The events of a run, from its state alone: their IDs, what a stream owes after an ID,
and which IDs belong to a run (`shared.events`), with the progress its provider's job
reports (`shared.progress`)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.events import START, Position, consistent, events_after
from shared.store import Run

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def attempt(number: int, outcome: str | None = None) -> dict[str, Any]:
    return {"number": number, "startedAt": "2026-12-01T00:00:00.000Z",
            "endedAt": "2026-12-01T00:00:01.000Z" if outcome else None,
            "outcome": outcome, "httpStatus": None, "message": None, "nextAttemptAt": None}


def said(attempt: int, n: int, message: str = "working") -> dict[str, Any]:
    """Progress as the worker keeps it with the provider state."""
    return {"attempt": attempt, "n": n, "message": f"{message} {n}",
            "at": "2026-12-01T00:00:00.500Z"}


def run(status: str, *attempts: dict[str, Any], progress: Any = None) -> Run:
    return Run(id="01M8SRVNGRSF4XBS17EP07VH8S", caller="USER#u", provider="demo",
               provider_name="Demo", endpoint="/echo", status=status, result_count=None,
               provider_response=None, error=None, price_type="PER_CALL", price_micros=0,
               flat_fee_micros=None, cost_micros=None, attempt_count=len(attempts),
               max_attempts=3, next_attempt_at=None, deadline_at=NOW, created_at=NOW,
               started_at=NOW if attempts else None,
               completed_at=None if status in ("RUNNING", "STOPPING") else NOW,
               attempts=attempts, progress=progress)


def story(seen: Position, of: Run) -> list[tuple[str, str, Any]]:
    events, _ = events_after(seen, of)
    return [(e.id, e.kind, e.status or (e.attempt or {}).get("outcome")
             or (e.progress.message if e.progress else None)) for e in events]


def test_a_queued_run_has_said_only_that_it_runs() -> None:
    assert story(START, run("RUNNING")) == [("1.0.0", "status", "RUNNING")]
    assert story(Position(1, 0, 0), run("RUNNING")) == []


def test_a_run_that_retried_and_completed_from_the_beginning() -> None:
    done = run("COMPLETED", attempt(1, "TRANSIENT_ERROR"), attempt(2, "OK"))
    assert story(START, done) == [
        ("1.0.0", "status", "RUNNING"), ("1.1.1", "attempt", "TRANSIENT_ERROR"),
        ("1.2.1", "attempt", "OK"), ("3.2.1", "status", "COMPLETED"), ("4.2.1", "end", None)]


def test_every_way_through_a_run_ends_where_the_whole_story_ends() -> None:
    # The states a run passes through, one after the other: a stream that saw any of
    # them, then the next, then ... ends at the same place as one that saw only the last.
    states = [run("RUNNING"), run("RUNNING", attempt(1)),
              run("RUNNING", attempt(1, "TRANSIENT_ERROR")),
              run("RUNNING", attempt(1, "TRANSIENT_ERROR"), attempt(2)),
              run("STOPPING", attempt(1, "TRANSIENT_ERROR"), attempt(2)),
              run("STOPPED", attempt(1, "TRANSIENT_ERROR"), attempt(2, "STOPPED"))]
    whole = story(START, states[-1])
    for seen_states in itertools.chain.from_iterable(
            itertools.combinations(states, n) for n in range(1, len(states) + 1)):
        at, ids, said = START, [], set()
        for state in [*seen_states, states[-1]]:
            events, at = events_after(at, state)
            ids += [e.id for e in events]
            said |= {(e.kind, e.status or (e.attempt or {}).get("outcome")) for e in events}
        assert len(ids) == len(set(ids)), ids  # nothing twice
        assert ids[-1] == whole[-1][0] == "4.2.1"
        # Nothing missed: every step of the whole story was said (an attempt seen in
        # flight was said again when it ended).
        assert {(kind, what) for _, kind, what in whole} <= said


def test_a_stop_is_part_of_the_story_and_a_blocked_run_never_ran() -> None:
    assert [s for _, _, s in story(START, run("STOPPED"))] == [
        "RUNNING", "STOPPING", "STOPPED", None]
    assert story(START, run("BLOCKED")) == [("3.0.0", "status", "BLOCKED"),
                                            ("4.0.0", "end", None)]
    assert story(START, run("STOPPING", attempt(1))) == [
        ("1.0.0", "status", "RUNNING"), ("2.0.0", "status", "STOPPING"),
        ("2.1.0", "attempt", None)]


@pytest.mark.parametrize(("text", "parsed"), [
    ("1.0.0", Position(1, 0, 0)), (" 4.12.1 ", Position(4, 12, 1)),
    ("0.0.0", Position(0, 0, 0)), ("1.999999999.1", Position(1, 999999999, 1)),
    (None, None), ("", None), ("5.0.0", None), ("1.0.2", None), ("1.0", None),
    ("-1.0.0", None), ("1.1234567890.0", None), ("1.0.0\n", Position(1, 0, 0)),
    ("\u0661.0.0", None), ("1.0.0x", None), ("x" * 10_000, None),
    ("1.2.0.3", Position(1, 2, 0, 3)), ("2.2.0.999999999", Position(2, 2, 0, 999999999)),
    ("1.2.0.0", None), ("1.2.0.01", None), ("1.2.0.1234567890", None), ("1.2.0.", None),
    ("1.2.0.3.4", None), ("1.2.0.-1", None), ("1.2.0.x", None),
])
def test_an_event_id_is_read_strictly(text: str | None, parsed: Position | None) -> None:
    assert Position.parse(text) == parsed
    if parsed is not None:
        assert Position.parse(parsed.id) == parsed


@pytest.mark.parametrize(("seen", "of", "belongs"), [
    (Position(1, 0, 0), run("RUNNING"), True),
    (Position(2, 0, 0), run("RUNNING"), False),  # a stop the run never had
    (Position(3, 0, 0), run("RUNNING"), False),  # an end it has not reached
    (Position(4, 1, 1), run("COMPLETED", attempt(1, "OK")), True),
    (Position(1, 2, 0), run("RUNNING", attempt(1)), False),  # an attempt not made
    (Position(1, 1, 1), run("RUNNING", attempt(1)), False),  # an attempt not ended
    (Position(1, 1, 0), run("RUNNING", attempt(1, "LOST")), True),  # seen in flight
    (Position(1, 0, 1), run("RUNNING", attempt(1)), False),  # attempt 0 cannot end
    (Position(2, 0, 0), run("COMPLETED"), True),  # behind: the rest is owed
    (Position(1, 1, 0, 2), run("RUNNING", attempt(1), progress=said(1, 2)), True),
    (Position(1, 1, 0, 1), run("RUNNING", attempt(1), progress=said(1, 2)), True),
    (Position(1, 1, 0, 3), run("RUNNING", attempt(1), progress=said(1, 2)), False),  # ahead
    (Position(1, 1, 0, 1), run("RUNNING", attempt(1)), False),  # no progress said
    (Position(1, 0, 0, 1), run("RUNNING", attempt(1), progress=said(1, 1)), False),
    (Position(1, 1, 1, 1), run("RUNNING", attempt(1, "LOST")), False),  # ended: none
    # Its attempt ended since (and its progress went with it): its end is owed.
    (Position(1, 1, 0, 4), run("RUNNING", attempt(1, "TRANSIENT_ERROR"), attempt(2)), True),
    (Position(4, 1, 0, 2), run("COMPLETED", attempt(1, "OK"), progress=said(1, 2)), True),
    # Another attempt's progress does not vouch for this one's.
    (Position(1, 2, 0, 1), run("RUNNING", attempt(1, "LOST"), attempt(2),
                               progress=said(1, 1)), False),
])
def test_an_id_belongs_to_a_run_only_if_the_run_got_that_far(seen: Position, of: Run,
                                                             belongs: bool) -> None:
    assert consistent(seen, of) is belongs


# --- progress ----------------------------------------------------------------------------


def test_progress_is_said_after_its_attempt_starts_and_once_per_message() -> None:
    first = run("RUNNING", attempt(1), progress=said(1, 1))
    assert story(START, first) == [("1.0.0", "status", "RUNNING"),
                                   ("1.1.0", "attempt", None),
                                   ("1.1.0.1", "progress", "working 1")]
    assert story(Position(1, 1, 0, 1), first) == []  # the same message: nothing new
    second = run("RUNNING", attempt(1), progress=said(1, 2))
    assert story(Position(1, 1, 0, 1), second) == [("1.1.0.2", "progress", "working 2")]
    # A client that was away sees the last message only.
    assert story(Position(1, 1, 0), second) == [("1.1.0.2", "progress", "working 2")]


def test_an_attempt_that_ends_says_no_more_progress_and_the_next_starts_again() -> None:
    ended = run("RUNNING", attempt(1, "TRANSIENT_ERROR"), progress=said(1, 3))
    assert story(Position(1, 1, 0, 2), ended) == [("1.1.1", "attempt", "TRANSIENT_ERROR")]
    retried = run("RUNNING", attempt(1, "TRANSIENT_ERROR"), attempt(2),
                  progress=said(2, 1, "again"))
    assert story(Position(1, 1, 0, 2), retried) == [
        ("1.1.1", "attempt", "TRANSIENT_ERROR"), ("1.2.0", "attempt", None),
        ("1.2.0.1", "progress", "again 1")]
    # Progress kept for an attempt that is not the one in flight is not said.
    stale = run("RUNNING", attempt(1, "TRANSIENT_ERROR"), attempt(2), progress=said(1, 5))
    assert [kind for _, kind, _ in story(START, stale)] == ["status", "attempt", "attempt"]
    done = run("COMPLETED", attempt(1, "OK"), progress=said(1, 2))
    assert [kind for _, kind, _ in story(START, done)] == ["status", "attempt", "status",
                                                           "end"]


def test_a_stop_after_progress_keeps_the_progress_in_the_id() -> None:
    stopping = run("STOPPING", attempt(1), progress=said(1, 2))
    assert story(Position(1, 1, 0, 2), stopping) == [("2.1.0.2", "status", "STOPPING")]
    assert consistent(Position(2, 1, 0, 2), stopping)


@pytest.mark.parametrize("kept", [
    None, "text", [], {}, {"attempt": 1, "n": 0, "message": "m", "at": "t"},
    {"attempt": 1, "n": True, "message": "m", "at": "t"},
    {"attempt": "1", "n": 1, "message": "m", "at": "t"},
    {"attempt": 1, "n": 1, "message": None, "at": "t"},
    {"attempt": 1, "n": 1, "message": "m" * 501, "at": "t"},
    {"attempt": 1, "n": 10**9, "message": "m", "at": "t"},
])
def test_progress_kept_in_a_shape_the_worker_never_writes_is_not_said(kept: Any) -> None:
    assert story(Position(1, 1, 0), run("RUNNING", attempt(1), progress=kept)) == []


def test_every_way_through_a_run_with_progress_says_each_message_once_in_order() -> None:
    states = [run("RUNNING"), run("RUNNING", attempt(1)),
              run("RUNNING", attempt(1), progress=said(1, 1)),
              run("RUNNING", attempt(1), progress=said(1, 2)),
              run("RUNNING", attempt(1, "TRANSIENT_ERROR"), progress=said(1, 2)),
              run("RUNNING", attempt(1, "TRANSIENT_ERROR"), attempt(2)),
              run("RUNNING", attempt(1, "TRANSIENT_ERROR"), attempt(2), progress=said(2, 1)),
              run("STOPPING", attempt(1, "TRANSIENT_ERROR"), attempt(2), progress=said(2, 1)),
              run("STOPPING", attempt(1, "TRANSIENT_ERROR"), attempt(2), progress=said(2, 2)),
              run("STOPPED", attempt(1, "TRANSIENT_ERROR"), attempt(2, "STOPPED"),
                  progress=said(2, 2))]
    for seen_states in itertools.chain.from_iterable(
            itertools.combinations(states, n) for n in range(1, len(states) + 1)):
        at, ids = START, []
        for state in [*seen_states, states[-1]]:
            assert consistent(at, state)
            events, at = events_after(at, state)
            ids += [e.id for e in events]
            # What a client reconnecting with the last ID sees: the same position.
            assert Position.parse(at.id) == at
        assert len(ids) == len(set(ids)), ids
        assert ids[-1] == "4.2.1"
        keys = [tuple(int(p) for p in (i + ".0").split(".")[:4]) for i in ids]
        assert all((a[0] <= b[0] and a[1:] < b[1:]) or (a[0] < b[0] and a[1:] <= b[1:])
                   for a, b in itertools.pairwise(keys)), ids

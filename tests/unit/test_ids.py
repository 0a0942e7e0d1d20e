"""Run IDs (monotonic ULIDs) and request IDs."""

from __future__ import annotations

import itertools
import os
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from ulid import ULID

from shared import ids
from shared.ids import is_run_id, new_run_id, sane_request_id

CROCKFORD = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")


def test_new_run_id_is_a_crockford_base32_ulid() -> None:
    run_id = new_run_id()
    assert len(run_id) == 26
    assert CROCKFORD.match(run_id)
    assert not set(run_id) & set("ILOU")
    assert is_run_id(run_id)
    assert str(ULID.from_str(run_id)) == run_id


def test_new_run_id_carries_the_current_time() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    made = ULID.from_str(new_run_id()).datetime
    after = datetime.now(UTC) + timedelta(milliseconds=5)
    assert before <= made <= after


def test_ten_thousand_ids_in_a_tight_loop_are_unique_and_strictly_increasing() -> None:
    run_ids = [new_run_id() for _ in range(10_000)]
    assert len(set(run_ids)) == len(run_ids)
    for earlier, later in itertools.pairwise(run_ids):
        assert earlier < later, (earlier, later)
    # The loop really made many IDs within one millisecond.
    milliseconds = [ULID.from_str(r).milliseconds for r in run_ids]
    assert len(set(milliseconds)) < len(run_ids) // 2
    assert all(CROCKFORD.match(r) for r in run_ids)


def test_ids_from_many_threads_are_unique() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(bucket: list[str]) -> None:
        bucket.extend(new_run_id() for _ in range(2500))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [r for bucket in made for r in bucket]
    assert len(set(everything)) == 10_000
    for bucket in made:
        assert bucket == sorted(bucket)


def test_same_millisecond_with_smaller_randomness_still_increases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ms = 1_774_693_800_000
    script = [
        (ms, 500),
        (ms, 100),  # same ms, lower: must become 501
        (ms, 501),  # same ms, equal to the last one: must become 502
        (ms, 9000),  # same ms, higher: kept as is
        (ms + 1, 1),  # next ms: kept as is
        (ms, 7),  # the clock stepped back (or a thread read it before another): last + 1
    ]
    monkeypatch.setattr(ids, "_last", [0])
    monkeypatch.setattr(ids, "_now_ms", lambda: script[0][0])
    monkeypatch.setattr(ids, "_randomness", lambda: script.pop(0)[1])
    made = [ULID.from_str(new_run_id()) for _ in range(6)]
    assert [(u.milliseconds, int.from_bytes(u.bytes[6:], "big")) for u in made] == [
        (ms, 500), (ms, 501), (ms, 502), (ms, 9000), (ms + 1, 1), (ms + 1, 2),
    ]
    assert [str(u) for u in made] == sorted(str(u) for u in made)


def test_the_lock_is_not_held_while_drawing_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.urandom lets go of the GIL: drawn under the lock, it made other threads wait."""
    held: list[bool] = []
    draw = ids._randomness

    def watched() -> int:
        held.append(ids._lock.locked())
        return draw()

    monkeypatch.setattr(ids, "_randomness", watched)
    new_run_id()
    assert held == [False]


def test_ids_draw_from_the_os_once_for_hundreds(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.urandom lets go of the GIL: under load each call waits for the process's other
    threads. Run IDs, request IDs and message and lease UUIDs share a drawn buffer."""
    draws: list[int] = []
    urandom = os.urandom

    def counted(n: int) -> bytes:
        draws.append(n)
        return urandom(n)

    monkeypatch.setattr(ids, "_random", ids._RandomBytes())
    monkeypatch.setattr(ids.os, "urandom", counted)
    made = [new_run_id() for _ in range(300)] + [sane_request_id(None) for _ in range(100)]
    uuids = [ids.random_uuid() for _ in range(100)]
    assert len(draws) <= 2, draws
    assert len(set(made)) == 400
    assert len({u.int for u in uuids}) == 100
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in uuids)
    # Bytes handed out are never handed out again, across a refill too.
    chunks = [ids.random_bytes(10) for _ in range(1_000)]
    assert len(set(chunks)) == 1_000 and len(draws) >= 3
    assert len(ids.random_bytes(5_000)) == 5_000  # more than a buffer: drawn for itself


# The child only draws, writes to a pipe and leaves: none of the parent's other threads'
# locks are taken, which is what the warning is about.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_hand_out_its_parents_random_bytes() -> None:
    ids.random_bytes(1)  # a buffer drawn in the parent, with bytes left in it
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.close(reader)
        os.write(writer, ids.random_bytes(32))
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        childs = pipe.read()
    os.waitpid(child, 0)
    assert len(childs) == 32
    assert childs != ids.random_bytes(32)


@pytest.mark.parametrize(("value", "expected"), [
    ("01JGXYZABCDEFGHJKMNPQRSTVW", True),
    ("00000000000000000000000000", True),
    ("01jgxyzabcdefghjkmnpqrstvw", False),  # lower case
    ("01JGXYZABCDEFGHJKMNPQRSTV", False),  # 25 characters
    ("01JGXYZABCDEFGHJKMNPQRSTVWX", False),  # 27 characters
    ("01JGXYZABCDEFGHJKMNPQRSTVI", False),  # I is not Crockford
    ("01JGXYZABCDEFGHJKMNPQRSTVL", False),
    ("01JGXYZABCDEFGHJKMNPQRSTVO", False),
    ("01JGXYZABCDEFGHJKMNPQRSTVU", False),
    ("01JGXYZABCDEFGHJKMNPQRST-W", False),
    (" 01JGXYZABCDEFGHJKMNPQRSTVW", False),
    ("", False),
    ("3f2a9c1e-0000-4000-8000-000000000000", False),
])
def test_is_run_id(value: str, expected: bool) -> None:
    assert is_run_id(value) is expected


def test_is_run_id_rejects_a_trailing_newline() -> None:
    assert is_run_id(new_run_id() + "\n") is False


# --- request IDs ------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "abc-123",
    "a.b:c_d",
    "3f2a9c1e-0000-4000-8000-000000000000",
    "Req:2026-03-28T10.30.00",
    "x",
    "A" * 128,
])
def test_sane_request_ids_are_echoed(value: str) -> None:
    assert sane_request_id(value) == value


HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("value", [
    None,
    "",
    " ",
    "has space",
    "line\nbreak",
    "\nleading",
    "carriage\rreturn",
    "x\r\nSet-Cookie: a=b",
    "tab\there",
    "A" * 129,
    "x" * 10_000,
    "ünïcode",
    "semi;colon",
    "slash/",
    "quote\"",
])
def test_insane_request_ids_are_replaced(value: str | None) -> None:
    replaced = sane_request_id(value)
    assert replaced != value
    assert HEX32.match(replaced)
    assert sane_request_id(replaced) == replaced  # what it makes is itself sane


def test_replacements_are_fresh_each_time() -> None:
    made = {sane_request_id(None) for _ in range(1000)}
    assert len(made) == 1000


def test_a_request_id_with_a_trailing_newline_is_replaced() -> None:
    assert sane_request_id("abc\n") != "abc\n"

"""Writes of many threads put together (shared/grouping.py): nothing waits when nobody
writes, what is handed in meanwhile goes in one write, each thread gets its own answer
or its write's error."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from shared.grouping import Group


class Recorder:
    """A write that answers each part doubled, and notes every batch it was given;
    the first write waits until `release` is set, so that others pile up."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.lock = threading.Lock()

    def __call__(self, parts: Sequence[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(parts))
        self.started.set()
        self.release.wait(10)
        return [2 * p for p in parts]


def _submit_all(group: Group[int, int], items: Sequence[int]) -> tuple[
        dict[int, int], dict[int, BaseException]]:
    answers: dict[int, int] = {}
    errors: dict[int, BaseException] = {}

    def one(item: int) -> None:
        try:
            answers[item] = group.submit(item)
        except BaseException as exc:
            errors[item] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return answers, errors


def test_a_lone_part_is_written_at_once_on_its_own() -> None:
    write = Recorder()
    group: Group[int, int] = Group(write)
    assert group.submit(3) == 6
    assert group.submit(4) == 8
    assert write.batches == [[3], [4]]
    assert (group.writes, group.parts) == (2, 2)


def _while_the_first_is_written(group: Group[int, int], write: Recorder, n: int) -> None:
    """Part 0 is being written (held) while parts 1..n are handed in; then it ends."""
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    assert write.started.wait(5)
    rest = threading.Thread(target=lambda: _submit_all(group, range(1, n + 1)))
    rest.start()
    deadline = time.monotonic() + 5
    while len(group._waiting) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    write.release.set()
    first.join(5)
    rest.join(5)


def test_parts_handed_in_during_a_write_go_together_in_the_next() -> None:
    write = Recorder(hold_first=True)
    group: Group[int, int] = Group(write)
    _while_the_first_is_written(group, write, 10)
    assert write.batches[0] == [0]
    assert sorted(write.batches[1]) == list(range(1, 11))
    assert len(write.batches) == 2


def test_with_two_writers_a_part_is_written_at_once_beside_a_write_under_way() -> None:
    write = Recorder(hold_first=True)
    group: Group[int, int] = Group(write, writers=2)
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    assert write.started.wait(5)
    # The first write is held: a second is written beside it (and held too), a third
    # waits for one of them to end.
    second = threading.Thread(target=group.submit, args=(1,))
    second.start()
    deadline = time.monotonic() + 5
    while len(write.batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert write.batches == [[0], [1]]
    third = threading.Thread(target=group.submit, args=(2,))
    third.start()
    while group.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert group.waiting == 1 and len(write.batches) == 2
    write.release.set()
    for thread in (first, second, third):
        thread.join(5)
    assert write.batches == [[0], [1], [2]]
    assert group._writing == 0


def test_a_lone_part_after_a_lone_write_does_not_wait_for_company() -> None:
    write = Recorder()
    group: Group[int, int] = Group(write, linger=5.0)
    started = time.monotonic()
    assert [group.submit(i) for i in range(3)] == [0, 2, 4]
    assert time.monotonic() - started < 1.0
    assert write.batches == [[0], [1], [2]]


def test_while_the_process_is_busy_a_leader_waits_a_moment_for_company() -> None:
    write = Recorder(hold_first=True)
    group: Group[int, int] = Group(write, linger=0.5)
    _while_the_first_is_written(group, write, 3)  # busy: the last write took in three
    assert [sorted(b) for b in write.batches] == [[0], [1, 2, 3]]
    leader = threading.Thread(target=group.submit, args=(100,))
    leader.start()
    time.sleep(0.1)
    # Handed in while the leader lingers: written with it, not after it.
    assert group.submit(101) == 202
    leader.join(5)
    assert sorted(write.batches[-1]) == [100, 101] and len(write.batches) == 3
    # The next lone part finds the process busy still (its last write took in one)...
    started = time.monotonic()
    group.submit(102)
    assert time.monotonic() - started >= 0.4
    # ...and after a write of one part alone, the next is written at once.
    started = time.monotonic()
    group.submit(103)
    assert time.monotonic() - started < 0.3


def test_a_leader_lingers_no_longer_once_a_write_is_full() -> None:
    write = Recorder(hold_first=True)
    group: Group[int, int] = Group(write, most=4, linger=5.0)
    _while_the_first_is_written(group, write, 3)
    started = time.monotonic()
    answers, errors = _submit_all(group, range(10, 14))
    assert not errors and answers == {i: 2 * i for i in range(10, 14)}
    assert time.monotonic() - started < 2.0  # four parts fill a write: nobody waits 5 s
    assert sorted(write.batches[2]) == [10, 11, 12, 13]


def test_every_thread_gets_its_own_answer_under_many_threads() -> None:
    write = Recorder()
    group: Group[int, int] = Group(write)
    items = range(300)
    answers, errors = _submit_all(group, items)
    assert not errors
    assert answers == {i: 2 * i for i in items}
    assert sorted(p for batch in write.batches for p in batch) == list(items)
    assert group.parts == 300


def test_a_write_holds_at_most_most_parts() -> None:
    write = Recorder(hold_first=True)
    group: Group[int, int] = Group(write, most=4)
    _while_the_first_is_written(group, write, 10)
    assert max(len(b) for b in write.batches) <= 4
    assert sorted(p for b in write.batches for p in b) == list(range(11))


def test_a_failed_write_fails_each_of_its_parts_and_the_next_write_goes_on() -> None:
    calls = []

    def write(parts: Sequence[int]) -> list[int]:
        calls.append(list(parts))
        if 13 in parts:
            raise ConnectionError("the database went away")
        return list(parts)

    group: Group[int, int] = Group(write)
    with pytest.raises(ConnectionError):
        group.submit(13)
    assert group.submit(14) == 14
    assert group._writing == 0 and not group._waiting


def test_a_write_that_answers_the_wrong_number_of_parts_is_an_error() -> None:
    group: Group[int, int] = Group(lambda parts: [])
    with pytest.raises(RuntimeError, match="0 answers for 1 parts"):
        group.submit(1)
    assert group._writing == 0

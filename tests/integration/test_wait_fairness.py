"""`?wait` slots are shared fairly between callers: one caller may use every slot
nobody else wants, and never keep another from its share."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from shared.waiting import RunWaiter

NEVER_ENDS = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


class Waits:
    """Waits on a run that never ends, each in its own thread, as requests would."""

    def __init__(self, waiter: RunWaiter) -> None:
        self.waiter = waiter
        self.results: dict[str, tuple[bool, float]] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, caller: str, seconds: float = 20.0) -> None:
        def wait() -> None:
            started = time.monotonic()
            waited = self.waiter.wait(NEVER_ENDS, seconds, lambda: False, caller)
            self.results[name] = (waited, time.monotonic() - started)

        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        self.threads.append(thread)

    def settle(self, expected_holders: dict[str, int], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.waiter.held() != expected_holders and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.waiter.held() == expected_holders

    def ended(self, name: str, timeout: float = 5.0) -> tuple[bool, float]:
        deadline = time.monotonic() + timeout
        while name not in self.results and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.results[name]


@pytest.fixture
def waits(database_url: str) -> Iterator[Waits]:
    waiter = RunWaiter(database_url, slots=4)
    yield Waits(waiter)
    waiter.close()


def test_one_caller_may_use_every_free_slot(waits: Waits) -> None:
    for n in range(4):
        waits.start(f"a{n}", "USER#a")
    waits.settle({"USER#a": 4})
    waits.start("a4", "USER#a")
    assert waits.ended("a4")[0] is False  # no slot, answered at once
    assert waits.waiter.held() == {"USER#a": 4}


def test_a_new_caller_takes_a_slot_from_the_caller_holding_the_most(waits: Waits) -> None:
    for n in range(4):  # one after the other: a0 is the oldest wait, then a1, ...
        waits.start(f"a{n}", "USER#a")
        waits.settle({"USER#a": n + 1})
    waits.start("b0", "USER#b")
    waited, took = waits.ended("a0")  # a's oldest wait is answered at once
    assert waited is True and took < 2
    waits.settle({"USER#a": 3, "USER#b": 1})
    waits.start("c0", "USER#c")
    waits.settle({"USER#a": 2, "USER#b": 1, "USER#c": 1})
    assert waits.ended("a1")[1] < 2
    waits.start("d0", "USER#d")
    waits.settle({"USER#a": 1, "USER#b": 1, "USER#c": 1, "USER#d": 1})
    # The slot is handed over before a2's thread notes its answer: wait for that.
    assert waits.ended("a2")[1] < 2
    # Every caller has one now: a fifth gets none, and nobody loses theirs.
    waits.start("e0", "USER#e")
    assert waits.ended("e0")[0] is False
    assert waits.waiter.held() == {"USER#a": 1, "USER#b": 1, "USER#c": 1, "USER#d": 1}
    assert set(waits.results) == {"a0", "a1", "a2", "e0"}
    # The same caller asking again takes nothing from an equal share either.
    waits.start("b1", "USER#b")
    assert waits.ended("b1")[0] is False


def test_slots_given_back_are_free_again(database_url: str) -> None:
    waiter = RunWaiter(database_url, slots=2)
    try:
        assert waiter.wait(NEVER_ENDS, 0.05, lambda: False, "USER#a") is True
        assert waiter.held() == {}
        ended = threading.Event()
        ended.set()
        assert waiter.wait(NEVER_ENDS, 5, ended.is_set, "USER#a") is True
        assert waiter.held() == {}
    finally:
        waiter.close()

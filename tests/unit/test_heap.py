"""A process's start-up objects are set aside from the collector's full passes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.startup import settle_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_alive_at_start_up_leave_the_collectors_reach_and_new_ones_do_not(
        unfrozen: None) -> None:
    kept_at_start = [[n] for n in range(1_000)]
    start_up_garbage = weakref.ref(Node())

    set_aside = settle_heap("test")

    assert start_up_garbage() is None  # collected first, not set aside for ever
    # (Frozen objects still die when their last reference goes: the count may fall.)
    assert set_aside >= 1_000
    tracked = {id(obj) for obj in gc.get_objects()}
    assert not any(id(obj) in tracked for obj in kept_at_start)
    made_later = [[n] for n in range(10)]
    tracked = {id(obj) for obj in gc.get_objects()}
    assert all(id(obj) in tracked for obj in made_later)
    # A full collection now walks only what was made after start-up.
    assert len(gc.get_objects()) < set_aside
    later_garbage = weakref.ref(Node())
    gc.collect()
    assert later_garbage() is None

"""Keys' last use, noted in memory and written in batches (`shared.keyuse`)."""

from __future__ import annotations

from shared.keyuse import KeyUse


def test_nothing_is_due_before_the_interval_nor_without_notes() -> None:
    use = KeyUse(flush_seconds=3600)
    assert not use.due() and use.take() is None
    use.record(7)
    assert use.noted(7) is not None
    assert not use.due() and use.take() is None  # noted, but not yet due


def test_one_thread_takes_the_notes_and_a_failed_write_keeps_them() -> None:
    use = KeyUse(flush_seconds=0)
    use.record(1)
    use.record(2)
    taken = use.take()
    assert taken is not None and set(taken) == {1, 2}
    use.record(3)
    assert use.take() is None  # another write is under way
    use.done(taken, written=False)
    again = use.take()
    assert again is not None and set(again) == {1, 2, 3}
    use.done(again, written=True)
    assert use.noted(1) is None and not use.due()

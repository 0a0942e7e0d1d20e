"""backoff_seconds: exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import random
import statistics

import pytest

from worker.runner import backoff_seconds


def ceiling(attempt: int, base: float, cap: float) -> float:
    return min(cap, base * 2 ** (attempt - 1))


@pytest.mark.parametrize(("base", "cap"), [(1.0, 60.0), (0.1, 1.0), (2.5, 30.0), (1.0, 1e6)])
def test_delay_is_within_zero_and_the_capped_exponential(base: float, cap: float) -> None:
    rng = random.Random(1234)
    for attempt in range(1, 16):
        limit = ceiling(attempt, base, cap)
        for _ in range(200):
            delay = backoff_seconds(attempt, base=base, cap=cap, retry_after=None, rng=rng)
            assert 0 <= delay <= limit, (attempt, delay, limit)


def test_the_ceiling_doubles_per_attempt_until_the_cap() -> None:
    # The largest of many draws approaches the ceiling of each attempt.
    rng = random.Random(99)
    for attempt, limit in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 20.0),
                           (10, 20.0)]:
        draws = [backoff_seconds(attempt, base=1.0, cap=20.0, retry_after=None, rng=rng)
                 for _ in range(2000)]
        assert max(draws) <= limit
        assert max(draws) > 0.97 * limit
        assert min(draws) < 0.03 * limit  # full jitter: down to zero
        assert statistics.fmean(draws) == pytest.approx(limit / 2, rel=0.1)


def test_a_seeded_rng_gives_the_same_delays() -> None:
    first = [backoff_seconds(a, base=1.0, cap=60.0, retry_after=None, rng=random.Random(7))
             for a in range(1, 10)]
    second = [backoff_seconds(a, base=1.0, cap=60.0, retry_after=None, rng=random.Random(7))
              for a in range(1, 10)]
    assert first == second
    assert len(set(first)) > 1


def test_the_delay_is_a_uniform_draw_from_the_rng() -> None:
    assert backoff_seconds(4, base=1.0, cap=60.0, retry_after=None, rng=random.Random(42)) == (
        random.Random(42).uniform(0, 8.0)
    )
    assert backoff_seconds(20, base=1.0, cap=60.0, retry_after=None, rng=random.Random(42)) == (
        random.Random(42).uniform(0, 60.0)
    )


@pytest.mark.parametrize("attempt", [0, -3])
def test_attempts_below_one_use_the_base(attempt: int) -> None:
    rng = random.Random(5)
    draws = [backoff_seconds(attempt, base=3.0, cap=60.0, retry_after=None, rng=rng)
             for _ in range(500)]
    assert all(0 <= d <= 3.0 for d in draws)
    assert max(draws) > 2.8


def test_zero_base_means_no_wait() -> None:
    assert backoff_seconds(5, base=0.0, cap=60.0, retry_after=None,
                           rng=random.Random(1)) == 0.0


@pytest.mark.parametrize("retry_after", [0.5, 3.0, 10.0, 45.0])
def test_retry_after_is_a_floor(retry_after: float) -> None:
    rng = random.Random(2026)
    for attempt in range(1, 10):
        limit = ceiling(attempt, 1.0, 60.0)
        for _ in range(100):
            delay = backoff_seconds(attempt, base=1.0, cap=60.0, retry_after=retry_after,
                                    rng=rng)
            assert delay >= retry_after
            assert delay <= max(limit, retry_after)


def test_retry_after_above_the_backoff_cap_is_still_honoured() -> None:
    # The provider knows best when it can answer again; the transport caps
    # absurd Retry-After values, and long waits are kept in PostgreSQL.
    rng = random.Random(3)
    for attempt in range(1, 10):
        delay = backoff_seconds(attempt, base=1.0, cap=30.0, retry_after=120.0, rng=rng)
        assert delay == 120.0


def test_a_jitter_draw_above_retry_after_is_kept() -> None:
    expected = random.Random(8).uniform(0, 60.0)
    assert expected > 1.0
    assert backoff_seconds(30, base=1.0, cap=60.0, retry_after=1.0,
                           rng=random.Random(8)) == expected


def test_zero_retry_after_changes_nothing() -> None:
    for seed in range(50):
        plain = backoff_seconds(3, base=1.0, cap=60.0, retry_after=None, rng=random.Random(seed))
        honoured = backoff_seconds(3, base=1.0, cap=60.0, retry_after=0.0,
                                   rng=random.Random(seed))
        assert plain == honoured


def test_without_an_rng_the_module_random_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        seen.append((low, high))
        return high / 2

    monkeypatch.setattr(random, "uniform", uniform)
    assert backoff_seconds(3, base=1.0, cap=60.0, retry_after=None) == 2.0
    assert seen == [(0, 4.0)]

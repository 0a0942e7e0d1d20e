"""The retry policy, without a database, broker or clock: backoff with full jitter,
Retry-After, the deadline, where a wait is kept, and how long a write is tried."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from shared.settings import load_settings
from worker.retry import GiveUp, RetryPolicy, TryAgain, Wait, backoff_seconds


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


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FAR = NOW + timedelta(hours=1)
POLICY = RetryPolicy(base_seconds=1.0, max_seconds=60.0, long_wait_seconds=60.0)


def test_a_transient_failure_is_tried_again_after_the_seeded_backoff() -> None:
    decision = POLICY.after_failure(attempt=3, max_attempts=5, deadline_at=FAR, now=NOW,
                                    rng=random.Random(11))
    expected = random.Random(11).uniform(0, 4.0)
    assert decision == TryAgain(Wait(expected, on_broker=True))


def test_the_last_attempt_gives_up_as_exhausted() -> None:
    assert POLICY.after_failure(attempt=5, max_attempts=5, deadline_at=FAR,
                                now=NOW) == GiveUp("exhausted")
    assert POLICY.after_failure(attempt=1, max_attempts=1, deadline_at=FAR,
                                now=NOW) == GiveUp("exhausted")


def test_a_passed_deadline_times_out_before_attempts_are_counted() -> None:
    for now in (FAR, FAR + timedelta(seconds=1)):
        assert POLICY.after_failure(attempt=5, max_attempts=5, deadline_at=FAR,
                                    now=now) == GiveUp("timed_out")


def test_an_unreadable_answer_is_tried_again_once_then_final() -> None:
    again = POLICY.after_failure(attempt=1, max_attempts=5, deadline_at=FAR, now=NOW,
                                 malformed=True, malformed_before=0, rng=random.Random(1))
    assert isinstance(again, TryAgain)
    assert POLICY.after_failure(attempt=2, max_attempts=5, deadline_at=FAR, now=NOW,
                                malformed=True, malformed_before=1) == GiveUp("final")
    # Final even past the deadline or with no attempts left: the answer is the provider's.
    assert POLICY.after_failure(attempt=5, max_attempts=5, deadline_at=NOW, now=NOW,
                                malformed=True, malformed_before=1) == GiveUp("final")
    # Unreadable answers before do not matter to an ordinary transient failure.
    assert isinstance(POLICY.after_failure(attempt=2, max_attempts=5, deadline_at=FAR,
                                           now=NOW, malformed_before=1), TryAgain)


def test_retry_after_sets_the_wait_and_a_long_one_is_kept_in_postgresql() -> None:
    assert POLICY.after_failure(attempt=1, max_attempts=5, deadline_at=FAR, now=NOW,
                                retry_after=60.0) == TryAgain(Wait(60.0, on_broker=True))
    assert POLICY.after_failure(attempt=1, max_attempts=5, deadline_at=FAR, now=NOW,
                                retry_after=60.5) == TryAgain(Wait(60.5, on_broker=False))


def test_a_wait_is_cut_at_the_deadline() -> None:
    deadline = NOW + timedelta(seconds=10)
    assert POLICY.after_failure(attempt=1, max_attempts=5, deadline_at=deadline, now=NOW,
                                retry_after=120.0) == TryAgain(Wait(10.05, on_broker=True))
    assert POLICY.wait(3.0, deadline_at=deadline, now=NOW) == Wait(3.0, on_broker=True)
    assert POLICY.wait(300.0, deadline_at=deadline, now=NOW) == Wait(10.05, on_broker=True)
    assert POLICY.wait(300.0, deadline_at=FAR, now=NOW) == Wait(300.0, on_broker=False)
    # Just past the deadline: no wait at all.
    assert POLICY.wait(5.0, deadline_at=NOW - timedelta(seconds=1),
                       now=NOW) == Wait(0.0, on_broker=True)
    assert POLICY.wait(-1.0, deadline_at=FAR, now=NOW) == Wait(0.0, on_broker=True)


def test_where_a_wait_is_kept_follows_long_wait_seconds() -> None:
    short = RetryPolicy(long_wait_seconds=5.0)
    assert short.wait(5.0, deadline_at=FAR, now=NOW) == Wait(5.0, on_broker=True)
    assert short.wait(5.01, deadline_at=FAR, now=NOW) == Wait(5.01, on_broker=False)


def test_the_policy_is_read_from_the_settings() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://x@127.0.0.1/db",
                              "REDIS_URL": "redis://127.0.0.1:6379/0",
                              "RETRY_BASE_SECONDS": "0.5", "RETRY_MAX_SECONDS": "7",
                              "LONG_WAIT_SECONDS": "30"})
    policy = RetryPolicy.from_settings(settings)
    assert (policy.base_seconds, policy.max_seconds, policy.long_wait_seconds) == (0.5, 7.0, 30.0)


def test_a_write_is_tried_with_doubling_pauses_until_patience_is_spent() -> None:
    pauses = [POLICY.write_pause(failures, elapsed=0.0) for failures in range(1, 8)]
    assert pauses == [0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0]
    assert POLICY.write_pause(3, elapsed=29.9) == 0.8
    assert POLICY.write_pause(3, elapsed=30.0) is None
    assert POLICY.write_pause(1, elapsed=45.0) is None

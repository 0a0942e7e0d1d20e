"""The retry policy: whether a run is tried again, when, and where its wait is kept.

The runner asks it and does what it says; nothing else decides. It reads no
database, broker or clock of its own (the caller passes `now`), so it is tested
alone (tests/unit/test_retry.py).

- A transient failure (connection error, timeout, 408, 429, 5xx) is tried again
  after an exponential backoff with full jitter, never sooner than the provider's
  `Retry-After` (which the transport bounds to an hour), until the endpoint's
  attempts are spent. A 2xx answer that cannot be read is tried again once.
- No wait goes past the run's deadline: a run whose deadline has passed times out
  instead of being tried again, and a wait is cut to end at the deadline, where
  the run is ended.
- A wait of up to `LONG_WAIT_SECONDS` rides on a broker countdown; a longer one is
  kept in PostgreSQL only, and the sweeper publishes the run when it is due (Redis
  hands out an unacknowledged message again after its visibility timeout, which
  must outlast the longest countdown).
- A write of a result that finds PostgreSQL away is tried again with growing pauses
  for `write_patience_seconds`; then the run is left to its lease and the sweeper.
  A task that finds PostgreSQL away before it claims anything is retried by Celery
  after `database_retry_seconds`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.settings import Settings

# A little past the deadline, so that the message that follows finds the run overdue.
DEADLINE_SLACK_SECONDS = 0.05


@dataclass(frozen=True)
class Wait:
    """Wait `seconds`, then go on; `on_broker`: as a broker countdown, else kept in
    PostgreSQL (published by the sweeper when due)."""

    seconds: float
    on_broker: bool


@dataclass(frozen=True)
class TryAgain:
    """Schedule the next attempt after `wait`."""

    wait: Wait


@dataclass(frozen=True)
class GiveUp:
    """Do not try again: the deadline passed (`timed_out`), the endpoint's attempts are
    spent (`exhausted`), or the failure is final after all (`final`: an answer that
    could not be read, again)."""

    reason: Literal["timed_out", "exhausted", "final"]


Decision = TryAgain | GiveUp


def backoff_seconds(attempt: int, *, base: float, cap: float, retry_after: float | None,
                    rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter, never earlier than the provider's
    Retry-After."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    max_seconds: float = 60.0
    long_wait_seconds: float = 60.0
    # Unreadable 2xx answers an attempt may follow and still be tried again.
    malformed_retries: int = 1
    write_patience_seconds: float = 30.0
    write_first_pause_seconds: float = 0.2
    write_max_pause_seconds: float = 3.0
    database_retry_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(base_seconds=settings.retry_base_seconds,
                   max_seconds=settings.retry_max_seconds,
                   long_wait_seconds=settings.long_wait_seconds)

    def after_failure(self, *, attempt: int, max_attempts: int, deadline_at: datetime,
                      now: datetime, retry_after: float | None = None,
                      malformed: bool = False, malformed_before: int = 0,
                      rng: random.Random | None = None) -> Decision:
        """What follows a transient failure of attempt `attempt` (counted from 1);
        `malformed`: it was an answer that could not be read, and `malformed_before`
        such answers came before it."""
        if malformed and malformed_before >= self.malformed_retries:
            return GiveUp("final")
        if now >= deadline_at:
            return GiveUp("timed_out")
        if attempt >= max_attempts:
            return GiveUp("exhausted")
        delay = backoff_seconds(attempt, base=self.base_seconds, cap=self.max_seconds,
                                retry_after=retry_after, rng=rng)
        return TryAgain(self.wait(delay, deadline_at=deadline_at, now=now))

    def wait(self, seconds: float, *, deadline_at: datetime, now: datetime) -> Wait:
        """A wait of `seconds` (a retry's, or before checking a provider's job again),
        cut at the deadline, and where it is kept."""
        left = (deadline_at - now).total_seconds()
        seconds = max(0.0, min(seconds, left + DEADLINE_SLACK_SECONDS))
        return Wait(seconds, on_broker=seconds <= self.long_wait_seconds)

    def write_pause(self, failures: int, elapsed: float) -> float | None:
        """The pause before trying a write again after `failures` failed tries that took
        `elapsed` seconds since the first began; None: patience is spent, give up."""
        if elapsed >= self.write_patience_seconds:
            return None
        return min(self.write_first_pause_seconds * 2 ** max(0, failures - 1),
                   self.write_max_pause_seconds)

"""What a provider's job says of its own progress while it runs (an Apify actor run's
`statusMessage`), kept with the run's provider state (`runs.provider_state`) and shown
as `progress` events of the run's live events (`shared.events`).

The worker writes the provider state at every check of a followed job anyway, so the
progress costs no write of its own: under the state's `progress` key it keeps the last
message the job reported (cleaned, and cut to MAX_MESSAGE characters), the attempt it
belongs to, when it was first seen, and `n`, how many different messages this attempt
has reported: `n` grows by one each time the message changes, and only then, so it
names each message once and in order, and is part of the events' IDs. A check that
reports nothing new (the same message, none, or a failed check) keeps it as it was.
An attempt that ends takes its progress with it: a new attempt starts with none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.timefmt import iso

KEY = "progress"
MAX_MESSAGE = 500
# The most messages an attempt counts (the event ID's part has at most 9 digits):
# past it, the last one counted stays.
MAX_COUNT = 999_999_999
# Control characters (but tab and line breaks), and lone halves of surrogate pairs,
# which no UTF-8 text may hold.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class Progress:
    """The last message attempt `attempt` reported, the `n`th different one, first seen
    `at` (ISO 8601)."""

    attempt: int
    n: int
    message: str
    at: str

    def as_state(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "n": self.n, "message": self.message, "at": self.at}


def clean_message(text: Any) -> str | None:
    """A job's message as it is kept: a string without control characters, trimmed,
    at most MAX_MESSAGE characters (cut with `…`); None for no message (not a string,
    or only blanks)."""
    if not isinstance(text, str):
        return None
    text = _UNPRINTABLE.sub(" ", text[:MAX_MESSAGE * 4]).strip()
    if not text:
        return None
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1].rstrip() + "…"


def _count(value: Any) -> int | None:
    return value if type(value) is int and 1 <= value <= MAX_COUNT else None


def read(state: Any) -> Progress | None:
    """The progress kept in a provider state; None when there is none (or it is not
    one this module wrote)."""
    return parse(state.get(KEY) if isinstance(state, Mapping) else None)


def parse(kept: Any) -> Progress | None:
    """The progress a provider state keeps under KEY; None for anything else."""
    if not isinstance(kept, Mapping):
        return None
    attempt, n = _count(kept.get("attempt")), _count(kept.get("n"))
    message, at = kept.get("message"), kept.get("at")
    if attempt is None or n is None or not isinstance(message, str) \
            or not isinstance(at, str) or len(message) > MAX_MESSAGE or len(at) > 40:
        return None
    return Progress(attempt, n, message, at)


def record(previous: Any, state: Mapping[str, Any], message: Any, *, attempt: int,
           now: datetime) -> dict[str, Any]:
    """The provider state to keep: `state` (the adapter's) with the attempt's progress,
    `previous` (the state kept before this check) updated with the `message` the job
    reports now, if it reports a new one."""
    kept = read(previous)
    if kept is not None and kept.attempt != attempt:
        kept = None
    new = dict(state)
    new.pop(KEY, None)
    text = clean_message(message)
    if text is not None and (kept is None or (kept.message != text and kept.n < MAX_COUNT)):
        kept = Progress(attempt, kept.n + 1 if kept else 1, text, iso(now) or "")
    if kept is not None:
        new[KEY] = kept.as_state()
    return new


__all__ = ["KEY", "MAX_COUNT", "MAX_MESSAGE", "Progress", "clean_message", "parse", "read",
           "record"]
